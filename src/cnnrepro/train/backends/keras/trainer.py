"""One Keras run from its resolved config, with the PyTorch runner's interface (prepare, train_variant,
write_outputs), so `cnnrepro train --framework keras` differs from the torch one only in this module.

The training is the book's: compile with the variant's optimizer and loss, `model.fit` on an endless
generator with `steps_per_epoch`, `validation_steps` batches of a persistent validation iterator per
epoch (scored at the epoch's end; see Streams for why not through fit's validation_data), `trainable`
flags set before compiling, fine-tuning from the frozen-base run's saved model. What feeds the
generators is shared with the PyTorch runs: the same decoded uint8 arrays
(cnnrepro.train.engine.splits), the same Keras-iterator batch indices from the same seed streams, and the
same augmentation engine and draws (cnnrepro.train.inputs.augment, through torch CPU tensors), so the two
frameworks see the same batches in the same order. Per-epoch checkpoints use the PyTorch runs' file
and rules (cnnrepro.train.engine.checkpoint); see EpochCheckpoint. Not implemented here: mixed precision
(Keras runs float32).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import sha256_file
from cnnrepro.mappings import JsonObject
from cnnrepro.run_outputs import summarize_final
from cnnrepro.train import vgg16_weights
from cnnrepro.train.backends.keras import import_keras, ledger
from cnnrepro.train.backends.keras.devices import device_scope, resolve_device
from cnnrepro.train.backends.keras.fit import EpochCheckpoint, fit
from cnnrepro.train.backends.keras.inference import MODEL_FILE
from cnnrepro.train.backends.keras.streams import extract_features, image_inputs, make_streams, score
from cnnrepro.train.engine import checkpoint as ckpt
from cnnrepro.train.engine import lifecycle
from cnnrepro.train.engine.backend import EpochHook, ResumeHook, RunResult
from cnnrepro.train.engine.lifecycle import NotRunnable, check_init_run, data_line, load_splits
from cnnrepro.train.engine.run_config import Prepared, RunConfig, legacy_record
from cnnrepro.train.inputs.pipeline import InputPipeline

keras = import_keras()

PACKAGES = (*lifecycle.BASE_PACKAGES, "keras", "tensorflow", "tensorflow-cpu")


# --- can it run? -------------------------------------------------------------------------------------


def prepare(config: RunConfig, *, download_timeout_s: float = 20.0) -> Prepared:
    """What the run needs beyond data (the model it continues from, the VGG16 weights) and the Keras
    backend it trains on; NotRunnable when it is not here."""
    backend = keras.backend.backend()
    vgg = config.vgg16
    if config.init_from is not None:
        sha256 = check_init_run(Path(config.init_from), config, MODEL_FILE)
        return Prepared(init_model_sha256=sha256, keras_backend=backend)
    if vgg is None:
        return Prepared(keras_backend=backend)
    if vgg.source != "keras":
        raise NotRunnable(
            f"train.vgg16.source is {vgg.source}: the Keras trainer loads only the Keras h5 weights "
            "(keras.applications.VGG16); that ablation is PyTorch-only"
        )
    try:
        path = vgg16_weights.resolve_keras_weights(vgg, timeout_s=download_timeout_s)
    except vgg16_weights.WeightsUnavailable as exc:
        raise NotRunnable(str(exc)) from None
    return Prepared(vgg16_weights_file=str(path), vgg16_weights_sha256=sha256_file(path), keras_backend=backend)


# --- model and data ----------------------------------------------------------------------------------


def build_model(config: RunConfig, prepared: Prepared) -> Any:
    """The variant's network with its starting weights, `trainable` set as the source set it (compile follows)."""
    from cnnrepro.train.backends.keras import models

    vgg = config.vgg16
    if config.init_from is not None:
        model = models.create_model(config.variant)
        path = Path(config.init_from) / "artifacts" / MODEL_FILE
        try:
            model.load_weights(path)
        except Exception as exc:  # wrong structure or a corrupt file: name the file
            raise CnnreproError(f"{path}: cannot load into {config.variant} ({str(exc).splitlines()[0]})") from None
    elif vgg is not None:
        model = models.create_model(config.variant, vgg16_weights=prepared.vgg16_weights_file)
    else:
        model = models.create_model(config.variant)
    models.set_trainable(model, config.training.trainable)
    return model


def _deterministic_ops() -> None:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def configure_process(config: RunConfig) -> None:
    """Seeds, deterministic ops and precision, as every Keras run sets them before building anything
    (`cnnrepro bench` times its Keras steps under the same settings)."""
    from cnnrepro.train.backends.keras.precision import set_backend_precision

    keras.utils.set_random_seed(config.seed)
    _deterministic_ops()
    set_backend_precision(keras.backend.backend(), config.runtime.precision)
    if config.runtime.num_threads > 0:
        torch.set_num_threads(config.runtime.num_threads)


def compile_for_training(trained: Any, config: RunConfig) -> None:
    """The source's compile: the variant's optimizer and loss, accuracy as the metric."""
    from cnnrepro.train.backends.keras import optimizers

    trained.compile(
        optimizer=optimizers.make_optimizer(config.training.optimizer, config.training.learning_rate),
        loss=optimizers.make_loss(config.training.loss, config.variant),
        metrics=["accuracy"],
    )


# --- the run -----------------------------------------------------------------------------------------


def train_variant(
    config: RunConfig,
    prepared: Prepared,
    *,
    checkpoint_root: str | Path = "checkpoints",
    hooks: Sequence[EpochHook] = (),
    owner: JsonObject | None = None,
    on_resume: ResumeHook | None = None,
) -> RunResult:
    """Train one (variant, seed) in Keras to the end and score it; `prepared` is what prepare(config) found.

    `owner` is saved with each checkpoint; a run resuming from one calls `on_resume(its owner, epoch)`.
    """

    configure_process(config)
    splits = load_splits(config)
    print(data_line(splits), flush=True)
    if splits["validation"] is None or splits["train"] is None:
        raise CnnreproError(f"{config.data.data_dir}: no training or validation split")
    started = time.perf_counter()
    with device_scope(config.runtime.device):
        return _train(config, prepared, splits, started, checkpoint_root, hooks, owner, on_resume)


def _train(
    config: RunConfig,
    prepared: Prepared,
    splits: JsonObject,
    started: float,
    checkpoint_root: str | Path,
    hooks: Sequence[EpochHook],
    owner: JsonObject | None,
    on_resume: ResumeHook | None,
) -> RunResult:
    """train_variant's model, fit and final score, inside the run's device scope."""
    from cnnrepro.train.backends.keras import models

    train, validation, test = splits["train"], splits["validation"], splits["test"]
    model = build_model(config, prepared)
    images = image_inputs(config)

    trained, inputs = model, images
    if config.training.training_data == "vgg16_features":
        print("extracting VGG16 features once per image ...", flush=True)
        conv_base, bs = model.layers[0], config.training.batch_size
        train, validation = (extract_features(conv_base, s, images, bs) for s in (train, validation))
        test = extract_features(conv_base, test, images, bs) if test is not None else None
        trained, inputs = models.feature_head(model), InputPipeline("features")

    compile_for_training(trained, config)
    checkpoint = EpochCheckpoint(
        ckpt.checkpoint_path(checkpoint_root, config.framework, config.variant, config.seed),
        ckpt.config_hash(legacy_record(config, prepared)),
        dict(owner or {}),
    )
    streams = make_streams(config, train, validation, inputs)
    history = fit(trained, streams, config.training.epochs, hooks, checkpoint, on_resume)
    train_duration = time.perf_counter() - started

    # The final model on every image of the test split once (the validation split where there is none).
    scored, split_name = (test, "test") if test is not None else (validation, "validation")
    final = score(trained, scored, inputs, config)
    metrics, confusion = summarize_final(history, final, list(config.data.classes), split_name, test is not None)
    return RunResult(history, metrics, confusion, model, train_duration)


# --- the backend --------------------------------------------------------------------------------------


class KerasBackend:
    """The Keras 3 backend (cnnrepro.train.engine.backend.Backend)."""

    framework = "keras"
    model_file = MODEL_FILE

    def resolve_device(self, requested: str, *, runs_per_gpu: int = 1, num_threads: int = 0) -> str:
        return resolve_device(requested, num_threads)

    def prepare(self, config: RunConfig, *, download_timeout_s: float = 20.0) -> Prepared:
        return prepare(config, download_timeout_s=download_timeout_s)

    def train_variant(
        self,
        config: RunConfig,
        prepared: Prepared,
        *,
        checkpoint_root: str | Path = "checkpoints",
        hooks: Sequence[EpochHook] = (),
        owner: JsonObject | None = None,
        on_resume: ResumeHook | None = None,
    ) -> RunResult:
        return train_variant(
            config, prepared, checkpoint_root=checkpoint_root, hooks=hooks, owner=owner, on_resume=on_resume
        )

    def save_model(self, model: Any, path: Path) -> None:
        model.save(path)

    def ledger_entries(self, config: RunConfig, prepared: Prepared) -> list[dict[str, str]]:
        return ledger.entries_for(config, prepared)

    def package_versions(self) -> dict[str, str | None]:
        return package_versions()

    def load_trained(self, run: Path, config: RunConfig, device: str = "auto") -> Any:
        from cnnrepro.train.backends.keras.inference import load_trained

        return load_trained(run, config, device)


def package_versions() -> dict[str, str | None]:
    versions = lifecycle.package_versions(PACKAGES)
    versions["keras_backend"] = keras.backend.backend()
    return versions


BACKEND = KerasBackend()
