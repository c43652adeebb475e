"""The locks are closed: every package the project's requirements reach is pinned, with a hash.

The closure is walked through the metadata of the environment the tests run in (installed from
requirements-cpu.lock and requirements-keras.lock by make), so this needs no network; `make lock-check`
compares the locks with a fresh resolution.
"""

from __future__ import annotations

import re
from importlib import metadata

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import PROJECT_ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
LOCKS = ("requirements.lock", "requirements-cpu.lock", "requirements-keras.lock")
# What PyPI's torch (the CUDA build) adds to the CPU build.
CUDA_ONLY = re.compile(r"^(nvidia-.*|triton|cuda-.*)$")


def pins(name: str) -> dict[str, str]:
    text = (PROJECT_ROOT / name).read_text()
    return {canonicalize_name(m.group(1)): m.group(2) for line in text.splitlines() if (m := PIN.match(line))}


@pytest.mark.parametrize("name", LOCKS)
def test_every_pin_has_a_hash(name: str) -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (PROJECT_ROOT / name).read_text())
    requirements = [block for block in blocks if PIN.match(block)]
    assert requirements
    for block in requirements:
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_cpu_and_cuda_locks_differ_only_in_torch_and_its_cuda_packages() -> None:
    cuda, cpu = pins("requirements.lock"), pins("requirements-cpu.lock")
    assert cpu["torch"] == cuda["torch"] + "+cpu"
    assert {n for n in cuda if n not in cpu} == {n for n in cuda if CUDA_ONLY.match(n)}
    assert not [n for n in cpu if CUDA_ONLY.match(n)]
    assert {n: v for n, v in cpu.items() if n != "torch"} == {
        n: v for n, v in cuda.items() if n in cpu and n != "torch"
    }
    assert {"snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep"} <= cpu.keys()


def reachable(roots: list[Requirement]) -> dict[str, set[str]]:
    """Distribution name -> the extras asked of it, following Requires-Dist of what is installed."""
    seen: dict[str, set[str]] = {}
    todo = [(req, "") for req in roots]
    while todo:
        req, extra = todo.pop()
        env = default_environment() | {"extra": extra}
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        new = {""} | set(req.extras)
        if name in seen and new <= seen[name]:
            continue
        seen.setdefault(name, set()).update(new)
        for child in metadata.requires(name) or []:
            for wanted in new:
                todo.append((Requirement(child), wanted))
    return seen


def test_the_cpu_locks_are_closed() -> None:
    locked = pins("requirements-cpu.lock") | pins("requirements-keras.lock")
    # cnnrepro with every extra, on this platform: its requirements with the markers that hold here.
    extras = ("", "dev", "slurm", "keras")
    roots = []
    for line in metadata.requires("cnnrepro") or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate(default_environment() | {"extra": e}) for e in extras):
            req.marker = None
            roots.append(req)
    names = reachable(roots)
    missing = sorted(name for name in names if name not in locked)
    assert not missing, f"reached but not in the locks: {missing}"
    for name in names:
        installed = metadata.version(name)
        assert installed == locked[name], f"{name}: installed {installed}, locked {locked[name]} (make reinstalls)"
