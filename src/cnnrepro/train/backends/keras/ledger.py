"""The fidelity ledger of the Keras runs: where the Keras 3 side departs from the sources, and how it
matches the book where Keras 3 itself changed (the RMSprop rule). The entries both frameworks share are
cnnrepro.train.ledger's; the PyTorch port's own (NCHW, losses on logits, autocast) do not apply to a Keras
run, which builds the sources' models literally in channels-last Keras layers.
No TensorFlow import here: run_info and the report can use it anywhere.
"""

from __future__ import annotations

from cnnrepro.train import ledger
from cnnrepro.train.engine.run_config import Prepared, RunConfig
from cnnrepro.train.ledger import ALL, BINARY, BOOK, KERAS_MNIST, LedgerEntry

KERAS_LEDGER: tuple[LedgerEntry, ...] = (
    LedgerEntry(
        "keras3_framework",
        ALL,
        "framework version",
        "Keras 2.0.8 on TensorFlow 1.x (the book); tf.keras >= 2.10 (the CAM example); PyTorch (d2l's LeNet)",
        "Keras 3 (its backend: TensorFlow on a CPU, torch where the run is on CUDA, or $KERAS_BACKEND; "
        "run_info prepared.keras_backend), the models built layer for layer as the sources list them, channels-last",
        "the book's framework, to tell a framework effect from a real one; the version is recorded in run_info.",
    ),
    LedgerEntry(
        "keras2_rmsprop_rule",
        (*BOOK, *KERAS_MNIST),
        "RMSprop update rule",
        "Keras 2.0.8 RMSprop: p -= lr * g / (sqrt(a) + 1e-8), rho 0.9",
        "cnnrepro.train.backends.keras.optimizers.Keras2RMSprop, a Keras 3 optimizer with exactly that rule; "
        "keras.optimizers.RMSprop of Keras 3 (p -= lr * g / sqrt(a + 1e-7)) is not used for these variants",
        "Keras 3 moved epsilon inside the root, which shrinks every step where g^2 is below ~1e-6 "
        "(10x for a gradient of 1e-4); matched to the PyTorch port to 1e-5 after one step (tests).",
    ),
    LedgerEntry(
        "keras3_crossentropy_logits",
        (*BINARY, *KERAS_MNIST),
        "output and loss",
        "Keras 2.0.8 binary/categorical_crossentropy on the sigmoid/softmax output, probabilities clipped "
        "to [1e-7, 1-1e-7]",
        "the same layers and loss names; Keras 3's TensorFlow backend computes the loss from the output "
        "layer's logits (no clip) whenever the output comes from a sigmoid/softmax",
        "Keras 3's own behaviour, kept: it equals the PyTorch port's with-logits loss and differs from 2.0.8 "
        "only where the clip saturated (|logit| > 16.1). Predictions (p > 0.5, argmax) are identical.",
    ),
    LedgerEntry(
        "keras_random_draws",
        ALL,
        "random number streams",
        "Keras/TF or d2l/PyTorch global RNGs, unseeded (weights, data order, dropout, augmentation)",
        "keras.utils.set_random_seed(seed) for weights and dropout; the data order and the augmentation "
        "draws are the PyTorch runs' of the same seed (the same numpy and torch.Generator streams)",
        "same distributions, different draws from the sources; across frameworks a seed differs only in "
        "the initial weights and dropout masks.",
    ),
    LedgerEntry(
        "keras_lenet_transcription",
        ("lenet",),
        "framework of the source",
        "d2l's PyTorch LeNet: nn.Sequential, PyTorch's uniform(+-1/sqrt(fan_in)) biases, CrossEntropyLoss "
        "on logits, torch SGD",
        "Keras Conv2D/AveragePooling2D/Dense with glorot_uniform kernels and RandomUniform(+-1/sqrt(fan_in)) "
        "biases, CategoricalCrossentropy(from_logits=True) on one-hot labels, keras SGD",
        "a Keras transcription of a PyTorch source, for the framework comparison; the same function and update rule.",
    ),
    LedgerEntry(
        "keras3_trainable_base",
        ("feature_extraction_augmented",),
        "VGG16 base during feature_extraction_augmented (Keras 3)",
        "Keras 2.0.8 ran `conv_base.trainable = False` without effect (base nested in a Sequential; fixed "
        "in Keras 2.1.0, commit c25fa38) and trained all 13 conv layers + head",
        "the base is left trainable on purpose (no `conv_base.trainable = False` call): Keras 3 honours the flag, "
        "so writing the book's line would freeze the base and copy the text instead of what ran",
        "the documented 96% came from the trained base (notebook epoch times 71-74 s vs 32-33 s for fine-tuning; "
        "user reports deep-learning-with-python-notebooks #21, #75, #93, keras-team/keras #8792); "
        "the frozen base is the ablation frozen_base.",
        when=lambda c: c.training.trainable == "all",
    ),
    LedgerEntry(
        "keras_augmentation_input",
        ("augmentation", "feature_extraction_augmented", "fine_tuning", "cam_convnet"),
        "augmentation in the Keras run",
        "ImageDataGenerator (the book) / RandomFlip + RandomRotation layers (the CAM example)",
        "each NumPy batch goes through cnnrepro.train.inputs.augment on the CPU before it reaches the Keras model",
        "one augmentation engine for both frameworks, so a framework difference is not an augmentation one.",
    ),
    LedgerEntry(
        "keras_torch_backend",
        ALL,
        "Keras backend and kernels",
        "Keras 2.0.8 on TensorFlow 1.x (the book); tf.keras (the CAM example); PyTorch (d2l's LeNet)",
        "Keras 3 on its torch backend (chosen where the run is on CUDA, as the locks hold CUDA torch and no CUDA "
        "TensorFlow; or by $KERAS_BACKEND): its convolutions and matmuls are PyTorch's kernels (on CUDA cuDNN's, "
        "default nondeterministic algorithms); losses on the sigmoid/softmax output clipped to [1e-7, 1-1e-7], "
        "as Keras 2.0.8 computed them (no keras3_crossentropy_logits)",
        "Keras on the GPU where there is one. The framework comparison then shares the kernels with the PyTorch "
        "port: a Keras-vs-PyTorch difference is the code's (layers, init, optimizer, loss form), not the kernels'.",
    ),
)


# Entries that hold only on one Keras backend (Prepared.keras_backend).
BACKEND_ONLY = {"keras3_crossentropy_logits": "tensorflow", "keras_torch_backend": "torch"}


def entries_for(config: RunConfig, prepared: Prepared | None = None) -> list[dict[str, str]]:
    """The ledger entries of one resolved Keras run config, overrides and ablation included."""
    backend = prepared.keras_backend if prepared is not None else None
    own = tuple(e for e in KERAS_LEDGER if BACKEND_ONLY.get(e.id, backend) == backend)
    return ledger.entries_for(config, own)
