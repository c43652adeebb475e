"""params' visualize section resolved once for this machine: the seed and runs the figures come from, the
device, and the filter-ascent budget (the cpu block on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnrepro.mappings import JsonObject, Params


@dataclass
class Settings:
    """params' visualize section resolved for this machine."""

    seed: int
    trained: frozenset[str]  # every variant in train.variants
    frameworks: tuple[str, ...]
    device: torch.device
    section: Params
    grid: int
    iterations: int
    step: float
    vgg16: JsonObject
    tracking_uri: str
    key: str  # how errors name the section: '<params file>: visualize'

    @classmethod
    def from_params(cls, params: Params, source: str = "params.yaml") -> Settings:
        from cnnrepro.tracking.store import tracking_settings
        from cnnrepro.train.backends.torch.devices import resolve_device

        train = params["train"]
        section = params["visualize"]
        device = resolve_device(train["device"])
        # The book's budget on a GPU; the cpu block keeps a CPU-only stage to seconds (recorded in index.json).
        budget = section["filters"]["cpu"] if device.type == "cpu" else section["filters"]
        return cls(
            seed=int(train["seeds"][0]),
            trained=frozenset(v for group in train["variants"].values() for v in group),
            frameworks=tuple(train["frameworks"]),
            device=device,
            section=section,
            grid=int(budget["grid"]),
            iterations=int(budget["iterations"]),
            step=float(budget["step"]),
            vgg16=dict(train["vgg16"]),
            tracking_uri=tracking_settings(params)[0],
            key=f"{source}: visualize",
        )
