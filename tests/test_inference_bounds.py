"""`cnnrepro predict` and `cnnrepro evaluate` bounded like the clean stage (issue 23): the same pixel limit
(params clean.max_pixels, checked from the header before a pixel is decoded), the same conversions (a
full-range 16-bit PNG scaled to 8 bits, not clipped to white), every flag checked, the run's saved input
shape checked before a network or an array is built. Each hostile input is built here; the memory cases run
the command in a subprocess under RLIMIT_AS with its peak resident memory measured (wait4).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnrepro.data.pixels import scale_16_to_8

from .helpers_train import make_image_folder, make_npz, needs_tf, shared_store, tiny_overrides, train, write_params
from .helpers_zoo import bilevel_png, grey16_png, run_bounded

# The limit the test params carry (the shipped clean.max_pixels): a 20000x20000 image is 16 times over it.
MAX_PIXELS = 25_000_000
# torch and numpy reserve address space they never touch; resident memory is what is measured.
ADDRESS_SPACE_MIB = 8192
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CNNRREPRO = [sys.executable, "-m", "cnnrepro.cli"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_store(tmp_path_factory)


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory: pytest.TempPathFactory, store: str) -> tuple[Path, Path]:
    """(a completed tiny lenet run, its params file): 1x28x28 inputs, so predict reads any image as grey."""
    root = tmp_path_factory.mktemp("lenet")
    make_npz(root / "prepared" / "fashion_mnist.npz", n_train=32, n_test=8)
    params = write_params(root / "params.yaml", tracking_uri=store, overrides=tiny_overrides(lenet={"epochs": 1}))
    threads = torch.get_num_threads()
    out = root / "runs" / "lenet"
    assert train("lenet", 0, root / "prepared", out, params=params, checkpoints=root / "ck") == 0
    torch.set_num_threads(threads)
    return out, params


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str], float]:
    from cnnrepro.cli import main

    capsys.readouterr()
    started = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - started
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip() and " INFO " not in line]
    return code, captured.out, err, seconds


def predict(run: Path, params: Path, *images: Path, device: str = "cpu") -> list[str]:
    return ["predict", "--params", str(params), "--run", str(run), "--device", device, *map(str, images)]


def table(case: str, code: int, line: str, seconds: float, peak: str, left: str) -> None:
    print(f"TABLE {case} | {code} | {line} | {seconds:.1f} s | {peak} | {left}")


def test_a_20000_pixel_square_png_is_one_line_within_bounded_memory(
    lenet_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run, params = lenet_run
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bilevel_png(20000, 20000))  # 50 KB on disk; 400 M pixels, 1.2 GB as RGB
    small = tmp_path / "small.png"
    small.write_bytes(bilevel_png(28, 28))
    baseline = run_bounded([*CNNRREPRO, *predict(run, params, small)], tmp_path, ADDRESS_SPACE_MIB, ENV)
    assert baseline.returncode == 0, baseline.stderr

    result = run_bounded([*CNNRREPRO, *predict(run, params, small, bomb)], tmp_path, ADDRESS_SPACE_MIB, ENV)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    expected = f"{bomb}: 20000x20000 = 400000000 pixels, over the limit of {MAX_PIXELS} (params clean.max_pixels)"
    assert lines[0].startswith(f"cnnrepro predict: error: {expected}")
    assert "Traceback" not in result.stderr and "DecompressionBomb" not in result.stderr
    assert result.stdout == ""  # no label printed for the good image either: all are decoded first
    # Nothing of the image was decoded: the command's peak is the small-image run's, not 400 MB more.
    assert result.peak_rss_mib < baseline.peak_rss_mib + 100, (result.peak_rss_mib, baseline.peak_rss_mib)
    table("predict 20000x20000 PNG", 1, lines[0], result.seconds, f"{result.peak_rss_mib:.0f} MiB "
          f"(a 28x28 image: {baseline.peak_rss_mib:.0f} MiB)", "nothing written")  # fmt: skip


def test_evaluate_folders_are_decoded_within_the_params_limit(lenet_run: tuple[Path, Path], tmp_path: Path) -> None:
    """evaluate's folder path (load_eval_split) calls load_image_split with params clean.max_pixels: a
    12000x12000 image in the folder is refused by name (before: decoded at 1 GB each)."""
    from cnnrepro.errors import CnnreproError
    from cnnrepro.inference.evaluate import max_pixels
    from cnnrepro.train.engine.splits import load_image_split

    _, params = lenet_run
    folder = make_image_folder(tmp_path / "data", {"test": 1}, size=(10, 10))
    (folder / "test" / "cats" / "huge.png").write_bytes(bilevel_png(12000, 12000))
    with pytest.raises(CnnreproError, match=r"huge.png: 12000x12000 = 144000000 pixels, over the limit of 25000000"):
        load_image_split(folder / "test", (28, 28), "bilinear", max_pixels=max_pixels(params))


def test_a_full_range_16_bit_png_is_scaled_as_clean_scales_it(
    lenet_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """predict on a 16-bit grey PNG gives exactly what it gives on the clean stage's 8-bit version of it,
    and not what it gives on the all-white image the old clip made of it."""
    run, params = lenet_run
    data, values = grey16_png(seed=3, size=(28, 28))
    (tmp_path / "grey16.png").write_bytes(data)
    Image.fromarray(scale_16_to_8(values), "L").save(tmp_path / "grey8.png")
    Image.fromarray(np.full((28, 28), 255, np.uint8), "L").save(tmp_path / "white.png")
    with Image.open(tmp_path / "grey16.png") as image:
        assert image.mode.startswith("I;16") or image.mode == "I"  # Pillow reads it as 16-bit, not as 8-bit
    names = ("grey16.png", "grey8.png", "white.png")
    code, out, err, seconds = run_cli(predict(run, params, *(tmp_path / n for n in names)), capsys)
    assert code == 0 and not err, err
    grey16, grey8, white = (json.loads(line)["probabilities"] for line in out.splitlines())
    assert grey16 == grey8
    assert grey16 != white
    table("predict 16-bit PNG", code, "-", seconds, "-", "probabilities equal the 8-bit scaled image's")


@pytest.mark.parametrize("value", ["0", "-5"])
def test_batch_size_below_one_is_one_line_naming_the_flag(
    value: str, lenet_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, params = lenet_run
    argv = ["evaluate", "--params", str(params), "--run", str(run), "--data", "fashion_mnist"]
    argv += ["--prepared", str(run.parent.parent / "prepared"), "--batch-size", value]
    code, out, err, seconds = run_cli(argv, capsys)
    assert code == 1 and out == ""
    assert err == [f"cnnrepro evaluate: error: --batch-size {value}: must be a positive number of images"]
    table(f"evaluate --batch-size {value}", code, err[0], seconds, "-", "nothing written")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_device_that_is_no_device_is_one_line_naming_the_flag(
    command: str, lenet_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, params = lenet_run
    target = ["--data", "fashion_mnist"] if command == "evaluate" else [str(tmp_path / "x.png")]
    argv = [command, "--params", str(params), "--run", str(run), "--device", "gpu;rm", *target]
    code, out, err, seconds = run_cli(argv, capsys)
    assert code == 1 and out == ""
    assert err == [f"cnnrepro {command}: error: --device 'gpu;rm': not a device (auto, cpu, cuda[:N], mps)"]
    table(f"{command} --device 'gpu;rm'", code, err[0], seconds, "-", "nothing written")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine_blames_the_flag(
    lenet_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, params = lenet_run
    Image.fromarray(np.zeros((28, 28), np.uint8), "L").save(tmp_path / "x.png")
    code, out, err, seconds = run_cli(predict(run, params, tmp_path / "x.png", device="cuda"), capsys)
    assert code == 1 and out == "" and len(err) == 1
    assert err[0] == "cnnrepro predict: error: --device is 'cuda' but CUDA is not available here"
    assert "train.device" not in err[0]
    table("predict --device cuda (no CUDA)", code, err[0], seconds, "-", "nothing written")


def test_an_edited_input_shape_is_refused_before_anything_is_built(
    lenet_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run, params = lenet_run
    edited = tmp_path / "edited"
    shutil.copytree(run, edited)
    info = json.loads((edited / "run_info.json").read_text())
    info["config"]["input_shape"] = [1, 8000, 8000]
    (edited / "run_info.json").write_text(json.dumps(info))
    Image.fromarray(np.zeros((28, 28), np.uint8), "L").save(tmp_path / "x.png")

    result = run_bounded([*CNNRREPRO, *predict(edited, params, tmp_path / "x.png")], tmp_path, ADDRESS_SPACE_MIB, ENV)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0] == (
        f"cnnrepro predict: error: {edited / 'run_info.json'}: config.input_shape: [1, 8000, 8000], "
        "but lenet takes [1, 28, 28]; not building it"
    )
    # 8000x8000 would have meant a network of gigabytes; the refusal costs what importing the code costs.
    assert result.peak_rss_mib < 1024, result.peak_rss_mib
    table("predict, input shape edited to 8000x8000", 1, lines[0], result.seconds, f"{result.peak_rss_mib:.0f} MiB",
          "nothing written")  # fmt: skip


@needs_tf
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_keras_device_errors_name_the_flag_they_came_from() -> None:
    """A Keras run's model is placed by the Keras backend's own resolver: its errors name `--device` there."""
    from cnnrepro.errors import CnnreproError
    from cnnrepro.train.backends.keras.devices import resolve_device

    with pytest.raises(CnnreproError, match=r"^--device is 'cuda' but TensorFlow sees 0 GPU\(s\) here$"):
        resolve_device("cuda", source="--device")
    with pytest.raises(CnnreproError, match=r"^--device 'cuda:x' is not a device \(auto, cpu, cuda\[:N\]\)$"):
        resolve_device("cuda:x", source="--device")
