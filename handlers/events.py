"""Events: replies in consult threads (recorded, relayed to the requester, or resuming a
consult that waited on the requester). Slack's retries of an event have one effect: the
reply is stored once per message ts."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from handlers.common import services

# Plain user messages only: edits, deletions, joins and bot posts are not replies.
_REPLY_SUBTYPES = {None, "thread_broadcast", "file_share"}


def register(app: App) -> None:
    """Listen for messages (threads in service channels)."""
    app.event("message")(thread_reply)


def thread_reply(event: dict[str, Any], context: dict[str, Any]) -> None:
    """Record a reply in a consult's thread."""
    if event.get("subtype") not in _REPLY_SUBTYPES or event.get("bot_id"):
        return
    thread_ts, ts, user = event.get("thread_ts"), event.get("ts"), event.get("user")
    if not thread_ts or not ts or not user or thread_ts == ts:
        return
    services(context).consults.record_reply(
        channel=str(event.get("channel", "")),
        thread_ts=str(thread_ts),
        user=str(user),
        ts=str(ts),
        text=str(event.get("text") or ""),
    )
