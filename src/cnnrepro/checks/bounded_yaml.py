"""Read a YAML file within limits, checked before any Python object is built.

A params file is input, and YAML can make a small file expand without bound: nine levels of aliases
that each repeat the one before ten times ("billion laughs") are a few hundred bytes on disk and 10**9
nodes once expanded; a big file is slow to parse whatever it holds. So, in this order:

1. the file's size, from what is read (a FIFO or /dev/zero has no meaningful stat size): over
   `max_bytes`, nothing is parsed;
2. one pass over the parser's events (no nodes, no objects), counting the nodes the document stands
   for once every alias is expanded: an alias counts the size of the subtree its anchor names,
   remembered per anchor, so the count never expands anything itself and stops at `max_nodes`. The
   same pass bounds nesting depth (PyYAML's composer recurses once per level) and refuses an alias
   to a node that is still open (a recursive structure);
3. only then the safe loader builds the objects.

Every refusal is one CnnreproError naming the file and the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cnnrepro.errors import CnnreproError

# libyaml's parser where PyYAML was built with it (the wheels are): same results as yaml.safe_load, faster.
_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class YamlLimits:
    """The defaults fit params.yaml (about 12 KB, about 400 nodes, 6 levels) many times over."""

    max_bytes: int = 1 << 20
    max_nodes: int = 100_000
    max_depth: int = 64


DEFAULT_LIMITS = YamlLimits()


class YamlLimitError(CnnreproError):
    """The file is over one of the YamlLimits; the message names the file and the limit."""


def _size_text(n: int) -> str:
    return f"{n // (1 << 20)} MiB" if n % (1 << 20) == 0 else f"{n:,} bytes"


def read_bounded_text(path: Path, max_bytes: int) -> str:
    """The file's text, refusing a file over `max_bytes` after reading at most one byte past it."""
    if path.exists() and not path.is_file():
        raise YamlLimitError(f"{path}: not a regular file")
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise YamlLimitError(f"{path}: larger than the {_size_text(max_bytes)} limit for this file; not parsed")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlLimitError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _line(event: yaml.Event) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}" if mark is not None else "?"


def check_expansion(text: str, source: str, limits: YamlLimits = DEFAULT_LIMITS) -> int:
    """The number of nodes `text` stands for with every alias expanded, computed from the parser's events
    without expanding; raises YamlLimitError past `limits.max_nodes` or `limits.max_depth`. yaml.YAMLError
    (not YAML at all) propagates."""
    open_sizes: list[list[Any]] = []  # [anchor, nodes so far] of each collection not yet closed
    anchor_sizes: dict[str, int] = {}  # nodes under each anchor already closed, this document
    open_anchors: set[str] = set()
    total = 0

    def add(nodes: int, event: yaml.Event) -> None:
        nonlocal total
        if open_sizes:
            open_sizes[-1][1] += nodes
            nodes = open_sizes[-1][1]
        else:
            total += nodes
            nodes = total
        if nodes > limits.max_nodes:
            raise YamlLimitError(
                f"{source}: {_line(event)}: expands to more than {limits.max_nodes:,} YAML nodes "
                "(aliases counted as the nodes they repeat); not loaded"
            )

    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.DocumentStartEvent):
            anchor_sizes.clear()
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(open_sizes) >= limits.max_depth:
                raise YamlLimitError(f"{source}: {_line(event)}: nested deeper than {limits.max_depth} levels")
            open_sizes.append([event.anchor, 1])
            if event.anchor is not None:
                open_anchors.add(event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, nodes = open_sizes.pop()
            if anchor is not None:
                open_anchors.discard(anchor)
                anchor_sizes[anchor] = nodes
            add(nodes, event)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                anchor_sizes[event.anchor] = 1
            add(1, event)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise YamlLimitError(f"{source}: {_line(event)}: alias *{event.anchor} inside its own anchor")
            # An undefined alias is the loader's error (ComposerError), raised by the load that follows.
            add(anchor_sizes.get(event.anchor, 0), event)
    return total


def check_object_size(value: Any, source: str, limits: YamlLimits = DEFAULT_LIMITS) -> int:
    """The same node count for a tree already built (a config another loader parsed, e.g. Snakemake's
    --configfile): a dict or list reached twice counts at both places but is walked once (sizes by id), so
    an alias bomb a loader kept shared is measured without expanding it. Raises YamlLimitError past
    `limits.max_nodes`, or on a container inside itself."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        item, children_done = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        key = id(item)
        children = list(item.values()) if isinstance(item, dict) else item
        if children_done:
            on_path.discard(key)
            nodes = 1 + (len(item) if isinstance(item, dict) else 0)  # the keys are scalar nodes
            nodes += sum(sizes[id(c)] if isinstance(c, (dict, list)) else 1 for c in children)
            if nodes > limits.max_nodes:
                raise YamlLimitError(f"{source}: expands to more than {limits.max_nodes:,} nodes; not loaded")
            sizes[key] = nodes
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlLimitError(f"{source}: a list or mapping that contains itself")
        on_path.add(key)
        stack.append((item, True))
        stack.extend((c, False) for c in children if isinstance(c, (dict, list)) and id(c) not in sizes)
    return sizes.get(id(value), 1)


def load_yaml_bounded(path: str | Path, limits: YamlLimits = DEFAULT_LIMITS) -> Any:
    """yaml.safe_load of `path` after the checks above. FileNotFoundError and yaml.YAMLError propagate."""
    path = Path(path)
    text = read_bounded_text(path, limits.max_bytes)
    check_expansion(text, str(path), limits)
    loader = _LOADER(text)  # a safe loader: plain YAML types only, no Python tags
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
