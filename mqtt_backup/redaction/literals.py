"""Pure: find many fixed strings in a text at once.

One regular expression of thousands of alternatives takes seconds to compile and
milliseconds per line to run. Here the strings are filed under their first few
characters, so building is linear and a text costs one lookup per character, however
many strings there are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

_MAX_HEAD = 16


class Literals:
    """A set of non-empty strings; ``spans`` finds the longest one starting at each place."""

    def __init__(self, strings: Iterable[str]) -> None:
        ordered = sorted({s for s in strings if s}, key=len, reverse=True)
        self._head = min(_MAX_HEAD, len(ordered[-1])) if ordered else 0
        self._by_head: dict[str, list[str]] = {}
        for string in ordered:  # longest first, so the first hit is the longest
            self._by_head.setdefault(string[: self._head], []).append(string)

    def __bool__(self) -> bool:
        return bool(self._by_head)

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        """(start, end) of the longest string found at each place, overlapping ones too."""
        head, candidates = self._head, self._by_head.get
        for start in range(len(text) - head + 1):
            found = candidates(text[start : start + head])
            if found:
                for string in found:
                    if text.startswith(string, start):
                        yield start, start + len(string)
                        break

    def replace(self, text: str, replacement: dict[str, str]) -> str:
        """``text`` with each string found, left to right and longest first, replaced."""
        out, cursor = [], 0
        for start, end in self.spans(text):
            if start >= cursor:
                out += [text[cursor:start], replacement[text[start:end]]]
                cursor = end
        return "".join(out) + text[cursor:] if out else text

    def mask(self, text: str, mask: str) -> str:
        """``text`` with every string found replaced by ``mask``; overlapping ones as one.

        Strings that overlap or touch become one mask, so that no piece of one is left
        showing after another is masked.
        """
        spans: list[list[int]] = []
        for start, end in self.spans(text):
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        if not spans:
            return text
        out, cursor = [], 0
        for start, end in spans:
            out += [text[cursor:start], mask]
            cursor = end
        out.append(text[cursor:])
        return "".join(out)
