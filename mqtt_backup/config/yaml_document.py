"""YAML text → plain data and the line of every key, refusing duplicate keys and alias bombs.

PyYAML keeps the last of two equal keys without a word, and expands aliases without limit
when the data is walked: ten lines of nested aliases ("billion laughs") become billions of
values. Both are checked on the composed node graph, before anything is constructed, in
time proportional to the text and never to what aliases would expand it to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from mqtt_backup.errors import ConfigError

# Aliases may add this many values to what is written. Shared defaults merged into a
# thousand jobs (`<<: *defaults`) add a few tens of thousands; a bomb adds billions.
MAX_ALIAS_EXPANSION = 100_000
# No setting is nested deeper than a handful of levels; libyaml itself stops at 1000.
MAX_DEPTH = 64

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Far above both limits: sizes are capped here so that a bomb's size stays a small number.
_HUGE = 10**12


@dataclass(frozen=True, slots=True)
class Document:
    data: Any
    lines: dict[tuple[str, ...], int]


def parse_document(text: str, source: str) -> Document:
    """Parse one YAML document; raises ConfigError naming the problem and its lines."""
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise ConfigError([_syntax_error(exc, source)]) from None
        except RecursionError:
            raise ConfigError([f"{source}: values are nested too deeply"]) from None
        if root is None:
            return Document(None, {})
        _check_expansion(root, source)
        lines, duplicates = _index(root)
        if duplicates:
            raise ConfigError([_duplicate_error(path, at) for path, at in duplicates.items()])
        try:
            data = loader.construct_document(root)
        except yaml.YAMLError as exc:
            raise ConfigError([_syntax_error(exc, source)]) from None
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            raise ConfigError([f"{source}: a value cannot be read: {_first_line(exc)}"]) from None
        return Document(data, lines)
    finally:
        loader.dispose()


def _syntax_error(exc: yaml.YAMLError, source: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{source}{where}: not valid YAML: {problem}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse cycles, deep nesting, and aliases that multiply the document.

    Each distinct collection is measured once (an alias shares the node it names), so this
    costs the size of the text however large the expansion would be. An alias of a scalar
    adds one value, as the text does, and needs no bound.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    written = 0  # the values of each distinct collection, as if no collection were shared

    def measure(node: yaml.Node, depth: int) -> int:
        nonlocal written
        key = id(node)
        known = size.get(key)
        if known is not None:
            return known
        line = node.start_mark.line + 1
        if key in on_path:
            raise ConfigError(
                [f"{source} (line {line}): an alias refers to the value that contains it"]
            )
        if depth > MAX_DEPTH:
            raise ConfigError(
                [f"{source} (line {line}): values are nested more than {MAX_DEPTH} levels deep"]
            )
        on_path.add(key)
        items = node.value if isinstance(node, yaml.SequenceNode) else _pairs(node)
        total = 1
        for child in items:
            if isinstance(child, yaml.ScalarNode):
                total += 1
            else:
                total += measure(child, depth + 1)
        written += 1 + len(items) - sum(1 for c in items if not isinstance(c, yaml.ScalarNode))
        on_path.discard(key)
        size[key] = total = min(total, _HUGE)
        return total

    if isinstance(root, yaml.ScalarNode):
        return
    if measure(root, 1) - written > MAX_ALIAS_EXPANSION:
        raise ConfigError(
            [
                f"{source}: its aliases (*name) would expand it by more than "
                f"{MAX_ALIAS_EXPANSION:,} values; mqtt-backup refuses such a file, as a YAML "
                "alias bomb could exhaust the memory: write the values out, or use fewer aliases"
            ]
        )


def _pairs(node: yaml.Node) -> list[yaml.Node]:
    return [part for pair in node.value for part in pair]


def _index(root: yaml.Node) -> tuple[dict[tuple[str, ...], int], dict[tuple[str, ...], list[int]]]:
    """The 1-based line of each key path, and each key path written more than once."""
    lines: dict[tuple[str, ...], int] = {}
    duplicates: dict[tuple[str, ...], list[int]] = {}
    checked: set[int] = set()

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            first = id(node) not in checked
            checked.add(id(node))
            seen: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                child = (*path, str(key.value))
                line = key.start_mark.line + 1
                # A mapping reached again through an alias was checked where it is written.
                if first and isinstance(key, yaml.ScalarNode):
                    identity = (key.tag, key.value)
                    if identity in seen:
                        duplicates.setdefault(child, [seen[identity]]).append(line)
                    else:
                        seen[identity] = line
                lines.setdefault(child, line)
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = (*path, str(i))
                lines[child] = item.start_mark.line + 1
                walk(item, child)

    walk(root, ())
    return lines, duplicates


def _duplicate_error(path: tuple[str, ...], at: list[int]) -> str:
    written = "twice" if len(at) == 2 else f"{len(at)} times"
    shown = ", ".join(map(str, at[:-1])) + f" and {at[-1]}"
    return (
        f"{'.'.join(path)}: written {written} (lines {shown}); YAML would keep only the last "
        "one, so remove or rename the others"
    )
