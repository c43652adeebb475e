"""`cnnrepro download`: fetch PetImages, MNIST or Fashion-MNIST, verified, into one atomic directory.

Sources are tried in order: the local mirror first (`<mirror>/petimages/<archive>`,
`<mirror>/mnist/*.gz`, `<mirror>/fashion-mnist/*.gz`), then the URLs from params. A source that
answers 404/403, fails verification or is missing is skipped at once; one that is unreachable,
times out, answers 5xx or cuts the body short is retried with exponential backoff first. Every
file is written under a temporary name and renamed only once complete and verified, and the whole
`--out` directory appears only when every file is in, so a failure leaves nothing at `--out`.

`<out>/manifest.json` records, per file, where it came from, its size and sha256 (and for idx
files the uncompressed size and sha256), plus the sources that were tried and failed first.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import sys
import time
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnrepro.data import idx
from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import CHUNK, atomic_dir, atomic_path, write_json_atomic
from cnnrepro.mappings import JsonObject, Params
from cnnrepro.params import load_params, mirror_dir

DATASETS = ("petimages", "mnist", "fashion_mnist")
# The mirror's folder names (note the hyphen), laid out like ../shared/datasets.
MIRROR_FOLDERS = {"petimages": "petimages", "mnist": "mnist", "fashion_mnist": "fashion-mnist"}
# Answers that will not change on a retry; other 4xx/5xx (429, 500, 503, ...) are retried.
PERMANENT_HTTP = frozenset({400, 401, 403, 404, 405, 410, 451})
CLASS_PREFIXES = ("PetImages/Cat/", "PetImages/Dog/")

# A verifier checks the downloaded temporary file and returns extra fields for the manifest.
Verifier = Callable[[Path, str], JsonObject]


@dataclass
class FetchRecord:
    source: str
    path: Path
    size: int
    sha256: str
    attempts: int
    extra: JsonObject = field(default_factory=dict)
    failed_sources: list[str] = field(default_factory=list)


class _SourceFailure(Exception):
    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def _short_reason(exc: BaseException) -> str:
    """The root cause of a requests/urllib3 error, without the object reprs it is wrapped in."""
    text = str(exc)
    errno_text = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno_text:
        return errno_text[-1].strip()
    if "timed out" in text.lower():
        return "timed out"
    return type(exc).__name__


def _is_local(source: str) -> bool:
    return "://" not in source or source.startswith("file://")


def _local_path(source: str) -> Path:
    if source.startswith("file://"):
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(source).path))
    return Path(source)


def _copy_local(source: str, tmp: Path) -> tuple[int, str]:
    path = _local_path(source)
    if not path.is_file():
        raise _SourceFailure(f"{source}: no such file", retry=False)
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as src, tmp.open("wb") as dst:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            dst.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _download_http(url: str, tmp: Path, timeout: float) -> tuple[int, str]:
    import requests
    import urllib3
    from tqdm import tqdm

    try:
        # identity: store the resource's own bytes; some hosts label .gz files Content-Encoding: gzip.
        response = requests.get(url, stream=True, timeout=timeout, headers={"Accept-Encoding": "identity"})
    except requests.exceptions.RequestException as exc:
        raise _SourceFailure(f"{url}: unreachable ({_short_reason(exc)})", retry=True) from None
    with response:
        status = response.status_code
        if status != 200:
            raise _SourceFailure(f"{url}: HTTP {status}", retry=status not in PERMANENT_HTTP and status >= 400)
        length_header = response.headers.get("Content-Length")
        expected = int(length_header) if length_header and length_header.isdigit() else None
        digest = hashlib.sha256()
        received = 0
        progress = tqdm(
            total=expected,
            unit="B",
            unit_scale=True,
            desc=Path(urllib.parse.urlparse(url).path).name,
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
        )
        try:
            with tmp.open("wb") as out, progress:
                for chunk in response.raw.stream(CHUNK, decode_content=False):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    progress.update(len(chunk))
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
            of = f" of {expected}" if expected is not None else ""
            raise _SourceFailure(
                f"{url}: truncated body: got {received}{of} bytes ({_short_reason(exc)})", retry=True
            ) from None
    if expected is not None and received != expected:
        raise _SourceFailure(f"{url}: truncated body: got {received} of {expected} bytes", retry=True)
    return received, digest.hexdigest()


def _fetch_once(
    source: str, dest: Path, expected_sha256: str | None, timeout: float, verify: Verifier | None
) -> tuple[int, str, JsonObject]:
    with atomic_path(dest) as tmp:
        size, sha256 = _copy_local(source, tmp) if _is_local(source) else _download_http(source, tmp, timeout)
        if expected_sha256 is not None and sha256 != expected_sha256:
            raise _SourceFailure(f"{source}: sha256 mismatch: expected {expected_sha256}, got {sha256}", retry=False)
        try:
            extra = verify(tmp, source) if verify is not None else {}
        except CnnreproError as exc:
            raise _SourceFailure(str(exc), retry=False) from None
    return size, sha256, extra


def fetch(
    sources: list[str],
    dest: Path,
    *,
    expected_sha256: str | None = None,
    timeout: float = 60.0,
    retries: int = 3,
    backoff: float = 2.0,
    verify: Verifier | None = None,
) -> FetchRecord:
    """Fetch `dest` from the first source that delivers a complete, verified file.

    A source is a URL (http, https, file) or a local path (a mirror file). `retries` extra attempts
    per source, waiting backoff, 2*backoff, 4*backoff, ... seconds before them. `dest` appears only when complete
    and verified; when every source fails, a CnnreproError lists each source's failure on one line.
    """
    if not sources:
        raise CnnreproError(f"{dest.name}: no sources to download from")
    failures: list[str] = []
    for source in sources:
        attempt = 0
        while True:
            attempt += 1
            try:
                size, sha256, extra = _fetch_once(source, Path(dest), expected_sha256, timeout, verify)
            except _SourceFailure as failure:
                if failure.retry and attempt <= retries:
                    time.sleep(backoff * 2 ** (attempt - 1))
                    continue
                suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
                failures.append(f"{failure}{suffix}")
                break
            return FetchRecord(source, Path(dest), size, sha256, attempt, extra, failures)
    if len(failures) == 1:
        raise CnnreproError(failures[0])
    raise CnnreproError(f"{Path(dest).name}: all {len(failures)} sources failed: " + "; ".join(failures))


def verify_petimages_zip(path: Path, source: str) -> JsonObject:
    """A readable zip (every member's CRC checked) in the PetImages layout."""
    if not zipfile.is_zipfile(path):
        raise CnnreproError(f"{source}: not a zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise CnnreproError(f"{source}: corrupt zip archive ({exc})") from None
    if bad is not None:
        raise CnnreproError(f"{source}: corrupt zip member {bad}")
    counts = {
        prefix: sum(1 for n in names if n.startswith(prefix) and not n.endswith("/")) for prefix in CLASS_PREFIXES
    }
    missing = [prefix for prefix, count in counts.items() if count == 0]
    if missing:
        raise CnnreproError(f"{source}: not a PetImages archive (no members under {', '.join(missing)})")
    return {"members": len(names)}


def idx_verifier(name: str, spec: idx.IdxSpec) -> Verifier:
    """Check a downloaded `<name>.gz`: gunzips, idx header, count and uncompressed sha256 as pinned."""

    def verify(path: Path, source: str) -> JsonObject:
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error) as exc:
            raise CnnreproError(f"{source}: not a valid gzip file ({exc})") from None
        sha256 = idx.check_idx(data, name, spec, where=source)
        return {"uncompressed_size": len(data), "uncompressed_sha256": sha256}

    return verify


def _sources(mirror: Path | None, dataset: str, filename: str, urls: list[str]) -> list[str]:
    local = [str(mirror / MIRROR_FOLDERS[dataset] / filename)] if mirror is not None else []
    return local + urls


def _record(record: FetchRecord, **more: Any) -> JsonObject:
    return {
        "name": record.path.name,
        "source": record.source,
        "size": record.size,
        "sha256": record.sha256,
        **more,
        **record.extra,
        "failed_sources": record.failed_sources,
    }


def download_dataset(
    dataset: str, params: Params, out: Path, *, pins: dict[str, idx.IdxSpec] | None = None
) -> JsonObject:
    """Fetch every file of `dataset` into the existing directory `out`; return the manifest.

    `pins` replaces the idx table pinned in code (tests); None uses `idx.pinned_specs(dataset)`.
    """
    settings = params["download"]
    mirror = mirror_dir(params)
    options = {"timeout": settings["timeout_s"], "retries": settings["retries"], "backoff": settings["backoff_s"]}
    files: list[JsonObject] = []
    if dataset == "petimages":
        section = settings["petimages"]
        archive = section["archive"]
        record = fetch(
            _sources(mirror, dataset, archive, list(section["urls"])),
            out / archive,
            expected_sha256=section["sha256"],
            verify=verify_petimages_zip,
            **options,
        )
        files.append(_record(record, sha256_pinned=section["sha256"] is not None))
    elif dataset in idx.DATASETS:
        specs = pins if pins is not None else idx.pinned_specs(dataset)
        bases = [url if url.endswith("/") else url + "/" for url in settings[dataset]["urls"]]
        for name in idx.IDX_FILES:
            filename = idx.gz_name(name)
            record = fetch(
                _sources(mirror, dataset, filename, [base + filename for base in bases]),
                out / filename,
                verify=idx_verifier(name, specs[name]),
                **options,
            )
            files.append(_record(record))
    else:
        raise CnnreproError(f"--dataset {dataset}: unknown (known: {', '.join(DATASETS)})")
    return {"dataset": dataset, "files": files}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--out", required=True, type=Path, help="directory to create, e.g. data/raw/<dataset>")


def main(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    with atomic_dir(args.out) as tmp:
        manifest = download_dataset(args.dataset, params, tmp)
        write_json_atomic(tmp / "manifest.json", manifest)
    for entry in manifest["files"]:
        print(f"{entry['name']}: {entry['size']} bytes, sha256 {entry['sha256']}, from {entry['source']}")
    return 0
