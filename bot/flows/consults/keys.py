"""Exactly-once keys as the database stores them: the Slack trigger, view or action id that
makes a replayed request return what the first one did instead of doing it twice."""

from __future__ import annotations

import hashlib

from bot.domain.text import clean

REPLY_TS_MAX = 32  # replies.ts


def request_key(key: str | None) -> str | None:
    """An exactly-once key as the database can store it: Slack's ids never hold control
    characters (PostgreSQL refuses NUL) or exceed the column, a forged payload might."""
    return clean(key, max_length=255) or None if key else None


def reply_ts(key: str) -> str:
    """A form submission's exactly-once key as a reply's `ts` (the column holds 32
    characters): kept when it fits (Slack's view ids do), else a digest of it."""
    value = request_key(key) or ""
    if len(value) <= REPLY_TS_MAX:
        return value
    return "key:" + hashlib.sha256(value.encode()).hexdigest()[: REPLY_TS_MAX - 4]
