"""Cleaning of user text before it is stored, escaping it for Slack mrkdwn, and the patient
key used to match consults."""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
REF_RE = re.compile(r"^([A-Za-z]{1,6})-(\d{1,9})$")
# Slack ids (users, channels) and message timestamps are stored in columns of this size.
ID_MAX = 32


def clean(text: str | None, *, max_length: int | None = None) -> str:
    """Strip control characters and NULs (PostgreSQL refuses them) and outer whitespace."""
    if not text:
        return ""
    value = unicodedata.normalize("NFC", _CONTROL.sub("", text.replace("\r\n", "\n"))).strip()
    if max_length is not None:
        value = value[:max_length]
    return value


def is_slack_id(value: str) -> bool:
    """Whether `value` can be a Slack id or message timestamp as CareLoop stores one: 1 to
    `ID_MAX` characters, none of them a control character or NUL. Anything else names no
    stored consult, person or message (and PostgreSQL would refuse a NUL)."""
    return 0 < len(value) <= ID_MAX and not _CONTROL.search(value)


def escape(text: str | None) -> str:
    """Escape user text for mrkdwn: `&`, `<` and `>` lose their control meaning."""
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def patient_key(patient: str) -> str:
    """How patient references are compared: case and spacing do not matter."""
    return " ".join(patient.split()).upper()


def normalize_ref(text: str) -> str | None:
    """'rad-42' → 'RAD-42'; None when it is not a reference."""
    m = REF_RE.match(text.strip())
    if not m:
        return None
    return f"{m.group(1).upper()}-{int(m.group(2))}"
