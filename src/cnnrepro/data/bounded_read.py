"""Read one zip member to a scratch file within limits, so memory never depends on the member's size.

The member is streamed in chunks to disk while its sha256 is computed; the first bytes are kept for the
JFIF comparison. A member whose declared size or compression ratio is over the limits is not inflated at
all; one that turns out bigger than declared while streaming is stopped at the limit. A member zipfile
cannot read (bad CRC, encrypted, unknown compression, corrupt deflate data) is `unreadable_member`.
Either way it is dropped with its own reason, and only a small record of it goes to quarantine, never
its bytes.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from cnnrepro.mappings import Params

CHUNK = 1 << 16


@dataclass(frozen=True)
class Limits:
    """clean.max_member_bytes, clean.max_compression_ratio and clean.max_pixels of params.yaml."""

    max_member_bytes: int
    max_compression_ratio: float
    max_pixels: int

    @classmethod
    def from_params(cls, clean: Params) -> Limits:
        return cls(int(clean["max_member_bytes"]), float(clean["max_compression_ratio"]), int(clean["max_pixels"]))


@dataclass
class MemberRead:
    """What streaming one member gave: on success `path` holds its bytes; else `failure` says why not."""

    path: Path
    size: int = 0  # bytes read (all of them on success)
    sha256: str = ""  # empty when the member was not read in full
    head: bytes = b""
    failure: str = ""  # over_size_limit | over_ratio_limit | unreadable_member; empty when read in full
    error: str = ""  # zipfile's message for unreadable_member


def _ratio_over(size: int, compressed: int, limit: float) -> bool:
    return size > limit * max(compressed, 1)


def stream_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, scratch: Path, limits: Limits, head: int) -> MemberRead:
    """Copy `info`'s bytes to `scratch` (created or truncated) unless a limit stops it first."""
    result = MemberRead(scratch)
    if info.file_size > limits.max_member_bytes:
        result.failure = "over_size_limit"
        return result
    if _ratio_over(info.file_size, info.compress_size, limits.max_compression_ratio):
        result.failure = "over_ratio_limit"
        return result
    try:
        return _copy_within_limits(zf, info, result, limits, head)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error) as exc:
        result.failure, result.error, result.sha256 = "unreadable_member", str(exc), ""
        result.path.unlink(missing_ok=True)
        return result


def _copy_within_limits(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, result: MemberRead, limits: Limits, head: int
) -> MemberRead:
    digest = hashlib.sha256()
    head_bytes = bytearray()
    with zf.open(info) as source, open(result.path, "wb") as target:
        while chunk := source.read(CHUNK):
            result.size += len(chunk)
            if result.size > limits.max_member_bytes:
                result.failure = "over_size_limit"
            elif _ratio_over(result.size, info.compress_size, limits.max_compression_ratio):
                result.failure = "over_ratio_limit"
            if result.failure:
                target.truncate(0)
                return result
            digest.update(chunk)
            if len(head_bytes) < head:
                head_bytes += chunk[: head - len(head_bytes)]
            target.write(chunk)
    result.sha256 = digest.hexdigest()
    result.head = bytes(head_bytes)
    return result
