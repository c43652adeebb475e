"""The idx files of MNIST and Fashion-MNIST: names, header layout and the contents pinned in code.

The `.gz` bytes differ between mirrors (gzip headers carry mtimes and names), the uncompressed
contents do not, so the pins are sha256 of the UNCOMPRESSED files (table from
../shared/datasets/README.md, which matches the canonical sets).

Both `download` (verifies what it fetched) and `prepare-mnist` (re-checks before converting)
use this table. Tests and fixture pipelines replace it through `CNNREPRO_IDX_PINS`, a JSON file
`{"<dataset>": {"<idx file name>": {"sha256": "...", "count": N}}}`: tiny fixtures cannot match
the real hashes, and the pipeline's stages run in their own processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from cnnrepro.errors import CnnreproError

PINS_ENV = "CNNREPRO_IDX_PINS"
DATASETS = ("mnist", "fashion_mnist")
IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
IMAGE_SHAPE = (28, 28)
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class IdxSpec:
    sha256: str
    count: int


PINNED: dict[str, dict[str, IdxSpec]] = {
    "mnist": {
        "train-images-idx3-ubyte": IdxSpec("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 60000),
        "train-labels-idx1-ubyte": IdxSpec("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60000),
        "t10k-images-idx3-ubyte": IdxSpec("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 10000),
        "t10k-labels-idx1-ubyte": IdxSpec("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10000),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": IdxSpec("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 60000),
        "train-labels-idx1-ubyte": IdxSpec("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60000),
        "t10k-images-idx3-ubyte": IdxSpec("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 10000),
        "t10k-labels-idx1-ubyte": IdxSpec("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10000),
    },
}


def gz_name(name: str) -> str:
    return f"{name}.gz"


def is_images(name: str) -> bool:
    return "-images-" in name


def pinned_specs(dataset: str) -> dict[str, IdxSpec]:
    """The pins for `dataset`: the table above, or the JSON file named by CNNREPRO_IDX_PINS."""
    override = os.environ.get(PINS_ENV)
    if not override:
        return PINNED[dataset]
    try:
        table = json.loads(Path(override).read_text())
        entries = table[dataset]
        return {name: IdxSpec(str(entries[name]["sha256"]), int(entries[name]["count"])) for name in IDX_FILES}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CnnreproError(
            f"{PINS_ENV}={override}: no usable pins for {dataset} ({type(exc).__name__}: {exc})"
        ) from None


def parse_header(data: bytes, where: str) -> tuple[int, tuple[int, ...]]:
    """(magic, dims) of an idx file; raises naming `where` when the header is malformed."""
    if len(data) < 4:
        raise CnnreproError(f"{where}: not an idx file ({len(data)} bytes)")
    (magic,) = struct.unpack(">i", data[:4])
    ndim = data[3]
    if data[:2] != b"\x00\x00" or data[2] != 0x08 or not 1 <= ndim <= 4 or len(data) < 4 + 4 * ndim:
        raise CnnreproError(f"{where}: bad idx magic {magic:#010x} (expected 2051 images / 2049 labels)")
    dims = struct.unpack(f">{ndim}i", data[4 : 4 + 4 * ndim])
    return magic, dims


def header_size(dims: tuple[int, ...]) -> int:
    return 4 + 4 * len(dims)


def check_idx(data: bytes, name: str, spec: IdxSpec | None, where: str) -> str:
    """Check magic, dimensions, item count, payload size and (with `spec`) the pinned sha256.

    Returns the sha256 of `data`. Every failure is one line naming `where`, expected and actual.
    """
    magic, dims = parse_header(data, where)
    expected_magic, expected_ndim = (IMAGES_MAGIC, 3) if is_images(name) else (LABELS_MAGIC, 1)
    if magic != expected_magic:
        raise CnnreproError(f"{where}: idx magic mismatch: expected {expected_magic}, got {magic}")
    if len(dims) != expected_ndim or (expected_ndim == 3 and tuple(dims[1:]) != IMAGE_SHAPE):
        want = "(N, 28, 28)" if expected_ndim == 3 else "(N,)"
        raise CnnreproError(f"{where}: idx dimensions mismatch: expected {want}, got {tuple(dims)}")
    payload = 1
    for d in dims:
        payload *= d
    actual_size = len(data) - header_size(dims)
    if actual_size != payload:
        raise CnnreproError(f"{where}: idx payload size mismatch: expected {payload} bytes, got {actual_size}")
    digest = hashlib.sha256(data).hexdigest()
    if spec is not None:
        if dims[0] != spec.count:
            raise CnnreproError(f"{where}: idx item count mismatch: expected {spec.count}, got {dims[0]}")
        if digest != spec.sha256:
            raise CnnreproError(f"{where}: uncompressed sha256 mismatch: expected {spec.sha256}, got {digest}")
    return digest
