"""`cnnrepro clean`: decide every PetImages file by decoding it; keep, convert or quarantine it.

Each member under `PetImages/{Cat,Dog}/` is read straight from the zip and decoded in full with
Pillow (`Image.open` + `load()`). Warnings (e.g. "Corrupt EXIF data") are recorded, not failures;
truncated data is a failure (LOAD_TRUNCATED_IMAGES stays off). Verdicts:

- keep: a JPEG that decodes to RGB, written byte for byte under its own name;
- convert: a decodable image in another mode (CMYK, L, P, RGBA, ...) or, with `clean.non_jpeg:
  keep`, PNG/GIF/BMP data behind a `.jpg` name: converted to 3-channel RGB and written as PNG,
  lossless, under the same numeric id (`Cat/700.jpg` -> `Cat/700.png`), so the pixels training
  reads are exactly the pixels the source decoded to;
- drop: zero bytes, Thumbs.db, not an image, truncated or otherwise undecodable, or non-JPEG data
  with `clean.non_jpeg: drop`: the original bytes go to `quarantine/<class>/<name>`.

Outputs in `--out`: `petimages/{Cat,Dog}/`, `quarantine/{Cat,Dog}/`, `manifest.csv` (one row per
member: path in the archive, class, sha256 of its bytes, detected format, mode, width, height,
verdict, reason, and `output`, where it went under `--out`) and `summary.json`. In the summary,
`kept` counts every image in `petimages/` (converted ones included, `converted` is that subset),
so `kept + dropped == total_members`; `by_format` / `by_mode` count every member Pillow could
identify, undecodable ones included; `by_reason` counts non-empty reasons. `jfif_filter` is what
the Keras example's filter (`b"JFIF" in fobj.peek(10)`) would have done to the same members.
`peek(10)` returns the whole read buffer (st_blksize bytes on Linux, 4096 here), not 10 bytes,
so the window is measured on this machine rather than assumed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import re
import sys
import tempfile
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from cnnrepro.config import load_params
from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_dir, sha256_file, write_json_atomic, write_text_atomic

CLASSES = ("Cat", "Dog")
JPEG_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: a JPEG with extra frames; decoders read its first
JPEG_EXTENSIONS = frozenset({"jpg", "jpeg"})
MODE_REASONS = {"CMYK": "cmyk", "L": "grayscale", "P": "palette", "RGBA": "alpha", "LA": "alpha", "PA": "alpha"}
MANIFEST_COLUMNS = (
    "path",
    "class",
    "sha256",
    "detected_format",
    "mode",
    "width",
    "height",
    "verdict",
    "reason",
    "output",
)


@dataclass
class Decoded:
    """What Pillow made of one member's bytes."""

    image: Image.Image | None = None
    detected_format: str = ""
    mode: str = ""
    size: tuple[int, int] | None = None
    failure: str = ""  # empty when it decoded in full
    warnings: list[str] = field(default_factory=list)


@dataclass
class Decision:
    path: str
    cls: str
    sha256: str
    decoded: Decoded
    verdict: str
    reason: str
    output: str
    jfif: bool

    def row(self) -> dict[str, Any]:
        width, height = self.decoded.size or ("", "")
        return {
            "path": self.path,
            "class": self.cls,
            "sha256": self.sha256,
            "detected_format": self.decoded.detected_format,
            "mode": self.decoded.mode,
            "width": width,
            "height": height,
            "verdict": self.verdict,
            "reason": self.reason,
            "output": self.output,
        }


def decode(data: bytes) -> Decoded:
    """Open and fully decode `data`; any exception while decoding means undecodable."""
    result = Decoded()
    if not data:
        result.failure = "zero_bytes"
        return result
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            result.failure = "not_an_image"
        except Exception:  # Pillow raises many types on malformed headers (SyntaxError, struct.error, ...)
            result.failure = "decode_error"
        else:
            result.detected_format, result.mode, result.size = image.format or "", image.mode, image.size
            try:
                image.load()
                result.image = image
            except Exception as exc:
                text = str(exc)
                truncated = "truncated" in text or "broken data stream" in text or isinstance(exc, EOFError)
                result.failure = "truncated" if truncated else "decode_error"
    result.warnings = [str(w.message).strip() for w in caught]
    return result


def _verdict(name: str, decoded: Decoded, non_jpeg: str) -> tuple[str, str]:
    if name.lower() == "thumbs.db":
        return "drop", "thumbs_db"
    if decoded.failure:
        return "drop", decoded.failure
    ext = PurePosixPath(name).suffix.lower().lstrip(".")
    fmt = decoded.detected_format
    if fmt not in JPEG_FORMATS:
        reason = f"{fmt.lower()}_as_{ext}" if ext in JPEG_EXTENSIONS else fmt.lower()
        return ("drop" if non_jpeg == "drop" else "convert"), reason
    if decoded.mode != "RGB":
        return "convert", MODE_REASONS.get(decoded.mode, f"mode_{decoded.mode.lower()}")
    return "keep", "decode_warning" if decoded.warnings else ""


def jfif_peek_window(directory: Path) -> int:
    """How many bytes `open(path, "rb").peek(10)` returns for a large file on this filesystem."""
    fd, name = tempfile.mkstemp(prefix=".peek.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * (1 << 20))
        with open(name, "rb") as f:
            return len(f.peek(10))
    finally:
        os.unlink(name)


def decide(path: str, cls: str, data: bytes, non_jpeg: str, peek_window: int) -> Decision:
    name = PurePosixPath(path).name
    decoded = decode(data)
    verdict, reason = _verdict(name, decoded, non_jpeg)
    if verdict == "keep":
        output = f"petimages/{cls}/{name}"
    elif verdict == "convert":
        output = f"petimages/{cls}/{PurePosixPath(name).stem}.png"
    else:
        output = f"quarantine/{cls}/{name}"
    sha256 = hashlib.sha256(data).hexdigest()
    return Decision(path, cls, sha256, decoded, verdict, reason, output, jfif=b"JFIF" in data[:peek_window])


def _class_of(path: str) -> str | None:
    parts = PurePosixPath(path).parts
    return parts[-2] if len(parts) >= 2 and parts[-2] in CLASSES else None


def _natural_key(path: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path))


def _write_output(decision: Decision, data: bytes, staging: dict[str, Path]) -> None:
    top, rel = decision.output.split("/", 1)
    target = staging[top] / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise CnnreproError(f"{decision.path}: output {decision.output} already written by another member")
    if decision.verdict == "convert":
        assert decision.decoded.image is not None
        with warnings.catch_warnings():
            # e.g. "Palette images with Transparency ...": the conversion is the point here.
            warnings.simplefilter("ignore")
            rgb = decision.decoded.image.convert("RGB")
        rgb.save(target, format="PNG")
    else:
        target.write_bytes(data)


def summarize(decisions: list[Decision], archive: Path, archive_sha256: str) -> dict[str, Any]:
    kept = [d for d in decisions if d.verdict != "drop"]
    identified = [d.decoded for d in decisions if d.decoded.detected_format]
    decodable_jfif = Counter((d.jfif, not d.decoded.failure) for d in decisions)
    return {
        "archive": archive.name,
        "archive_sha256": archive_sha256,
        "total_members": len(decisions),
        "kept": len(kept),
        "converted": sum(d.verdict == "convert" for d in decisions),
        "dropped": len(decisions) - len(kept),
        "per_class": {
            cls: {
                "kept": sum(d.cls == cls for d in kept),
                "dropped": sum(d.cls == cls and d.verdict == "drop" for d in decisions),
            }
            for cls in CLASSES
        },
        "by_reason": dict(sorted(Counter(d.reason for d in decisions if d.reason).items())),
        "by_format": dict(sorted(Counter(d.detected_format for d in identified).items())),
        "by_mode": dict(sorted(Counter(d.mode for d in identified).items())),
        "jfif_filter": {
            "would_drop": sum(not d.jfif for d in decisions),
            "would_keep": sum(d.jfif for d in decisions),
            "decodable_but_dropped": decodable_jfif[(False, True)],
            "undecodable_but_kept": decodable_jfif[(True, False)],
        },
    }


def _manifest_text(decisions: list[Decision]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(d.row() for d in decisions)
    return buffer.getvalue()


def clean_archive(archive: Path, out: Path, *, non_jpeg: str = "keep") -> dict[str, Any]:
    """Clean `archive` into `out` (see the module docstring); return the summary."""
    if not archive.is_file():
        raise CnnreproError(f"{archive}: archive missing (run `cnnrepro download --dataset petimages`)")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CnnreproError(f"{archive}: not a readable zip ({exc})") from None
    out.mkdir(parents=True, exist_ok=True)
    decisions: list[Decision] = []
    ignored = 0
    with zf, atomic_dir(out / "petimages") as kept_dir, atomic_dir(out / "quarantine") as quarantine_dir:
        staging = {"petimages": kept_dir, "quarantine": quarantine_dir}
        for cls in CLASSES:
            (kept_dir / cls).mkdir()
            (quarantine_dir / cls).mkdir()
        peek_window = jfif_peek_window(out)
        members = [info for info in zf.infolist() if not info.is_dir()]
        for info in sorted(members, key=lambda i: _natural_key(i.filename)):
            cls = _class_of(info.filename)
            if cls is None:
                ignored += 1
                continue
            try:
                data = zf.read(info)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise CnnreproError(f"{archive}: member {info.filename} unreadable ({exc})") from None
            decision = decide(info.filename, cls, data, non_jpeg, peek_window)
            _write_output(decision, data, staging)
            decision.decoded.image = None  # free the pixels
            decisions.append(decision)
        if not decisions:
            raise CnnreproError(f"{archive}: no members under PetImages/Cat/ or PetImages/Dog/")
    summary = summarize(decisions, archive, sha256_file(archive))
    write_text_atomic(out / "manifest.csv", _manifest_text(decisions))
    write_json_atomic(out / "summary.json", summary)
    warned = sum(bool(d.decoded.warnings) for d in decisions)
    print(
        f"{archive.name}: {len(decisions)} members ({ignored} outside the class folders ignored), "
        f"{warned} decoded with warnings; JFIF peek window {peek_window} bytes",
        file=sys.stderr,
    )
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", required=True, type=Path, help="the download directory holding the archive")
    parser.add_argument("--out", required=True, type=Path, help="e.g. data/clean")


def main(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    archive = args.raw / params["download"]["petimages"]["archive"]
    summary = clean_archive(archive, args.out, non_jpeg=params["clean"]["non_jpeg"])
    print(
        f"{summary['total_members']} members: kept {summary['kept']} (converted {summary['converted']}), "
        f"dropped {summary['dropped']}; reasons {summary['by_reason']}"
    )
    return 0
