"""Hostile archives for the fault zoo, built byte by byte, and a bounded, measured run of a real stage.

- `zero_bomb`: a raw deflate stream of `n_mib` MiB of zeros, built from one repeated full-flush block,
  so a 1.5 GiB bomb costs about 1 s (its CRC) instead of compressing 1.5 GiB;
- `write_zip`: a zip written from raw entries (any method, sizes and CRC as given, so headers can lie,
  unix modes such as symlinks), which `zipfile` cannot be made to write;
- `run_bounded`: a command in a subprocess under RLIMIT_AS, with its own peak RSS (from wait4 in a small
  parent, so this test process's size never counts).
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MIB = 1 << 20
STORED, DEFLATED = 0, 8


@dataclass(frozen=True)
class RawEntry:
    name: str
    data: bytes  # as stored in the archive (compressed when method is DEFLATED)
    method: int
    crc: int
    size: int  # the inflated size the headers declare
    unix_mode: int = 0o100644

    @classmethod
    def stored(cls, name: str, data: bytes, unix_mode: int = 0o100644) -> RawEntry:
        return cls(name, data, STORED, zlib.crc32(data), len(data), unix_mode)


def zero_bomb(name: str, n_mib: int, declared_mib: int | None = None) -> RawEntry:
    """`n_mib` MiB of zeros, deflated; the headers declare `declared_mib` (default: the truth) and its CRC."""
    zeros = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH) == block
    stream = first + block * (n_mib - 1) + compressor.flush()
    declared = n_mib if declared_mib is None else declared_mib
    crc = 0
    for _ in range(declared):
        crc = zlib.crc32(zeros, crc)
    return RawEntry(name, stream, DEFLATED, crc, declared * MIB)


def write_zip(path: Path, entries: list[RawEntry]) -> Path:
    """A plain (non-zip64) archive of `entries`, made on unix (so modes and symlinks are honoured)."""
    body = io.BytesIO()
    central = io.BytesIO()
    for entry in entries:
        name = entry.name.encode()
        offset = body.tell()
        body.write(
            struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, entry.method, 0, 0x21, entry.crc, len(entry.data),
                        entry.size, len(name), 0)
        )  # fmt: skip
        body.write(name + entry.data)
        central.write(
            struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 20, 20, 0, entry.method, 0, 0x21, entry.crc,
                        len(entry.data), entry.size, len(name), 0, 0, 0, 0, entry.unix_mode << 16, offset)
        )  # fmt: skip
        central.write(name)
    start = body.tell()
    directory = central.getvalue()
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(directory), start, 0)
    path.write_bytes(body.getvalue() + directory + end)
    return path


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def grey16_png(seed: int = 0, size: tuple[int, int] = (64, 48)) -> tuple[bytes, np.ndarray]:
    """A full-range 16-bit grey PNG (0 and 65535 both present) and its pixels."""
    values = np.random.default_rng(seed).integers(0, 65536, (size[1], size[0]), dtype=np.uint16)
    values.flat[:2] = (0, 65535)
    return encode(Image.fromarray(values), "PNG"), values


@dataclass(frozen=True)
class BoundedRun:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mib: float
    seconds: float


# Runs between this process and the measured command: it sets the limit and forks from a small process.
# (Measured straight from here, ru_maxrss would report this whole test process: a forked child's peak
# starts at its parent's resident size, and exec keeps the old high-water mark.)
_MEASURE = """
import os, resource, sys
limit, peak_file, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        os.execvp(args[0], args)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(peak_file, "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_bounded(args: list[str], cwd: Path, address_space_mib: int, env: dict[str, str] | None = None) -> BoundedRun:
    """Run `args` under RLIMIT_AS; its own peak resident memory comes from wait4 in a small parent."""
    peak_file = cwd / ".bounded.peak"
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(address_space_mib * MIB), str(peak_file), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    seconds = time.monotonic() - start
    peak_kib = int(peak_file.read_text())
    peak_file.unlink()
    return BoundedRun(result.returncode, result.stdout, result.stderr, peak_rss_mib=peak_kib / 1024, seconds=seconds)


def bilevel_png(width: int, height: int) -> bytes:
    """An all-black 1-bit grey PNG, written chunk by chunk (no width x height image in this process)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
