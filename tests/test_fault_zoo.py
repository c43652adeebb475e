"""The second fault zoo, data side: hostile archives cleaned by the real `cnnrepro clean`.

Bombs run in a subprocess under RLIMIT_AS with their own peak RSS measured (wait4); the layout and the
conversions run in-process, pixel for pixel.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrepro.data.archive_layout import IGNORE_REASONS
from cnnrepro.data.clean import clean_archive
from cnnrepro.data.pixels import scale_16_to_8

from .helpers_data import rgb_jpeg, shipped_limits, write_params
from .helpers_zoo import (
    MIB,
    RawEntry,
    bilevel_png,
    encode,
    grey16_png,
    run_bounded,
    write_zip,
    zero_bomb,
)

LIMITS = shipped_limits()
ADDRESS_SPACE_MIB = 300  # the bound on the zip bomb; old code needed 3.2 GB
# One BLAS thread: the address space a many-core CI box reserves for idle BLAS threads is not ours.
SINGLE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _plain(n: int = 2) -> list[RawEntry]:
    """n plain RGB JPEGs per class."""
    classes = enumerate(["Cat", "Dog"])
    return [
        RawEntry.stored(f"PetImages/{cls}/{i}.jpg", rgb_jpeg(seed=i + 10 * c)) for c, cls in classes for i in range(n)
    ]


def _project(tmp_path: Path, entries: list[RawEntry], **clean: object) -> Path:
    raw = tmp_path / "data" / "raw" / "petimages"
    raw.mkdir(parents=True)
    write_zip(raw / "pets.zip", entries)
    changes: dict[str, object] = {"download.petimages.archive": "pets.zip", "data.mirror": None}
    changes |= {f"clean.{key}": value for key, value in clean.items()}
    write_params(tmp_path / "params.yaml", changes)
    return tmp_path


def _clean(project: Path):  # -> BoundedRun
    args = ["cnnrepro", "clean", "--raw", "data/raw/petimages", "--out", "data/clean"]
    return run_bounded(args, project, ADDRESS_SPACE_MIB, env={**os.environ, **SINGLE_THREAD})


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "manifest.csv").open() as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def _largest_file(root: Path) -> int:
    return max(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_zip_bomb_is_dropped_with_a_record_in_bounded_memory(tmp_path: Path) -> None:
    # 1.5 GiB of zeros in a 1.5 MB archive, the bomb; honest headers.
    project = _project(tmp_path, [*_plain(), zero_bomb("PetImages/Cat/10.jpg", 1536)])
    run = _clean(project)
    assert run.returncode == 0, run.stderr
    assert run.peak_rss_mib < 300
    out = project / "data" / "clean"
    row = _rows(out)["PetImages/Cat/10.jpg"]
    assert (row["verdict"], row["reason"], row["sha256"]) == ("drop", "over_size_limit", "")
    record = json.loads((out / row["output"]).read_text())
    assert record["declared_bytes"] == 1536 * MIB and record["bytes_read"] == 0
    assert _largest_file(project) < 2 * MIB  # the archive itself; nothing inflated anywhere
    summary = json.loads((out / "summary.json").read_text())
    assert summary["by_reason"] == {"over_size_limit": 1} and summary["kept"] == 4


def test_ratio_bomb_and_lying_header(tmp_path: Path) -> None:
    # Under the size limit but 1000x compressed; and a member whose header claims 1 MiB (with a CRC that
    # does not match what it inflates to).
    ratio_bomb = zero_bomb("PetImages/Dog/11.jpg", 32)
    lying = zero_bomb("PetImages/Dog/12.jpg", 1536, declared_mib=1)
    lying = RawEntry(lying.name, lying.data, lying.method, lying.crc ^ 1, lying.size)
    project = _project(tmp_path, [*_plain(), ratio_bomb, lying])
    run = _clean(project)
    assert run.returncode == 0, run.stderr
    rows = _rows(project / "data" / "clean")
    assert rows["PetImages/Dog/11.jpg"]["reason"] == "over_ratio_limit"
    assert rows["PetImages/Dog/12.jpg"]["reason"] == "unreadable_member"
    record = json.loads((project / "data" / "clean" / rows["PetImages/Dog/12.jpg"]["output"]).read_text())
    assert "CRC" in record["error"] and record["bytes_read"] <= MIB  # zipfile stops at the declared size
    assert _largest_file(project / "data" / "clean") < 4096


def test_peak_memory_does_not_grow_with_the_member(tmp_path: Path) -> None:
    # A 60 MiB member under every limit (stored, ratio 1) is streamed to disk, never held whole.
    peaks = {}
    for size_mib in (1, 60):
        entry = RawEntry.stored("PetImages/Cat/20.jpg", bytes(size_mib * MIB))
        project = _project(tmp_path / str(size_mib), [*_plain(), entry])
        run = _clean(project)
        assert run.returncode == 0, run.stderr
        assert _rows(project / "data" / "clean")["PetImages/Cat/20.jpg"]["reason"] == "not_an_image"
        peaks[size_mib] = run.peak_rss_mib
    assert peaks[60] - peaks[1] < 16, peaks


def test_pixel_bomb_is_dropped_before_decoding(tmp_path: Path) -> None:
    project = _project(tmp_path, [*_plain(), RawEntry.stored("PetImages/Dog/13.jpg", bilevel_png(13000, 13000))])
    run = _clean(project)
    assert run.returncode == 0, run.stderr
    assert run.peak_rss_mib < 300  # decoding it would take 169 MB, converting it to RGB 507 MB more
    out = project / "data" / "clean"
    row = _rows(out)["PetImages/Dog/13.jpg"]
    assert (row["verdict"], row["reason"], row["width"], row["height"]) == (
        "drop",
        "over_pixel_limit",
        "13000",
        "13000",
    )
    assert json.loads((out / row["output"]).read_text())["width"] == 13000
    assert not list((out / "petimages" / "Dog").glob("13.*"))


# Every way a member can sit outside `PetImages/{Cat,Dog}/<id>.<ext>`, with the reason it is ignored. Each
# is a decodable JPEG with a numeric name, so only the layout keeps it out.
OUTSIDE = {
    "Other/Cat/11071.jpg": "outside_petimages",
    "11072.jpg": "outside_petimages",
    "/abs/PetImages/Cat/11073.jpg": "absolute_path",
    "C:/PetImages/Cat/11074.jpg": "absolute_path",
    "../PetImages/Cat/11075.jpg": "traversal",
    "PetImages/Dog/../Cat/11076.jpg": "traversal",
    "PetImages//Cat/11077.jpg": "traversal",
    "__MACOSX/PetImages/Cat/._11078.jpg": "macos_metadata",
    "PetImages/Cat/._11079.jpg": "macos_metadata",
    "PetImages/Cat/.DS_Store": "macos_metadata",
    "PetImages/Cat/Thumbs.db": "thumbs_db",
    "PetImages/11080.jpg": "wrong_depth",
    "PetImages/Cat/sub/11081.jpg": "wrong_depth",
    "PetImages/Bird/11082.jpg": "unknown_class",
    "PetImages/Cat/cat11083.jpg": "not_an_image_name",
    "PetImages/Cat/11084.jpg.txt": "not_an_image_name",
}


def test_only_the_exact_layout_is_a_candidate(tmp_path: Path) -> None:
    entries = [*_plain(), *(RawEntry.stored(name, rgb_jpeg(seed=99)) for name in OUTSIDE)]
    entries.append(RawEntry.stored("PetImages/Cat/11085.jpg", b"0.jpg", unix_mode=stat.S_IFLNK | 0o777))
    raw = write_zip(tmp_path / "pets.zip", entries)
    summary = clean_archive(raw, tmp_path / "out", limits=LIMITS)
    expected = [*OUTSIDE.values(), "symlink"]
    assert summary["ignored"] == {
        "total": len(expected),
        "by_reason": {reason: expected.count(reason) for reason in IGNORE_REASONS if reason in expected},
    }
    assert set(_rows(tmp_path / "out")) == {e.name for e in _plain()}
    written = sorted(
        p.relative_to(tmp_path / "out" / "petimages").as_posix() for p in (tmp_path / "out" / "petimages").rglob("*.*")
    )
    assert written == ["Cat/0.jpg", "Cat/1.jpg", "Dog/0.jpg", "Dog/1.jpg"]
    assert summary["total_members"] == 4 and summary["kept"] == 4


def _png_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert (image.format, image.mode) == ("PNG", "RGB")
        return np.asarray(image)


def test_16_bit_grey_is_scaled_pixel_for_pixel(tmp_path: Path) -> None:
    png, values = grey16_png()
    raw = write_zip(tmp_path / "pets.zip", [*_plain(), RawEntry.stored("PetImages/Cat/30.jpg", png)])
    clean_archive(raw, tmp_path / "out", limits=LIMITS)
    row = _rows(tmp_path / "out")["PetImages/Cat/30.jpg"]
    assert (row["verdict"], row["reason"], row["mode"]) == ("convert", "png_as_jpg", "I;16")
    pixels = _png_pixels(tmp_path / "out" / row["output"])
    expected = np.floor(values.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected)
    assert pixels.min() == 0 and pixels.max() == 255  # full range stays full range, not all white


def test_scale_16_to_8_every_value() -> None:
    values = np.arange(65536, dtype=np.uint16)
    expected = np.floor(values.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(scale_16_to_8(values), expected)


def test_modes_without_an_8_bit_meaning_are_dropped(tmp_path: Path) -> None:
    grid = np.linspace(-5, 70000, 64 * 48).reshape(48, 64)
    members = {
        "PetImages/Dog/31.jpg": encode(Image.fromarray(grid.astype(np.float32)), "TIFF"),  # mode F
        "PetImages/Dog/32.jpg": encode(Image.fromarray(grid.astype(np.int32)), "TIFF"),  # mode I, 32-bit
        "PetImages/Dog/33.jpg": encode(Image.new("1", (40, 30), 1), "PNG"),  # 1-bit: converts exactly
    }
    raw = write_zip(tmp_path / "pets.zip", [*_plain(), *(RawEntry.stored(n, d) for n, d in members.items())])
    clean_archive(raw, tmp_path / "out", limits=LIMITS)
    rows = _rows(tmp_path / "out")
    assert (rows["PetImages/Dog/31.jpg"]["verdict"], rows["PetImages/Dog/31.jpg"]["reason"]) == (
        "drop",
        "unsupported_mode_f",
    )
    assert (rows["PetImages/Dog/32.jpg"]["verdict"], rows["PetImages/Dog/32.jpg"]["reason"]) == (
        "drop",
        "unsupported_mode_i",
    )
    assert (tmp_path / "out" / rows["PetImages/Dog/31.jpg"]["output"]).read_bytes() == members["PetImages/Dog/31.jpg"]
    white = _png_pixels(tmp_path / "out" / rows["PetImages/Dog/33.jpg"]["output"])
    assert white.shape == (30, 40, 3) and (white == 255).all()


def test_limits_are_params(tmp_path: Path) -> None:
    # A plain JPEG over a tiny pixel limit is dropped by it: the limit is read from params.yaml, not fixed.
    project = _project(tmp_path, _plain(), max_pixels=100)
    run = _clean(project)
    assert run.returncode == 0, run.stderr
    summary = json.loads((project / "data" / "clean" / "summary.json").read_text())
    assert summary["by_reason"] == {"over_pixel_limit": 4} and summary["limits"]["max_pixels"] == 100


@pytest.mark.parametrize(("key", "value"), [("max_pixels", 0), ("max_compression_ratio", "high")])
def test_bad_limit_is_one_line_naming_the_key(tmp_path: Path, key: str, value: object) -> None:
    project = _project(tmp_path, _plain(), **{key: value})
    run = _clean(project)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and f"clean.{key}" in run.stderr, run.stderr
    assert not (project / "data" / "clean").exists()
