"""The named variants: parameter counts from the sources, initialization, registry and `cnnrepro variants`."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnrepro.errors import CnnreproError
from cnnrepro.train import vgg16_weights
from cnnrepro.train.backends.torch.models import create_model, vgg16
from cnnrepro.train.backends.torch.models.layers import count_parameters
from cnnrepro.variants.documented import DOCUMENTED
from cnnrepro.variants.registry import BOOK_AUGMENTATION, get_variant, list_variants

# Totals from the sources' model.summary() (baseline, MNIST convnet, VGG16 base) or computed from
# their layer lists: mnist_dense 784*512+512 + 512*10+10; lenet 156+2416+48120+10164+850;
# cam 448+4640+18496+73856+129; feature_extraction head 8192*256+256 + 257, on the 14,714,688 base.
EXPECTED_PARAMETERS = {
    "baseline": 3_453_121,
    "augmentation": 3_453_121,
    "feature_extraction": 14_714_688 + 2_097_665,
    "feature_extraction_augmented": 14_714_688 + 2_097_665,
    "fine_tuning": 14_714_688 + 2_097_665,
    "mnist_convnet": 93_322,
    "mnist_dense": 407_050,
    "lenet": 61_706,
    "cam_convnet": 97_569,
}


@pytest.mark.parametrize("name", list(EXPECTED_PARAMETERS))
def test_parameter_counts_match_the_sources(name: str) -> None:
    assert count_parameters(create_model(name)) == EXPECTED_PARAMETERS[name]


def test_parts_match_the_printed_summaries() -> None:
    convnet = create_model("mnist_convnet")
    conv_part = sum(count_parameters(m) for n, m in convnet.named_children() if n.startswith(("conv", "max")))
    assert conv_part == 55_744
    assert count_parameters(vgg16.VGG16Base()) == 14_714_688
    assert count_parameters(create_model("feature_extraction").head) == 2_097_665
    assert count_parameters(create_model("feature_extraction_augmented").head) == 2_097_408 + 257


@pytest.mark.parametrize(
    ("name", "out_features"),
    [
        ("baseline", 1),
        ("augmentation", 1),
        ("mnist_convnet", 10),
        ("mnist_dense", 10),
        ("lenet", 10),
        ("cam_convnet", 1),
        ("feature_extraction", 1),
    ],
)
def test_every_variant_maps_its_input_shape_to_its_logits(name: str, out_features: int) -> None:
    spec = get_variant(name)
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(2, *spec.input_shape))
    assert out.shape == (2, out_features)


def test_vgg16_base_gives_the_books_4x4x512_map_at_150() -> None:
    with torch.no_grad():
        assert vgg16.VGG16Base()(torch.rand(1, 3, 150, 150)).shape == (1, 512, 4, 4)
    assert [n for n, _ in vgg16.VGG16Base().named_children()][:3] == ["block1_conv1", "block1_conv2", "block1_pool"]


def test_cam_convnet_keeps_size_with_same_padding() -> None:
    model = create_model("cam_convnet")
    with torch.no_grad():
        assert model.features(torch.rand(1, 3, 300, 300)).shape == (1, 128, 37, 37)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or Conv (out, in, kh, kw) weight, as Glorot defines them."""
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _glorot_limit(weight: torch.Tensor) -> float:
    fan_in, fan_out = fans(weight)
    return math.sqrt(6 / (fan_in + fan_out))


@pytest.mark.parametrize("name", ["baseline", "mnist_convnet", "mnist_dense", "cam_convnet"])
def test_keras_layers_start_glorot_uniform_with_zero_biases(name: str) -> None:
    torch.manual_seed(0)
    layers = [m for m in create_model(name).modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert layers
    for layer in layers:
        limit = _glorot_limit(layer.weight)
        w = layer.weight.detach()
        # Uniform(-limit, limit): bounded by the limit and, with this many draws, filling it.
        assert w.abs().max() <= limit + 1e-7
        if w.numel() >= 500:
            assert w.abs().max() > 0.95 * limit
            assert w.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.1)
        assert torch.count_nonzero(layer.bias) == 0


def test_lenet_initialises_as_d2l_does() -> None:
    torch.manual_seed(0)
    layers = [m for m in create_model("lenet").modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) == 5
    for layer in layers:
        limit = _glorot_limit(layer.weight)
        assert layer.weight.abs().max() <= limit + 1e-7
        assert layer.weight.abs().max() > 0.8 * limit
        # d2l's init_weights leaves biases at PyTorch's default uniform(+-1/sqrt(fan_in)): not zero.
        fan_in, _ = fans(layer.weight)
        assert torch.count_nonzero(layer.bias) == layer.bias.numel()
        assert layer.bias.abs().max() <= 1 / math.sqrt(fan_in)
    assert [type(m).__name__ for m in create_model("lenet")][:3] == ["Conv2d", "Sigmoid", "AvgPool2d"]


def test_fine_tuning_unfreezes_exactly_block5_convs_and_head() -> None:
    model = create_model("fine_tuning")
    vgg16.freeze_conv_base(model, vgg16_weights.FINE_TUNED_LAYERS)
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad and n.startswith("conv_base")}
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3"}
    assert count_parameters(model, trainable_only=True) == 3 * 2_359_808 + 2_097_665
    vgg16.freeze_conv_base(model)
    assert count_parameters(model, trainable_only=True) == 2_097_665


def test_registry_knows_every_documented_variant_and_their_settings() -> None:
    assert sorted(list_variants()) == sorted(DOCUMENTED)
    for name in list_variants():
        spec = get_variant(name)
        assert spec.documented is DOCUMENTED[name]
        assert spec.dataset in ("dogs_vs_cats", "mnist", "fashion_mnist", "petimages_80_20")
    lenet = get_variant("lenet")
    assert (lenet.optimizer, lenet.learning_rate, lenet.batch_size, lenet.epochs) == ("sgd", 0.9, 256, 10)
    cam = get_variant("cam_convnet")
    assert (cam.input_shape, cam.optimizer, cam.learning_rate, cam.epochs, cam.batch_size) == (
        (3, 300, 300),
        "rmsprop_keras3",
        1e-3,
        25,
        128,
    )
    assert cam.augmentation["rotation_range"] == 36.0 and cam.augmentation["horizontal_flip"]
    aug = get_variant("augmentation")
    assert (aug.epochs, aug.batch_size, aug.steps_per_epoch, aug.validation_steps) == (100, 32, 100, 50)
    assert (
        dict(aug.augmentation)
        == dict(BOOK_AUGMENTATION)
        == {
            "rotation_range": 40.0,
            "width_shift_range": 0.2,
            "height_shift_range": 0.2,
            "shear_range": 0.2,
            "zoom_range": 0.2,
            "horizontal_flip": True,
            "fill_mode": "nearest",
        }
    )
    assert get_variant("fine_tuning").continues_from == "feature_extraction_augmented"
    assert get_variant("feature_extraction").training_data == "vgg16_features"
    assert get_variant("baseline").augmentation is None


def test_unknown_variant_names_the_known_ones() -> None:
    with pytest.raises(CnnreproError, match=r"unknown variant 'resnet' \(known: baseline, .*cam_convnet\)"):
        get_variant("resnet")
    with pytest.raises(CnnreproError):
        create_model("resnet")


def test_variants_command_prints_every_variant_with_its_figure(capsys: pytest.CaptureFixture[str]) -> None:
    from cnnrepro.cli import main

    assert main(["variants"]) == 0
    out = capsys.readouterr().out
    for name, count in EXPECTED_PARAMETERS.items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert f"{count:,}" in line
    assert "71.00%" in out and "test_accuracy" in out and "Dive into Deep Learning" in out
