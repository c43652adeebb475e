"""The fidelity ledger: every place a port departs from the source it reproduces, framework-neutral part.

Each entry names the setting, what the source did, what the port does, and why. `entries_for` picks the
entries that apply to one resolved run config (variant, device, semantics, VGG16 options): the shared
ones below, then the backend's own (cnnrepro.train.backends.<framework>.ledger), and adds every params
override of that run as a departure of its own. Choices that copy the source exactly (RMSprop rho/eps,
Keras init, generator index logic, fine_tuning's frozen blocks 1-4) are not departures and are not
listed; they are tested instead. An ablation run adds one entry per key its ablation changed
(cnnrepro.train.ablations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cnnrepro.train.engine.run_config import RunConfig
from cnnrepro.variants.registry import variants_where

# The ledger's scopes, from the registry's facts: a new variant falls under every entry its spec implies.
ALL = variants_where(lambda v: True)
BOOK = variants_where(lambda v: v.dataset == "dogs_vs_cats")  # DLWP ch. 5's Dogs vs Cats
BOOK_VGG = variants_where(lambda v: v.dataset == "dogs_vs_cats" and v.needs_vgg16)
BOOK_CNN = variants_where(lambda v: v.dataset == "dogs_vs_cats" and not v.needs_vgg16)
BOOK_AUGMENTED = variants_where(lambda v: v.dataset == "dogs_vs_cats" and v.augmentation is not None)
BOOK_GENERATOR = variants_where(lambda v: v.dataset == "dogs_vs_cats" and v.steps_per_epoch is not None)
KERAS_MNIST = variants_where(lambda v: v.dataset == "mnist")  # DLWP's Keras MNIST models
BINARY = variants_where(lambda v: v.loss == "binary_crossentropy")


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    variants: tuple[str, ...]
    setting: str
    source: str
    port: str
    reason: str
    # Applies only when this holds for the run's resolved config (None: always, for those variants).
    when: Callable[[RunConfig], bool] | None = None

    def applies(self, config: RunConfig) -> bool:
        return config.variant in self.variants and (self.when is None or self.when(config))

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "setting": self.setting, "source": self.source, "port": self.port, "reason": self.reason}


def _semantics(value: str) -> Callable[[RunConfig], bool]:
    return lambda c: c.inputs.augmentation_semantics == value


def _vgg(key: str, value: str) -> Callable[[RunConfig], bool]:
    return lambda c: c.vgg16 is not None and getattr(c.vgg16, key) == value


# Entries that hold for every framework's port (each backend adds its own: backends/<framework>/ledger.py).
SHARED: tuple[LedgerEntry, ...] = (
    LedgerEntry(
        "resize_filter_2_1_3",
        BOOK,
        "image resize on load (load_img)",
        "Pillow's default filter of 2017 (NEAREST), as Keras 2.0.8's load_img called img.resize()",
        "Pillow BILINEAR (train.augmentation_semantics = 2.1.3)",
        "chosen in params to compare with later Keras behaviour; not the book's setting.",
        when=_semantics("2.1.3"),
    ),
    LedgerEntry(
        "augmentation_engine",
        BOOK_AUGMENTED,
        "random augmentation",
        "ImageDataGenerator.random_transform: scipy.ndimage affine_transform per image on the CPU",
        "cnnrepro.train.inputs.augment: the same per-image parameter distributions, applied as one batched "
        "affine resampling in PyTorch",
        "same transform family and parameter distributions; pixel values can differ at the resampling level.",
    ),
    LedgerEntry(
        "augmentation_2_1_3",
        BOOK_AUGMENTED,
        "augmentation semantics",
        "Keras 2.0.8: shear_range in radians (0.2 rad = 11.5 degrees), nearest resampling (order 0)",
        "Keras >= 2.1.3: shear_range in degrees (0.2 degrees), bilinear resampling (order 1)",
        "chosen in params (train.augmentation_semantics = 2.1.3) to compare with later Keras behaviour.",
        when=_semantics("2.1.3"),
    ),
    LedgerEntry(
        "validation_queue",
        BOOK_GENERATOR,
        "validation batches per epoch",
        "evaluate_generator pulled batches through a prefetch queue (max_queue_size 10) and dropped the queued "
        "ones at the end of each epoch, so each epoch's validation skipped up to 10 batches of the generator",
        "exactly validation_steps batches per epoch from the same persistent shuffled generator",
        "the skipped batches depend on thread timing and cannot be replicated; the sampled distribution is the same.",
    ),
    LedgerEntry(
        "mnist_monitoring",
        KERAS_MNIST,
        "per-epoch validation columns",
        "model.fit without validation data: no per-epoch validation at all",
        "val_loss / val_accuracy per epoch computed on the 10k test set, for the curves only",
        "monitoring only: nothing is selected or stopped on them; test_accuracy is the final model's, "
        "as in the source.",
    ),
    LedgerEntry(
        "vgg16_torchvision",
        BOOK_VGG,
        "VGG16 ImageNet weights",
        "Keras vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "torchvision's VGG16_Weights.IMAGENET1K_V1 (a different network, trained in PyTorch)",
        "an ablation chosen in params (train.vgg16.source = torchvision); not comparable with the book.",
        when=_vgg("source", "torchvision"),
    ),
    LedgerEntry(
        "vgg16_caffe_input",
        BOOK_VGG,
        "VGG16 input preprocessing",
        "RGB scaled by 1/255 (what the book fed the Keras weights)",
        "caffe style: BGR, 0-255, mean [103.939, 116.779, 123.68] subtracted (what the weights expect)",
        "the corrected-input ablation chosen in params (train.vgg16.preprocessing = caffe).",
        when=_vgg("preprocessing", "caffe"),
    ),
    LedgerEntry(
        "cam_input_scale",
        ("cam_convnet",),
        "input pixel scale",
        "trains on image_dataset_from_directory's 0-255 floats (no Rescaling layer); its CAM cell then feeds "
        "cv2.imread (BGR) / 255 to the same model",
        "0-255 RGB for training, evaluation and prediction alike",
        "the source's prediction input contradicts its own training input; the port keeps the training one.",
    ),
    LedgerEntry(
        "cam_resize",
        ("cam_convnet",),
        "image resize on load",
        "tf.image.resize bilinear without antialiasing (image_dataset_from_directory)",
        "Pillow BILINEAR, which antialiases when downscaling",
        "images are decoded once with Pillow; downscaled images come out smoother than TF's.",
    ),
    LedgerEntry(
        "cam_shuffle",
        ("cam_convnet",),
        "training order",
        "Dataset.shuffle(buffer_size=8 * batch_size) over the seed-1337-shuffled file list, reshuffled each epoch",
        "a full random permutation of the training split each epoch",
        "a bounded shuffle buffer only approximates a permutation; the full one is what it approximates.",
    ),
    LedgerEntry(
        "cam_augmentation_engine",
        ("cam_convnet",),
        "random augmentation",
        "RandomFlip('horizontal') + RandomRotation(0.1): per image, bilinear, fill_mode 'reflect'",
        "cnnrepro.train.inputs.augment with rotation_range 36 degrees, horizontal_flip, fill 'reflect', bilinear",
        "same distributions (0.1 of a full turn = 36 degrees); resampling details can differ.",
    ),
    LedgerEntry(
        "tf32",
        ALL,
        "arithmetic precision",
        "float32 throughout (the book's K80 had no TF32)",
        "TF32 matrix multiplies and convolutions on CUDA (train.precision tf32): float32 range, 10-bit mantissa",
        "chosen in params for speed on Ampere and later GPUs; fp32 switches TF32 off explicitly.",
        when=lambda c: c.runtime.precision == "tf32" and c.runtime.on_gpu,
    ),
)

OVERRIDE_SETTINGS = {
    "epochs": "epochs",
    "steps_per_epoch": "steps per epoch",
    "validation_steps": "validation steps",
    "batch_size": "batch size",
    "learning_rate": "learning rate",
    "max_train_images": "training images",
}


# What a documented value of None means for each key.
NONE_MEANS = {
    "steps_per_epoch": "one pass over the training split",
    "validation_steps": "every validation image once",
    "max_train_images": "the whole training split",
}


def override_entries(config: RunConfig) -> list[dict[str, str]]:
    """One departure per params override of this run (train.overrides.<variant>.<key>)."""
    entries = []
    for key, value in config.overrides.items():
        documented = config.documented_settings.get(key)
        entries.append(
            {
                "id": f"override_{key}",
                "setting": OVERRIDE_SETTINGS.get(key, key),
                "source": NONE_MEANS.get(key, "none") if documented is None else str(documented),
                "port": str(value),
                "reason": f"params.yaml train.overrides.{config.variant}.{key}: a changed run, "
                "not comparable with the documented figure",
            }
        )
    return entries


def entries_for(config: RunConfig, framework_entries: tuple[LedgerEntry, ...]) -> list[dict[str, str]]:
    """The ledger entries that apply to one resolved run config: the shared ones, then the framework's own,
    then one per params override and one per key an ablation changed."""
    from cnnrepro.train.ablations import ledger_entries

    entries = [e.as_dict() for e in (*SHARED, *framework_entries) if e.applies(config)]
    return entries + override_entries(config) + ledger_entries(config)
