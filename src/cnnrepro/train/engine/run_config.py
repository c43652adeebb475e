"""One run's settings, resolved ONCE into a frozen, typed `RunConfig`: the variant's documented spec, the
params overrides, the device the backend resolved, the speed options; an ablation is a replace of it.

The tree: identity (framework, variant, seed) and paths at the top, then `data`, `training`, `inputs`,
`runtime` and `vgg16`, and the provenance the report needs (documented figure and settings, overrides,
ablation). Allowed values and defaults are declared here, derived values are properties, and nothing
changes a RunConfig once built. What a backend finds while preparing a run (the VGG16 weights file, the
hash of the model fine-tuning starts from, the Keras backend) is a separate record, `Prepared`.

On disk (run_info.json `config`, MLflow params, the checkpoint's config hash) a RunConfig is one flat
record with the same keys as before it was typed (`as_record` / `from_record`), so every run written
since the engine redesign still reads back, and a checkpoint written before resumes after.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import JsonObject, Params
from cnnrepro.train.engine.augmentation_spec import AugmentationSpec
from cnnrepro.train.engine.images import SEMANTICS_RESIZE
from cnnrepro.train.engine.optimizers import OPTIMIZERS
from cnnrepro.variants.registry import VariantSpec, get_variant

Framework = Literal["torch", "keras"]
FRAMEWORKS: tuple[Framework, ...] = ("torch", "keras")
# train.precision, one meaning for both backends (each applies it: backends/<framework>/precision.py). fp32 is the
# faithful default and means strict float32: the book trained on a K80 (and the other sources on CPUs), which has
# no TF32, while PyTorch's cuDNN and TensorFlow use it by default on Ampere and later, so fp32 switches it OFF
# explicitly. tf32 turns it on; bf16 also autocasts the forward pass (RunConfig.mixed_precision, PyTorch on CUDA)
# and keeps the ops autocast leaves in float32 strict: one change at a time.
PRECISIONS = ("fp32", "tf32", "bf16")
DEFAULT_PRECISION = "fp32"
FAST_STEP_CHOICES = ("auto", "on", "off")
CHANNELS_LAST_CHOICES = ("auto", "on", "off")
WEIGHT_INITS = ("source", "torch_default")  # the source's initialization, or PyTorch's layer defaults
AUGMENTATION_DRAWS = ("per_image", "per_batch")
PREPROCESSINGS = ("scale", "caffe")
TRAINABLE = ("all", "head", "head+block5")
RESIZE_FILTERS = ("nearest", "bilinear", "bicubic", "lanczos")
# train.image_cache_dir when not set; relative to the working directory (the project root under both orchestrators).
DEFAULT_CACHE_DIR = "data/cache"
# The documented settings params may override per variant (train.overrides.<variant>).
OVERRIDABLE = ("epochs", "steps_per_epoch", "validation_steps", "batch_size", "learning_rate", "max_train_images")


def uses_tf32(precision: str) -> bool:
    """Whether float32 matmuls and convolutions may run in TF32 under this precision."""
    _check("precision", precision, PRECISIONS)
    return precision == "tf32"


def _check(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise CnnreproError(f"{name} {value!r} is not one of {', '.join(map(str, allowed))}")


@dataclass(frozen=True)
class DataSettings:
    """What the run reads and how: the dataset, its folder, the image shape and classes, which split
    validates, the resize filter on load, the decoded-image cache, and a cap on training images."""

    dataset: str
    data_dir: str
    input_shape: tuple[int, int, int]  # (channels, height, width)
    classes: tuple[str, ...]
    validation_split: str  # "validation", or "test" where the source monitors on the test set
    resize_filter: str | None  # None: no images to resize (idx arrays)
    image_cache: str | None  # where decoded images are cached (None: decode in every process)
    max_train_images: int | None = None  # None: the whole training split

    @property
    def is_idx(self) -> bool:
        return self.dataset in ("mnist", "fashion_mnist")


@dataclass(frozen=True)
class TrainingSettings:
    """The model's loss and optimizer, the schedule, and what trains from which starting weights."""

    loss: str  # "binary_crossentropy" (1 logit) | "categorical_crossentropy"
    optimizer: str  # one of OPTIMIZERS
    learning_rate: float
    epochs: int
    batch_size: int
    steps_per_epoch: int | None  # None: one pass over the training split per epoch
    validation_steps: int | None  # None: every validation image once per epoch
    training_data: str  # "images", or "vgg16_features" (the base runs once, only the head trains)
    trainable: str  # one of TRAINABLE
    init: str  # how the weights start, in words (the registry's)
    weight_init: str = "source"  # one of WEIGHT_INITS

    def __post_init__(self) -> None:
        _check("optimizer", self.optimizer, OPTIMIZERS)
        _check("trainable", self.trainable, TRAINABLE)
        _check("weight_init", self.weight_init, WEIGHT_INITS)


@dataclass(frozen=True)
class InputSettings:
    """Raw pixels -> model input: the augmentation (ImageDataGenerator arguments as the source gave them),
    its semantics and draws, and the preprocessing with its scale."""

    preprocessing: str  # one of PREPROCESSINGS
    input_scale: float  # pixels (0-255) times this, under "scale"
    augmentation: Mapping[str, Any] | None  # None: no augmentation
    augmentation_semantics: str  # train.augmentation_semantics: "2.0.8" | "2.1.3"
    augmentation_draws: str | None  # one of AUGMENTATION_DRAWS; None without augmentation

    def __post_init__(self) -> None:
        _check("preprocessing", self.preprocessing, PREPROCESSINGS)
        if self.augmentation is not None:
            object.__setattr__(self, "augmentation", MappingProxyType(dict(self.augmentation)))
            self.augmentation_spec  # noqa: B018 - validates the arguments once, at resolution

    @property
    def augmentation_spec(self) -> AugmentationSpec | None:
        return AugmentationSpec(**self.augmentation) if self.augmentation is not None else None


@dataclass(frozen=True)
class VGG16Settings:
    """params train.vgg16: where the ImageNet weights come from and how the book fed them."""

    source: str  # "keras" (the book's h5) | "torchvision"
    path: str | None
    url: str
    sha256: str | None
    preprocessing: str  # "book" (RGB/255) | "caffe"

    @classmethod
    def from_params(cls, section: Mapping[str, Any]) -> VGG16Settings:
        """From params train.vgg16 (or a run record's vgg16, whose extra keys are a Prepared's)."""
        return cls(**{f.name: section.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class RuntimeSettings:
    """Where and how fast: results equal up to float rounding whatever these say, precision aside."""

    device: str  # resolved by the backend: "cpu", "cuda", "cuda:1" (PyTorch), "cpu", "gpu:0" (Keras)
    precision: str = DEFAULT_PRECISION  # one of PRECISIONS
    channels_last: bool = False
    compile: bool = False
    fast_step: bool = False  # CUDA-graph steps (resolved from train.fast_step: auto | on | off)
    checkpoint_every: int = 1
    num_threads: int = 0  # 0: the framework's default

    def __post_init__(self) -> None:
        _check("precision", self.precision, PRECISIONS)
        if self.checkpoint_every < 1:
            raise CnnreproError(f"checkpoint_every {self.checkpoint_every!r} must be >= 1")

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def on_gpu(self) -> bool:
        """A GPU of either backend's naming (PyTorch cuda, TensorFlow gpu)."""
        return self.device.startswith(("cuda", "gpu"))


@dataclass(frozen=True)
class Documented:
    metric: str  # "val_accuracy" | "test_accuracy"
    figure: float | None
    text: str
    source: str


@dataclass(frozen=True)
class AblationChange:
    faithful: Any
    ablation: Any


@dataclass(frozen=True)
class AblationRecord:
    """What an ablation (params ablations.definitions) changed in this run, key by key."""

    name: str
    description: str
    changes: Mapping[str, AblationChange]


@dataclass(frozen=True)
class RunConfig:
    framework: Framework
    variant: str
    seed: int
    out_dir: str
    init_from: str | None
    data: DataSettings
    training: TrainingSettings
    inputs: InputSettings
    runtime: RuntimeSettings
    vgg16: VGG16Settings | None
    documented: Documented
    documented_settings: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # train.overrides.<variant>, as given
    ablation: AblationRecord | None = None

    def __post_init__(self) -> None:
        _check("framework", self.framework, FRAMEWORKS)
        for name in ("documented_settings", "overrides"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    # --- derived ------------------------------------------------------------------------------------------

    @property
    def mixed_precision(self) -> bool:
        """bf16 autocast: PyTorch on CUDA only (the Keras trainer runs float32)."""
        return self.framework == "torch" and self.runtime.precision == "bf16" and self.runtime.on_cuda

    @property
    def checkpoint_in_background(self) -> bool:
        """On a GPU the checkpoint is copied to the CPU and written by a thread (PyTorch)."""
        return self.framework == "torch" and self.runtime.on_cuda

    @property
    def run_name(self) -> str:
        """framework/variant/seedS, or framework/variant/ablation-NAME/seedS."""
        middle = f"/ablation-{self.ablation.name}" if self.ablation else ""
        return f"{self.framework}/{self.variant}{middle}/seed{self.seed}"

    # --- changing a setting (ablations) -------------------------------------------------------------------

    def setting(self, key: str) -> Any:
        """The value of one ablatable setting, by its record key."""
        group, name = SETTING_PATHS[key]
        return getattr(getattr(self, group), name)

    def with_settings(self, **changes: Any) -> RunConfig:
        """A copy with these ablatable settings changed, and the values that follow from them kept in step:
        the augmentation's own semantics and draws, and the input scale under caffe preprocessing."""
        groups: dict[str, JsonObject] = {}
        for key, value in changes.items():
            if key not in SETTING_PATHS:
                raise CnnreproError(f"{key!r} is not an ablatable run-config key ({', '.join(SETTING_PATHS)})")
            group, name = SETTING_PATHS[key]
            groups.setdefault(group, {})[name] = value
        inputs = groups.get("inputs", {})
        augmentation = self.inputs.augmentation
        if augmentation is not None and ("augmentation_semantics" in inputs or "augmentation_draws" in inputs):
            follow = {"semantics": inputs.get("augmentation_semantics"), "draws": inputs.get("augmentation_draws")}
            inputs["augmentation"] = dict(augmentation) | {k: v for k, v in follow.items() if v is not None}
        if inputs.get("preprocessing") == "caffe":
            inputs["input_scale"] = 1.0
        return replace(self, **{g: replace(getattr(self, g), **values) for g, values in groups.items()})

    # --- the flat record ------------------------------------------------------------------------------------

    def as_record(self) -> JsonObject:
        """The flat, JSON-able record: run_info.json's `config`, MLflow's params, the checkpoint hash's input."""
        d, t, i, r = self.data, self.training, self.inputs, self.runtime
        return {
            "framework": self.framework,
            "variant": self.variant,
            "seed": self.seed,
            "dataset": d.dataset,
            "data_dir": d.data_dir,
            "out_dir": self.out_dir,
            "init_from": self.init_from,
            "input_shape": list(d.input_shape),
            "classes": list(d.classes),
            "loss": t.loss,
            "optimizer": t.optimizer,
            "learning_rate": t.learning_rate,
            "epochs": t.epochs,
            "batch_size": t.batch_size,
            "steps_per_epoch": t.steps_per_epoch,
            "validation_steps": t.validation_steps,
            "validation_split": d.validation_split,
            "max_train_images": d.max_train_images,
            "augmentation": dict(i.augmentation) if i.augmentation is not None else None,
            "augmentation_semantics": i.augmentation_semantics,
            "augmentation_draws": i.augmentation_draws,
            "resize_filter": d.resize_filter,
            "preprocessing": i.preprocessing,
            "input_scale": i.input_scale,
            "training_data": t.training_data,
            "trainable": t.trainable,
            "init": t.init,
            "weight_init": t.weight_init,
            "vgg16": asdict(self.vgg16) if self.vgg16 is not None else None,
            "device": r.device,
            "precision": r.precision,
            "mixed_precision": self.mixed_precision,
            "channels_last": r.channels_last,
            "compile": r.compile,
            "fast_step": r.fast_step,
            "checkpoint_every": r.checkpoint_every,
            "checkpoint_in_background": self.checkpoint_in_background,
            "image_cache": d.image_cache,
            "num_threads": r.num_threads,
            "overrides": dict(self.overrides),
            "documented_settings": dict(self.documented_settings),
            "documented": asdict(self.documented),
            "ablation": _ablation_record(self.ablation),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], where: str = "run config") -> RunConfig:
        """A RunConfig from its flat record (run_info.json `config`, any run since the engine redesign);
        derived keys and a backend's Prepared keys are read past. One line naming the key on a bad record."""
        if not isinstance(record, Mapping):
            raise CnnreproError(f"{where}: expected a mapping, got {type(record).__name__}")
        try:
            vgg = record.get("vgg16")
            ablation = record.get("ablation")
            return cls(
                framework=record["framework"],
                variant=record["variant"],
                seed=int(record["seed"]),
                out_dir=record["out_dir"],
                init_from=record.get("init_from"),
                data=DataSettings(
                    dataset=record["dataset"],
                    data_dir=record["data_dir"],
                    input_shape=tuple(record["input_shape"]),
                    classes=tuple(record["classes"]),
                    validation_split=record["validation_split"],
                    resize_filter=record.get("resize_filter"),
                    image_cache=record.get("image_cache"),
                    max_train_images=record.get("max_train_images"),
                ),
                training=TrainingSettings(
                    loss=record["loss"],
                    optimizer=record["optimizer"],
                    learning_rate=float(record["learning_rate"]),
                    epochs=int(record["epochs"]),
                    batch_size=int(record["batch_size"]),
                    steps_per_epoch=record.get("steps_per_epoch"),
                    validation_steps=record.get("validation_steps"),
                    training_data=record.get("training_data", "images"),
                    trainable=record.get("trainable", "all"),
                    init=record.get("init", ""),
                    weight_init=record.get("weight_init", "source"),
                ),
                inputs=InputSettings(
                    preprocessing=record.get("preprocessing", "scale"),
                    input_scale=float(record["input_scale"]),
                    augmentation=record.get("augmentation"),
                    augmentation_semantics=record.get("augmentation_semantics", "2.0.8"),
                    augmentation_draws=record.get("augmentation_draws"),
                ),
                runtime=RuntimeSettings(
                    device=str(record.get("device", "cpu")),
                    precision=record.get("precision", DEFAULT_PRECISION),
                    channels_last=bool(record.get("channels_last", False)),
                    compile=bool(record.get("compile", False)),
                    fast_step=bool(record.get("fast_step", False)),
                    checkpoint_every=int(record.get("checkpoint_every", 1)),
                    num_threads=int(record.get("num_threads", 0)),
                ),
                vgg16=VGG16Settings.from_params(vgg) if vgg else None,
                documented=Documented(**record["documented"]),
                documented_settings=record.get("documented_settings") or {},
                overrides=record.get("overrides") or {},
                ablation=AblationRecord(
                    ablation["name"],
                    ablation["description"],
                    {k: AblationChange(**c) for k, c in ablation["changes"].items()},
                )
                if ablation
                else None,
            )
        except KeyError as exc:
            raise CnnreproError(f"{where}: missing key {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise CnnreproError(f"{where}: malformed ({exc})") from None


# Where each ablatable record key lives in the tree (the keys params ablations.definitions may set).
SETTING_PATHS: dict[str, tuple[str, str]] = {
    "trainable": ("training", "trainable"),
    "optimizer": ("training", "optimizer"),
    "weight_init": ("training", "weight_init"),
    "augmentation_semantics": ("inputs", "augmentation_semantics"),
    "augmentation_draws": ("inputs", "augmentation_draws"),
    "preprocessing": ("inputs", "preprocessing"),
    "resize_filter": ("data", "resize_filter"),
    "precision": ("runtime", "precision"),
}
# The values each ablatable setting may take.
ABLATABLE: dict[str, tuple[Any, ...]] = {
    "trainable": TRAINABLE,
    "augmentation_semantics": ("2.0.8", "2.1.3"),
    "resize_filter": RESIZE_FILTERS,
    "optimizer": OPTIMIZERS,
    "weight_init": WEIGHT_INITS,
    "augmentation_draws": AUGMENTATION_DRAWS,
    "preprocessing": PREPROCESSINGS,
    "precision": PRECISIONS,
}


def _ablation_record(ablation: AblationRecord | None) -> JsonObject | None:
    if ablation is None:
        return None
    changes = {k: {"faithful": c.faithful, "ablation": c.ablation} for k, c in ablation.changes.items()}
    return {"name": ablation.name, "description": ablation.description, "changes": changes}


@dataclass(frozen=True)
class Prepared:
    """What a backend's prepare() found for one run beyond its config (run_info.json `prepared`)."""

    vgg16_weights_file: str | None = None
    vgg16_weights_sha256: str | None = None
    init_model_sha256: str | None = None  # the model fine-tuning starts from
    keras_backend: str | None = None  # KERAS_BACKEND the Keras run trained on

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Prepared:
        """From run_info.json `prepared`, or from an older run's config, where prepare() wrote these keys."""
        vgg = record.get("vgg16") or {}
        return cls(
            vgg16_weights_file=record.get("vgg16_weights_file", vgg.get("weights_file")),
            vgg16_weights_sha256=record.get("vgg16_weights_sha256", vgg.get("weights_sha256")),
            init_model_sha256=record.get("init_model_sha256"),
            keras_backend=record.get("keras_backend"),
        )


def legacy_record(config: RunConfig, prepared: Prepared) -> Params:
    """The config record as prepare() used to complete it in place: the input of the checkpoint's config hash
    (so a checkpoint written before the config was typed still resumes) and of the MLflow params."""
    record = config.as_record()
    if record["vgg16"] is not None and prepared.vgg16_weights_file is not None:
        record["vgg16"] |= {"weights_file": prepared.vgg16_weights_file}
        if prepared.vgg16_weights_sha256 is not None:
            record["vgg16"] |= {"weights_sha256": prepared.vgg16_weights_sha256}
    if prepared.keras_backend is not None:
        record["keras_backend"] = prepared.keras_backend
    if prepared.init_model_sha256 is not None:
        record["init_model_sha256"] = prepared.init_model_sha256
    return record


# --- resolution ------------------------------------------------------------------------------------------


def resolve_fast_step(choice: str | bool, device: str, framework: str, compiled: bool) -> bool:
    """train.fast_step: auto = on for a PyTorch CUDA run (unless train.compile, which brings its own
    graphs), off elsewhere; on = required: CUDA graphs on CUDA, on a CPU the same steps uncaptured (no
    speed-up: what shows the self-check and its fallback without a GPU); off = the eager loop. Either way
    the run checks the fast step against the eager step first and falls back when they disagree
    (cnnrepro.train.backends.torch.fast_step_guard). Keras runs never use it."""
    if isinstance(choice, bool):  # YAML's bare on/off
        choice = "on" if choice else "off"
    _check("train.fast_step", choice, FAST_STEP_CHOICES)
    if framework != "torch" or choice == "off":
        return False
    cuda = device.startswith("cuda")
    if choice == "on":
        if not (cuda or device == "cpu"):
            raise CnnreproError(
                f"params.yaml: train.fast_step is 'on' but the device is {device} (CUDA graphs need CUDA; "
                "a CPU runs the steps uncaptured)"
            )
        return True
    return cuda and not compiled


def resolve_channels_last(choice: str | bool, device: str, framework: str) -> bool:
    """train.channels_last: auto = on for a PyTorch run on the CPU (oneDNN's NHWC convolutions: measured
    faster there for baseline, mnist_convnet and lenet, see cnnrepro bench's Keras column), off elsewhere
    (unmeasured on CUDA); on/off (or true/false) as set. A Keras run is channels-last whatever it says:
    its layers are NHWC by construction, and the record says what ran."""
    if isinstance(choice, bool):  # YAML's bare true/false/on/off
        choice = "on" if choice else "off"
    _check("train.channels_last", choice, CHANNELS_LAST_CHOICES)
    if framework != "torch":
        return True
    return choice == "on" or (choice == "auto" and device == "cpu")


def documented_settings(spec: VariantSpec) -> JsonObject:
    return {
        "epochs": spec.epochs,
        "steps_per_epoch": spec.steps_per_epoch,
        "validation_steps": spec.validation_steps,
        "batch_size": spec.batch_size,
        "learning_rate": spec.learning_rate,
        "max_train_images": None,
    }


def resolve_run_config(
    params: Mapping[str, Any],
    *,
    framework: str,
    variant: str,
    seed: int,
    data_dir: str | Path,
    out_dir: str | Path,
    device: str,
    init_from: str | Path | None = None,
) -> RunConfig:
    """Everything the run does: the documented values replaced by train.overrides.<variant> where set, on the
    `device` the framework's backend resolved from train.device (Backend.resolve_device). Ablations are applied
    after, as a replace (cnnrepro.train.ablations.apply_ablation)."""
    _check("--framework", framework, FRAMEWORKS)
    spec = get_variant(variant)
    train = params["train"]
    overrides = dict((train.get("overrides") or {}).get(variant) or {})
    settings = documented_settings(spec) | overrides
    if spec.continues_from and init_from is None:
        raise CnnreproError(f"variant {variant} continues from {spec.continues_from}: pass --init-from RUN_DIR")
    if not spec.continues_from and init_from is not None:
        raise CnnreproError(f"variant {variant} trains from its own initialization: --init-from is not allowed")
    semantics = train["augmentation_semantics"]
    augmentation = None if spec.augmentation is None else {"semantics": semantics} | dict(spec.augmentation)
    vgg = VGG16Settings.from_params(train["vgg16"]) if spec.needs_vgg16 else None
    caffe = vgg is not None and vgg.preprocessing == "caffe"
    images = spec.dataset in ("dogs_vs_cats", "petimages_80_20")
    cache_images = images and bool(train.get("image_cache", False))
    compiled = bool(train.get("compile", False))
    return RunConfig(
        framework=framework,  # type: ignore[arg-type]  # checked above
        variant=variant,
        seed=int(seed),
        out_dir=str(out_dir),
        init_from=str(init_from) if init_from is not None else None,
        data=DataSettings(
            dataset=spec.dataset,
            data_dir=str(data_dir),
            input_shape=tuple(spec.input_shape),
            classes=tuple(spec.classes),
            validation_split=spec.validation_split,
            resize_filter=(spec.resize_filter or SEMANTICS_RESIZE[semantics]) if images else None,
            image_cache=str(train.get("image_cache_dir") or DEFAULT_CACHE_DIR) if cache_images else None,
            max_train_images=settings["max_train_images"],
        ),
        training=TrainingSettings(
            loss=spec.loss,
            optimizer=spec.optimizer,
            learning_rate=float(settings["learning_rate"]),
            epochs=int(settings["epochs"]),
            batch_size=int(settings["batch_size"]),
            steps_per_epoch=settings["steps_per_epoch"],
            validation_steps=settings["validation_steps"],
            training_data=spec.training_data,
            trainable=spec.trainable,
            init=spec.init,
        ),
        inputs=InputSettings(
            preprocessing="caffe" if caffe else "scale",
            input_scale=1.0 if caffe else spec.input_scale,
            augmentation=augmentation,
            augmentation_semantics=semantics,
            # One random transform per image, as ImageDataGenerator drew them (None: no augmentation).
            augmentation_draws="per_image" if augmentation else None,
        ),
        runtime=RuntimeSettings(
            device=device,
            precision=train.get("precision", DEFAULT_PRECISION),
            channels_last=resolve_channels_last(train.get("channels_last", "auto"), device, framework),
            compile=compiled,
            fast_step=resolve_fast_step(train.get("fast_step", "auto"), device, framework, compiled),
            checkpoint_every=int(train.get("checkpoint_every", 1)),
            num_threads=int(train["num_threads"]),
        ),
        vgg16=vgg,
        documented=Documented(
            metric=spec.metric,
            figure=spec.documented.documented,
            text=spec.documented.documented_text,
            source=spec.source,
        ),
        documented_settings=documented_settings(spec),
        overrides=overrides,
    )


def format_config(config: RunConfig, prepared: Prepared | None = None) -> str:
    """The resolved config, one `key: value` per line (printed once at the start of a run)."""
    record = legacy_record(config, prepared or Prepared())
    width = max(len(k) for k in record)
    return "\n".join(f"  {k:<{width}} : {json.dumps(v, default=str)}" for k, v in record.items())
