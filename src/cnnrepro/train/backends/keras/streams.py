"""What a Keras run pulls: the PyTorch-built inputs (the same decoded arrays, Keras-iterator indices and
augmentation draws as the PyTorch runs) as channels-last arrays, the training generator and the
persistent validation iterator, and the final scoring of a split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnrepro.mappings import JsonObject
from cnnrepro.train.engine.epochs import KerasIterator, make_iterators, sequential_batches
from cnnrepro.train.engine.images import Split
from cnnrepro.train.engine.run_config import RunConfig
from cnnrepro.train.inputs.pipeline import InputPipeline, augmentation


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


def image_inputs(config: RunConfig) -> InputPipeline:
    """The PyTorch runs' input pipeline for this config, its augmentation generator seeded as theirs."""
    spec, generator = augmentation(config, torch.device("cpu"))
    return InputPipeline("images", config.inputs.preprocessing, config.inputs.input_scale, spec, generator)


def make_streams(config: RunConfig, train: Split, validation: Split, inputs: InputPipeline) -> Streams:
    """Training generator and validation iterator over the PyTorch loop's own iterators (the same seed streams).

    Where the source trained on arrays (steps None), one epoch is one pass: the iterator's passes have
    exactly that many batches, the last one short, as Keras' array fit. Without validation_steps the
    validation iterator walks the split in order, so every epoch scores every image once.
    """
    batch_size = config.training.batch_size
    iterators = make_iterators(config.seed, batch_size, config.training.validation_steps, len(train), len(validation))
    val_iterator = iterators.get("validation") or KerasIterator(len(validation), batch_size, shuffle=False)
    n_classes = len(config.data.classes)
    train_y = targets(train.labels, config.training.loss, n_classes)
    return Streams(
        train=batch_stream(train, train_y, iterators["train"], inputs, train=True),
        steps_per_epoch=config.training.steps_per_epoch or iterators["train"].batches_per_pass(),
        validation=validation,
        validation_y=targets(validation.labels, config.training.loss, n_classes),
        validation_iterator=val_iterator,
        validation_steps=config.training.validation_steps or val_iterator.batches_per_pass(),
        inputs=inputs,
    )


def evaluate_batches(
    model: Any, split: Split, y: np.ndarray, batches: list[np.ndarray], inputs: InputPipeline
) -> dict[str, float]:
    """Keras' evaluate over exactly these index batches: loss and accuracy averaged by batch size."""
    stream = batch_stream(split, y, iter(batches), inputs, train=False)
    result = model.evaluate(stream, steps=len(batches), verbose=0, return_dict=True)
    return {"loss": float(result["loss"]), "accuracy": float(result["accuracy"])}


def score(
    model: Any, split: Split, inputs: InputPipeline, config: RunConfig, batch_size: int | None = None
) -> JsonObject:
    """Every image of the split once: Keras' evaluate (loss, accuracy) and predict (labels for the confusion matrix)."""
    batches = list(sequential_batches(len(split), batch_size or config.training.batch_size))
    y = targets(split.labels, config.training.loss, len(config.data.classes))
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
