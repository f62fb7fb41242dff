"""Pure: turn rclone's words into a short sentence that is safe to publish."""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_REASON = 160

# Inline remotes (":sftp,host=x,pass=SECRET:path") and user:password@ in URLs.
_CONNECTION = re.compile(r":?[A-Za-z0-9_-]*,[^\s\"']*=[^\s\"']*")
_SECRET_KV = re.compile(
    r"(?i)\b(pass|password|key|token|secret|client_secret|bearer|sas_url|account_key)"
    r"\s*=\s*[^,\s\"':]+"
)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_NOISE = re.compile(r"^(?:Attempt \d+/\d+ failed with \d+ errors and: |Failed to \w+: )")


def redact(text: str, hidden: Iterable[str] = ()) -> str:
    """``text`` without the given strings, inline remotes, key=secret pairs or URL passwords."""
    for value in sorted({h for h in hidden if h}, key=len, reverse=True):
        text = text.replace(value, "…")
    text = _URL_CREDENTIALS.sub(r"\1…@", text)
    text = _SECRET_KV.sub(r"\1=…", text)
    return _CONNECTION.sub("…", text)


def reason(message: str, hidden: Iterable[str] = ()) -> str:
    """rclone's error message reduced to a short, redacted phrase."""
    text = _NOISE.sub("", message.strip())
    text = redact(" ".join(text.split()), hidden)
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 1].rstrip() + "…"
    return text
