"""`cnnrepro clean`: decide every PetImages file by decoding it; keep, convert or quarantine it.

Candidates are exactly `PetImages/{Cat,Dog}/<numeric id>.<image ext>` (`archive_layout`); every other
member (other roots, deeper, absolute or `..` paths, links, macOS metadata, Thumbs.db) is ignored and
counted under `ignored` in the summary. Each candidate is streamed to a scratch file within the limits
of `clean:` in params.yaml (`bounded_read`: decompressed size, compression ratio) and decoded in full
with Pillow within the pixel limit (`pixels`), so memory depends on the limits, not on the member.
Warnings (e.g. "Corrupt EXIF data") are recorded, not failures; truncated data is a failure
(LOAD_TRUNCATED_IMAGES stays off). Verdicts:

- keep: a JPEG that decodes to RGB, written byte for byte under its own name;
- convert: a decodable image in another mode (CMYK, L, P, RGBA, 16-bit grey, ...) or, with
  `clean.non_jpeg: keep`, PNG/GIF/BMP data behind a `.jpg` name: converted to 8-bit RGB (`pixels.to_rgb`)
  and written as PNG, lossless, under the same numeric id (`Cat/700.jpg` -> `Cat/700.png`), so the
  pixels training reads are exactly the pixels the source decoded to;
- drop: zero bytes, not an image, truncated or otherwise undecodable, a mode with no faithful 8-bit
  form, or non-JPEG data with `clean.non_jpeg: drop`: the original bytes go to
  `quarantine/<class>/<name>`; over a limit (`over_size_limit`, `over_ratio_limit`,
  `over_pixel_limit`) or unreadable by zipfile (`unreadable_member`): only a record,
  `quarantine/<class>/<name>.limit.json`, never the bytes.

Outputs in `--out`: `petimages/{Cat,Dog}/`, `quarantine/{Cat,Dog}/`, `manifest.csv` (one row per
candidate: path in the archive, class, sha256 of its bytes (empty when a limit stopped the read),
detected format, mode, width, height, verdict, reason, and `output`, where it went under `--out`) and
`summary.json`. In the summary, `kept` counts every image in `petimages/` (converted ones included,
`converted` is that subset), so `kept + dropped == total_members` (candidates); `ignored` counts the
other members by reason; `by_format` / `by_mode` count every member Pillow could identify,
undecodable ones included; `by_reason` counts non-empty reasons. `jfif_filter` is what the Keras
example's filter (`b"JFIF" in fobj.peek(10)`) would have done to the same members. `peek(10)` returns
the whole read buffer (st_blksize bytes on Linux, 4096 here), not 10 bytes, so the window is measured
on this machine rather than assumed.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys
import tempfile
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cnnrepro.data.archive_layout import CLASSES, IGNORE_REASONS, place
from cnnrepro.data.bounded_read import Limits, MemberRead, stream_member
from cnnrepro.data.pixels import Decoded, decode, to_rgb
from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_dir, sha256_file, write_json_atomic, write_text_atomic
from cnnrepro.mappings import JsonObject
from cnnrepro.params import load_params

JPEG_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: a JPEG with extra frames; decoders read its first
JPEG_EXTENSIONS = frozenset({"jpg", "jpeg"})
MODE_REASONS = {"CMYK": "cmyk", "L": "grayscale", "P": "palette", "RGBA": "alpha", "LA": "alpha", "PA": "alpha"}
# Dropped members of which quarantine keeps a record, not the bytes (a bomb, or bytes zipfile cannot read).
RECORD_ONLY_REASONS = frozenset({"over_size_limit", "over_ratio_limit", "over_pixel_limit", "unreadable_member"})
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
class Decision:
    path: str
    cls: str
    sha256: str
    decoded: Decoded
    verdict: str
    reason: str
    output: str
    jfif: bool

    def row(self) -> JsonObject:
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


def _verdict(name: str, decoded: Decoded, non_jpeg: str) -> tuple[str, str]:
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


def decide(path: str, cls: str, member: MemberRead, non_jpeg: str, max_pixels: int) -> Decision:
    """The verdict on one streamed member; for a conversion, `decoded.image` holds the RGB result."""
    name = PurePosixPath(path).name
    decoded = Decoded(failure=member.failure) if member.failure else decode(member.path, member.size, max_pixels)
    verdict, reason = _verdict(name, decoded, non_jpeg)
    if verdict == "convert":
        assert decoded.image is not None
        rgb, unsupported = to_rgb(decoded.image)
        decoded.image.close()
        decoded.image = rgb
        if rgb is None:
            verdict, reason = "drop", unsupported
    if verdict == "keep":
        output = f"petimages/{cls}/{name}"
    elif verdict == "convert":
        output = f"petimages/{cls}/{PurePosixPath(name).stem}.png"
    elif reason in RECORD_ONLY_REASONS:
        output = f"quarantine/{cls}/{name}.limit.json"
    else:
        output = f"quarantine/{cls}/{name}"
    return Decision(path, cls, member.sha256, decoded, verdict, reason, output, jfif=b"JFIF" in member.head)


def _natural_key(path: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path))


def _limit_record(decision: Decision, member: MemberRead, info: zipfile.ZipInfo, limits: Limits) -> JsonObject:
    """What quarantine keeps of a member dropped by a limit: what it claimed and what was read, not its bytes."""
    width, height = decision.decoded.size or (None, None)
    return {
        "path": info.filename,
        "reason": decision.reason,
        "declared_bytes": info.file_size,
        "compressed_bytes": info.compress_size,
        "bytes_read": member.size,
        "error": member.error,
        "width": width,
        "height": height,
        "limits": asdict(limits),
    }


def _write_output(
    decision: Decision, member: MemberRead, info: zipfile.ZipInfo, limits: Limits, staging: dict[str, Path]
) -> None:
    top, rel = decision.output.split("/", 1)
    target = staging[top] / rel
    if target.exists():
        raise CnnreproError(f"{decision.path}: output {decision.output} already written by another member")
    if decision.verdict == "convert":
        assert decision.decoded.image is not None
        decision.decoded.image.save(target, format="PNG")
    elif decision.reason in RECORD_ONLY_REASONS:
        write_json_atomic(target, _limit_record(decision, member, info, limits))
    else:
        os.replace(member.path, target)  # the scratch file holds the member's bytes: move, never copy


def summarize(
    decisions: list[Decision], ignored: Counter[str], archive: Path, archive_sha256: str, limits: Limits
) -> JsonObject:
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
        "ignored": {
            "total": sum(ignored.values()),
            "by_reason": {reason: ignored[reason] for reason in IGNORE_REASONS if ignored[reason]},
        },
        "limits": asdict(limits),
    }


def _manifest_text(decisions: list[Decision]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(d.row() for d in decisions)
    return buffer.getvalue()


def clean_archive(archive: Path, out: Path, *, limits: Limits, non_jpeg: str = "keep") -> JsonObject:
    """Clean `archive` into `out` (see the module docstring); return the summary."""
    if not archive.is_file():
        raise CnnreproError(f"{archive}: archive missing (run `cnnrepro download --dataset petimages`)")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CnnreproError(f"{archive}: not a readable zip ({exc})") from None
    out.mkdir(parents=True, exist_ok=True)
    decisions: list[Decision] = []
    ignored: Counter[str] = Counter()
    with (
        zf,
        atomic_dir(out / "petimages") as kept_dir,
        atomic_dir(out / "quarantine") as quarantine_dir,
        tempfile.TemporaryDirectory(prefix=".clean.", dir=out) as scratch_dir,
    ):
        staging = {"petimages": kept_dir, "quarantine": quarantine_dir}
        for cls in CLASSES:
            (kept_dir / cls).mkdir()
            (quarantine_dir / cls).mkdir()
        peek_window = jfif_peek_window(out)
        scratch = Path(scratch_dir) / "member"
        members = [info for info in zf.infolist() if not info.is_dir()]
        for info in sorted(members, key=lambda i: _natural_key(i.filename)):
            placement = place(info)
            if placement.cls is None:
                ignored[str(placement.ignored)] += 1
                continue
            member = stream_member(zf, info, scratch, limits, head=peek_window)
            decision = decide(info.filename, placement.cls, member, non_jpeg, limits.max_pixels)
            _write_output(decision, member, info, limits, staging)
            if decision.decoded.image is not None:
                decision.decoded.image.close()
            decision.decoded.image = None  # free the pixels
            decisions.append(decision)
        if not decisions:
            raise CnnreproError(f"{archive}: no members at PetImages/Cat/<id>.jpg or PetImages/Dog/<id>.jpg")
    summary = summarize(decisions, ignored, archive, sha256_file(archive), limits)
    write_text_atomic(out / "manifest.csv", _manifest_text(decisions))
    write_json_atomic(out / "summary.json", summary)
    warned = sum(bool(d.decoded.warnings) for d in decisions)
    print(
        f"{archive.name}: {len(decisions)} candidates, {summary['ignored']['total']} other members ignored "
        f"{summary['ignored']['by_reason']}, {warned} decoded with warnings; JFIF peek window {peek_window} bytes",
        file=sys.stderr,
    )
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", required=True, type=Path, help="the download directory holding the archive")
    parser.add_argument("--out", required=True, type=Path, help="e.g. data/clean")


def main(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    archive = args.raw / params["download"]["petimages"]["archive"]
    clean = params["clean"]
    summary = clean_archive(archive, args.out, non_jpeg=clean["non_jpeg"], limits=Limits.from_params(clean))
    print(
        f"{summary['total_members']} members: kept {summary['kept']} (converted {summary['converted']}), "
        f"dropped {summary['dropped']}; reasons {summary['by_reason']}"
    )
    return 0
