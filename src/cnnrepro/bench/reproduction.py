"""The whole reproduction, timed: every variant of params.yaml, one seed, trained end to end here.

Runs go to a scratch folder (never runs/, never the MLflow store) through the same runner as
`cnnrepro train`, so the times are the pipeline's. `epochs_scale` < 1 shortens every variant
(at least one epoch each) for a quick look; such times say nothing about the accuracies.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cnnrepro.mappings import JsonObject, Params
from cnnrepro.train.backends.torch import trainer
from cnnrepro.train.configure import configure_run
from cnnrepro.train.engine import lifecycle
from cnnrepro.train.engine.run_config import Prepared
from cnnrepro.variants.registry import get_variant


@dataclass
class VariantTime:
    variant: str
    status: str  # "completed" | "not_run"
    epochs: int
    wall_s: float  # everything: data (cache or decode), model, training, scoring, outputs
    train_s: float | None = None  # model build + training epochs (runner's train_duration_s)
    val_accuracy: float | None = None
    reason: str | None = None

    def as_dict(self) -> JsonObject:
        return asdict(self)


def pipeline_variants(params: Params) -> list[str]:
    """The variants the pipeline trains, in an order where fine_tuning follows its base run."""
    groups = params["train"]["variants"]
    return [*groups["pets"], *groups["pets_fine_tuning"], *groups["idx"], *groups["keras_example"]]


def scaled_epochs(documented: int, scale: float) -> int:
    return max(1, round(documented * scale))


def run_reproduction(
    params: Params,
    data_dirs: dict[str, Path],
    *,
    seed: int,
    epochs_scale: float = 1.0,
    variants: list[str] | None = None,
) -> list[VariantTime]:
    """Train each variant once (seed `seed`) and time it; VGG16 variants are not_run without weights."""
    names = variants or pipeline_variants(params)
    times: list[VariantTime] = []
    with tempfile.TemporaryDirectory(prefix="cnnrepro-bench-") as scratch:
        root = Path(scratch)
        for name in names:
            times.append(_one(params, data_dirs, name, seed, epochs_scale, root))
    return times


def _one(params: Params, data_dirs: dict[str, Path], name: str, seed: int, scale: float, root: Path) -> VariantTime:
    spec = get_variant(name)
    local = copy.deepcopy(params)
    overrides = local["train"]["overrides"] = dict(local["train"].get("overrides") or {})
    epochs = int((overrides.get(name) or {}).get("epochs", spec.epochs))
    if scale != 1.0:
        epochs = scaled_epochs(epochs, scale)
        overrides[name] = dict(overrides.get(name) or {}) | {"epochs": epochs}
    out = root / "runs" / name
    init_from = root / "runs" / spec.continues_from if spec.continues_from else None
    config = configure_run(
        local,
        framework="torch",
        variant=name,
        seed=seed,
        data_dir=data_dirs[spec.dataset],
        out_dir=out,
        init_from=init_from,
        backend=trainer.BACKEND,
    )
    info = lifecycle.RunInfo("torch", name, seed, "not_run", config.runtime.device, lifecycle.now_iso())
    started = time.perf_counter()
    result = None
    prepared = Prepared()
    try:
        prepared = trainer.prepare(config, download_timeout_s=10.0)
        # The runner prints its epochs; stdout stays for the bench's table or JSON.
        with contextlib.redirect_stdout(sys.stderr):
            result = trainer.train_variant(config, prepared, checkpoint_root=root / "checkpoints")
    except lifecycle.NotRunnable as exc:
        info.reason = str(exc)
    info.status = "completed" if result is not None else "not_run"
    # Written like a real run so that fine_tuning can continue from feature_extraction_augmented.
    lifecycle.write_outputs(out, config, prepared, info, result, trainer.BACKEND)
    wall = time.perf_counter() - started
    if result is None:
        return VariantTime(name, "not_run", epochs, wall, reason=info.reason)
    return VariantTime(
        name, "completed", epochs, wall, train_s=result.train_duration_s, val_accuracy=result.metrics["val_accuracy"]
    )
