"""Fidelity-ledger entries about the DATA, measured from the clean and split manifests, not assumed.

- `mirror_image_size`: the photos the port trains on are not the Kaggle originals (whose sizes vary) when
  the clean stage found one size for (nearly) every kept image: the offline mirror stores 200x200 copies,
  resampled once more before the book's 150x150 resize.
- `split_shifted`: the book's split is, per class, ids 0..T-1 train, the next V validation, the next S test.
  `cnnrepro split` takes the first T/V/S *cleaned* ids, so every id the cleaner dropped below the end of
  the split moves the boundaries by one: some validation and test photos are not the book's.

Both read files next to what the report is given (data/clean/manifest.csv beside the summary; the split's
manifest.csv in the runs' data_dir); a file that is not there yields no entry, never a guess.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from cnnrepro.errors import CnnreproError
from cnnrepro.report.collect import RunSlot
from cnnrepro.report.ledger import LedgerEntry
from cnnrepro.variants.documented import DOCUMENTED

PETIMAGES_DATASETS = ("dogs_vs_cats", "petimages_80_20")
BOOK_DATASET = "dogs_vs_cats"
BOOK_SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_MANIFEST = Path("data/split/book/manifest.csv")
ONE_SIZE_SHARE = 0.99  # a single size for this share of the kept images = a resampled copy, not originals


def _read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise CnnreproError(f"{path}: missing column {missing[0]!r}")
            return list(reader)
    except OSError as exc:
        raise CnnreproError(f"{path}: cannot read ({exc.strerror})") from None


def _variants(slots: Sequence[RunSlot], datasets: Sequence[str]) -> list[str]:
    seen = dict.fromkeys(s.variant for s in slots)
    return [v for v in seen if v in DOCUMENTED and DOCUMENTED[v].dataset in datasets]


def _frameworks(slots: Sequence[RunSlot]) -> list[str]:
    return list(dict.fromkeys(s.framework for s in slots))


def image_size_entry(clean_manifest: Path, slots: Sequence[RunSlot]) -> LedgerEntry | None:
    """The mirror's resampled copies, when one size covers (nearly) every kept image."""
    variants = _variants(slots, PETIMAGES_DATASETS)
    if not clean_manifest.is_file() or not variants:
        return None
    rows = _read_csv(clean_manifest, ("verdict", "width", "height"))
    sizes = Counter((r["width"], r["height"]) for r in rows if r["verdict"] != "drop")
    if not sizes:
        return None
    (width, height), count = sizes.most_common(1)[0]
    kept = sum(sizes.values())
    if count < ONE_SIZE_SHARE * kept:
        return None
    return LedgerEntry(
        id="mirror_image_size",
        setting="source photos",
        source="Kaggle's Dogs vs Cats JPEGs at their original sizes, which vary from photo to photo",
        port=f"copies at {width}x{height}: {count:,} of the {kept:,} kept images ({clean_manifest})",
        reason="the offline mirror stores every photo resampled to one size; the book's resize to 150x150 then "
        "resamples a second time, from a changed aspect ratio, so the pixels differ from the book's",
        variants=variants,
        frameworks=_frameworks(slots),
    )


def _split_manifest(slots: Sequence[RunSlot]) -> Path:
    for slot in slots:
        config = ((slot.record.info or {}).get("config") or {}) if slot.record else {}
        if config.get("dataset") == BOOK_DATASET and config.get("data_dir"):
            return Path(config["data_dir"]) / "manifest.csv"
    return DEFAULT_SPLIT_MANIFEST


def _ranges(ids: list[int]) -> str:
    return f"{min(ids)}-{max(ids)}" if ids else "none"


def split_shift_entry(slots: Sequence[RunSlot]) -> LedgerEntry | None:
    """How the book split's ids moved, per class and split, when the cleaner dropped ids inside it."""
    variants = _variants(slots, (BOOK_DATASET,))
    manifest = _split_manifest(slots)
    if not manifest.is_file() or not variants:
        return None
    ids: dict[str, dict[str, list[int]]] = {}
    for row in _read_csv(manifest, ("split", "class", "id")):
        if row["split"] in BOOK_SPLITS and row["id"].isdigit():
            ids.setdefault(row["class"], {}).setdefault(row["split"], []).append(int(row["id"]))
    port_parts, source_parts, moved_total = [], [], 0
    for cls, by_split in sorted(ids.items()):
        taken = sorted(i for split_ids in by_split.values() for i in split_ids)
        dropped = sorted(set(range(taken[-1] + 1)) - set(taken)) if taken else []
        if not dropped:
            continue
        start, book, moved = 0, [], []
        for split in BOOK_SPLITS:
            split_ids = sorted(by_split.get(split, []))
            book_range = range(start, start + len(split_ids))
            start += len(split_ids)
            book.append(f"{split} {_ranges(list(book_range))}")
            outside = sum(i not in book_range for i in split_ids)
            moved_total += outside
            moved.append(f"{split} {_ranges(split_ids)} ({outside} not the book's)")
        names = ", ".join(f"{cls}/{i}" for i in dropped)
        port_parts.append(f"{cls}: without {names}, " + ", ".join(moved))
        source_parts.append(f"{cls}: " + ", ".join(book))
    if not port_parts:
        return None
    return LedgerEntry(
        id="split_shifted",
        setting="which photos fall in train / validation / test",
        source="per class, consecutive ids with none missing: " + "; ".join(source_parts),
        port="the first cleaned ids per class (" + str(manifest) + "): " + "; ".join(port_parts),
        reason=f"each id the cleaner dropped moves every later boundary up by one, so {moved_total} images in the "
        "splits are not the ones the book had there; the splits keep their sizes",
        variants=variants,
        frameworks=_frameworks(slots),
    )


def data_entries(clean_summary_path: str | Path, slots: Sequence[RunSlot]) -> list[LedgerEntry]:
    """The data's departures from the sources, measured from the manifests that exist."""
    clean_manifest = Path(clean_summary_path).parent / "manifest.csv"
    entries = [image_size_entry(clean_manifest, slots), split_shift_entry(slots)]
    return [e for e in entries if e is not None]
