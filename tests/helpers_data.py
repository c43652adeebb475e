"""Fixture builders for the data stages, reused by the orchestration tests.

- `make_petimages_zip`: a tiny zip in the PetImages layout with every fault kind of the real archive;
- `make_idx_gz_dir` / `write_idx_pins`: tiny idx `.gz` files and the pins file (`CNNREPRO_IDX_PINS`)
  that lets the real download / prepare-mnist code accept them in a separate process;
- `LoopbackServer`: `http.server` on 127.0.0.1 (port 0) in a thread, with scripted faults;
- `write_params`: the shipped params.yaml with dotted-key changes.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import http.server
import io
import json
import socket
import struct
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from cnnrepro.data.bounded_read import Limits
from cnnrepro.data.idx import IDX_FILES, IdxSpec, gz_name

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- images


def _noise(size: tuple[int, int], channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], channels) if channels > 1 else (size[1], size[0])
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _encode(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def rgb_jpeg(seed: int = 0, size: tuple[int, int] = (24, 24)) -> bytes:
    """A plain JFIF RGB JPEG (Pillow writes the JFIF APP0 segment)."""
    return _encode(Image.fromarray(_noise(size, 3, seed), "RGB"), "JPEG", quality=90)


def exif_only_jpeg(seed: int = 1) -> bytes:
    """A camera-style JPEG: APP1 Exif (malformed, so Pillow warns "Corrupt EXIF data"), no JFIF anywhere."""
    data = rgb_jpeg(seed)
    assert data[2:4] == b"\xff\xe0", "expected Pillow to write APP0 first"
    app0_length = int.from_bytes(data[4:6], "big")
    # A TIFF header announcing one IFD entry that is not there.
    payload = b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00" + b"\x01\x00"
    result = b"\xff\xd8\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + data[4 + app0_length :]
    assert b"JFIF" not in result
    return result


def truncated_jpeg(seed: int = 2) -> bytes:
    """A JFIF JPEG cut short in the middle of its scan."""
    data = _encode(Image.fromarray(_noise((48, 48), 3, seed), "RGB"), "JPEG", quality=95)
    return data[: len(data) // 2]


def cmyk_jpeg(seed: int = 3) -> bytes:
    return _encode(Image.fromarray(_noise((24, 24), 4, seed), "CMYK"), "JPEG", quality=90)


def grayscale_jpeg(seed: int = 4) -> bytes:
    return _encode(Image.fromarray(_noise((24, 24), 1, seed), "L"), "JPEG", quality=90)


def png_rgb(seed: int = 5) -> bytes:
    return _encode(Image.fromarray(_noise((24, 24), 3, seed), "RGB"), "PNG")


def png_rgba(seed: int = 6) -> bytes:
    return _encode(Image.fromarray(_noise((24, 24), 4, seed), "RGBA"), "PNG")


def png_palette(seed: int = 7) -> bytes:
    return _encode(Image.fromarray(_noise((24, 24), 3, seed), "RGB").convert("P"), "PNG")


def gif_palette(seed: int = 8) -> bytes:
    return _encode(Image.fromarray(_noise((24, 24), 3, seed), "RGB").convert("P"), "GIF")


def bmp_rgb(seed: int = 9) -> bytes:
    return _encode(Image.fromarray(_noise((24, 24), 3, seed), "RGB"), "BMP")


def thumbs_db() -> bytes:
    """An OLE compound file header, as Windows' thumbnail cache starts."""
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504


@dataclass(frozen=True)
class Fault:
    """A member of the fixture zip that is not a plain RGB JPEG, with the verdict a decoding cleaner gives."""

    cls: str
    kind: str
    data: bytes
    verdict: str  # with clean.non_jpeg: keep
    reason: str
    non_jpeg: bool = False  # decodable non-JPEG data: dropped instead with clean.non_jpeg: drop


def fault_kinds() -> list[Fault]:
    """Every fault kind of the real archive, spread over both classes."""
    return [
        Fault("Cat", "zero_bytes", b"", "drop", "zero_bytes"),
        Fault("Cat", "exif_only", exif_only_jpeg(), "keep", "decode_warning"),
        Fault("Cat", "png_as_jpg", png_rgb(), "convert", "png_as_jpg", non_jpeg=True),
        Fault("Cat", "bmp_as_jpg", bmp_rgb(), "convert", "bmp_as_jpg", non_jpeg=True),
        Fault("Cat", "grayscale", grayscale_jpeg(), "convert", "grayscale"),
        Fault("Cat", "palette_png_as_jpg", png_palette(), "convert", "png_as_jpg", non_jpeg=True),
        Fault("Dog", "zero_bytes", b"", "drop", "zero_bytes"),
        Fault("Dog", "truncated", truncated_jpeg(), "drop", "truncated"),
        Fault("Dog", "gif_as_jpg", gif_palette(), "convert", "gif_as_jpg", non_jpeg=True),
        Fault("Dog", "cmyk", cmyk_jpeg(), "convert", "cmyk"),
        Fault("Dog", "rgba_png_as_jpg", png_rgba(), "convert", "png_as_jpg", non_jpeg=True),
        Fault("Dog", "not_an_image", b"<html>404 Not Found</html>\n", "drop", "not_an_image"),
    ]


@dataclass
class PetZip:
    path: Path
    members: dict[str, bytes]  # archive path -> bytes, class members only
    faults: dict[str, Fault]  # archive path -> fault, for the fault members
    sha256: str
    ignored: dict[str, str] = field(default_factory=dict)  # archive path -> why it is not a candidate

    def expected(self, non_jpeg: str = "keep") -> dict[str, tuple[str, str]]:
        """archive path -> (verdict, reason) for every class member."""
        table = {path: ("keep", "") for path in self.members}
        for path, fault in self.faults.items():
            verdict = "drop" if fault.non_jpeg and non_jpeg == "drop" else fault.verdict
            table[path] = (verdict, fault.reason)
        return table

    def kept_per_class(self, non_jpeg: str = "keep") -> dict[str, int]:
        counts = Counter(path.split("/")[1] for path, (v, _) in self.expected(non_jpeg).items() if v != "drop")
        return {"Cat": counts["Cat"], "Dog": counts["Dog"]}


def make_petimages_zip(path: str | Path, n_per_class: int = 14, with_faults: bool = True, seed: int = 0) -> PetZip:
    """A zip laid out like kagglecatsanddogs_*.zip: `PetImages/{Cat,Dog}/<id>.jpg` plus directory entries.

    Members that are not candidates (the readme; with faults, a Thumbs.db per class) are in `.ignored`.

    Ids 0..n_per_class-1 of each class are plain RGB JPEGs; the faults (see `fault_kinds`) take the
    next ids, so at least `n_per_class` images per class survive cleaning.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    members: dict[str, bytes] = {}
    faults: dict[str, Fault] = {}
    for c, cls in enumerate(("Cat", "Dog")):
        for i in range(n_per_class):
            members[f"PetImages/{cls}/{i}.jpg"] = rgb_jpeg(seed=seed * 100_000 + c * 10_000 + i)
    if with_faults:
        next_id = {"Cat": n_per_class, "Dog": n_per_class}
        for fault in fault_kinds():
            member = f"PetImages/{fault.cls}/{next_id[fault.cls]}.jpg"
            next_id[fault.cls] += 1
            members[member] = fault.data
            faults[member] = fault
    # Like the real archive: a readme at the top and Windows' thumbnail caches in the class folders.
    others = {"readme[1].txt": (b"not an image\n", "outside_petimages")}
    if with_faults:
        others |= {f"PetImages/{cls}/Thumbs.db": (thumbs_db(), "thumbs_db") for cls in ("Cat", "Dog")}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for directory in ("PetImages/", "PetImages/Cat/", "PetImages/Dog/"):
            zf.writestr(zipfile.ZipInfo(directory, date_time=(2017, 1, 1, 0, 0, 0)), b"")
        for member, data in [*members.items(), *((name, data) for name, (data, _) in others.items())]:
            zf.writestr(zipfile.ZipInfo(member, date_time=(2017, 1, 1, 0, 0, 0)), data)
    ignored = {name: reason for name, (_, reason) in others.items()}
    return PetZip(path, members, faults, hashlib.sha256(path.read_bytes()).hexdigest(), ignored)


# ---------------------------------------------------------------- idx files


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x0800 | array.ndim
    return struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()


@dataclass
class IdxFixture:
    path: Path
    arrays: dict[str, np.ndarray]  # x_train, y_train, x_test, y_test
    pins: dict[str, IdxSpec]  # idx file name -> uncompressed sha256 and count


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % 10).astype(np.uint8)


def _learnable_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dim noise with a bright 7x7 block whose place (one of ten) is the label: a network learns it in a
    few steps, so a tiny run's accuracy is far from chance while staying a real training."""
    images = rng.integers(0, 64, (len(labels), 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels, strict=True):
        row, col = divmod(int(label), 4)
        image[2 + 8 * row : 9 + 8 * row, 1 + 7 * col : 8 + 7 * col] = 255
    return images


def make_idx_gz_dir(
    path: str | Path, n_train: int = 20, n_test: int = 10, seed: int = 0, learnable: bool = False
) -> IdxFixture:
    """The four `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz` files with balanced labels and random
    images (or, `learnable`, images whose label can be learned: `_learnable_images`).

    The real pins reject these; pass `.pins` to the functions, or `write_idx_pins` + CNNREPRO_IDX_PINS
    to a process.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y_train, y_test = _balanced_labels(n_train, rng), _balanced_labels(n_test, rng)
    if learnable:
        x_train, x_test = _learnable_images(y_train, rng), _learnable_images(y_test, rng)
    else:
        x_train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
        x_test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    by_file = dict(zip(IDX_FILES, ("x_train", "y_train", "x_test", "y_test"), strict=True))
    pins = {}
    for name, key in by_file.items():
        raw = idx_bytes(arrays[key])
        (path / gz_name(name)).write_bytes(gzip.compress(raw, mtime=0))
        pins[name] = IdxSpec(hashlib.sha256(raw).hexdigest(), len(arrays[key]))
    return IdxFixture(path, arrays, pins)


def write_idx_pins(target: str | Path, pins_by_dataset: dict[str, dict[str, IdxSpec]]) -> Path:
    """The JSON file CNNREPRO_IDX_PINS names: {"mnist": {"<idx name>": {"sha256", "count"}}, ...}."""
    target = Path(target)
    table = {
        dataset: {name: {"sha256": spec.sha256, "count": spec.count} for name, spec in pins.items()}
        for dataset, pins in pins_by_dataset.items()
    }
    target.write_text(json.dumps(table, indent=2))
    return target


# ---------------------------------------------------------------- HTTP


# How long a stalling answer waits: far beyond any client timeout the tests set.
STALL_S = 2.0


@dataclass
class LoopbackServer:
    """Serves files from `root` on 127.0.0.1; `plan[path]` scripts the answers to successive requests.

    Answers: "ok", "404", "403", "500", "503"; "truncate", "stall_body" and "reset" send the whole
    file's Content-Length and half the body, then close the connection, stall past the client's read
    timeout, or close with a TCP RST; "stall_headers" reads the request and never answers in time;
    "unsized_cut" sends half the body with no Content-Length (the client cannot tell it is short).
    When a plan runs out, the answer is "ok".
    """

    root: Path
    plan: dict[str, list[str]] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    url: str = ""
    stop: threading.Event = field(default_factory=threading.Event)  # releases stalled answers at shutdown

    def url_for(self, name: str) -> str:
        return f"{self.url}/{name}"


def _handler(server: LoopbackServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            server.hits[path] += 1
            queue = server.plan.get(path, [])
            answer = queue.pop(0) if queue else "ok"
            file = server.root / path
            if answer.isdigit() or not file.is_file():
                status = int(answer) if answer.isdigit() else 404
                body = f"{status}\n".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            data = file.read_bytes()
            if answer == "stall_headers":
                server.stop.wait(STALL_S)
                self.close_connection = True
                return
            if answer == "unsized_cut":
                # HTTP/1.0 style: the body ends when the connection closes.
                self.protocol_version = "HTTP/1.0"
                self.send_response(200)
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.close_connection = True
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            if answer == "ok":
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            if answer == "stall_body":
                server.stop.wait(STALL_S)
            elif answer == "reset":
                # SO_LINGER 0: close() sends RST instead of FIN, as a crashed proxy or middlebox does.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve_directory(root: str | Path, plan: dict[str, list[str]] | None = None) -> Iterator[LoopbackServer]:
    server = LoopbackServer(Path(root), dict(plan or {}))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()  # release stalled handlers at once
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- params


def write_params(target: str | Path, changes: dict[str, Any] | None = None) -> Path:
    """The shipped params.yaml with `changes` applied by dotted key, e.g. {"split.book.train": 6}."""
    params = copy.deepcopy(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text()))
    for dotted, value in (changes or {}).items():
        *parents, key = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[key] = value
    target = Path(target)
    target.write_text(yaml.safe_dump(params, sort_keys=False))
    return target


def shipped_limits() -> Limits:
    """The clean stage's member limits as the shipped params.yaml sets them."""
    return Limits.from_params(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["clean"])


def petimages_params(tmp_path: Path, mirror: Path | None, urls: list[str], sha256: str | None) -> Path:
    """tmp_path/params.yaml downloading the fixture's pets.zip: the mirror (or none), these URLs, no retries."""
    return write_params(
        tmp_path / "params.yaml",
        {
            "data.mirror": str(mirror) if mirror else None,
            "download.petimages.archive": "pets.zip",
            "download.petimages.urls": urls,
            "download.petimages.sha256": sha256,
            "download.retries": 0,
            "download.backoff_s": 0,
            "download.timeout_s": 5,
        },
    )
