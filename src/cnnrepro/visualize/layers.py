"""Reading a network by its Keras layer names: find a layer, capture its output, stop the forward pass there.

The models keep Keras' names (`conv2d_1`, `block3_conv1`) and each conv layer owns its ReLU, so a
layer's output here is the tensor Keras calls that layer's output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from cnnrepro.errors import CnnreproError


class _Stop(Exception):
    """Raised by a hook once every wanted output is captured, to skip the rest of the network."""


def layer_names(model: nn.Module) -> list[str]:
    """The short names of the leaf layers, in forward order (conv2d_1, max_pooling2d_1, ...)."""
    return [name.rsplit(".", 1)[-1] for name, module in model.named_modules() if name and not list(module.children())]


def find_layer(model: nn.Module, name: str, where: str = "layer") -> nn.Module:
    """The module called `name`: a full dotted name (conv_base.block5_conv3) or a unique short one (block5_conv3)."""
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    matches = [module for full, module in modules.items() if full.rsplit(".", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(layer_names(model))
    raise CnnreproError(f"{where}: no layer {name!r} in {type(model).__name__} (layers: {known})")


def capture(
    model: nn.Module, x: torch.Tensor, names: Sequence[str], *, stop: bool = True, where: str = "layer"
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """(model output, {name: that layer's output}) for input x.

    stop=True ends the forward pass as soon as the last wanted layer has run (the output is then None),
    so reading early layers of a large network costs only those layers.
    """
    found: dict[str, torch.Tensor] = {}
    remaining = set(names)

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            found[name] = output
            remaining.discard(name)
            if stop and not remaining:
                raise _Stop

        return hook

    modules = [find_layer(model, name, where) for name in names]  # every name checked before any hook is set
    handles = [module.register_forward_hook(hook_for(name)) for module, name in zip(modules, names, strict=True)]
    output = None
    try:
        output = model(x)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return output, found


def truncated(
    model: nn.Module, name: str, where: str = "layer", *, pre_activation: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> the output of layer `name`, computing nothing after it.

    pre_activation=True gives a conv layer's output before its own ReLU (the layer's input is
    captured and convolved again, without the activation).
    """
    layer = find_layer(model, name, where)  # fail on a bad name before any work
    if pre_activation and not isinstance(layer, nn.Conv2d):
        raise CnnreproError(f"{where}: {name!r} is a {type(layer).__name__}, not a conv layer")

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not pre_activation:
            return capture(model, x, [name], where=where)[1][name]
        inputs: list[torch.Tensor] = []

        def pre_hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            inputs.append(args[0])
            raise _Stop

        handle = layer.register_forward_pre_hook(pre_hook)
        try:
            model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        return nn.Conv2d.forward(layer, inputs[0])  # the plain convolution: Keras' Conv2D without its activation

    return forward
