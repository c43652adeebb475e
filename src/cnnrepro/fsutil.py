"""Atomic outputs: write to a temporary name beside the target, rename only when complete.

A killed job therefore never leaves a half-written file at a path that looks finished. A write that
fails (disk full, read-only folder, file size limit) raises `WriteError`: one line naming the output
(never the temporary name) and the cause, e.g. `runs/x/metrics.json: cannot write (No space left on
device)`; the temporary is removed and the previous output, if any, is left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnrepro.errors import CnnreproError

CHUNK = 1 << 20


class WriteError(CnnreproError):
    """An output could not be written; names the output path and the cause (errno's text)."""

    def __init__(self, path: str | Path, cause: str) -> None:
        super().__init__(f"{path}: cannot write ({cause})")
        self.path, self.cause = Path(path), cause


def _write_error(exc: OSError | WriteError, tmp: Path, target: Path) -> WriteError:
    """The failure as the user should read it: the temporary name `tmp` (or a path under it) shown as `target`."""
    failed = exc.path if isinstance(exc, WriteError) else Path(exc.filename) if exc.filename else tmp
    cause = exc.cause if isinstance(exc, WriteError) else exc.strerror or type(exc).__name__
    try:
        shown = target / failed.relative_to(tmp) if failed != tmp else target
    except ValueError:  # outside the temporary (e.g. the parent directory itself)
        shown = failed
    return WriteError(shown, cause)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700; a finished output gets the ordinary mode the umask allows."""
    path.chmod((0o777 if directory else 0o666) & ~_umask())


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside `target`; on success it replaces `target`, on error it is removed."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:  # the folder cannot take the temporary: name the output, not the temporary
        raise WriteError(target, exc.strerror or type(exc).__name__) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _publish_mode(tmp_path, directory=False)
        os.replace(tmp_path, target)
    except (OSError, WriteError) as exc:
        raise _write_error(exc, tmp_path, target) from None
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_named(target: str | Path) -> Iterator[Path]:
    """Like atomic_path, for writers that insist on the file's own name (Keras' model.save wants `.keras`):
    yield `<temporary folder beside target>/<target's name>`; on success it replaces `target`, else it is removed."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    except OSError as exc:
        raise WriteError(target, exc.strerror or type(exc).__name__) from None
    try:
        yield tmp / target.name
        _publish_mode(tmp / target.name, directory=(tmp / target.name).is_dir())
        os.replace(tmp / target.name, target)
    except (OSError, WriteError) as exc:
        raise _write_error(exc, tmp / target.name, target) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# The files a command that replaces a folder whole wrote into it (atomic_dir's own_list), one path a line.
OWN_LIST = ".cnnrepro-outputs"
MAX_OWN_LIST_BYTES = 8 << 20


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def check_replaceable(target: str | Path, flag: str) -> None:
    """A folder a command replaces whole must be absent, empty, or hold only the files that command listed as
    its own when it last wrote it (OWN_LIST): anything else there (a user's file, another tool's) would go
    with it. Else one CnnreproError naming the folder and its first foreign files; nothing is touched."""
    target = Path(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise CnnreproError(f"{flag} {target}: is not a folder")
    present = _files_under(target)
    listed: set[str] = set()
    own_list = target / OWN_LIST
    if own_list.is_file() and own_list.stat().st_size <= MAX_OWN_LIST_BYTES:
        listed = set(own_list.read_text(errors="replace").splitlines()) | {OWN_LIST}
    foreign = [name for name in present if name not in listed]
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise CnnreproError(
            f"{flag} {target}: holds {', '.join(foreign[:3])}{more}, which no earlier run of this command wrote; "
            f"nothing touched (move them, or give another {flag})"
        )


@contextlib.contextmanager
def atomic_dir(target: str | Path, *, own_list: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; on success it replaces `target` whole.

    With `own_list` (the flag that names the folder, for messages) the folder is replaced only when
    check_replaceable allows it, checked before anything is written and again just before the swap, and
    the files written are listed in it (OWN_LIST) so the next run recognises them as its own."""
    target = Path(target)
    if own_list:
        check_replaceable(target, own_list)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    except OSError as exc:  # the folder cannot take the temporary: name the output, not the temporary
        raise WriteError(target, exc.strerror or type(exc).__name__) from None
    try:
        yield tmp
        if own_list:
            write_file(tmp / OWN_LIST, "".join(f"{name}\n" for name in _files_under(tmp)).encode())
            check_replaceable(target, own_list)  # a file put there while this ran is not replaced either
        _publish_mode(tmp, directory=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except (OSError, WriteError) as exc:
        raise _write_error(exc, tmp, target) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_file(path: str | Path, data: bytes | memoryview) -> None:
    """Write `data` to `path`; a failed write() (disk full) names the file: Python's OSError from write()
    carries no file name, only the errno."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise WriteError(exc.filename or path, exc.strerror or type(exc).__name__) from None


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        write_file(tmp, data)


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        write_file(tmp, text.encode())


def write_json_atomic(target: str | Path, obj: Any) -> None:
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON output; a corrupt or missing file is a CnnreproError naming it."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise CnnreproError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise CnnreproError(f"{path}: corrupt JSON ({exc.msg} at line {exc.lineno})") from None


def cannot_create_files(directory: str | Path) -> str:
    """'' when a new file can be created in `directory` (a real probe, removed at once), else why not.

    `os.access` is not enough: as root it says yes for `/proc` or a read-only mount, which refuse every file.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".cnnrepro-probe.", dir=directory)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(name)
    return ""


def nearest_existing(path: str | Path) -> Path:
    """`path` or its closest ancestor that exists (where creating `path` would start)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
