"""The named variants: everything the sources document about each, in one frozen spec (timm-style).

This is the one place a variant is declared, framework-free: its data, documented settings (optimizer,
schedule, augmentation) and architecture facts, read through `get_variant(name)`. Each backend builds the
network under the same name (`BUILDERS` in cnnrepro.train.backends.torch.models and
cnnrepro.train.backends.keras.models). Everything else about a variant derives from its spec or is checked
against it by a test (tests/test_registry.py): its dataset's folder (`DATASET_DIRS`), its data group (the
params' `train.variants` groups, the schema's enums, one training rule per group in both DAGs), the
fidelity ledger's scopes, each backend's builder table. The documented figure itself
lives in cnnrepro.variants.documented (one cited table), never duplicated here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cnnrepro.errors import CnnreproError
from cnnrepro.variants.documented import DOCUMENTED, DocumentedFigure

# Each dataset's folder under data/ (what `cnnrepro train --data` gets, and the bench reads).
DATASET_DIRS: Mapping[str, str] = MappingProxyType(
    {
        "dogs_vs_cats": "split/book",
        "mnist": "prepared",
        "fashion_mnist": "prepared",
        "petimages_80_20": "split/keras_example",
    }
)
DATASETS = tuple(DATASET_DIRS)
# A data group is one shape of training job: the data it reads and what it continues from. Both DAGs
# have one training rule per group (train_<group>), and params.yaml lists the variants to run per group.
DATA_GROUPS = ("pets", "pets_fine_tuning", "idx", "keras_example")

# ImageDataGenerator arguments of listings 5.14 and 5.19 (Keras names and units).
BOOK_AUGMENTATION = MappingProxyType(
    {
        "rotation_range": 40.0,
        "width_shift_range": 0.2,
        "height_shift_range": 0.2,
        "shear_range": 0.2,
        "zoom_range": 0.2,
        "horizontal_flip": True,
        "fill_mode": "nearest",
    }
)
# RandomFlip("horizontal") + RandomRotation(0.1): 0.1 of a full turn = +-36 degrees, per image;
# Keras' preprocessing layers fill by reflection and resample bilinearly ("2.1.3" semantics).
CAM_AUGMENTATION = MappingProxyType(
    {"rotation_range": 36.0, "horizontal_flip": True, "fill_mode": "reflect", "semantics": "2.1.3"}
)


@dataclass(frozen=True)
class VariantSpec:
    """One documented experiment. Units and names are the source's."""

    name: str
    dataset: str  # a key of DATASET_DIRS
    data_group: str  # one of DATA_GROUPS
    input_shape: tuple[int, int, int]  # (channels, height, width), NCHW as PyTorch wants it
    loss: str  # "binary_crossentropy" (1 logit) | "categorical_crossentropy" (10 logits)
    optimizer: str  # "rmsprop_keras2" | "rmsprop_keras3" | "sgd" (see cnnrepro.train.backends.torch.optimizers)
    learning_rate: float
    epochs: int
    batch_size: int
    # None: one pass over the training data per epoch (Keras fit on arrays, d2l's DataLoader).
    # A number: that many batches per epoch from an endlessly cycling generator (fit_generator).
    steps_per_epoch: int | None
    # None: every validation image once per epoch. A number: that many batches from a persistent
    # shuffled generator (the book's validation_steps).
    validation_steps: int | None
    # Which split gives the per-epoch val_* columns: "validation", or "test" where the source
    # validates on nothing during training (MNIST: monitoring only) or on the test set (d2l).
    validation_split: str
    augmentation: Mapping[str, Any] | None
    init: str  # how the weights start, in words
    input_scale: float  # pixels (0-255) are multiplied by this before the model
    # Image resize filter on load; None = ImageDataGenerator's load_img, chosen by train.augmentation_semantics.
    resize_filter: str | None = None
    needs_vgg16: bool = False
    continues_from: str | None = None
    # "images", or "vgg16_features": the conv base runs once per image and only the head trains.
    training_data: str = "images"
    # Which parameters train: "all", "head" (frozen VGG16 base), "head+block5" (fine-tuning).
    trainable: str = "all"
    classes: tuple[str, ...] = ("cats", "dogs")

    @property
    def documented(self) -> DocumentedFigure:
        return DOCUMENTED[self.name]

    @property
    def metric(self) -> str:
        return self.documented.metric

    @property
    def source(self) -> str:
        return self.documented.source


_DIGITS = tuple(str(d) for d in range(10))
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_KERAS_INIT = "glorot_uniform kernels, zero biases (Keras defaults)"
_VGG_INIT = "VGG16 conv base: ImageNet weights; head: glorot_uniform kernels, zero biases"
_PETS = dict(
    dataset="dogs_vs_cats",
    data_group="pets",
    input_shape=(3, 150, 150),
    loss="binary_crossentropy",
    input_scale=1 / 255,
)

_SPECS = [
    VariantSpec(
        name="baseline",
        optimizer="rmsprop_keras2",
        learning_rate=1e-4,
        epochs=30,
        batch_size=20,
        steps_per_epoch=100,
        validation_steps=50,
        validation_split="validation",
        augmentation=None,
        init=_KERAS_INIT,
        **_PETS,
    ),
    VariantSpec(
        name="augmentation",
        optimizer="rmsprop_keras2",
        learning_rate=1e-4,
        epochs=100,
        batch_size=32,
        steps_per_epoch=100,
        validation_steps=50,
        validation_split="validation",
        augmentation=BOOK_AUGMENTATION,
        init=_KERAS_INIT,
        **_PETS,
    ),
    VariantSpec(
        # Keras model.fit on the cached feature arrays: one shuffled pass per epoch, full validation.
        name="feature_extraction",
        optimizer="rmsprop_keras2",
        learning_rate=2e-5,
        epochs=30,
        batch_size=20,
        steps_per_epoch=None,
        validation_steps=None,
        validation_split="validation",
        augmentation=None,
        init=_VGG_INIT,
        needs_vgg16=True,
        training_data="vgg16_features",
        trainable="head",
        **_PETS,
    ),
    VariantSpec(
        name="feature_extraction_augmented",
        optimizer="rmsprop_keras2",
        learning_rate=2e-5,
        epochs=30,
        batch_size=20,
        steps_per_epoch=100,
        validation_steps=50,
        validation_split="validation",
        augmentation=BOOK_AUGMENTATION,
        init=_VGG_INIT,
        needs_vgg16=True,
        # The book writes conv_base.trainable = False, but Keras 2.0.8 ignored it for a model nested in a
        # Sequential and trained the whole base (fidelity ledger: vgg16_base_trained_as_2_0_8_ran); the
        # documented 96% is that run's. The frozen base the text intends is the ablation frozen_base.
        trainable="all",
        **_PETS,
    ),
    VariantSpec(
        name="fine_tuning",
        optimizer="rmsprop_keras2",
        learning_rate=1e-5,
        epochs=100,
        batch_size=20,
        steps_per_epoch=100,
        validation_steps=50,
        validation_split="validation",
        augmentation=BOOK_AUGMENTATION,
        init="the trained feature_extraction_augmented run of the same seed",
        needs_vgg16=True,
        continues_from="feature_extraction_augmented",
        trainable="head+block5",
        **(_PETS | {"data_group": "pets_fine_tuning"}),
    ),
    VariantSpec(
        name="mnist_convnet",
        dataset="mnist",
        data_group="idx",
        input_shape=(1, 28, 28),
        loss="categorical_crossentropy",
        optimizer="rmsprop_keras2",
        learning_rate=1e-3,
        epochs=5,
        batch_size=64,
        steps_per_epoch=None,
        validation_steps=None,
        validation_split="test",
        augmentation=None,
        init=_KERAS_INIT,
        input_scale=1 / 255,
        classes=_DIGITS,
    ),
    VariantSpec(
        name="mnist_dense",
        dataset="mnist",
        data_group="idx",
        input_shape=(1, 28, 28),
        loss="categorical_crossentropy",
        optimizer="rmsprop_keras2",
        learning_rate=1e-3,
        epochs=5,
        batch_size=128,
        steps_per_epoch=None,
        validation_steps=None,
        validation_split="test",
        augmentation=None,
        init=_KERAS_INIT,
        input_scale=1 / 255,
        classes=_DIGITS,
    ),
    VariantSpec(
        name="lenet",
        dataset="fashion_mnist",
        data_group="idx",
        input_shape=(1, 28, 28),
        loss="categorical_crossentropy",
        optimizer="sgd",
        learning_rate=0.9,
        epochs=10,
        batch_size=256,
        steps_per_epoch=None,
        validation_steps=None,
        validation_split="test",
        augmentation=None,
        init="xavier_uniform weights, PyTorch default biases (d2l's init_weights)",
        input_scale=1 / 255,
        classes=_FASHION,
    ),
    VariantSpec(
        # image_dataset_from_directory yields float 0-255 and the example's model has no Rescaling
        # layer, so the model trains on 0-255 pixels (input_scale 1).
        name="cam_convnet",
        dataset="petimages_80_20",
        data_group="keras_example",
        input_shape=(3, 300, 300),
        loss="binary_crossentropy",
        optimizer="rmsprop_keras3",
        learning_rate=1e-3,
        epochs=25,
        batch_size=128,
        steps_per_epoch=None,
        validation_steps=None,
        validation_split="validation",
        augmentation=CAM_AUGMENTATION,
        init=_KERAS_INIT,
        input_scale=1.0,
        resize_filter="bilinear",
    ),
]
VARIANTS: dict[str, VariantSpec] = {spec.name: spec for spec in _SPECS}
assert set(VARIANTS) == set(DOCUMENTED), "every variant has exactly one documented figure"
assert all(s.dataset in DATASET_DIRS and s.data_group in DATA_GROUPS for s in _SPECS), "unknown dataset or data group"


def variants_in_group(group: str) -> list[str]:
    """The variants whose training jobs have this shape (the params' train.variants.<group> may list them)."""
    return [spec.name for spec in _SPECS if spec.data_group == group]


def variants_where(predicate: Callable[[VariantSpec], bool]) -> tuple[str, ...]:
    """The names of the variants whose spec satisfies `predicate`, in registry order."""
    return tuple(spec.name for spec in _SPECS if predicate(spec))


def list_variants() -> list[str]:
    return list(VARIANTS)


def get_variant(name: str) -> VariantSpec:
    try:
        return VARIANTS[name]
    except KeyError:
        raise CnnreproError(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})") from None
