"""A run's config resolved ONCE, from params + variant + ablation + the command line, on the device its
framework's backend resolves: what `cnnrepro train`, the bench and the plan all build a run from."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnrepro.train.ablations import apply_ablation, get_ablation
from cnnrepro.train.engine.run_config import RunConfig, resolve_run_config

if TYPE_CHECKING:
    from cnnrepro.train.engine.backend import Backend


def configure_run(
    params: Mapping[str, Any],
    *,
    framework: str,
    variant: str,
    seed: int,
    data_dir: str | Path,
    out_dir: str | Path,
    init_from: str | Path | None = None,
    ablation: str | None = None,
    backend: Backend | None = None,
    device: str | None = None,
) -> RunConfig:
    """The documented spec, train.overrides.<variant>, the backend's device for train.device (or `device`,
    already resolved), then the named ablation (params ablations.definitions) as a replace of that config."""
    if device is None:
        if backend is None:
            from cnnrepro.train.backends import load_backend

            backend = load_backend(framework, str(params["train"]["device"]))
        train = params["train"]
        device = backend.resolve_device(
            str(train["device"]), runs_per_gpu=int(train.get("runs_per_gpu", 1)), num_threads=int(train["num_threads"])
        )
    config = resolve_run_config(
        params,
        framework=framework,
        variant=variant,
        seed=seed,
        data_dir=data_dir,
        out_dir=out_dir,
        device=device,
        init_from=init_from,
    )
    return apply_ablation(config, get_ablation(params, ablation)) if ablation is not None else config
