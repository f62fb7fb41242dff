"""Pure: rclone's remote syntax, read the way rclone reads it.

``remote:path``, ``remote,key=value:path`` and ``:backend,key=value:path``. A value
ends at ``,`` or ``:`` unless it is quoted with ``'`` or ``"``; inside quotes the quote
is written twice to stand for itself (``pass='it''s'``). A key without ``=`` means
``true``. Anything without ``:``, or with ``/`` or ``\\`` before the first ``:`` or
``,``, is a local path. This follows rclone's own parser (``fs/fspath/path.go``) state
by state (as of rclone 1.75), so the values found here are the values rclone uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Letters and numbers of any script, "_", ".", "+", "@", and "-" or space inside.
_NAME = re.compile(r":?[\w.+@]+(?:[ -]+[\w.+@-]+)*")
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_QUOTES = "'\""
# Where a key may start when the text is only roughly a connection string.
_LOOSE_KEY = re.compile(r"(?:^|(?<=[,:/]))([0-9A-Za-z_.]+)=")


class RemoteSyntaxError(ValueError):
    """rclone would refuse this remote; the message is rclone's reason."""


@dataclass(frozen=True, slots=True)
class Param:
    key: str
    value: str  # as rclone uses it: quotes removed, doubled quotes undone
    written: str  # as it stands in the text, quotes included; "" for a bare key
    start: int  # where ``written`` starts in the text


@dataclass(frozen=True, slots=True)
class Remote:
    name: str  # "remote" or ":backend"; "" for a local path
    config_string: str  # everything before the path's ":", e.g. ":sftp,host=h"; "" when local
    path: str
    params: tuple[Param, ...] = ()


def parse(text: str) -> Remote:
    """Split ``text`` as rclone does; raises RemoteSyntaxError where rclone would refuse it."""
    if not text:
        raise RemoteSyntaxError("can't use empty string as a path")
    if ":" not in text:
        return Remote("", "", text)
    parser = _Parser(text)
    end = parser.run()
    if end is None:
        return Remote("", "", text)
    return Remote(parser.name, text[:end], text[end + 1 :], tuple(parser.params))


class _Parser:
    """rclone's state machine; ``run`` returns the index of the ``:`` before the path."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.name = ""
        self.params: list[Param] = []

    def run(self) -> int | None:
        text, state, prev, key, quote, doubled = self.text, "name", 0, "", "", False
        for i, c in enumerate(text):
            if state == "name":
                if i == 0 and c == ":":
                    continue
                if c in "/\\":
                    if text[0] == ":":
                        raise RemoteSyntaxError("config name contains invalid characters")
                    return None  # a local path that happens to hold a ":"
                if c in ":,":
                    self.name = _checked_name(text[:i])
                    prev = i + 1
                    if c == ":":
                        return i
                    state = "key"
            elif state == "key":
                if c in ":,=":
                    key = text[prev:i]
                    if not key:
                        raise RemoteSyntaxError("config parameters can't be empty")
                    prev = i + 1
                    if c == "=":
                        state = "value"
                        continue
                    self.params.append(Param(key, "true", "", i))
                    if c == ":":
                        return i
                elif c not in _KEY_CHARS:
                    raise RemoteSyntaxError(
                        "config parameters may only contain `0-9`, `A-Z`, `a-z`, `_` and `.`"
                    )
            elif state == "value":
                if c in _QUOTES and i == prev:
                    quote, state, prev, doubled = c, "quoted", i + 1, False
                elif c in ":,":
                    self.params.append(Param(key, text[prev:i], text[prev:i], prev))
                    prev = i + 1
                    if c == ":":
                        return i
                    state = "key"
            elif state == "quoted":
                if c == quote:
                    state = "after quote"
            elif c in ":,":  # after a closing quote
                value = text[prev : i - 1]
                if doubled:
                    value = value.replace(quote * 2, quote)
                self.params.append(Param(key, value, text[prev - 1 : i], prev - 1))
                prev = i + 1
                if c == ":":
                    return i
                state = "key"
            elif c == quote:
                state, doubled = "quoted", True  # a doubled quote stands for one
            else:
                raise RemoteSyntaxError("expecting `:` or `,` or another quote after a quote")
        raise RemoteSyntaxError(_UNFINISHED[state])


_UNFINISHED = {
    "name": "config name needs a trailing `:`",
    "key": "config parameter must end with `,` or `:`",
    "value": "unquoted config value must end with `,` or `:`",
    "quoted": "unterminated quoted config value",
    "after quote": "expecting `:` or `,` or another quote after a quote",
}


def _checked_name(name: str) -> str:
    if name in ("", ":"):
        raise RemoteSyntaxError("config name can't be empty")
    if not _NAME.fullmatch(name):
        raise RemoteSyntaxError("config name contains invalid characters")
    return name


def loose_params(text: str) -> list[Param]:
    """Every ``key=value`` that looks like a parameter anywhere in ``text``.

    For text rclone would not parse, or would parse otherwise than meant (an unquoted
    ``endpoint=http://h:9`` ends at the first ``:`` and makes the rest the path): the
    values meant as parameters are still found, to be kept secret all the same.
    """
    params = []
    for match in _LOOSE_KEY.finditer(text):
        start = match.end()
        quote = text[start : start + 1]
        if quote and quote in _QUOTES:
            end = start + 1
            while True:
                end = text.find(quote, end)
                if end < 0:
                    end = len(text)
                    break
                if text[end + 1 : end + 2] != quote:
                    end += 1
                    break
                end += 2
            written = text[start:end]
            value = written[1:].removesuffix(quote).replace(quote * 2, quote)
        else:
            end = start
            while end < len(text) and text[end] not in ",:":
                end += 1
            written = value = text[start:end]
        params.append(Param(match.group(1), value, written, start))
    return params
