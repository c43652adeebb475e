"""The sources' optimizers and losses in Keras 3.

Keras 3's own RMSprop is not the book's: it divides by sqrt(a + 1e-7), where Keras 2.0.8 divided by
sqrt(a) + 1e-8. Wherever g^2 is small the two differ a lot (a gradient of 1e-4 gets a step about
10x smaller from Keras 3), so the Keras side does not use keras.optimizers.RMSprop for the book's
variants but `Keras2RMSprop`, a Keras optimizer with the 2.0.8 rule. The CAM example ran on Keras
>= 2.11, so it keeps keras.optimizers.RMSprop as is. Both are checked against the PyTorch port's
optimizers (cnnrepro.train.backends.torch.optimizers), step for step, in tests/test_keras_parity.py.
"""

from __future__ import annotations

from typing import Any

from cnnrepro.mappings import Params
from cnnrepro.train.backends.keras import import_keras
from cnnrepro.train.backends.keras.models import LOGIT_OUTPUTS
from cnnrepro.train.engine.optimizers import KERAS2_EPSILON, KERAS2_RHO, KERAS3_EPSILON, KERAS3_RHO, OPTIMIZERS

keras = import_keras()
ops = keras.ops


@keras.saving.register_keras_serializable(package="cnnrepro")
class Keras2RMSprop(keras.optimizers.Optimizer):
    """Keras 2.0.8 RMSprop: a = rho*a + (1-rho)*g^2 from a = 0; p -= lr * g / (sqrt(a) + epsilon).

    No momentum, not centered, as the book's `optimizers.RMSprop(lr=...)`.
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        rho: float = KERAS2_RHO,
        epsilon: float = KERAS2_EPSILON,
        name: str = "keras2_rmsprop",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = rho
        self.epsilon = epsilon

    def build(self, var_list: list[Any]) -> None:
        if self.built:
            return
        super().build(var_list)
        self._accumulators = [self.add_variable_from_reference(v, "accumulator") for v in var_list]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        self.assign(
            accumulator, ops.add(ops.multiply(self.rho, accumulator), ops.multiply(1 - self.rho, ops.square(gradient)))
        )
        self.assign_sub(variable, ops.divide(ops.multiply(lr, gradient), ops.add(ops.sqrt(accumulator), self.epsilon)))

    def get_config(self) -> Params:
        return super().get_config() | {"rho": self.rho, "epsilon": self.epsilon}


def make_optimizer(name: str, learning_rate: float) -> Any:
    """The optimizer a variant names (the names of cnnrepro.train.backends.torch.optimizers, same update rules)."""
    if name == "rmsprop_keras2":
        return Keras2RMSprop(learning_rate=learning_rate)
    if name == "rmsprop_keras3":
        return keras.optimizers.RMSprop(learning_rate=learning_rate, rho=KERAS3_RHO, epsilon=KERAS3_EPSILON)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate)
    raise ValueError(f"unknown optimizer {name!r} (known: {', '.join(OPTIMIZERS)})")


def make_loss(loss: str, variant: str) -> Any:
    """The source's loss: the name the book compiles with; from logits only where the model outputs logits."""
    if loss not in ("binary_crossentropy", "categorical_crossentropy"):
        raise ValueError(f"unknown loss {loss!r}")
    if variant in LOGIT_OUTPUTS:
        return keras.losses.CategoricalCrossentropy(from_logits=True)
    return loss
