"""Pure: the ways a string is written out by rclone (Go) and by JSON encoders.

rclone quotes names in its messages with Go's ``%q``; ``--use-json-log`` then writes the
message as a JSON string; Python's ``json`` writes our own payloads. A secret must be
found in every one of these spellings, so ``spellings`` lists them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}
_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JSON_ESCAPES |= {"\b": "\\b", "\f": "\\f", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def go_quoted(text: str) -> str:
    """``text`` as Go's ``%q`` writes it, without the surrounding quotes."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():  # the same classes as Go's unicode.IsPrint
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def _go_json(text: str, *, html: bool) -> str:
    """``text`` as Go writes a JSON string (encoding/json with ``html``; log/slog without)."""
    out = []
    for ch in text:
        if ch in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[ch])
        elif html and ch in _HTML_ESCAPES:
            out.append(_HTML_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _json_encoders() -> list[Callable[[str], str]]:
    return [
        lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
        lambda s: json.dumps(s)[1:-1],
        lambda s: _go_json(s, html=True),
        lambda s: _go_json(s, html=False),
    ]


# Each spelling is one function, so that a string and its masked copy can be spelled alike.
ENCODERS: tuple[Callable[[str], str], ...] = (
    lambda s: s,
    go_quoted,
    *_json_encoders(),
    *(lambda s, f=f: f(go_quoted(s)) for f in _json_encoders()),
)


_PLAIN = re.compile(r"[ !#-%'-;=?-\[\]-~]*")  # printable ASCII that no encoder escapes


def spellings(text: str) -> set[str]:
    """``text`` raw, Go-quoted, JSON-encoded, and JSON-encoded after Go-quoting."""
    if _PLAIN.fullmatch(text):
        return {text}
    return {encode(text) for encode in ENCODERS}
