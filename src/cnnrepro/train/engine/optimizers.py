"""The optimizers a variant may name and their sources' constants; each backend implements these update
rules (cnnrepro.train.backends.torch.optimizers for PyTorch, cnnrepro.train.backends.keras.optimizers for Keras)."""

from __future__ import annotations

KERAS2_RHO = 0.9
KERAS2_EPSILON = 1e-8
KERAS3_RHO = 0.9
KERAS3_EPSILON = 1e-7
# "rmsprop_torch" (torch.optim.RMSprop defaults) is PyTorch-only: the ablation naive_torch_port names it.
OPTIMIZERS = ("rmsprop_keras2", "rmsprop_keras3", "rmsprop_torch", "sgd")
