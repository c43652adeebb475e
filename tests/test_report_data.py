"""The report's data notes, from the real clean and split stages on a small PetImages-like archive, and a
report built before the clean stage has run."""

from __future__ import annotations

import zipfile
from pathlib import Path

from cnnrepro import cli
from cnnrepro.data.clean import clean_archive
from cnnrepro.data.split import book_items, write_split
from cnnrepro.fsutil import read_json
from cnnrepro.report.build import build_report

from .helpers_data import make_petimages_zip, rgb_jpeg
from .helpers_report import ALL_VARIANTS, TEN_LABELS, settings, write_params, write_synthetic_run

SIZES = {"train": 8, "validation": 4, "test": 4}


def clean_and_split(archive: Path, root: Path) -> tuple[Path, Path]:
    """The clean stage's summary.json and the book split's directory, as the pipeline writes them."""
    clean_archive(archive, root / "clean")
    split = root / "split" / "book"
    write_split(book_items(root / "clean" / "petimages", SIZES), split)
    return root / "clean" / "summary.json", split


def write_runs(runs: Path, split: Path) -> None:
    for seed in range(3):
        write_synthetic_run(runs, "torch", "baseline", seed, val=0.72, test=0.71, data_dir=split)
        write_synthetic_run(runs, "torch", "mnist_dense", seed, test=0.98, labels=TEN_LABELS)


def test_ledger_names_the_mirror_size_and_the_shifted_split(tmp_path: Path) -> None:
    # The fixture's faults sit after ids 0..13: Cat/14 (zero bytes), Dog/14 (zero bytes), Dog/15 (truncated),
    # Dog/19 (not an image), which lies past the split's last id and so moves nothing.
    pets = make_petimages_zip(tmp_path / "pets.zip", n_per_class=14)
    dropped = sorted(p for p, (verdict, _) in pets.expected().items() if verdict == "drop" and p.endswith(".jpg"))
    assert dropped == ["PetImages/Cat/14.jpg", "PetImages/Dog/14.jpg", "PetImages/Dog/15.jpg", "PetImages/Dog/19.jpg"]
    summary, split = clean_and_split(pets.path, tmp_path)
    write_runs(tmp_path / "runs", split)
    report = build_report(tmp_path / "runs", summary, tmp_path / "out", settings(["baseline", "mnist_dense"]))

    ledger = {e["id"]: e for e in report["fidelity_ledger"]}
    kept = read_json(summary)["kept"]
    size = ledger["mirror_image_size"]
    assert f"copies at 24x24: {kept:,} of the {kept:,} kept images" in size["port"]
    assert size["variants"] == ["baseline"]  # not the MNIST run
    shift = ledger["split_shifted"]
    assert "cats: train 0-7, validation 8-11, test 12-15" in shift["source"]
    # Cats: test takes 12, 13, 15, 16 (16 is not the book's); dogs: 12, 13, 16, 17 (two are not).
    assert "cats: without cats/14, train 0-7 (0 not the book's), validation 8-11 (0 not the book's), " in shift["port"]
    assert "test 12-16 (1 not the book's)" in shift["port"]
    assert "dogs: without dogs/14, dogs/15, train" in shift["port"] and "test 12-17 (2 not the book's)" in shift["port"]
    assert "so 3 images in the splits are not the ones the book had there" in shift["reason"]
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "`mirror_image_size`" in md and "`split_shifted`" in md


def test_original_sizes_and_no_drops_give_no_data_notes(tmp_path: Path) -> None:
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for c, cls in enumerate(("Cat", "Dog")):
            for i in range(16):  # sizes vary from photo to photo, as in the original archive
                zf.writestr(f"PetImages/{cls}/{i}.jpg", rgb_jpeg(seed=c * 100 + i, size=(20 + i, 24 + c)))
    summary, split = clean_and_split(archive, tmp_path)
    write_runs(tmp_path / "runs", split)
    report = build_report(tmp_path / "runs", summary, tmp_path / "out", settings(["baseline", "mnist_dense"]))
    assert report["fidelity_ledger"] == []


def test_report_builds_without_the_cleaning_summary(tmp_path: Path) -> None:
    write_runs(tmp_path / "runs", tmp_path / "split")
    params = write_params(tmp_path / "params.yaml", variants=ALL_VARIANTS)
    absent = tmp_path / "data" / "clean" / "summary.json"
    args = ["report", "--params", str(params), "--runs", str(tmp_path / "runs")]
    assert cli.main([*args, "--clean-summary", str(absent), "--out", str(tmp_path / "reports")]) == 0
    report = read_json(tmp_path / "reports" / "comparison.json")
    assert report["data_cleaning"] is None
    assert "plots/data_cleaning.png" not in report["plots"]
    md = (tmp_path / "reports" / "comparison.md").read_text()
    assert f"Absent: `{absent}` does not exist" in md
    verdicts = {r["variant"]: r["verdict"] for r in report["rows"]}
    assert verdicts["mnist_dense"] == "reproduced" and verdicts["fine_tuning"] == "missing"
