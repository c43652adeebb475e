"""params.yaml is read within limits by every tool that reads it (issue 23): the CLI, the pipeline runner and
the Snakefile. Each hostile file is built here; the command runs in a subprocess under RLIMIT_AS with its own
peak memory measured (wait4), and must stop in one line naming the file and the limit, having run nothing.
Before, a nine-level alias bomb grew each of them past 3 GB (MemoryError after 40-80 s)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnrepro.checks.bounded_yaml import YamlLimitError, YamlLimits, check_expansion, load_yaml_bounded
from cnnrepro.errors import ParamsError
from cnnrepro.params import load_params

from .conftest import PROJECT_ROOT
from .helpers_zoo import MIB, run_bounded

SHIPPED = (PROJECT_ROOT / "params.yaml").read_text()
ADDRESS_SPACE_MIB = 2048  # room for the interpreter and Snakemake; the old code needed more than 3 GB
PEAK_MIB = 400  # what Snakemake itself takes to start, measured at about 170 MiB
BOMB_LINE = "expands to more than 100,000 YAML nodes (aliases counted as the nodes they repeat); not loaded"
# One BLAS thread: the address space a many-core box reserves for idle BLAS threads is not ours.
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """A flow sequence whose last element is width**levels scalars once expanded ("billion laughs")."""
    items = ["&a0 lol"] + [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "[" + ", ".join(items) + "]"


def params_with(line: str, value: str) -> str:
    """The shipped params.yaml with one `  key: value` line's value replaced."""
    assert f"\n{line}\n" in SHIPPED, line
    key = line.split(":")[0]
    return SHIPPED.replace(f"\n{line}\n", f"\n{key}: {value}\n")


BOMBS = {
    "train.seeds": params_with("  seeds: [0, 1, 2]", alias_bomb()),
    "tracking.experiment": params_with("  experiment: cnnrepro", alias_bomb()),
}


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("key", BOMBS)
def test_alias_bomb_is_refused_by_the_cli_before_it_expands(tmp_path: Path, key: str) -> None:
    (tmp_path / "params.yaml").write_text(BOMBS[key])
    assert len(BOMBS[key]) < 2 * len(SHIPPED)  # a small file: the danger is what it expands to
    run = run_bounded(["cnnrepro", "report", "--out", "reports"], tmp_path, ADDRESS_SPACE_MIB, env=ENV)
    assert run.returncode == 1
    line = one_error_line(run.stderr)
    assert line.startswith("cnnrepro report: error: params.yaml: line ") and line.endswith(BOMB_LINE), line
    assert run.peak_rss_mib < PEAK_MIB, run.peak_rss_mib
    assert not (tmp_path / "reports").exists()
    print(f"\n{key} bomb, cnnrepro report: exit 1 in {run.seconds:.1f} s, peak {run.peak_rss_mib:.0f} MiB")


def test_a_61_mb_params_file_is_refused_without_parsing(tmp_path: Path) -> None:
    filler = "# " + "x" * 1021 + "\n"  # 1 KiB comment lines: valid YAML, 61 MB of it
    (tmp_path / "params.yaml").write_text(SHIPPED + filler * (61 * 1000 * 1000 // len(filler)))
    assert (tmp_path / "params.yaml").stat().st_size > 61_000_000
    run = run_bounded(["cnnrepro", "report"], tmp_path, ADDRESS_SPACE_MIB, env=ENV)
    assert run.returncode == 1
    line = one_error_line(run.stderr)
    assert line == "cnnrepro report: error: params.yaml: larger than the 1 MiB limit for this file; not parsed"
    assert run.peak_rss_mib < PEAK_MIB, run.peak_rss_mib
    print(f"\n61 MB params.yaml: exit 1 in {run.seconds:.1f} s, peak {run.peak_rss_mib:.0f} MiB")


def test_the_pipeline_runner_refuses_the_bomb_before_its_command(tmp_path: Path) -> None:
    """`make dvc-repro` = python -m cnnrepro.orchestration.pipeline_run -- dvc repro: params are read first."""
    (tmp_path / "params.yaml").write_text(BOMBS["train.seeds"])
    args = [sys.executable, "-m", "cnnrepro.orchestration.pipeline_run", "--", "touch", "ran"]
    run = run_bounded(args, tmp_path, ADDRESS_SPACE_MIB, env=ENV)
    assert run.returncode == 1
    assert one_error_line(run.stderr).startswith("cnnrepro pipeline: error: params.yaml: line ")
    assert run.stderr.strip().endswith(BOMB_LINE)
    assert run.peak_rss_mib < PEAK_MIB, run.peak_rss_mib
    # The command never ran, no MLflow store was made; what is left is the released lock file.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cnnrepro", "params.yaml"]
    assert [p.name for p in (tmp_path / ".cnnrepro").iterdir()] == ["pipeline.lock"]


# ---- Snakemake ----------------------------------------------------------------------------------------


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    """The pipeline definition, enough for `snakemake -n` (the code it hashes is the project's, linked)."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Snakefile", "dvc.yaml", "added_seeds.yaml"):
        (project / name).write_text((PROJECT_ROOT / name).read_text())
    (project / "workflow").symlink_to(PROJECT_ROOT / "workflow")
    (project / "src").symlink_to(PROJECT_ROOT / "src")
    (project / "params.yaml").write_text(SHIPPED)
    return project


def dry_run(project: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["snakemake", "-n", "--cores", "1", *extra], cwd=project, capture_output=True, text=True, timeout=300, env=ENV
    )


def test_snakemake_dry_run_stops_on_a_bomb_in_params_yaml_in_one_line(workflow: Path) -> None:
    (workflow / "params.yaml").write_text(BOMBS["tracking.experiment"])
    run = run_bounded(["snakemake", "-n", "--cores", "1"], workflow, ADDRESS_SPACE_MIB, env=ENV)
    assert run.returncode == 1
    line = one_error_line(run.stderr)
    assert line.startswith("cnnrepro pipeline: error: params.yaml: line ") and line.endswith(BOMB_LINE), line
    assert run.peak_rss_mib < PEAK_MIB, run.peak_rss_mib
    assert not (workflow / ".snakemake" / "log").exists() or not any((workflow / ".snakemake" / "log").iterdir())
    print(f"\nsnakemake -n, bomb in params.yaml: exit 1 in {run.seconds:.1f} s, peak {run.peak_rss_mib:.0f} MiB")


def test_snakemake_dry_run_stops_on_a_bomb_given_with_configfile(workflow: Path) -> None:
    """Snakemake parses --configfile itself, before the Snakefile (its loader keeps aliases shared); the
    Snakefile measures the merged config by object identity before validating it."""
    (workflow / "bomb.yaml").write_text(BOMBS["train.seeds"])
    args = ["snakemake", "-n", "--cores", "1", "--configfile", "bomb.yaml"]
    run = run_bounded(args, workflow, ADDRESS_SPACE_MIB, env=ENV)
    assert run.returncode == 1
    line = one_error_line(run.stderr)
    assert line.startswith("cnnrepro pipeline: error: params.yaml + ") and "bomb.yaml: expands to more than" in line
    assert run.peak_rss_mib < PEAK_MIB, run.peak_rss_mib
    print(f"\nsnakemake -n --configfile bomb: exit 1 in {run.seconds:.1f} s, peak {run.peak_rss_mib:.0f} MiB")


def test_snakemake_command_line_config_still_wins_over_params_yaml(workflow: Path) -> None:
    """params.yaml < --configfile < --config, as Snakemake's configfile: directive merged them."""
    (workflow / "seeds.yaml").write_text("train:\n  seeds: [7]\n")
    via_file = dry_run(workflow, "--configfile", "seeds.yaml", "-F")
    assert via_file.returncode == 0, via_file.stderr[-2000:]
    assert "seed7/metrics.json" in via_file.stdout and "seed0/metrics.json" not in via_file.stdout
    # --config last: Snakemake hands list items given there over as strings, so the merged config names the
    # value that came from it (the line the configfile: directive gave too, checked before the change).
    both = dry_run(workflow, "--configfile", "seeds.yaml", "--config", "train={'seeds': [9]}")
    assert both.returncode == 1
    assert one_error_line(both.stderr) == (
        f"cnnrepro pipeline: error: params.yaml + {workflow / 'seeds.yaml'}: "
        "train.seeds.0: '9' is not of type 'integer'"
    )


def test_snakemake_refuses_nan_in_params_yaml(workflow: Path) -> None:
    params = yaml.safe_load(SHIPPED)
    params["train"]["overrides"]["baseline"] = {"learning_rate": math.nan}
    (workflow / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run = dry_run(workflow)
    assert run.returncode == 1
    assert one_error_line(run.stderr) == (
        "cnnrepro pipeline: error: params.yaml: train.overrides.baseline.learning_rate: nan is not a finite number"
    )


# ---- the loader's limits, in process ------------------------------------------------------------------


def test_the_shipped_params_load_as_safe_load_reads_them(tmp_path: Path) -> None:
    assert load_yaml_bounded(PROJECT_ROOT / "params.yaml") == yaml.safe_load(SHIPPED)
    assert check_expansion(SHIPPED, "params.yaml") < YamlLimits().max_nodes // 100


def test_aliases_count_as_the_nodes_they_repeat() -> None:
    assert check_expansion("[a, b]", "x") == 3
    assert check_expansion("{k: v}", "x") == 3
    assert check_expansion("- &l [a, b, c]\n- *l\n- *l\n", "x") == 1 + 3 * 4
    # A merge key repeats the mapping it names.
    # root + (base, {k: 1, j: 2}) + (child, {<<, *b, m, 3})
    assert check_expansion("base: &b {k: 1, j: 2}\nchild: {<<: *b, m: 3}\n", "x") == 1 + (1 + 5) + (1 + (1 + 1 + 5 + 2))
    limits = YamlLimits(max_nodes=1 + 3 * 4)
    assert check_expansion("- &l [a, b, c]\n- *l\n- *l\n", "x", limits) == 13  # at the limit: loaded
    with pytest.raises(YamlLimitError, match=r"^x: line 4: expands to more than 13 YAML nodes"):
        check_expansion("- &l [a, b, c]\n- *l\n- *l\n- z\n", "x", limits)


def test_depth_and_self_reference_are_refused() -> None:
    with pytest.raises(YamlLimitError, match=r"^x: line 1: nested deeper than 64 levels$"):
        check_expansion("[" * 65 + "]" * 65, "x")
    assert check_expansion("[" * 64 + "]" * 64, "x") == 64
    with pytest.raises(YamlLimitError, match=r"^x: line 1: alias \*a inside its own anchor$"):
        check_expansion("&a [*a]", "x")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe: 1\n", "params.yaml: not UTF-8 text (byte 0)"),
        (b"[" * 100_000, "params.yaml: line 1: nested deeper than 64 levels"),
        (b"a: [1, 2\n", "params.yaml: line 2: not valid YAML"),
        (b"- 1\n- 2\n", "params.yaml: expected a mapping of stage sections"),
    ],
)
def test_unreadable_params_are_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "params.yaml").write_bytes(content)
    with pytest.raises(ParamsError) as info:
        load_params(tmp_path / "params.yaml")
    assert str(info.value) == str(tmp_path / message)


def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "params.yaml")  # open() would block until a writer came
    with pytest.raises(ParamsError, match=r"params\.yaml: not a regular file$"):
        load_params(tmp_path / "params.yaml")


NONSENSE = [
    (("train", "overrides", "baseline", "learning_rate"), math.inf, "inf is not a finite number"),
    (("train", "overrides", "baseline", "learning_rate"), math.nan, "nan is not a finite number"),
    (("train", "overrides", "baseline", "learning_rate"), 0, "0 is less than or equal to the minimum of 0"),
    (("train", "overrides", "baseline", "learning_rate"), -1e-3, "-0.001 is less than or equal to the minimum of 0"),
    (("train", "overrides", "baseline", "learning_rate"), 1e4, "10000.0 is greater than the maximum of 10"),
    (("train", "overrides", "baseline", "epochs"), 0, "0 is less than the minimum of 1"),
    (("train", "overrides", "baseline", "batch_size"), -32, "-32 is less than the minimum of 1"),
    (("train", "overrides", "baseline", "steps_per_epoch"), 0, "0 is less than the minimum of 1"),
    (("train", "overrides", "baseline", "validation_steps"), 2.5, "2.5 is not of type 'integer'"),
    (("train", "seeds"), [2**32], "4294967296 is greater than the maximum of 4294967295"),
    (("report", "confidence"), math.nan, "nan is not a finite number"),
    (("download", "timeout_s"), math.inf, "inf is not a finite number"),
    (("download", "retries"), 10**6, "1000000 is greater than the maximum of 100"),
    (("split", "keras_example", "validation_fraction"), -math.inf, "-inf is not a finite number"),
]


@pytest.mark.parametrize(("keys", "value", "problem"), NONSENSE, ids=[f"{'.'.join(k)}={v}" for k, v, _ in NONSENSE])
def test_rates_and_counts_that_make_no_sense_are_schema_errors(
    tmp_path: Path, keys: tuple[str, ...], value: object, problem: str
) -> None:
    params = yaml.safe_load(SHIPPED)
    section = params
    for key in keys[:-1]:
        section = section.setdefault(key, {})
    section[keys[-1]] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    where = ".".join(keys) + (".0" if isinstance(value, list) else "")
    with pytest.raises(ParamsError) as info:
        load_params(tmp_path / "params.yaml")
    assert str(info.value) == f"{tmp_path / 'params.yaml'}: {where}: {problem}"


def test_limits_are_named_in_bytes_when_not_whole_mebibytes(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("a: " + "b" * 2000)
    with pytest.raises(YamlLimitError, match=r"p\.yaml: larger than the 1,000 bytes limit for this file; not parsed$"):
        load_yaml_bounded(tmp_path / "p.yaml", YamlLimits(max_bytes=1000))
    assert YamlLimits().max_bytes == MIB
