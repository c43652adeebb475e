"""What a run's augmentation is, framework-free: ImageDataGenerator's arguments with Keras' names and units,
the semantics of the Keras version copied, and how the random draws are made. The arithmetic that applies
it is cnnrepro.train.inputs.augment (PyTorch, shared by both backends).
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnrepro.errors import CnnreproError

SEMANTICS = ("2.0.8", "2.1.3")


FILL_MODES = ("nearest", "constant", "reflect", "wrap")


@dataclass(frozen=True)
class AugmentationSpec:
    """ImageDataGenerator arguments, with Keras' names and units (ranges as fractions of the size)."""

    rotation_range: float = 0.0
    width_shift_range: float = 0.0
    height_shift_range: float = 0.0
    shear_range: float = 0.0
    zoom_range: float | tuple[float, float] = 0.0
    horizontal_flip: bool = False
    fill_mode: str = "nearest"
    semantics: str = "2.0.8"
    # "per_image": one random transform per image (ImageDataGenerator); "per_batch": one for the whole
    # batch, what a quick port applying torchvision transforms to a batch tensor gets (naive_torch_port).
    draws: str = "per_image"

    def __post_init__(self) -> None:
        if self.semantics not in SEMANTICS:
            raise CnnreproError(f"augmentation semantics {self.semantics!r} is not one of {', '.join(SEMANTICS)}")
        if self.draws not in ("per_image", "per_batch"):
            raise CnnreproError(f"augmentation draws {self.draws!r} is not one of per_image, per_batch")
        if self.fill_mode not in FILL_MODES:
            raise CnnreproError(f"augmentation fill_mode {self.fill_mode!r} is not one of {', '.join(FILL_MODES)}")
        for name in ("rotation_range", "width_shift_range", "height_shift_range", "shear_range"):
            if not getattr(self, name) >= 0:
                raise CnnreproError(f"augmentation {name} must be >= 0, got {getattr(self, name)!r}")
        low, high = self.zoom_bounds
        if not 0 < low <= high:
            raise CnnreproError(f"augmentation zoom_range {self.zoom_range!r} must give 0 < low <= high")

    @property
    def zoom_bounds(self) -> tuple[float, float]:
        """Keras' rule: a number z means (1 - z, 1 + z); a pair is (low, high) as given."""
        if isinstance(self.zoom_range, int | float):
            return 1.0 - float(self.zoom_range), 1.0 + float(self.zoom_range)
        try:
            low, high = self.zoom_range
        except (TypeError, ValueError):
            raise CnnreproError(
                f"augmentation zoom_range must be a number or a pair, got {self.zoom_range!r}"
            ) from None
        return float(low), float(high)

    @property
    def has_affine(self) -> bool:
        spatial = (self.rotation_range, self.width_shift_range, self.height_shift_range, self.shear_range)
        return any(spatial) or self.zoom_bounds != (1.0, 1.0)

    @property
    def is_identity(self) -> bool:
        return not self.has_affine and not self.horizontal_flip

    @property
    def interpolation(self) -> str:
        """grid_sample mode: nearest (scipy order 0) for 2.0.8, bilinear (order 1) from 2.1.3."""
        return "nearest" if self.semantics == "2.0.8" else "bilinear"


def book_augmentation(semantics: str = "2.0.8") -> AugmentationSpec:
    """The book's generator (Deep Learning with Python, 5.2.5): the settings of the augmented variants."""
    return AugmentationSpec(
        rotation_range=40,
        width_shift_range=0.2,
        height_shift_range=0.2,
        shear_range=0.2,
        zoom_range=0.2,
        horizontal_flip=True,
        fill_mode="nearest",
        semantics=semantics,
    )
