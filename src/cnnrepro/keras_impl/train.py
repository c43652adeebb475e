"""One Keras run from its resolved config, with the PyTorch runner's interface (prepare, train_variant,
write_outputs), so `cnnrepro train --framework keras` differs from the torch one only in this module.

The training is the book's: compile with the variant's optimizer and loss, `model.fit` on an endless
generator with `steps_per_epoch`, `validation_steps` batches of a persistent validation iterator per
epoch (scored at the epoch's end; see Streams for why not through fit's validation_data), `trainable`
flags set before compiling, fine-tuning from the frozen-base run's saved model. What feeds the
generators is shared with the PyTorch runs: the same decoded uint8 arrays
(cnnrepro.training.data), the same Keras-iterator batch indices from the same seed streams, and the
same augmentation engine and draws (cnnrepro.training.augment, through torch CPU tensors), so the two
frameworks see the same batches in the same order. Per-epoch checkpoints use the PyTorch runs' file
and rules (cnnrepro.training.checkpoint); see EpochCheckpoint. Not implemented here: mixed precision
(Keras runs float32).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import read_json, sha256_file
from cnnrepro.keras_impl import import_keras, ledger
from cnnrepro.models import vgg16
from cnnrepro.models.registry import get_variant
from cnnrepro.runs import RunMetrics, summarize_final
from cnnrepro.training import checkpoint as ckpt
from cnnrepro.training import runner
from cnnrepro.training.data import KerasIterator, Split
from cnnrepro.training.loop import EpochHook, FitSettings, InputPipeline, _make_iterators, sequential_batches

keras = import_keras()

MODEL_FILE = "model.keras"
PACKAGES = ("keras", "tensorflow", "tensorflow-cpu", "torch", "numpy", "pillow", "h5py", "mlflow", "cnnrepro")
# The PyTorch runner's exception: the command line turns it into a not_run run for either framework.
NotRunnable = runner.NotRunnable


@dataclass
class KerasRunResult:
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    confusion: dict[str, Any]
    model: Any
    train_duration_s: float


# --- can it run? -------------------------------------------------------------------------------------


def resolve_device(requested: str, num_threads: int = 0) -> str:
    """The device Keras will use, from params train.device; TensorFlow's view of the machine, not torch's.

    Must run before TensorFlow executes anything: thread counts and visible devices are fixed at its start.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        return f"{backend}:{requested}"  # the other backends place work themselves
    import tensorflow as tf

    try:
        if num_threads > 0:
            tf.config.threading.set_intra_op_parallelism_threads(num_threads)
            tf.config.threading.set_inter_op_parallelism_threads(num_threads)
    except RuntimeError:
        pass  # TensorFlow already started in this process (several runs in one process: tests)
    gpus = tf.config.list_physical_devices("GPU")
    if requested in ("cpu", "auto") and (requested == "cpu" or not gpus):
        if gpus:
            _set_visible_gpus(tf, [])
        return "cpu"
    if requested == "auto":
        return "gpu:0"
    if requested.startswith("cuda"):
        index = int(requested.split(":", 1)[1]) if ":" in requested else 0
        if index >= len(gpus):
            raise CnnreproError(
                f"params.yaml: train.device is {requested!r} but TensorFlow sees {len(gpus)} GPU(s) here"
            )
        _set_visible_gpus(tf, [gpus[index]])
        return f"gpu:{index}"
    raise CnnreproError(
        f"params.yaml: train.device {requested!r} is not supported by the Keras trainer (auto, cpu, cuda[:N])"
    )


def _set_visible_gpus(tf: Any, gpus: list[Any]) -> None:
    try:
        tf.config.set_visible_devices(gpus, "GPU")
    except RuntimeError as exc:
        raise CnnreproError(f"params.yaml: train.device: TensorFlow has started, devices are fixed ({exc})") from None


def prepare(config: dict[str, Any], *, download_timeout_s: float = 20.0) -> None:
    """Resolve the device; find what the run needs beyond data; raise NotRunnable when it is not here."""
    config["keras_backend"] = keras.backend.backend()
    config["device"] = resolve_device(config["device"], config["num_threads"])
    vgg = config.get("vgg16")
    if config["init_from"] is not None:
        config["init_model_sha256"] = _check_init_run(Path(config["init_from"]), config)
    elif vgg is not None:
        if vgg["source"] != "keras":
            raise NotRunnable(
                f"train.vgg16.source is {vgg['source']}: the Keras trainer loads only the Keras h5 weights "
                "(keras.applications.VGG16); that ablation is PyTorch-only"
            )
        try:
            path = vgg16.resolve_keras_weights(vgg, timeout_s=download_timeout_s)
        except vgg16.WeightsUnavailable as exc:
            raise NotRunnable(str(exc)) from None
        vgg["weights_file"] = str(path)
        vgg["weights_sha256"] = sha256_file(path)


def _check_init_run(run: Path, config: dict[str, Any]) -> str:
    """The run fine_tuning continues from: a completed Keras run of the right variant; returns its model's sha256."""
    metrics = read_json(run / "metrics.json")
    status = metrics.get("status") if isinstance(metrics, dict) else None
    if status != "completed":
        reason = metrics.get("reason") if isinstance(metrics, dict) else None
        raise NotRunnable(f"continues from {run}, which is {status or 'not a run'}: {reason or 'no reason given'}")
    if metrics.get("framework") != "keras":
        raise CnnreproError(
            f"{run}: --init-from is a {metrics.get('framework')} run; a Keras run continues a Keras one"
        )
    expected = get_variant(config["variant"]).continues_from
    if metrics.get("variant") != expected:
        raise CnnreproError(
            f"{run}: --init-from is a {metrics.get('variant')} run; {config['variant']} continues from {expected}"
        )
    model = run / "artifacts" / MODEL_FILE
    if not model.is_file():
        raise CnnreproError(f"{model}: missing (the run it continues from has no Keras model)")
    return sha256_file(model)


# --- model and data ----------------------------------------------------------------------------------


def build_model(config: dict[str, Any]) -> Any:
    """The variant's network with its starting weights, `trainable` set as the source set it (compile follows)."""
    from cnnrepro.keras_impl import models

    vgg = config.get("vgg16")
    if config["init_from"] is not None:
        model = models.create_model(config["variant"])
        path = Path(config["init_from"]) / "artifacts" / MODEL_FILE
        try:
            model.load_weights(path)
        except Exception as exc:  # wrong structure or a corrupt file: name the file
            raise CnnreproError(f"{path}: cannot load into {config['variant']} ({str(exc).splitlines()[0]})") from None
    elif vgg is not None:
        model = models.create_model(config["variant"], vgg16_weights=vgg["weights_file"])
    else:
        model = models.create_model(config["variant"])
    models.set_trainable(model, config["trainable"])
    return model


def keras_input(inputs: InputPipeline, images: np.ndarray, *, train: bool) -> np.ndarray:
    """A uint8 (N, H, W, C) batch through the PyTorch input pipeline (augment, scale), back to channels-last float32."""
    if inputs.kind == "features":
        return images
    x = inputs(torch.from_numpy(images), train=train)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy(), dtype=np.float32)


def targets(labels: np.ndarray, loss: str, n_classes: int) -> np.ndarray:
    """class_mode='binary' floats (N, 1), or to_categorical one-hot rows (N, classes)."""
    if loss == "binary_crossentropy":
        return labels.astype(np.float32).reshape(-1, 1)
    return np.eye(n_classes, dtype=np.float32)[labels]


def batch_stream(
    split: Split, y: np.ndarray, indices: Iterator[np.ndarray], inputs: InputPipeline, *, train: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The generator fit/evaluate/predict pull from: one (x, y) batch per index array, for as long as asked."""
    for index in indices:
        yield keras_input(inputs, split.images[index], train=train), y[index]


def extract_features(conv_base: Any, split: Split, inputs: InputPipeline, batch_size: int) -> Split:
    """conv_base.predict over every image once (no augmentation): the book's extract_features."""
    chunks = [
        np.asarray(conv_base.predict_on_batch(keras_input(inputs, split.images[index], train=False)))
        for index in sequential_batches(len(split), batch_size)
    ]
    return Split(np.concatenate(chunks).astype(np.float32), split.labels, split.classes, split.paths)


def _deterministic_ops() -> None:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


# --- the run -----------------------------------------------------------------------------------------


@dataclass
class Streams:
    """What one epoch pulls: the endless training generator and the persistent validation iterator.

    Validation is not handed to model.fit as a second generator: Keras 3 caches fit's validation
    iterator but restarts its dataset every epoch, which replays the two batches it peeked at first
    and drops whatever tf.data had prefetched, so each epoch would score a different, partly repeated
    set. Here each epoch scores exactly the next `validation_steps` batches of the iterator.
    """

    train: Iterator[tuple[np.ndarray, np.ndarray]]
    steps_per_epoch: int
    validation: Split
    validation_y: np.ndarray
    validation_iterator: KerasIterator
    validation_steps: int
    inputs: InputPipeline

    def next_validation_batches(self) -> list[np.ndarray]:
        return [next(self.validation_iterator) for _ in range(self.validation_steps)]


def image_inputs(config: dict[str, Any]) -> InputPipeline:
    """The PyTorch runs' input pipeline for this config, its augmentation generator seeded as theirs."""
    augmentation, generator = runner._augmentation(config, torch.device("cpu"))
    return InputPipeline("images", config["preprocessing"], config["input_scale"], augmentation, generator)


def make_streams(config: dict[str, Any], train: Split, validation: Split, inputs: InputPipeline) -> Streams:
    """Training generator and validation iterator over the PyTorch loop's own iterators (the same seed streams).

    Where the source trained on arrays (steps None), one epoch is one pass: the iterator's passes have
    exactly that many batches, the last one short, as Keras' array fit. Without validation_steps the
    validation iterator walks the split in order, so every epoch scores every image once.
    """
    batch_size = config["batch_size"]
    settings = FitSettings(
        loss=config["loss"],
        epochs=config["epochs"],
        batch_size=batch_size,
        steps_per_epoch=config["steps_per_epoch"],
        validation_steps=config["validation_steps"],
        seed=config["seed"],
    )
    iterators = _make_iterators(settings, len(train), len(validation))
    val_iterator = iterators.get("validation") or KerasIterator(len(validation), batch_size, shuffle=False)
    n_classes = len(config["classes"])
    train_y = targets(train.labels, config["loss"], n_classes)
    return Streams(
        train=batch_stream(train, train_y, iterators["train"], inputs, train=True),
        steps_per_epoch=config["steps_per_epoch"] or iterators["train"].batches_per_pass(),
        validation=validation,
        validation_y=targets(validation.labels, config["loss"], n_classes),
        validation_iterator=val_iterator,
        validation_steps=config["validation_steps"] or val_iterator.batches_per_pass(),
        inputs=inputs,
    )


def evaluate_batches(
    model: Any, split: Split, y: np.ndarray, batches: list[np.ndarray], inputs: InputPipeline
) -> dict[str, float]:
    """Keras' evaluate over exactly these index batches: loss and accuracy averaged by batch size."""
    stream = batch_stream(split, y, iter(batches), inputs, train=False)
    result = model.evaluate(stream, steps=len(batches), verbose=0, return_dict=True)
    return {"loss": float(result["loss"]), "accuracy": float(result["accuracy"])}


@dataclass
class EpochCheckpoint:
    """checkpoints/keras/<variant>/seed<S>/last.pt after every epoch: the trained model's variables (the
    dropout seed-generator states included), the optimizer's, the validation iterator, the RNGs, the
    history, the config hash and the owner (the MLflow run), as the PyTorch loop's checkpoint.

    The training generator's position is not saved but replayed: Keras pulls a generator ahead of what
    it has trained on (tf.data prefetch), so the saved position would be wrong. A resumed run regenerates
    the epochs' batches it already trained on (index draws and augmentation draws, no model work) and
    continues with the next one, which is the batch the killed run would have trained on.
    """

    path: Path
    config_hash: str
    owner: dict[str, Any]

    def save(self, model: Any, streams: Streams, epoch: int, history: list[dict[str, float]]) -> None:
        ckpt.save_checkpoint(
            self.path,
            {
                "framework": "keras",
                "epoch": epoch,
                "model": [np.asarray(v.numpy()) for v in model.variables],
                "optimizer": [np.asarray(v.numpy()) for v in model.optimizer.variables],
                "validation_iterator": streams.validation_iterator.state_dict(),
                "rng": ckpt.rng_states(),
                "history": list(history),
                "config_hash": self.config_hash,
                "owner": self.owner,
            },
        )

    def restore(self, model: Any, streams: Streams, epochs: int) -> tuple[int, list[dict[str, float]], dict[str, Any]]:
        """(epochs trained, their history rows, the owner that wrote them); (0, [], {}) without a usable checkpoint."""
        state = ckpt.load_checkpoint(self.path, self.config_hash)
        if state is None or state.get("framework") != "keras" or not 0 < int(state["epoch"]) < epochs:
            return 0, [], {}
        model.optimizer.build(model.trainable_variables)
        pairs = ((model.variables, state["model"]), (model.optimizer.variables, state["optimizer"]))
        if any([tuple(v.shape) for v in variables] != [np.shape(x) for x in values] for variables, values in pairs):
            print(f"checkpoint {self.path} does not fit this model; starting from scratch", flush=True)
            return 0, [], {}
        for variables, values in pairs:
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        epoch = int(state["epoch"])
        for _ in range(epoch * streams.steps_per_epoch):
            next(streams.train)
        streams.validation_iterator.load_state_dict(state["validation_iterator"])
        ckpt.set_rng_states(state["rng"])
        return epoch, list(state["history"]), dict(state.get("owner") or {})


class _EpochEnd(keras.callbacks.Callback):
    """Per epoch: validation on the next batches of the persistent iterator, one history row (the runs
    contract), the line the PyTorch loop prints, the checkpoint, and the epoch hooks (MLflow)."""

    def __init__(
        self,
        streams: Streams,
        epochs: int,
        hooks: Sequence[EpochHook],
        checkpoint: EpochCheckpoint | None = None,
        history: Sequence[dict[str, float]] = (),
    ) -> None:
        super().__init__()
        self.streams = streams
        self.epochs = epochs
        self.hooks = hooks
        self.checkpoint = checkpoint
        self.rows: list[dict[str, float]] = list(history)
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        s = self.streams
        val = evaluate_batches(self.model, s.validation, s.validation_y, s.next_validation_batches(), s.inputs)
        row = {"epoch": epoch + 1, "loss": float(logs["loss"]), "accuracy": float(logs["accuracy"])}
        row |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
        self.rows.append(row)
        print(
            f"epoch {epoch + 1}/{self.epochs}: loss {row['loss']:.4f} acc {row['accuracy']:.4f} "
            f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f} "
            f"({time.perf_counter() - self._started:.1f} s)",
            flush=True,
        )
        if self.checkpoint is not None:
            self.checkpoint.save(self.model, s, epoch + 1, self.rows)
        for hook in self.hooks:
            hook(row)


def fit(
    model: Any,
    streams: Streams,
    epochs: int,
    hooks: Sequence[EpochHook],
    checkpoint: EpochCheckpoint | None = None,
    on_resume: Callable[[dict[str, Any], int], None] | None = None,
) -> list[dict[str, float]]:
    """The book's fit_generator call in Keras 3: model.fit on the generator with steps_per_epoch; the
    validation_steps batches are scored at each epoch's end (see Streams). One history row per epoch.
    With a checkpoint of the same config, training continues after its epoch with every state restored."""
    start, history, owner = checkpoint.restore(model, streams, epochs) if checkpoint else (0, [], {})
    if start:
        ckpt.announce_resume(checkpoint.path, start, owner, history, hooks, on_resume)  # type: ignore[union-attr]
    callback = _EpochEnd(streams, epochs, hooks, checkpoint, history)
    model.fit(
        streams.train,
        steps_per_epoch=streams.steps_per_epoch,
        epochs=epochs,
        initial_epoch=start,
        shuffle=False,  # the generator shuffles, as flow_from_directory did
        callbacks=[callback],
        verbose=0,
    )
    return callback.rows


def score(model: Any, split: Split, inputs: InputPipeline, config: dict[str, Any]) -> dict[str, Any]:
    """Every image of the split once: Keras' evaluate (loss, accuracy) and predict (labels for the confusion matrix)."""
    batch_size = config["batch_size"]
    batches = list(sequential_batches(len(split), batch_size))
    y = targets(split.labels, config["loss"], len(config["classes"]))
    result = evaluate_batches(model, split, y, batches, inputs)
    stream = batch_stream(split, y, iter(batches), inputs, train=False)
    outputs = np.asarray(model.predict(stream, steps=len(batches), verbose=0))
    predictions = (outputs[:, 0] > 0.5).astype(np.int64) if outputs.shape[1] == 1 else outputs.argmax(1)
    return {
        "loss": result["loss"],
        "accuracy": float(np.mean(predictions == split.labels)),
        "predictions": predictions,
        "targets": split.labels,
    }


def train_variant(
    config: dict[str, Any],
    *,
    checkpoint_root: str | Path = "checkpoints",
    hooks: tuple[EpochHook, ...] = (),
    owner: dict[str, Any] | None = None,
    on_resume: Callable[[dict[str, Any], int], None] | None = None,
) -> KerasRunResult:
    """Train one (variant, seed) in Keras to the end and score it. prepare(config) must have run.

    `owner` is saved with each checkpoint; a run resuming from one calls `on_resume(its owner, epoch)`.
    """
    from cnnrepro.keras_impl import models, optim

    keras.utils.set_random_seed(config["seed"])
    _deterministic_ops()
    if keras.backend.backend() == "tensorflow":
        from cnnrepro.training.precision import set_tensorflow_precision

        set_tensorflow_precision(config.get("precision", "fp32"))
    if config["num_threads"] > 0:
        torch.set_num_threads(config["num_threads"])
    splits = runner.load_splits(config)
    print("data: " + ", ".join(f"{name} {len(s)}" for name, s in splits.items() if s is not None), flush=True)
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    if validation is None or train is None:
        raise CnnreproError(f"{config['data_dir']}: no training or validation split")
    started = time.perf_counter()
    model = build_model(config)
    images = image_inputs(config)

    trained, inputs = model, images
    if config["training_data"] == "vgg16_features":
        print("extracting VGG16 features once per image ...", flush=True)
        conv_base, bs = model.layers[0], config["batch_size"]
        train, validation = (extract_features(conv_base, s, images, bs) for s in (train, validation))
        test = extract_features(conv_base, test, images, bs) if test is not None else None
        trained, inputs = models.feature_head(model), InputPipeline("features")

    trained.compile(
        optimizer=optim.make_optimizer(config["optimizer"], config["learning_rate"]),
        loss=optim.make_loss(config["loss"], config["variant"]),
        metrics=["accuracy"],
    )
    checkpoint = EpochCheckpoint(
        ckpt.checkpoint_path(checkpoint_root, config["framework"], config["variant"], config["seed"]),
        ckpt.config_hash(config),
        dict(owner or {}),
    )
    streams = make_streams(config, train, validation, inputs)
    history = fit(trained, streams, config["epochs"], hooks, checkpoint, on_resume)
    train_duration = time.perf_counter() - started

    # The final model on every image of the test split once (the validation split where there is none).
    scored, split_name = (test, "test") if test is not None else (validation, "validation")
    final = score(trained, scored, inputs, config)
    metrics, confusion = summarize_final(history, final, list(config["classes"]), split_name, test is not None)
    return KerasRunResult(history, metrics, confusion, model, train_duration)


# --- outputs -----------------------------------------------------------------------------------------


def package_versions() -> dict[str, str | None]:
    versions = runner.package_versions()
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["keras_backend"] = keras.backend.backend()
    return versions


def write_outputs(
    out: str | Path, config: dict[str, Any], info: runner.RunInfo, result: KerasRunResult | None
) -> RunMetrics:
    """artifacts/ (whole or not at all: fidelity.json, model.keras, confusion.json), then the three run files."""
    info.packages = package_versions()
    info.device = config["device"]  # resolved by prepare(), after the command created `info`
    return runner.write_outputs(
        out,
        config,
        info,
        result,
        entries=ledger.entries_for(config),
        save=lambda model, path: model.save(path),
        model_file=MODEL_FILE,
    )
