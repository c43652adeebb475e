"""Ablations: named departures from the faithful settings, applied to a resolved run config.

An ablation is declared once in params.yaml (`ablations.definitions.<name>`): the variants it applies
to, a description, and `settings`, run-config keys and the values they take instead of the faithful
ones (`variant_settings.<variant>` replaces some of them for one variant). `apply_ablation` takes the
RunConfig `resolve_run_config` built and returns a replace of it (RunConfig.with_settings), with an
AblationRecord of what changed; nothing else in the training code knows ablations exist.

Rules, in code here and nowhere else:
- a setting whose faithful value is None does not apply to that variant (resize_filter of an MNIST run,
  augmentation_draws without augmentation) and is skipped; an ablation that then changes nothing for a
  variant is refused;
- a few settings have a twin the trainers read (augmentation.semantics, input_scale under caffe):
  RunConfig.with_settings keeps them in step; mixed_precision is derived;
- where a framework has no meaning for a setting (PyTorch's default init in Keras, bf16 in the Keras
  trainer) or the device has none (TF32/bf16 on a CPU), the run is written as not_run with the reason:
  the job exists in both DAGs and the report says why it has no figure;
- fine_tuning under an ablation continues from feature_extraction_augmented under the SAME ablation
  (its run directory is `run_dir(..., ablation)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import JsonObject
from cnnrepro.train.engine.run_config import ABLATABLE, AblationChange, AblationRecord, RunConfig

# (key, value) pairs the Keras trainer cannot express: its job is written as not_run with this reason.
KERAS_UNSUPPORTED: dict[tuple[str, Any], str] = {
    ("weight_init", "torch_default"): "PyTorch's default initialization has no Keras meaning",
    ("optimizer", "rmsprop_torch"): "torch.optim.RMSprop's defaults have no Keras meaning",
    ("augmentation_draws", "per_batch"): "a quick PyTorch port's batch-wide augmentation draw is a PyTorch choice",
    ("precision", "bf16"): "the Keras trainer runs float32 only (no bf16 policy implemented)",
}
CUDA_ONLY = {("precision", "tf32"): "TF32", ("precision", "bf16"): "bf16 autocast"}
RUN_DIR_PREFIX = "ablation-"


@dataclass(frozen=True)
class Ablation:
    name: str
    description: str
    variants: tuple[str, ...]
    settings: Mapping[str, Any]
    variant_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def settings_for(self, variant: str) -> JsonObject:
        return dict(self.settings) | dict(self.variant_settings.get(variant) or {})


def definitions(params: Mapping[str, Any]) -> dict[str, Ablation]:
    """Every ablation declared in params.yaml, checked (values, variants) with one-line errors."""
    from cnnrepro.variants.registry import list_variants

    known_variants = set(list_variants())
    result = {}
    for name, raw in ((params.get("ablations") or {}).get("definitions") or {}).items():
        where = f"params.yaml: ablations.definitions.{name}"
        for variant in [*raw["variants"], *(raw.get("variant_settings") or {})]:
            if variant not in known_variants:
                raise CnnreproError(f"{where}: unknown variant {variant!r}")
        ablation = Ablation(
            name=name,
            description=str(raw["description"]).strip(),
            variants=tuple(raw["variants"]),
            settings=dict(raw.get("settings") or {}),
            variant_settings={k: dict(v or {}) for k, v in (raw.get("variant_settings") or {}).items()},
        )
        for variant in ablation.variants:
            for key, value in ablation.settings_for(variant).items():
                if key not in ABLATABLE:
                    raise CnnreproError(f"{where}: {key!r} is not an ablatable run-config key ({', '.join(ABLATABLE)})")
                if value not in ABLATABLE[key]:
                    raise CnnreproError(
                        f"{where}: {key}: {value!r} is not one of {', '.join(map(str, ABLATABLE[key]))}"
                    )
        result[name] = ablation
    return result


def get_ablation(params: Mapping[str, Any], name: str) -> Ablation:
    known = definitions(params)
    if name not in known:
        raise CnnreproError(f"unknown ablation {name!r} (known: {', '.join(known) or 'none in params.yaml'})")
    return known[name]


def run_dir(root: str | Path, framework: str, variant: str, seed: int, ablation: str | None = None) -> Path:
    """runs/<framework>/<variant>/seed<S>, or runs/<framework>/<variant>/ablation-<name>/seed<S>."""
    base = Path(root) / framework / variant
    return (base / f"{RUN_DIR_PREFIX}{ablation}" if ablation else base) / f"seed{seed}"


def checkpoint_root(root: str | Path, ablation: str | None) -> Path:
    """Checkpoints of an ablation run never meet the faithful run's: checkpoints/ablation-<name>/..."""
    return Path(root) / f"{RUN_DIR_PREFIX}{ablation}" if ablation else Path(root)


def apply_ablation(config: RunConfig, ablation: Ablation) -> RunConfig:
    """The resolved config with the ablation's settings, as a replace; config.ablation records what changed."""
    variant = config.variant
    if variant not in ablation.variants:
        raise CnnreproError(
            f"ablation {ablation.name} does not apply to {variant} (it applies to: {', '.join(ablation.variants)})"
        )
    changes: dict[str, AblationChange] = {}
    for key, value in ablation.settings_for(variant).items():
        faithful = config.setting(key)
        if faithful is None or faithful == value:
            continue  # not applicable to this variant, or already the faithful value
        changes[key] = AblationChange(faithful=faithful, ablation=value)
    if not changes and config.init_from is None:
        raise CnnreproError(f"ablation {ablation.name} changes nothing for {variant}")
    changed = config.with_settings(**{key: change.ablation for key, change in changes.items()})
    return replace(changed, ablation=AblationRecord(ablation.name, ablation.description, changes))


def not_runnable_reason(config: RunConfig) -> str | None:
    """Why this ablation run cannot mean anything here (framework or device), or None."""
    ablation = config.ablation
    if ablation is None:
        return None
    for key, change in ablation.changes.items():
        value = change.ablation
        if config.framework == "keras" and (key, value) in KERAS_UNSUPPORTED:
            return f"ablation {ablation.name} in Keras: {KERAS_UNSUPPORTED[(key, value)]} ({key}={value})"
        if (key, value) in CUDA_ONLY and not config.runtime.on_gpu:
            device = config.runtime.device
            return f"ablation {ablation.name}: {CUDA_ONLY[(key, value)]} exists on CUDA GPUs only (device {device})"
    return None


def ledger_entries(config: RunConfig) -> list[dict[str, str]]:
    """One fidelity-ledger departure per changed key of an ablation run."""
    ablation = config.ablation
    if ablation is None:
        return []
    return [
        {
            "id": f"ablation_{ablation.name}_{key}",
            "setting": key,
            "source": str(change.faithful),
            "port": str(change.ablation),
            "reason": f"ablation {ablation.name}: {ablation.description}",
        }
        for key, change in ablation.changes.items()
    ]


def stage_group(variant: str) -> str:
    """The train.variants group (DAG stage) that trains a variant: it decides the data a job reads."""
    from cnnrepro.variants.registry import get_variant

    return get_variant(variant).data_group  # the registry owns it


def planned_runs(params: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(group, variant, ablation) the pipeline trains: ablations.run as written (dvc.yaml's matrix cannot
    filter it, so neither does Snakemake), checked against the definitions."""
    from cnnrepro.variants.registry import get_variant

    known = definitions(params)
    planned = []
    for group, entries in ((params.get("ablations") or {}).get("run") or {}).items():
        for entry in entries or []:
            variant, name = entry["variant"], entry["ablation"]
            where = f"params.yaml: ablations.run.{group}: {variant}/{name}"
            if name not in known:
                raise CnnreproError(f"{where}: unknown ablation (known: {', '.join(known)})")
            if variant not in known[name].variants:
                raise CnnreproError(f"{where}: the ablation does not apply to {variant}")
            if stage_group(variant) != group:
                raise CnnreproError(f"{where}: {variant} is trained by the {stage_group(variant)} stage")
            planned.append((group, variant, name))
    for _, variant, name in planned:
        parent = get_variant(variant).continues_from
        if parent and (stage_group(parent), parent, name) not in planned:
            raise CnnreproError(
                f"params.yaml: ablations.run: {variant}/{name} continues from {parent}/{name}, which is not planned"
            )
    return planned


def check_continues_from(config: RunConfig) -> None:
    """fine_tuning under an ablation continues from feature_extraction_augmented under the same one."""
    if config.init_from is None:
        return
    from cnnrepro.run_outputs import RunInfo

    if not (Path(config.init_from) / "run_info.json").is_file():
        return  # the trainer's own check names the missing run
    previous_ablation = RunConfig.from_record(
        RunInfo.read(config.init_from).config, f"{config.init_from}/run_info.json: config"
    ).ablation
    previous = previous_ablation.name if previous_ablation else None
    current = config.ablation.name if config.ablation else None
    if previous != current:
        raise CnnreproError(
            f"{config.init_from}: --init-from is a run under ablation {previous or 'none (faithful)'}; "
            f"this run is under {current or 'none (faithful)'}"
        )
