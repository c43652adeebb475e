"""The fidelity ledger of the PyTorch runs: where the PyTorch port itself departs from its sources (layout,
losses computed on logits, its own seeded RNG streams, CUDA's kernels, autocast) and one entry that copies
what ran where it differs from what the source's text says (vgg16_base_trained_as_2_0_8_ran), with the
evidence. The entries both frameworks share are cnnrepro.train.ledger's."""

from __future__ import annotations

from cnnrepro.train import ledger
from cnnrepro.train.engine.run_config import Prepared, RunConfig
from cnnrepro.train.ledger import ALL, BINARY, KERAS_MNIST, LedgerEntry

TORCH_LEDGER: tuple[LedgerEntry, ...] = (
    LedgerEntry(
        "layout_nchw",
        ALL,
        "tensor layout",
        "channels-last (N, H, W, C); Flatten orders features (h, w, c)",
        "channels-first (N, C, H, W); Flatten orders features (c, h, w)",
        "PyTorch's native layout. For a Dense layer trained from scratch this only permutes its input rows "
        "(same function class, same i.i.d. init); the VGG16 kernels are transposed exactly, not approximated.",
    ),
    LedgerEntry(
        "bce_with_logits",
        BINARY,
        "output and loss",
        "Dense(1, sigmoid) + binary_crossentropy on probabilities clipped to [1e-7, 1-1e-7]",
        "linear Dense(1) + BCEWithLogitsLoss on the logit; accuracy = logit > 0",
        "numerically stable form of the same loss: identical value and gradient while |logit| < 16.1; beyond "
        "that Keras' clip zeroes the gradient and this keeps a small one. Predictions (p > 0.5) are identical.",
    ),
    LedgerEntry(
        "ce_with_logits",
        KERAS_MNIST,
        "output and loss",
        "Dense(10, softmax) + categorical_crossentropy on one-hot labels, probabilities clipped at 1e-7",
        "linear Dense(10) + CrossEntropyLoss on logits and integer labels",
        "the same loss computed stably; differs only where Keras' clip saturates (p < 1e-7 on the true class).",
    ),
    LedgerEntry(
        "random_draws",
        ALL,
        "random number streams",
        "Keras/TF or d2l/PyTorch global RNGs, unseeded (weights, data order, dropout, augmentation)",
        "PyTorch RNG seeded with the run seed (weights, dropout); a numpy PCG64 stream per data iterator "
        "and a torch.Generator for augmentation, all derived from the seed",
        "same distributions, different draws: a run is repeatable, and seeds stand in for the sources' "
        "run-to-run variation.",
    ),
    LedgerEntry(
        "vgg16_base_trained_as_2_0_8_ran",
        ("feature_extraction_augmented",),
        "VGG16 base during feature_extraction_augmented",
        "the text and code freeze it (conv_base.trainable = False), but Keras 2.0.8 ignored the flag of a model "
        "nested in a Sequential and trained all 13 conv layers + head at lr 2e-5 (fixed in Keras 2.1.0, commit "
        "c25fa38, 'Fix issue with dynamic trainability API when first layer in a Sequential is a model')",
        "the whole base trained with the head (trainable 'all'): the run behind the documented 96%; the frozen "
        "base the text intends is the ablation frozen_base",
        "evidence: the notebook's epoch times, 71-74 s for this 'frozen' run vs 32-33 s for fine-tuning with only "
        "block5 trainable (a frozen base would be the faster one); users on Keras >= 2.1 report about 90% "
        "(deep-learning-with-python-notebooks #21, #75, #93; keras-team/keras #8792). The per-layer flags of "
        "fine_tuning did take effect, so fine_tuning trains block5 + head as written.",
        when=lambda c: c.training.trainable == "all",
    ),
    LedgerEntry(
        "cuda_nondeterminism",
        ALL,
        "determinism",
        "whatever the source's GPU/CPU did (not bitwise reproducible on GPU either)",
        "CUDA with cuDNN's default (nondeterministic) algorithms",
        "deterministic cuDNN kernels are slower; CPU runs of this port are bitwise repeatable, CUDA runs are not.",
        when=lambda c: c.runtime.on_cuda,
    ),
    LedgerEntry(
        "bf16_autocast",
        ALL,
        "arithmetic precision",
        "float32 throughout",
        "bfloat16 autocast for the forward pass on CUDA (train.precision bf16); loss and weights float32",
        "chosen in params for speed; bf16 has an 8-bit mantissa.",
        when=lambda c: c.mixed_precision,
    ),
)


def entries_for(config: RunConfig, prepared: Prepared | None = None) -> list[dict[str, str]]:
    """The ledger entries of one resolved PyTorch run config, overrides and ablation included (nothing the
    PyTorch backend prepares changes them)."""
    return ledger.entries_for(config, TORCH_LEDGER)
