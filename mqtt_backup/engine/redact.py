"""Pure: turn rclone's words into a short sentence that is safe to publish."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import reduce

from mqtt_backup.redaction.secrets import Masker, Secrets, remote_secrets

MAX_REASON = 160

_NOISE = re.compile(r"^(?:Attempt \d+/\d+ failed with \d+ errors and: |Failed to \w+: )")


def reason(message: str, hidden: Iterable[str] = ()) -> str:
    """rclone's error message reduced to a short phrase, without ``hidden`` or any secret.

    ``hidden`` (the job's paths) is masked whole, in every spelling, and the secrets in
    it also where they appear alone, as in a URL that rclone quotes on its own.
    """
    hidden = [h for h in hidden if h]
    secrets = reduce(Secrets.__or__, map(remote_secrets, hidden), Secrets())
    # Masked before anything else: collapsing spaces or cutting the text first could
    # split a secret into pieces that no longer match. The whole paths go first, while
    # the secrets in them are still there to match.
    text = Masker(Secrets(frozenset(hidden))).mask(message.strip())
    text = Masker(secrets).mask(text)
    text = " ".join(_NOISE.sub("", text).split())
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 1].rstrip() + "…"
    return text
