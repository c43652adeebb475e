"""Fidelity ledger, per-variant overrides, environment and the per-run index (MLflow ids), from run_info.json."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import JsonObject, Params
from cnnrepro.report.collect import RunSlot

FIDELITY_FIELDS = ("id", "setting", "source", "port", "reason")
# Where `mlflow ui` serves by default (and `make mlflow-ui` without PORT).
DEFAULT_UI_ADDRESS = "http://127.0.0.1:5000"


@dataclass
class LedgerEntry:
    id: str
    setting: str
    source: str
    port: str
    reason: str
    variants: list[str] = field(default_factory=list)
    frameworks: list[str] = field(default_factory=list)


def _info(slot: RunSlot) -> JsonObject:
    info = slot.record.info if slot.record else {}
    if not isinstance(info, dict):
        raise CnnreproError(f"{slot.path / 'run_info.json'}: expected a JSON object")
    return info


def _append_unique(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def fidelity_ledger(slots: Sequence[RunSlot]) -> list[LedgerEntry]:
    """Union of the runs' fidelity entries, one per id, with the variants and frameworks it applies to."""
    ledger: dict[str, LedgerEntry] = {}
    for slot in slots:
        entries = _info(slot).get("fidelity", [])
        where = slot.path / "run_info.json"
        if not isinstance(entries, list):
            raise CnnreproError(f"{where}: fidelity must be a list of entries")
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("id"):
                raise CnnreproError(f"{where}: fidelity entry without an id: {entry!r:.80}")
            item = ledger.get(entry["id"])
            if item is None:
                item = LedgerEntry(**{k: str(entry.get(k, "")) for k in FIDELITY_FIELDS})
                ledger[item.id] = item
            _append_unique(item.variants, slot.variant)
            _append_unique(item.frameworks, slot.framework)
    return list(ledger.values())


def overrides_by_variant(slots: Sequence[RunSlot]) -> list[Params]:
    """The params overrides each (variant, framework) ran with; seeds that disagree get their own line."""
    groups: dict[tuple[str, str, str], JsonObject] = {}
    for slot in slots:
        overrides = _info(slot).get("overrides") or {}
        if not overrides:
            continue
        key = (slot.variant, slot.framework, repr(sorted(overrides.items())))
        group = groups.setdefault(
            key, {"variant": slot.variant, "framework": slot.framework, "overrides": overrides, "seeds": []}
        )
        group["seeds"].append(slot.seed)
    return list(groups.values())


def _tally(values: dict[str, list[str]]) -> list[JsonObject]:
    return [{"value": value, "runs": labels} for value, labels in values.items()]


def mlflow_ui_line(uri: str, experiment_id: str) -> str:
    """How to see a store's runs: a server's runs page, or for a local store the `mlflow ui` command and the
    runs page it then serves (on MLflow's default port), both in the UI's model-training view."""
    from cnnrepro.tracking.ui import runs_page_url

    if uri.startswith(("http://", "https://")):
        return runs_page_url(uri, experiment_id)
    return f"mlflow ui --backend-store-uri {uri}  # then open {runs_page_url(DEFAULT_UI_ADDRESS, experiment_id)}"


def environment(slots: Sequence[RunSlot], clean_summary: JsonObject | None) -> JsonObject:
    """What the numbers were measured with, each distinct value listed with the runs that share it."""
    packages: dict[str, dict[str, list[str]]] = {}
    fields: dict[str, dict[str, list[str]]] = {"device": {}, "git_commit": {}, "data_manifest_sha256": {}}
    tracking_uris: list[str] = []
    ui_lines: list[str] = []
    for slot in slots:
        if slot.record is None:
            continue
        info = _info(slot)
        label = f"{slot.framework}/{slot.variant}/seed{slot.seed}"
        for name, version in (info.get("packages") or {}).items():
            packages.setdefault(name, {}).setdefault(str(version), []).append(label)
        for key, seen in fields.items():
            if info.get(key):
                seen.setdefault(str(info[key]), []).append(label)
        mlflow = info.get("mlflow") or {}
        uri = mlflow.get("tracking_uri")
        if uri:
            _append_unique(tracking_uris, uri)
            if mlflow.get("experiment_id"):
                _append_unique(ui_lines, mlflow_ui_line(uri, str(mlflow["experiment_id"])))
    return {
        "packages": {name: _tally(versions) for name, versions in sorted(packages.items())},
        "devices": _tally(fields["device"]),
        "git_commits": _tally(fields["git_commit"]),
        "data_manifest_sha256": _tally(fields["data_manifest_sha256"]),
        "petimages_archive": {
            "archive": (clean_summary or {}).get("archive"),
            "archive_sha256": (clean_summary or {}).get("archive_sha256"),
        },
        "tracking_uris": tracking_uris,
        "mlflow_ui": ui_lines,
    }


def run_index(slots: Sequence[RunSlot]) -> list[JsonObject]:
    """One line per expected run: its status, figures and MLflow ids, so every number can be traced."""
    index = []
    for slot in slots:
        info = _info(slot)
        mlflow = info.get("mlflow") or {}
        metrics = slot.record.metrics if slot.record else None
        index.append(
            {
                "variant": slot.variant,
                "framework": slot.framework,
                "seed": slot.seed,
                "status": slot.status,
                "reason": slot.reason if slot.status != "completed" else None,
                "val_accuracy": metrics.val_accuracy if metrics else None,
                "test_accuracy": metrics.test_accuracy if metrics else None,
                "epochs_run": metrics.epochs_run if metrics else None,
                "train_duration_s": info.get("train_duration_s"),
                "device": info.get("device"),
                "mlflow_run_id": mlflow.get("run_id"),
                "mlflow_parent_run_id": mlflow.get("parent_run_id"),
                "mlflow_experiment_id": mlflow.get("experiment_id"),
                "path": str(slot.path),
            }
        )
    return index
