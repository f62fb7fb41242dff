"""Pure: turn rclone's words into a short sentence that is safe to publish."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import reduce

from mqtt_backup.redaction.secrets import Masker, Secrets, remote_secrets

MAX_REASON = 160
MAX_LOG_LINE = 500

_NOISE = re.compile(r"^(?:Attempt \d+/\d+ failed with \d+ errors and: |Failed to \w+: )")


def reason(message: str, hidden: Iterable[str] = ()) -> str:
    """rclone's error message reduced to a short phrase, without ``hidden`` or any secret.

    ``hidden`` (the job's paths) is masked whole, in every spelling, and the secrets in
    it also where they appear alone, as in a URL that rclone quotes on its own.
    """
    text = _masking(hidden)(message.strip())
    return _cut(" ".join(_NOISE.sub("", text).split()), MAX_REASON)


def masked_lines(lines: Iterable[str], hidden: Iterable[str] = ()) -> tuple[str, ...]:
    """rclone's log lines as they are, each masked like ``reason`` and cut to MAX_LOG_LINE."""
    mask = _masking(hidden)
    return tuple(_cut(mask(line.strip()), MAX_LOG_LINE) for line in lines)


def _masking(hidden: Iterable[str]) -> Callable[[str], str]:
    hidden = [h for h in hidden if h]
    whole = Masker(Secrets(frozenset(hidden)))
    inner = Masker(reduce(Secrets.__or__, map(remote_secrets, hidden), Secrets()))
    # Masked before anything else: collapsing spaces or cutting the text first could
    # split a secret into pieces that no longer match. The whole paths go first, while
    # the secrets in them are still there to match.
    return lambda text: inner.mask(whole.mask(text))


def _cut(text: str, limit: int) -> str:
    return text[: limit - 1].rstrip() + "…" if len(text) > limit else text
