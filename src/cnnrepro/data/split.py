"""`cnnrepro split`: the book's 1000/500/500 split and the Keras example's 80/20 split of the clean images.

Book (Deep Learning with Python, 1st ed., ch. 5): per class (Cat -> cats, Dog -> dogs) the cleaned
images sorted by NUMERIC id; the first `split.book.train` go to train, the next `validation` to
validation, the next `test` to test. The book used Kaggle's `cat.0..999` / `1000..1499` /
`1500..1999`; taking the first N cleaned ids is the same wherever no image was dropped, and
otherwise moves the boundaries past the dropped ids (e.g. without Cat/666, train ends at Cat/1000).

Keras example (`image_dataset_from_directory("PetImages", validation_split=0.2, subset="both",
seed=1337)`), replicated from keras/src/utils/dataset_utils.py (`index_directory`,
`iter_valid_files`, `get_training_or_validation_split`):

1. class folders = the sorted sub-directories (not starting with "."): Cat = 0, Dog = 1;
2. per class, in that order, the files whose lower-cased name ends with .bmp/.gif/.jpeg/.jpg/.png,
   sorted as plain strings (`sorted(files)`: "10.jpg" before "2.jpg"), concatenated;
3. `np.random.RandomState(seed).shuffle(file_paths)` then, with a fresh `RandomState(seed)`, the
   same on the labels array, which applies the same permutation (same length, same draws);
4. `num_val = int(validation_fraction * n)`; training = the first `n - num_val`, validation =
   the last `num_val`.

Confirmed against the Keras 3 source; Keras 2.x's (`keras/utils/dataset_utils.py`) has the same
steps. Not confirmed: whether the TF 2.x version the example was written with listed the class
folder through `tf.io.gfile.walk` in an order other than sorted (it sorts the walk, so it should
not matter). Also unlike Keras, a validation share that rounds to zero is an error here (Keras'
`samples[:-0]` would leave training empty).

Outputs: `<out>/book/{train,validation,test}/{cats,dogs}/` and
`<out>/keras_example/{train,validation}/{cats,dogs}/` (files copied, names kept), each with a
`manifest.csv` (split, class, id, source, sha256; keras_example adds `position`, the index in
Keras' shuffled order within its split). Each directory appears whole or not at all.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_dir, sha256_file
from cnnrepro.mappings import JsonObject
from cnnrepro.params import load_params

CLASS_DIRS = {"Cat": "cats", "Dog": "dogs"}
BOOK_SPLITS = ("train", "validation", "test")
KERAS_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # Keras' ALLOWLIST_FORMATS
MANIFEST_COLUMNS = ("split", "class", "id", "source", "sha256")


@dataclass(frozen=True)
class Item:
    split: str
    cls: str  # cats | dogs
    source: Path
    position: int = 0

    @property
    def image_id(self) -> int:
        return int(self.source.stem)


def _class_dir(clean: Path, cls: str) -> Path:
    path = clean / cls
    if not path.is_dir():
        raise CnnreproError(f"{path}: class folder missing (run `cnnrepro clean`)")
    return path


def numbered_images(clean: Path, cls: str) -> list[Path]:
    """The images of one class, sorted by numeric id; a non-numeric or repeated id is an error."""
    files = [p for p in _class_dir(clean, cls).iterdir() if p.is_file() and not p.name.startswith(".")]
    by_id: dict[int, Path] = {}
    for path in files:
        if not path.stem.isdigit():
            raise CnnreproError(f"{path}: not a numeric image id")
        image_id = int(path.stem)
        if image_id in by_id:
            raise CnnreproError(f"{path}: id {image_id} also in {by_id[image_id].name}")
        by_id[image_id] = path
    return [by_id[i] for i in sorted(by_id)]


def book_items(clean: Path, sizes: dict[str, int]) -> list[Item]:
    """The book's split: per class the first train / next validation / next test images by id."""
    need = sum(sizes[s] for s in BOOK_SPLITS)
    per_class = {cls: numbered_images(clean, cls) for cls in CLASS_DIRS}
    if any(len(paths) < need for paths in per_class.values()):
        found = ", ".join(f"{cls} {len(paths)}" for cls, paths in per_class.items())
        plan = " + ".join(f"{s} {sizes[s]}" for s in BOOK_SPLITS)
        raise CnnreproError(
            f"{clean}: too few images for the book split: found {found}; need {need} per class ({plan})"
        )
    items = []
    for cls, paths in per_class.items():
        start = 0
        for split in BOOK_SPLITS:
            items += [Item(split, CLASS_DIRS[cls], p) for p in paths[start : start + sizes[split]]]
            start += sizes[split]
    return items


def keras_example_order(clean: Path, seed: int) -> tuple[list[Path], np.ndarray]:
    """(paths, labels) in the order `image_dataset_from_directory(..., seed=seed)` produces."""
    class_names = sorted(p.name for p in clean.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_names != sorted(CLASS_DIRS):
        raise CnnreproError(f"{clean}: expected class folders {sorted(CLASS_DIRS)}, found {class_names}")
    file_paths: list[Path] = []
    label_list: list[int] = []
    for label, cls in enumerate(class_names):
        names = sorted(p.name for p in (clean / cls).iterdir() if p.is_file())
        valid = [n for n in names if n.lower().endswith(KERAS_FORMATS)]
        file_paths += [clean / cls / n for n in valid]
        label_list += [label] * len(valid)
    labels = np.array(label_list, dtype="int32")
    np.random.RandomState(seed).shuffle(file_paths)
    np.random.RandomState(seed).shuffle(labels)
    return file_paths, labels


def keras_example_items(clean: Path, validation_fraction: float, seed: int) -> list[Item]:
    paths, labels = keras_example_order(clean, seed)
    num_val = int(validation_fraction * len(paths))
    if num_val == 0 or num_val == len(paths):
        raise CnnreproError(
            f"{clean}: validation_fraction {validation_fraction} of {len(paths)} images leaves an empty split"
        )
    class_of_label = [CLASS_DIRS[name] for name in sorted(CLASS_DIRS)]
    n_train = len(paths) - num_val
    items = []
    for index, (path, label) in enumerate(zip(paths, labels, strict=True)):
        split, position = ("train", index) if index < n_train else ("validation", index - n_train)
        items.append(Item(split, class_of_label[int(label)], path, position))
    return items


def write_split(items: list[Item], target: Path, *, with_position: bool = False) -> None:
    """Copy the items into `target/<split>/<class>/` and write `target/manifest.csv`, atomically."""
    columns = (*MANIFEST_COLUMNS, "position") if with_position else MANIFEST_COLUMNS
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    with atomic_dir(target) as tmp:
        for split in sorted({item.split for item in items}):
            for cls in CLASS_DIRS.values():
                (tmp / split / cls).mkdir(parents=True)
        for item in items:
            shutil.copyfile(item.source, tmp / item.split / item.cls / item.source.name)
            row: JsonObject = {
                "split": item.split,
                "class": item.cls,
                "id": item.image_id if item.source.stem.isdigit() else item.source.stem,
                "source": item.source.as_posix(),
                "sha256": sha256_file(item.source),
            }
            if with_position:
                row["position"] = item.position
            writer.writerow(row)
        (tmp / "manifest.csv").write_text(buffer.getvalue())


def counts(items: list[Item]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for item in items:
        table.setdefault(item.split, {}).setdefault(item.cls, 0)
        table[item.split][item.cls] += 1
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clean", required=True, type=Path, help="the cleaned images, e.g. data/clean/petimages")
    parser.add_argument("--out", required=True, type=Path, help="e.g. data/split")


def main(args: argparse.Namespace) -> int:
    settings = load_params(args.params)["split"]
    if not args.clean.is_dir():
        raise CnnreproError(f"{args.clean}: missing (run `cnnrepro clean`)")
    book = book_items(args.clean, settings["book"])
    keras = keras_example_items(
        args.clean, settings["keras_example"]["validation_fraction"], settings["keras_example"]["seed"]
    )
    write_split(book, args.out / "book")
    write_split(keras, args.out / "keras_example", with_position=True)
    print(f"book: {counts(book)}")
    print(f"keras_example: {counts(keras)}")
    return 0
