"""`cnnrepro split`: the book's numeric-id split and the Keras example's seeded 80/20 order."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from cnnrepro.cli import main as cli_main
from cnnrepro.data.split import book_items, keras_example_items, write_split
from cnnrepro.errors import CnnreproError

from .helpers_data import write_params

SIZES = {"train": 6, "validation": 3, "test": 3}
# Gaps (dropped ids) and ids >= 10, so numeric and string order differ; Cat/7 was converted to PNG.
IDS = {"Cat": [i for i in range(16) if i != 3], "Dog": [*range(13), 120]}


def make_clean_dir(root: Path, ids: dict[str, list[int]] = IDS) -> Path:
    clean = root / "clean" / "petimages"
    for cls, numbers in ids.items():
        (clean / cls).mkdir(parents=True)
        for i in numbers:
            ext = "png" if (cls, i) == ("Cat", 7) else "jpg"
            (clean / cls / f"{i}.{ext}").write_bytes(f"{cls}-{i}".encode())
    return clean


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_book_split_takes_numeric_ids_in_order(tmp_path: Path) -> None:
    clean = make_clean_dir(tmp_path)
    items = book_items(clean, SIZES)
    by_split = {}
    for item in items:
        by_split.setdefault((item.split, item.cls), []).append(item.image_id)
    assert by_split == {
        ("train", "cats"): [0, 1, 2, 4, 5, 6],
        ("validation", "cats"): [7, 8, 9],
        ("test", "cats"): [10, 11, 12],
        ("train", "dogs"): [0, 1, 2, 3, 4, 5],
        ("validation", "dogs"): [6, 7, 8],
        ("test", "dogs"): [9, 10, 11],
    }


def test_book_split_output_and_manifest(tmp_path: Path) -> None:
    clean = make_clean_dir(tmp_path)
    out = tmp_path / "split" / "book"
    write_split(book_items(clean, SIZES), out)
    for split, n in SIZES.items():
        for cls in ("cats", "dogs"):
            assert len(list((out / split / cls).iterdir())) == n
    assert (out / "validation" / "cats" / "7.png").read_bytes() == b"Cat-7"
    rows = _rows(out / "manifest.csv")
    assert list(rows[0]) == ["split", "class", "id", "source", "sha256"]
    assert len(rows) == 2 * sum(SIZES.values())
    for row in rows:
        source = Path(row["source"])
        copied = out / row["split"] / row["class"] / source.name
        assert (
            row["sha256"]
            == hashlib.sha256(copied.read_bytes()).hexdigest()
            == hashlib.sha256(source.read_bytes()).hexdigest()
        )
        assert row["id"] == source.stem


def test_too_few_images_fails_in_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = make_clean_dir(tmp_path)
    params = write_params(tmp_path / "params.yaml", {"split.book": {"train": 10, "validation": 5, "test": 5}})
    out = tmp_path / "split"
    assert cli_main(["split", "--params", str(params), "--clean", str(clean), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"cnnrepro split: error: {clean}: too few images for the book split: found Cat 15, Dog 14; "
        "need 20 per class (train 10 + validation 5 + test 5)"
    )
    assert not out.exists()


def test_non_numeric_name_is_an_error(tmp_path: Path) -> None:
    clean = make_clean_dir(tmp_path)
    (clean / "Dog" / "cat (1).jpg").write_bytes(b"x")
    with pytest.raises(CnnreproError, match=r"cat \(1\)\.jpg: not a numeric image id"):
        book_items(clean, SIZES)


def test_keras_example_order_matches_image_dataset_from_directory(tmp_path: Path) -> None:
    clean = make_clean_dir(tmp_path)
    (clean / "Cat" / "notes.txt").write_bytes(b"not an image format")
    items = keras_example_items(clean, 0.2, 1337)
    # Keras: class folders sorted, files sorted as strings ("10.jpg" < "2.jpg"), only image
    # extensions, concatenated; then one seeded permutation; validation = the last int(0.2 * n).
    listing = [
        (clean / cls / name, cls) for cls in ("Cat", "Dog") for name in sorted(p.name for p in (clean / cls).iterdir())
    ]
    listing = [(p, cls) for p, cls in listing if p.suffix in (".jpg", ".png")]
    order = [listing[i] for i in np.random.RandomState(1337).permutation(len(listing))]
    n_val = int(0.2 * len(order))
    expected = [("train", p, c) for p, c in order[:-n_val]] + [("validation", p, c) for p, c in order[-n_val:]]
    class_dir = {"Cat": "cats", "Dog": "dogs"}
    assert [(i.split, i.source, i.cls) for i in items] == [(s, p, class_dir[c]) for s, p, c in expected]
    assert [i.position for i in items] == [*range(len(order) - n_val), *range(n_val)]


def test_keras_example_split_is_deterministic_per_seed(tmp_path: Path) -> None:
    clean = make_clean_dir(tmp_path)
    first = [(i.split, i.source) for i in keras_example_items(clean, 0.2, 1337)]
    assert first == [(i.split, i.source) for i in keras_example_items(clean, 0.2, 1337)]
    assert first != [(i.split, i.source) for i in keras_example_items(clean, 0.2, 7)]
    assert sorted(p for _, p in first) == sorted(p for p in clean.rglob("*") if p.is_file())


def test_keras_example_rejects_an_empty_validation_split(tmp_path: Path) -> None:
    clean = make_clean_dir(tmp_path, {"Cat": [0, 1], "Dog": [0, 1]})
    with pytest.raises(CnnreproError, match=r"validation_fraction 0\.2 of 4 images leaves an empty split"):
        keras_example_items(clean, 0.2, 1337)


def test_cli_split(tmp_path: Path) -> None:
    clean = make_clean_dir(tmp_path)
    params = write_params(tmp_path / "params.yaml", {"split.book": SIZES})
    out = tmp_path / "data" / "split"
    assert cli_main(["split", "--params", str(params), "--clean", str(clean), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["book", "keras_example"]
    rows = _rows(out / "keras_example" / "manifest.csv")
    total = len(IDS["Cat"]) + len(IDS["Dog"])
    assert len(rows) == total
    assert sum(r["split"] == "validation" for r in rows) == int(0.2 * total)
    for row in rows:
        copied = out / "keras_example" / row["split"] / row["class"] / Path(row["source"]).name
        assert copied.read_bytes() == Path(row["source"]).read_bytes()
        assert row["class"] == {"Cat": "cats", "Dog": "dogs"}[Path(row["source"]).parent.name]
