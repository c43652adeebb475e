"""`cnnrepro clean`: verdicts by decoding, byte-exact and pixel-exact outputs, the JFIF comparison."""

from __future__ import annotations

import csv
import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrepro.cli import main as cli_main
from cnnrepro.data.clean import MANIFEST_COLUMNS, clean_archive
from cnnrepro.errors import CnnreproError

from .helpers_data import PetZip, make_petimages_zip, shipped_limits, write_params

LIMITS = shipped_limits()

OUTPUTS = ("petimages", "quarantine", "manifest.csv", "summary.json")
SUMMARY_KEYS = {
    "archive",
    "archive_sha256",
    "total_members",
    "kept",
    "converted",
    "dropped",
    "per_class",
    "by_reason",
    "by_format",
    "by_mode",
    "jfif_filter",
    "ignored",
    "limits",
}


@pytest.fixture(scope="module")
def pets(tmp_path_factory: pytest.TempPathFactory) -> PetZip:
    return make_petimages_zip(tmp_path_factory.mktemp("raw") / "pets.zip", n_per_class=3)


@pytest.fixture(scope="module")
def cleaned(pets: PetZip, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("clean")
    return out, clean_archive(pets.path, out, limits=LIMITS, non_jpeg="keep")


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open() as f:
        return list(csv.DictReader(f))


def _rgb_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_every_member_gets_the_expected_verdict(pets: PetZip, cleaned: tuple[Path, dict]) -> None:
    out, _ = cleaned
    rows = _manifest(out)
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    # Directory entries, the readme outside the class folders and the Thumbs.db files are not candidates.
    assert {r["path"]: (r["verdict"], r["reason"]) for r in rows} == pets.expected("keep")
    assert all(r["class"] == r["path"].split("/")[1] for r in rows)


def test_outputs_are_byte_exact_or_pixel_exact(pets: PetZip, cleaned: tuple[Path, dict]) -> None:
    out, _ = cleaned
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == {r["output"] for r in _manifest(out)} | {"manifest.csv", "summary.json"}
    for row in _manifest(out):
        source = pets.members[row["path"]]
        target = out / row["output"]
        if row["verdict"] in ("keep", "drop"):
            assert target.read_bytes() == source, row["path"]
            assert target.parent.parent.name == ("petimages" if row["verdict"] == "keep" else "quarantine")
        else:
            assert target.suffix == ".png" and target.stem == Path(row["path"]).stem
            with Image.open(target) as image:
                assert (image.format, image.mode) == ("PNG", "RGB")
            np.testing.assert_array_equal(_rgb_pixels(target.read_bytes()), _rgb_pixels(source))


def _keras_filter_keeps(data: bytes, scratch: Path) -> bool:
    """The Keras example's test, run for real on a file holding the member's bytes."""
    path = scratch / "member"
    path.write_bytes(data)
    with open(path, "rb") as fobj:
        return b"JFIF" in fobj.peek(10)


def test_summary_counts(pets: PetZip, cleaned: tuple[Path, dict], tmp_path: Path) -> None:
    out, summary = cleaned
    assert set(summary) == SUMMARY_KEYS
    assert json.loads((out / "summary.json").read_text()) == summary
    expected = pets.expected("keep")
    verdicts = [v for v, _ in expected.values()]
    assert summary["archive"] == "pets.zip"
    assert summary["archive_sha256"] == pets.sha256
    assert summary["total_members"] == len(expected)
    assert summary["kept"] == verdicts.count("keep") + verdicts.count("convert")
    assert summary["converted"] == verdicts.count("convert")
    assert summary["dropped"] == verdicts.count("drop")
    kept = pets.kept_per_class("keep")
    assert {cls: c["kept"] for cls, c in summary["per_class"].items()} == kept
    assert sum(c["dropped"] for c in summary["per_class"].values()) == summary["dropped"]
    reasons = [r for _, r in expected.values() if r]
    assert summary["by_reason"] == {r: reasons.count(r) for r in set(reasons)}
    assert summary["by_format"]["GIF"] == 1 and summary["by_format"]["BMP"] == 1
    assert summary["by_mode"]["CMYK"] == 1 and summary["by_mode"]["L"] == 1
    ignored = list(pets.ignored.values())
    assert summary["ignored"] == {"total": len(ignored), "by_reason": {r: ignored.count(r) for r in set(ignored)}}
    assert summary["limits"] == {
        "max_member_bytes": LIMITS.max_member_bytes,
        "max_compression_ratio": LIMITS.max_compression_ratio,
        "max_pixels": LIMITS.max_pixels,
    }
    keeps = {path: _keras_filter_keeps(data, tmp_path) for path, data in pets.members.items()}
    undecodable = {p for p, f in pets.faults.items() if f.reason in ("zero_bytes", "truncated", "not_an_image")}
    assert summary["jfif_filter"] == {
        "would_drop": sum(not k for k in keeps.values()),
        "would_keep": sum(keeps.values()),
        "decodable_but_dropped": sum(not k and p not in undecodable for p, k in keeps.items()),
        "undecodable_but_kept": sum(k and p in undecodable for p, k in keeps.items()),
    }
    # The fixture is built so both differences occur: Exif-only/CMYK/non-JPEG vs the truncated JFIF file.
    assert summary["jfif_filter"]["decodable_but_dropped"] >= 1
    assert summary["jfif_filter"]["undecodable_but_kept"] == 1


def test_non_jpeg_drop_quarantines_png_gif_bmp(pets: PetZip, tmp_path: Path) -> None:
    summary = clean_archive(pets.path, tmp_path, limits=LIMITS, non_jpeg="drop")
    rows = {r["path"]: (r["verdict"], r["reason"]) for r in _manifest(tmp_path)}
    assert rows == pets.expected("drop")
    assert {cls: c["kept"] for cls, c in summary["per_class"].items()} == pets.kept_per_class("drop")
    dropped_non_jpeg = [p for p, f in pets.faults.items() if f.non_jpeg]
    for path in dropped_non_jpeg:
        cls, name = path.split("/")[1:]
        assert (tmp_path / "quarantine" / cls / name).read_bytes() == pets.members[path]


def test_warnings_are_not_failures(pets: PetZip, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean_archive(pets.path, tmp_path, limits=LIMITS)
    exif = next(p for p, f in pets.faults.items() if f.kind == "exif_only")
    assert {r["path"]: r["verdict"] for r in _manifest(tmp_path)}[exif] == "keep"


def test_rerun_replaces_outputs_and_leaves_no_temporaries(pets: PetZip, tmp_path: Path) -> None:
    clean_archive(pets.path, tmp_path, limits=LIMITS, non_jpeg="keep")
    clean_archive(pets.path, tmp_path, limits=LIMITS, non_jpeg="drop")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
    # The PNGs of the first run's non-JPEG conversions are gone; only the mode conversions remain.
    converted = {p.relative_to(tmp_path / "petimages").as_posix() for p in (tmp_path / "petimages").rglob("*.png")}
    expected = {
        f"{path.split('/')[1]}/{Path(path).stem}.png"
        for path, (v, _) in pets.expected("drop").items()
        if v == "convert"
    }
    assert converted == expected and len(expected) == 2
    assert {r["path"]: (r["verdict"], r["reason"]) for r in _manifest(tmp_path)} == pets.expected("drop")


def test_missing_or_empty_archive_fails_without_outputs(tmp_path: Path) -> None:
    with pytest.raises(CnnreproError, match=r"missing\.zip: archive missing"):
        clean_archive(tmp_path / "missing.zip", tmp_path / "out", limits=LIMITS)
    assert not (tmp_path / "out").exists()
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("PetImages/readme.txt", b"hello")
    with pytest.raises(CnnreproError, match=r"no members at PetImages/Cat/<id>\.jpg or PetImages/Dog/<id>\.jpg"):
        clean_archive(empty, tmp_path / "out", limits=LIMITS)
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_clean(pets: PetZip, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "data" / "raw" / "petimages"
    raw.mkdir(parents=True)
    (raw / "pets.zip").write_bytes(pets.path.read_bytes())
    params = write_params(tmp_path / "params.yaml", {"download.petimages.archive": "pets.zip"})
    out = tmp_path / "data" / "clean"
    assert cli_main(["clean", "--params", str(params), "--raw", str(raw), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kept"] == sum(pets.kept_per_class("keep").values())
    capsys.readouterr()
    assert cli_main(["clean", "--params", str(params), "--raw", str(tmp_path), "--out", str(out)]) == 1
    missing = tmp_path / "pets.zip"
    expected = f"cnnrepro clean: error: {missing}: archive missing (run `cnnrepro download --dataset petimages`)"
    assert capsys.readouterr().err.strip() == expected
