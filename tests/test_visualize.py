"""The visualize stage: activation grids, filter patterns by gradient ascent, Grad-CAM and CAM, the
stage end to end on a tiny trained run (figures, index.json, MLflow copies), and the report's figures."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from cnnrepro import cli
from cnnrepro.errors import CnnreproError
from cnnrepro.report.build import build_report
from cnnrepro.train.backends.torch.models.cam import CamConvnet
from cnnrepro.train.backends.torch.models.dogs_cats import baseline
from cnnrepro.train.backends.torch.models.layers import Conv2d, Dense
from cnnrepro.visualize import activations, filters, heatmaps
from cnnrepro.visualize.layers import capture, find_layer, layer_names, truncated
from cnnrepro.visualize.render import GAP

from .helpers_report import settings as report_settings
from .helpers_report import write_clean_summary, write_synthetic_run
from .helpers_train import (
    keras_vgg16_weights,
    make_image_folder,
    shared_store,
    tiny_overrides,
    train,
    write_keras_h5,
    write_params,
)

BOOK_LAYERS = [
    "conv2d_1",
    "max_pooling2d_1",
    "conv2d_2",
    "max_pooling2d_2",
    "conv2d_3",
    "max_pooling2d_3",
    "conv2d_4",
    "max_pooling2d_4",
]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


# --- layers and activations ------------------------------------------------------------------------


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("ran past the captured layer")


def test_capture_stops_after_the_last_wanted_layer_and_names_bad_layers() -> None:
    model = nn.Sequential(OrderedDict([("conv2d_1", Conv2d(3, 4, 3)), ("boom", Boom())]))
    output, found = capture(model, torch.rand(1, 3, 8, 8), ["conv2d_1"])
    assert output is None and found["conv2d_1"].shape == (1, 4, 6, 6)
    assert truncated(model, "conv2d_1")(torch.rand(2, 3, 8, 8)).min() >= 0  # the layer's own ReLU is included
    pre = truncated(model, "conv2d_1", pre_activation=True)(torch.rand(2, 3, 8, 8) - 0.5)
    assert pre.min() < 0  # before the ReLU
    with pytest.raises(CnnreproError, match=r"^params\.yaml: visualize\.x: no layer 'conv9' in .*conv2d_1, boom"):
        find_layer(model, "conv9", "params.yaml: visualize.x")


def test_keras_names_reach_nested_layers() -> None:
    model = CamConvnet()
    assert layer_names(model)[:3] == ["conv2d", "max_pooling2d", "conv2d_1"]
    assert find_layer(model, "conv2d_3") is model.features.conv2d_3
    assert find_layer(model, "features.conv2d_3") is model.features.conv2d_3


def test_first_eight_layers_of_the_book_convnet_have_the_books_shapes() -> None:
    torch.manual_seed(0)
    model = baseline().eval()
    layers = activations.layer_activations(model, torch.rand(1, 3, 150, 150), BOOK_LAYERS)
    shapes = [layer.maps.shape for layer in layers]
    assert shapes == [
        (32, 148, 148),
        (32, 74, 74),
        (64, 72, 72),
        (64, 36, 36),
        (128, 34, 34),
        (128, 17, 17),
        (128, 15, 15),
        (128, 7, 7),
    ]
    assert all(layer.maps.min() >= 0 for layer in layers)  # ReLU outputs, and max pools of them


def test_activation_grid_layout_range_and_blank_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((20, 9, 9)).astype(np.float32)
    maps[3] = 0  # a channel that never fired
    grid = activations.activation_grid(maps, images_per_row=8, cell_px=24)
    assert grid.dtype == np.uint8 and grid.shape == (3 * 24 + 2 * GAP, 8 * 24 + 7 * GAP, 3)
    viridis_low = (np.array(matplotlib.colormaps["viridis"](0.0)[:3]) * 255).round()
    blank_cell = grid[0:24, 3 * (24 + GAP) : 3 * (24 + GAP) + 24]
    assert (blank_cell == viridis_low).all()
    assert (grid[2 * (24 + GAP) :, 4 * (24 + GAP) :] == 255).all()  # cells past the 20th stay white
    scaled = activations.standardize_channel(maps[0])
    assert scaled.min() >= 0 and scaled.max() <= 255 and abs(scaled.mean() - 128) < 8
    layer = activations.LayerActivation("conv2d_9", maps)
    assert layer.blank == 1
    caption = activations.save_activation_figure(layer, 8, tmp_path / "conv2d_9.png")
    assert caption == "20 channels of 9x9; 1 blank (never active)"
    width, height = png_size(tmp_path / "conv2d_9.png")
    assert width >= 8 * 96 and height > 3 * 96


# --- filter patterns --------------------------------------------------------------------------------


def test_gradient_ascent_raises_each_filters_response() -> None:
    torch.manual_seed(0)
    model = baseline().eval().requires_grad_(False)
    for name in ("conv2d_1", "conv2d_3"):
        layer = truncated(model, name, pre_activation=True)
        patterns = filters.gradient_ascent(
            layer, range(6), size=40, iterations=5, step=4.0, to_input=lambda x: x / 255,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        assert patterns.images.shape == (6, 3, 40, 40)
        assert (patterns.end > patterns.start).all(), name
        # the images moved from gray + noise (128-148) by about step x iterations grey levels
        assert 128 - 25 < patterns.images.mean() < 148 + 25
    shown = filters.deprocess(patterns.images[0])
    assert shown.dtype == np.uint8 and shown.shape == (40, 40, 3)
    assert abs(shown.astype(float).mean() - 127.5) < 3  # the book's mean 0.5, std 0.1 display


def test_gradient_ascent_first_step_is_the_books_rms_normalized_step() -> None:
    """For a linear layer the gradient of the mean response is known; one step of 1 adds it at unit RMS."""
    conv = nn.Conv2d(3, 2, 3, bias=False)
    model = nn.Sequential(OrderedDict([("conv", conv)])).requires_grad_(False)
    generator = torch.Generator().manual_seed(3)
    start = torch.rand((1, 3, 12, 12), generator=torch.Generator().manual_seed(3)) * 20 + 128
    patterns = filters.gradient_ascent(
        truncated(model, "conv"), [1], size=12, iterations=1, step=1.0, generator=generator
    )
    x = start.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(conv(x)[0, 1].mean(), x)
    expected = start + grad / (grad.pow(2).mean().sqrt() + filters.GRADIENT_EPS)
    assert np.allclose(patterns.images, expected.numpy(), atol=1e-4)


# --- heatmaps ---------------------------------------------------------------------------------------


class Gate(nn.Module):
    """Channels 0-3 seen only inside one quadrant; channels 4-7 everywhere, and 10x louder."""

    def __init__(self, quadrant: tuple[int, int], size: int) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, size, size)
        half = size // 2
        r, c = quadrant
        mask[..., r * half : (r + 1) * half, c * half : (c + 1) * half] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :4] * self.mask, x[:, 4:] * 10], dim=1)


def quadrant_net(quadrant: tuple[int, int], size: int = 32) -> nn.Module:
    """A GAP classifier whose logit reads only the gated channels: only one quadrant of the image matters."""
    torch.manual_seed(1)
    model = nn.Sequential(
        OrderedDict(
            [
                ("conv2d_1", Conv2d(3, 8, 3, padding="same")),
                ("gate", Gate(quadrant, size)),
                ("gap", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten()),
                ("dense", Dense(8, 1)),
            ]
        )
    )
    with torch.no_grad():
        model.conv2d_1.weight.abs_()  # every channel fires on a positive image
        model.conv2d_1.bias.zero_()
        model.dense.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]))
        model.dense.bias.zero_()
    return model.eval()


@pytest.mark.parametrize("quadrant", [(0, 0), (1, 1), (0, 1)])
def test_grad_cam_puts_the_heat_where_the_output_looks(quadrant: tuple[int, int]) -> None:
    model = quadrant_net(quadrant)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    heat = heatmaps.grad_cam(model, x, "gate")
    assert heat.target == 1 and heat.heat.shape == (32, 32)
    assert heat.heat.max() == pytest.approx(1.0) and heat.heat.min() >= 0
    row, col = np.unravel_index(np.argmax(heat.heat), heat.heat.shape)
    assert (row // 16, col // 16) == quadrant
    inside = np.zeros((32, 32), bool)
    inside[quadrant[0] * 16 : (quadrant[0] + 1) * 16, quadrant[1] * 16 : (quadrant[1] + 1) * 16] = True
    assert heat.heat[~inside].max() == 0  # the loud channels everywhere got zero gradient, hence zero weight
    # The other class ("cats", score -logit) has no positive evidence anywhere here.
    against = heatmaps.grad_cam(model, x, "gate", target=0)
    assert against.peak == 0 and not against.heat.any()


def test_cam_decomposes_the_logit_and_matches_grad_cam_on_a_gap_model() -> None:
    torch.manual_seed(0)
    model = CamConvnet().eval()
    x = torch.rand(1, 3, 48, 48) * 255
    with torch.no_grad():
        model.dense.weight.abs_()  # all evidence positive: the ReLU'd map is the whole map
        model.dense.bias.fill_(0.25)
        logit = float(model(x)[0, 0])
    cam = heatmaps.class_activation_map(model, x)
    assert cam.heat.shape == (6, 6) and cam.target == 1
    assert cam.heat.mean() * cam.peak + 0.25 == pytest.approx(logit, rel=1e-4)
    # Grad-CAM through GlobalAveragePooling weighs channel k by w_k / (h*w): the same map once normalized.
    torch.manual_seed(1)
    model = CamConvnet().eval()
    for target in (0, 1):
        gc = heatmaps.grad_cam(model, x, "conv2d_3", target=target)
        cm = heatmaps.class_activation_map(model, x, target=target)
        assert np.allclose(gc.heat, cm.heat, atol=1e-5)
        assert gc.probabilities == pytest.approx(cm.probabilities)


def test_superimpose_blends_jet_over_the_image(tmp_path: Path) -> None:
    image = np.full((30, 40, 3), 200, np.uint8)
    heat = np.array([[0.0, 1.0], [0.5, 0.0]])
    assert (heatmaps.superimpose(image, heat, 0.0) == image).all()
    full = heatmaps.superimpose(image, heat, 1.0)
    assert full.shape == (30, 40, 3)
    jet = matplotlib.colormaps["jet"]
    assert np.abs(full[0, -1].astype(float) - np.array(jet(1.0)[:3]) * 255).max() <= 1  # top right: hot
    assert np.abs(full[0, 0].astype(float) - np.array(jet(0.0)[:3]) * 255).max() <= 1  # top left: cold
    mixed = heatmaps.superimpose(image, heat, 0.4)
    assert np.allclose(mixed[0, 0], 0.6 * 200 + 0.4 * np.array(jet(0.0)[:3]) * 255, atol=1)
    result = heatmaps.Heatmap(heat, 2.0, 1, [0.3, 0.7])
    heatmaps.save_heatmap_figure(image, result, 0.4, "title", tmp_path / "h.png")
    assert png_size(tmp_path / "h.png")[0] > 300


# --- the stage, end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained baseline, a random-weight VGG16 h5, then `cnnrepro visualize` on them."""
    root = tmp_path_factory.mktemp("visualize")
    book = make_image_folder(root / "book", {"train": 4, "validation": 2, "test": 2})
    h5 = write_keras_h5(root / "vgg16.h5", keras_vgg16_weights())
    params = write_params(
        root / "params.yaml",
        tracking_uri=shared_store(tmp_path_factory),
        overrides=tiny_overrides(baseline={}),
        seeds=[0],
        device="cpu",
        vgg16={"path": str(h5)},
        variants={"pets": ["baseline"], "pets_fine_tuning": [], "idx": [], "keras_example": []},
    )
    data = yaml.safe_load(params.read_text())
    data["visualize"]["activations"]["image"] = "dogs/1"
    data["visualize"]["filters"] |= {"vgg16_layers": ["block1_conv1", "block2_conv1"], "size": 40}
    data["visualize"]["filters"]["cpu"] = {"grid": 2, "iterations": 2, "step": 4.0}
    data["visualize"]["heatmaps"]["images"] = ["cats/0", "dogs/1", "cats/1700"]
    params.write_text(yaml.safe_dump(data))
    runs = root / "runs"
    assert train("baseline", 0, book, runs / "torch/baseline/seed0", params=params, checkpoints=root / "ck") == 0
    out = root / "reports" / "figures"
    args = ["visualize", "--params", str(params), "--runs", str(runs), "--data", str(book), "--out", str(out)]
    assert cli.main(args) == 0
    return {"root": root, "params": params, "runs": runs, "book": book, "out": out}


def test_stage_writes_every_figure_it_lists_and_lists_what_it_skipped(stage: dict[str, Path]) -> None:
    out = stage["out"]
    index = json.loads((out / "index.json").read_text())
    listed = {f["path"] for f in index["figures"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert listed == on_disk
    assert [f["path"] for f in index["figures"] if f["kind"] == "activations"] == [
        "activations/input.png",
        *(f"activations/{name}.png" for name in BOOK_LAYERS),
    ]
    assert {p for p in on_disk if p.startswith("filters/")} == {
        *(f"filters/baseline_conv2d_{i}.png" for i in range(1, 5)),
        "filters/vgg16_block1_conv1.png",
        "filters/vgg16_block2_conv1.png",
    }
    assert {p for p in on_disk if p.startswith("heatmaps/")} == {
        "heatmaps/baseline_cats_0.png",
        "heatmaps/baseline_dogs_1.png",
    }
    skipped = {(s["kind"], s["item"]): s["reason"] for s in index["skipped"]}
    assert "is not in" in skipped[("heatmaps", "baseline cats/1700")]
    assert skipped[("heatmaps", "fine_tuning (Grad-CAM)")] == "fine_tuning is not in train.variants"
    assert skipped[("heatmaps", "cam_convnet (CAM)")] == "cam_convnet is not in train.variants"
    assert index["device"] == "cpu" and index["filters"]["iterations"] == 2 and index["filters"]["grid"] == 2
    grid_2x2 = png_size(out / "filters/baseline_conv2d_1.png")
    assert grid_2x2[1] >= 2 * 96  # a 40-pixel pattern is enlarged to a readable cell
    assert not list(out.parent.glob(".figures.*"))  # no temporary directory left behind


def test_stage_copies_figures_to_the_source_run_without_touching_its_status(stage: dict[str, Path]) -> None:
    from mlflow.tracking import MlflowClient

    index = json.loads((stage["out"] / "index.json").read_text())
    info = json.loads((stage["runs"] / "torch/baseline/seed0/run_info.json").read_text())
    run_id = info["mlflow"]["run_id"]
    client = MlflowClient(tracking_uri=info["mlflow"]["tracking_uri"])
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    logged = {a.path for a in client.list_artifacts(run_id, "figures/activations")}
    assert "figures/activations/conv2d_1.png" in logged
    from_baseline = [f for f in index["figures"] if f["source_run"]]
    assert from_baseline and all(
        f["mlflow"] == {**f["mlflow"], "logged": True, "run_id": run_id} for f in from_baseline
    )
    vgg = [f for f in index["figures"] if f["source_run"] is None]
    assert vgg and all(not f["mlflow"]["logged"] for f in vgg)  # no parent run set: nowhere to log them


def test_bad_layer_name_fails_in_one_line_naming_the_key(stage: dict[str, Path], tmp_path: Path, capsys) -> None:
    data = yaml.safe_load(stage["params"].read_text())
    data["visualize"]["activations"]["layers"] = ["conv2d_1", "conv2d_9"]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    out = tmp_path / "figures"
    args = ["visualize", "--params", str(params), "--runs", str(stage["runs"]), "--data", str(stage["book"])]
    assert cli.main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"cnnrepro visualize: error: {params}: visualize.activations.layers: no layer 'conv2d_9'")
    assert not out.exists()  # nothing half-written


# --- the report --------------------------------------------------------------------------------------


def test_report_shows_figures_in_index_order_with_captions_and_says_what_was_skipped(
    stage: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    runs = tmp_path / "runs"
    write_synthetic_run(runs, "torch", "baseline", 0, val=0.7, test=0.7)
    reports = tmp_path / "reports"
    shutil.copytree(stage["out"], reports / "figures")
    summary = write_clean_summary(tmp_path / "summary.json")
    result = build_report(runs, summary, reports, report_settings(["baseline"], seeds=[0]))
    assert set(result["figures"]) == {"activations", "filters", "heatmaps"}
    assert len(result["figures_skipped"]) == 3
    md = (reports / "comparison.md").read_text()
    figures_part = md[md.index("## Figures") :]
    assert figures_part.index("figures/activations/input.png") < figures_part.index("activations/conv2d_1.png")
    assert figures_part.index("activations/conv2d_1.png") < figures_part.index("activations/max_pooling2d_1.png")
    assert "### Figures not made" in figures_part and "cam_convnet is not in train.variants" in figures_part
    assert "Grad-CAM at conv2d_4" in figures_part  # the heatmap's caption from index.json
    html = (reports / "comparison.html").read_text()
    assert html.count("data:image/png;base64,") >= 9 + 6 + 2
    assert "cam_convnet is not in train.variants" in html
    assert '<figure class="wide">' in html  # a 16-per-row activation grid gets the page's full width


def test_report_says_when_figures_are_absent_or_all_skipped(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_synthetic_run(runs, "torch", "baseline", 0, val=0.7, test=0.7)
    summary = write_clean_summary(tmp_path / "summary.json")
    reports = tmp_path / "reports"
    build_report(runs, summary, reports, report_settings(["baseline"], seeds=[0]))
    assert "Not generated" in (reports / "comparison.md").read_text()
    skipped = {"kind": "activations", "item": "baseline", "reason": "runs/torch/baseline/seed0: run not_run (why)"}
    (reports / "figures").mkdir()
    (reports / "figures" / "index.json").write_text(json.dumps({"figures": [], "skipped": [skipped]}))
    build_report(runs, summary, reports, report_settings(["baseline"], seeds=[0]))
    md = (reports / "comparison.md").read_text()
    assert "Not generated" in md and "run not_run (why)" in md
    (reports / "figures" / "index.json").write_text("{not json")
    with pytest.raises(CnnreproError, match=r"index\.json: corrupt JSON"):
        build_report(runs, summary, reports, report_settings(["baseline"], seeds=[0]))
