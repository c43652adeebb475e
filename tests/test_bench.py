"""`cnnrepro bench`: FLOP counts against the sources and torch's counter, the peak table, the command
on tiny fixtures (every column printed, not_run rows with reasons, the reproduction timer), and the
speed options leaving results unchanged. Behaviour only: no wall-time assertions."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from cnnrepro import cli
from cnnrepro.bench import flops, peaks
from cnnrepro.bench.interleave import interleaved_ms
from cnnrepro.bench.table import STEP_COLUMNS
from cnnrepro.params import load_params
from cnnrepro.train import vgg16_weights
from cnnrepro.train.backends.torch import trainer
from cnnrepro.train.backends.torch.models import create_model, vgg16
from cnnrepro.train.configure import configure_run
from cnnrepro.train.engine.augmentation_spec import book_augmentation
from cnnrepro.train.engine.lifecycle import load_splits
from cnnrepro.train.engine.run_config import Prepared
from cnnrepro.train.inputs.augment import augment_batch

from .helpers_parity import assert_first_steps_match
from .helpers_train import UNREACHABLE_URL, make_image_folder, make_npz, needs_tf, tiny_overrides, write_params

# --- arithmetic ------------------------------------------------------------------------------------


def test_baseline_forward_is_the_documented_0_236_gmac_and_torch_counts_the_same_training_flops() -> None:
    with torch.device("meta"):  # shapes only: no weights, no arithmetic
        model = create_model("baseline")
    costs = flops.layer_costs(model, torch.zeros(1, 3, 150, 150, device="meta"))
    assert [c.name for c in costs] == ["conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "dense_1", "dense_2"]
    assert flops.forward_macs(costs) / 1e9 == pytest.approx(0.236, abs=0.0005)  # porting-notes, Costs
    # Every layer trains; all but the first need their input gradient: 3x forward less conv2d_1's dX.
    assert flops.train_macs(costs) == 3 * flops.forward_macs(costs) - costs[0].forward_macs
    x, y = torch.zeros(2, 3, 150, 150, device="meta"), torch.tensor([0, 1], device="meta")
    counted = flops.counted_train_flops(
        model, x, lambda logits: torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), y.float())
    )
    assert counted == 2 * 2 * flops.train_macs(costs)
    assert all(p.grad is None for p in model.parameters())  # the count leaves no gradients behind


def test_frozen_and_fine_tuned_vgg16_cost_what_autograd_computes() -> None:
    with torch.device("meta"):  # shapes only: no weights, no arithmetic
        model = vgg16.VGG16Classifier()
    example = torch.zeros(1, 3, 150, 150, device="meta")
    base = [c for c in flops.layer_costs(model, example) if c.name.startswith("conv_base.")]
    assert flops.forward_macs(base) / 1e9 == pytest.approx(6.6, abs=0.05)  # porting-notes: ~6.6 GMAC
    block5 = [c for c in base if "block5" in c.name]
    assert flops.forward_macs(block5) / 1e9 == pytest.approx(0.57, abs=0.01)  # porting-notes: ~0.57 GMAC
    vgg16.freeze_conv_base(model)  # a frozen base (the ablation frozen_base): it runs forward only
    frozen = flops.layer_costs(model, example)
    assert all(c.train_macs == c.forward_macs for c in frozen if c.name.startswith("conv_base."))
    vgg16.freeze_conv_base(model, vgg16_weights.FINE_TUNED_LAYERS)  # fine_tuning: block5 trains
    tuned = {c.name: c for c in flops.layer_costs(model, example)}
    assert tuned["conv_base.block5_conv1"].train_macs == 2 * tuned["conv_base.block5_conv1"].forward_macs
    assert tuned["conv_base.block5_conv2"].train_macs == 3 * tuned["conv_base.block5_conv2"].forward_macs
    assert tuned["conv_base.block4_conv3"].train_macs == tuned["conv_base.block4_conv3"].forward_macs


def test_flop_counts_agree_with_torch_on_a_partly_frozen_net() -> None:
    """The same per-layer backward rule as autograd, checked on a small VGG-shaped net (32x32 input)."""
    torch.manual_seed(0)
    model = vgg16.VGG16Classifier(features=512)
    vgg16.freeze_conv_base(model, vgg16_weights.FINE_TUNED_LAYERS)
    x = torch.rand(2, 3, 32, 32)
    costs = flops.layer_costs(model, x[:1])
    assert flops.counted_train_flops(model, x, lambda logits: logits.sum()) == 2 * 2 * flops.train_macs(costs)


# --- peaks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_name", "row", "bf16"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.4),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", "H100 NVL", 835.0),
        ("NVIDIA H200", "H200 SXM", 989.4),
        ("NVIDIA GH200 480GB", "GH200", 989.4),
        ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
        ("NVIDIA A100 80GB PCIe", "A100", 312.0),
        ("NVIDIA A10", "A10", 125.0),
        ("NVIDIA L4", "L4", 121.0),
        ("NVIDIA L40S", "L40S", 362.0),
        ("Tesla V100-SXM2-16GB", "V100 SXM2", None),
        ("Tesla V100-PCIE-32GB", "V100 PCIe", None),
        ("Tesla T4", "T4", None),
        ("Tesla K80", "K80 (one GK210)", None),
    ],
)
def test_peak_table_finds_the_gpu_by_its_torch_name(device_name: str, row: str, bf16: float | None) -> None:
    found = peaks.gpu_peak(device_name)
    assert found is not None and found.name == row and found.bf16 == bf16
    assert found.fp32 > 0 and found.for_precision("fp32") == found.fp32


def test_unknown_gpus_have_no_peak_and_the_cpu_rate_is_measured() -> None:
    assert peaks.gpu_peak("NVIDIA A10G") is None and peaks.gpu_peak("Radeon Something") is None
    rate = peaks.measure_cpu_matmul_tflops(n=128, seconds=0.05)
    assert math.isfinite(rate) and rate > 0
    peak = peaks.device_peak(torch.device("cpu"), False, cpu_seconds=0.05)
    assert peak.precision == "fp32" and peak.tflops > 0 and "measured" in peak.source


# --- the command on tiny fixtures --------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """data/split/book (tiny JPEGs), data/prepared/mnist.npz, params with a private cache and no VGG16."""
    monkeypatch.chdir(tmp_path)  # the VGG16 lookup's project cache (.cnnrepro/weights) is relative
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    make_image_folder(tmp_path / "data" / "split" / "book", {"train": 3, "validation": 2, "test": 1})
    make_npz(tmp_path / "data" / "prepared" / "mnist.npz", n_train=40, n_test=10)
    write_params(
        tmp_path / "params.yaml",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        image_cache_dir=str(tmp_path / "cache"),
        vgg16={"url": UNREACHABLE_URL},
        overrides=tiny_overrides(baseline={}, augmentation={}, mnist_dense={"steps_per_epoch": 2}),
    )
    return tmp_path


def _bench(project: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    argv = ["bench", "--params", str(project / "params.yaml"), "--data-root", str(project / "data")]
    code = cli.main([*argv, "--device", "cpu", *extra])
    return code, capsys.readouterr().out


STEP_ARGS = ("--steps", "2", "--warmup", "1", "--batch-size", "2", "--naive-workers", "0", "--cpu-peak-seconds", "0.05")


def test_bench_prints_every_column_for_fast_and_naive_paths(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    variants = "baseline,augmentation,mnist_convnet,feature_extraction"
    code, out = _bench(project, capsys, "--variants", variants, *STEP_ARGS)
    assert code == 0, out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("variant"))
    for name, _ in STEP_COLUMNS:
        assert name in header
    for variant in ("baseline", "augmentation", "mnist_convnet"):
        for path in ("fast", "naive"):
            (row,) = [line for line in lines if line.split()[:2] == [variant, path]]
            cells = row.split()
            assert len(cells) == len(STEP_COLUMNS)
            assert float(cells[3]) > 0  # img/s
    assert "feature_extraction (fast): not_run:" in out and "feature_extraction (naive): not_run:" in out
    assert "fast/naive images/s: baseline x" in out and "mnist_convnet x" in out
    assert "baseline (graph): not_run: CUDA graphs need CUDA (device cpu)" in out
    assert "peak: fp32: measured" in out
    assert list((project / "cache" / "images").glob("*.npy"))  # the fast path read the split through the cache


def test_bench_json_holds_every_figure(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _bench(project, capsys, "--variants", "mnist_convnet", *STEP_ARGS, "--json", "--out", "b.json")
    assert code == 0
    report = json.loads(out)
    assert report == json.loads((project / "b.json").read_text())
    assert report["kind"] == "steps" and report["steps"] == 2
    fast, graph, naive = report["results"]
    assert (fast["path"], graph["path"], naive["path"]) == ("fast", "graph", "naive")
    assert graph["status"] == "not_run" and "CUDA graphs need CUDA" in graph["reason"]  # no CUDA here
    # The cross-check: a real fit() epoch over the same steps, per step (validation included).
    assert fast["fit_step_ms"] > 0 and naive["fit_step_ms"] is None
    for row in (fast, naive):
        assert row["status"] == "measured" and row["batch_size"] == 2 and row["steps"] == 2
        for key in ("images_per_s", "step_ms", "data_ms", "compute_ms", "achieved_tflops", "peak_tflops"):
            assert row[key] > 0, key
        assert row["peak_fraction"] == pytest.approx(row["achieved_tflops"] / row["peak_tflops"])
        assert row["train_gflop_per_image"] == pytest.approx(row["counted_gflop_per_image"], rel=1e-9)
        assert row["forward_gmac_per_image"] == pytest.approx(0.00279424)  # mnist_convnet: ~2.8 MMAC
        assert row["memory_kind"] == "process max RSS" and row["peak_memory_mb"] > 0
    assert fast["pure_ms"] > 0 and naive["pure_ms"] is None
    assert report["fast_over_naive"]["mnist_convnet"] == pytest.approx(fast["images_per_s"] / naive["images_per_s"])


@needs_tf
def test_bench_on_cpu_prints_pytorch_and_keras_ms_and_their_ratio(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--variants", "mnist_convnet,feature_extraction", *STEP_ARGS, "--no-naive", "--no-fit")
    code, out = _bench(project, capsys, *args, "--out", "b.json")
    assert code == 0, out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("variant") and "keras ms" in line)
    assert "pytorch ms" in header and "pytorch/keras" in header
    (row,) = [line for line in lines[lines.index(header) :] if line.startswith("mnist_convnet")]
    cells = row.split()
    assert cells[1] == "2" and cells[3] in ("NCHW", "NHWC")
    torch_ms, keras_ms, ratio = (float(c) for c in cells[4:7])
    # The ratio is of the unrounded times; each ms is printed to 0.05 and the ratio to 0.005.
    rounding = 0.05 / keras_ms * (1 + torch_ms / keras_ms) + 0.005
    assert torch_ms > 0 and keras_ms > 0 and ratio == pytest.approx(torch_ms / keras_ms, abs=rounding)
    assert "feature_extraction (keras): not_run: VGG16 variants are not compared" in out
    (versus, skipped) = json.loads((project / "b.json").read_text())["versus_keras"]
    assert versus["status"] == "measured" and versus["rounds"] == 2 and versus["threads"] == torch.get_num_threads()
    assert versus["torch_fastest_ms"] <= versus["torch_ms"] and versus["keras_fastest_ms"] <= versus["keras_ms"]
    assert versus["torch_over_keras"] == pytest.approx(versus["torch_ms"] / versus["keras_ms"])
    assert skipped["status"] == "not_run"


def test_interleaved_rounds_alternate_abba_and_report_each_rounds_ms() -> None:
    order: list[str] = []
    times = interleaved_ms({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=3, warmup=1)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up a, b; then rounds ab, ba, ab
    assert len(times["a"].ms) == 3 and times["a"].fastest <= times["a"].median
    with pytest.raises(ValueError, match="rounds 0"):
        interleaved_ms({"a": lambda: None}, rounds=0)


def test_bench_rejects_bad_arguments(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["bench", "--params", str(project / "params.yaml"), "--variants", "nope", "--steps", "1"])
    assert code == 1 and "unknown variant 'nope'" in capsys.readouterr().err
    assert cli.main(["bench", "--params", str(project / "params.yaml"), "--steps", "0"]) == 1


def test_reproduction_times_every_variant_and_writes_nothing_to_the_project(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    variants = "baseline,mnist_dense,feature_extraction_augmented,fine_tuning"
    code, out = _bench(project, capsys, "--reproduction", "--epochs-scale", "0.01", "--variants", variants, "--json")
    assert code == 0
    report = json.loads(out)  # epoch lines went to stderr: stdout is the JSON alone
    rows = {r["variant"]: r for r in report["variants"]}
    assert rows["baseline"]["status"] == rows["mnist_dense"]["status"] == "completed"
    assert rows["baseline"]["epochs"] == 1 and rows["mnist_dense"]["epochs"] == 1  # 2 and 5 epochs x 0.01
    assert 0 < rows["baseline"]["train_s"] <= rows["baseline"]["wall_s"]
    assert rows["feature_extraction_augmented"]["status"] == "not_run"
    assert "weights" in rows["feature_extraction_augmented"]["reason"].lower()
    assert rows["fine_tuning"]["status"] == "not_run" and "not_run" in rows["fine_tuning"]["reason"]
    assert report["total_wall_s"] == pytest.approx(sum(r["wall_s"] for r in report["variants"]))
    assert not (project / "runs").exists() and not (project / "checkpoints").exists()
    assert not (project / "mlflow.db").exists()
    code, out = _bench(project, capsys, "--reproduction", "--epochs-scale", "0.01", "--variants", "mnist_dense")
    assert code == 0 and "total wall time" in out and "mnist_dense" in out


# --- fast-path options leave the results as they were ---------------------------------------------


def _tiny_batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return create_model("mnist_convnet"), torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))


def test_channels_last_gives_the_same_losses_and_weights() -> None:
    """One step from the same weights, plain and channels_last: equal up to float32 rounding (the bounds
    of tests/tolerances.py), so on any CPU whatever kernels each memory format gets."""
    model, x, y = _tiny_batch()
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    assert nhwc.conv2d_1.weight.is_contiguous(memory_format=torch.channels_last)
    inputs = (x, x.contiguous(memory_format=torch.channels_last))
    assert_first_steps_match(model, nhwc, inputs, y, "categorical_crossentropy", "rmsprop_keras2", 1e-3)


@pytest.mark.slow  # Inductor compiles C++ on the CPU: a minute or more on a busy machine
def test_compile_gives_the_same_losses_and_keeps_state_dict_keys() -> None:
    model, x, y = _tiny_batch()
    compiled = copy.deepcopy(model)
    compiled.compile()
    assert_first_steps_match(model, compiled, (x, x), y, "categorical_crossentropy", "rmsprop_keras2", 1e-3)
    assert list(compiled.state_dict()) == list(model.state_dict())


def test_setup_training_applies_channels_last(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "book", {"train": 2, "validation": 1, "test": 1})
    params = load_params(
        write_params(tmp_path / "p.yaml", tracking_uri="sqlite:///x.db", channels_last=True, image_cache=False)
    )
    config = configure_run(params, framework="torch", variant="baseline", seed=0, data_dir=data, out_dir="o")
    assert config.runtime.channels_last is True and config.runtime.compile is False
    setup = trainer.setup_training(config, Prepared(), load_splits(config))
    x, _ = setup.train.batch([0, 1])
    assert setup.inputs(x, train=True).is_contiguous(memory_format=torch.channels_last)
    assert setup.model.conv2d_1.weight.is_contiguous(memory_format=torch.channels_last)


def test_augmentation_is_float32_under_bf16_autocast() -> None:
    """The warp's sampling grid must not drop to bf16 when the step runs under autocast."""
    images = torch.rand(4, 3, 150, 150) * 255
    spec = book_augmentation("2.1.3")
    expected = augment_batch(images, spec, torch.Generator().manual_seed(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = augment_batch(images, spec, torch.Generator().manual_seed(3))
    assert under.dtype == torch.float32
    assert torch.equal(under, expected)


def test_cpu_batches_are_the_rows_index_select_gives() -> None:
    from cnnrepro.train.backends.torch.steps import DeviceSplit

    images = torch.randint(0, 256, (7, 5, 6, 3), dtype=torch.uint8)
    features = torch.rand(7, 11)
    labels = torch.arange(7)
    index = torch.tensor([6, 0, 3, 3]).numpy()
    for x in (images, features):
        bx, by = DeviceSplit(x, labels).batch(index)
        assert torch.equal(bx, x.index_select(0, torch.from_numpy(index))) and bx.dtype == x.dtype
        assert bx.is_contiguous() and torch.equal(by, labels[index]) and by.dtype == torch.int64
