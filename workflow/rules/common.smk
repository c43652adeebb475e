# Names and paths shared by the rules; the variant lists and seeds come from params.yaml only.
TRAIN = config["train"]
VARIANT_GROUPS = TRAIN["variants"]
CODE = "src/cnnrepro"
TRAIN_CODE = [CODE + "/models", CODE + "/training"]
RUN_DIR = "runs/{framework}/{variant}/seed{seed}"


def run_outputs(group):
    """Every run output file of one variant group, for every framework and seed in params."""
    return expand(
        RUN_DIR + "/metrics.json",
        framework=TRAIN["frameworks"],
        variant=VARIANT_GROUPS[group],
        seed=TRAIN["seeds"],
    )


def one_of(names):
    """A wildcard constraint matching exactly these names (none matches nothing)."""
    return "|".join(names) if names else "(?!)"


wildcard_constraints:
    seed=r"\d+",
    framework="|".join(TRAIN["frameworks"]),
