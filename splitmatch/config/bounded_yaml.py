"""YAML whose cost is bounded by its size: the one way config files and ``--set`` values are read.

PyYAML's ``safe_load`` never runs code, but two things in a small text can still cost without
bound. Aliases (``*name``) stand for a whole earlier node: nine levels of nine aliases each are
a 350-byte file that stands for 387 million strings, cheap to load (an alias is a shared
object) and ruinous to print, compare, copy or write back out. And PyYAML builds nested nodes by
recursion, so a few thousand ``[`` end in ``RecursionError``.

Before anything is built, :func:`check_cost` walks the parser's events (a state machine, no
recursion) and measures what the document stands for with every alias expanded: its **size**
(one per node plus the characters of every scalar) and its **depth**. Aliases are allowed within
:data:`MAX_EXPANDED_SIZE` and :data:`MAX_DEPTH` (``&defaults`` / ``<<: *defaults`` keep
working): a document with aliases then costs no more than one without them could. An alias
inside the node it names (a cycle) is refused. The text itself is at most :data:`MAX_BYTES`.
"""

from __future__ import annotations

from typing import Any

import yaml

from splitmatch.config.errors import ConfigError

MAX_BYTES = 1 << 20  # a config is a few kilobytes; a megabyte is a file given by mistake
# No alias-free text of MAX_BYTES stands for more (a scalar costs its characters plus one, and an
# implicit null like "a:" costs one character of text), so only aliases can reach it.
MAX_EXPANDED_SIZE = 4 * MAX_BYTES
MAX_DEPTH = 32  # a config nests three levels (section, key, list)
# libyaml's parser when PyYAML was built with it (25 times faster on a long list); the same events
# and the same safe constructor either way.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlTooCostly(ConfigError):
    """A YAML text is larger, deeper or expands further than the bounds allow."""


def load_bounded(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, after :func:`check_cost`; ``source`` names the text in errors.

    Raises:
        YamlTooCostly: the text is too large, too deep or expands too far.
        yaml.YAMLError: the text is not valid YAML.
        ValueError: a value PyYAML cannot build (an integer beyond Python's digit limit).
    """
    check_cost(text, source)
    return yaml.load(text, Loader=_LOADER)  # noqa: S506  a safe loader: plain data only


def check_cost(text: str, source: str) -> None:
    """Refuses a YAML text longer than :data:`MAX_BYTES`, nested deeper than :data:`MAX_DEPTH` or
    larger than :data:`MAX_EXPANDED_SIZE` once its aliases are expanded; time and memory linear
    in the text, however far its aliases would expand."""
    if len(text) > MAX_BYTES:
        raise YamlTooCostly(f"{source} is {len(text):,} characters long; a config is at most {MAX_BYTES:,}")
    open_nodes: list[list] = []  # per open collection: [anchor, size so far, depth below it]
    closed: dict[str, tuple[int, int]] = {}  # anchor -> (size, depth) of the finished node it names
    finished = 0  # size of the document's top-level nodes already closed

    def add(anchor: str | None, size: int, depth: int) -> None:
        nonlocal finished
        if anchor is not None:
            closed[anchor] = (size, depth)
        if open_nodes:
            if len(open_nodes) + depth > MAX_DEPTH:
                raise YamlTooCostly(f"{source} nests deeper than {MAX_DEPTH} levels (aliases expanded)")
            parent = open_nodes[-1]
            parent[1] += size
            parent[2] = max(parent[2], depth + 1)
        else:
            finished += size
        if finished + sum(entry[1] for entry in open_nodes) > MAX_EXPANDED_SIZE:  # at most MAX_DEPTH entries
            raise YamlTooCostly(
                f"{source} stands for more than {MAX_EXPANDED_SIZE:,} characters of values once its aliases "
                "(*name) are expanded; write the values out, or use fewer aliases"
            )

    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            open_nodes.append([event.anchor, 1, 0])
            if len(open_nodes) > MAX_DEPTH:
                raise YamlTooCostly(f"{source} nests deeper than {MAX_DEPTH} levels")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, size, depth = open_nodes.pop()
            add(anchor, size, depth)
        elif isinstance(event, yaml.ScalarEvent):
            add(event.anchor, 1 + len(event.value), 0)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in closed:
                add(None, *closed[event.anchor])
            elif any(entry[0] == event.anchor for entry in open_nodes):
                raise YamlTooCostly(f"{source}: the alias *{event.anchor[:40]} lies inside the node it names (a cycle)")
            else:
                add(None, 1, 0)  # an undefined alias: safe_load names it
