"""Block Kit building blocks shared by every renderer: sections, buttons, mentions, dates,
ages, links, and user text made safe for mrkdwn.

User text is always escaped (`&`, `<`, `>`, with `bot.domain.text.escape`) so nobody can ping
`@channel`, forge a mention or a link through a consult, and shortened to Slack's limits with
a marker (the database keeps it whole).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from bot.domain.lifecycle import STATUS_LABELS, Status
from bot.domain.text import escape
from bot.domain.vocabulary import Urgency
from storage.models import Consult

SECTION_LIMIT = 3000
TRUNCATED = " … [shortened; the full text is kept in CareLoop]"
URGENCY_LABELS: dict[str, str] = {
    Urgency.STAT: "Stat",
    Urgency.URGENT: "Urgent",
    Urgency.ROUTINE: "Routine",
}
URGENCY_ICONS: dict[str, str] = {
    Urgency.STAT: ":red_circle:",
    Urgency.URGENT: ":large_orange_circle:",
    Urgency.ROUTINE: ":white_circle:",
}

Blocks = list[dict[str, Any]]


def shorten(text: str, limit: int = SECTION_LIMIT) -> str:
    """Cut text to `limit` characters with a visible marker."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - len(TRUNCATED), 0)]
    return re.sub(r"&[a-z]{0,3}$", "", cut).rstrip() + TRUNCATED  # no half `&amp;`


def user_text(text: str | None, limit: int = 2800) -> str:
    """Escaped and shortened user text, safe inside a section."""
    return shorten(escape(text or ""), limit)


def quote(text: str | None, limit: int = 2500) -> str:
    """User text as a mrkdwn block quote, at most `limit` characters with its `&gt; `
    prefixes, leaving room in the section for the words and link around it."""
    body = escape(text or "")
    return shorten("\n".join("&gt; " + line for line in body.splitlines()), limit) or "&gt;"


def mention(user: str | None) -> str:
    """A user mention, or 'nobody'."""
    return f"<@{user}>" if user else "nobody"


def slack_date(when: datetime | None, fmt: str = "{date_short_pretty} {time}") -> str:
    """A time each reader sees in their own time zone (`<!date^…>`)."""
    if when is None:
        return "—"
    epoch = int(when.timestamp())
    fallback = when.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{epoch}^{fmt}|{fallback}>"


def age(since: datetime, now: datetime) -> str:
    """'3h 05m' style age."""
    seconds = max(int((now - since).total_seconds()), 0)
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m"


def link(url: str | None, label: str) -> str:
    """A mrkdwn link with an escaped label, or the label alone without a url."""
    return f"<{url}|{escape(label)}>" if url else escape(label)


def ref_link(c: Consult) -> str:
    """The consult's reference, linked to its message when it has one."""
    return link(c.permalink, c.ref)


def urgency_label(urgency: str) -> str:
    """'Stat', 'Urgent', 'Routine' (an unknown urgency as stored)."""
    return URGENCY_LABELS.get(urgency, urgency)


def status_word(status: str) -> str:
    """The status label in lower case, for the middle of a sentence."""
    return STATUS_LABELS[Status(status)].lower()


def section(text: str) -> dict[str, Any]:
    """A mrkdwn section, shortened to Slack's limit."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": shorten(text)}}


def sections(head: str, lines: list[str]) -> Blocks:
    """`head` and `lines` (one line each) in as few mrkdwn sections as Slack's limit per
    section allows: a long list is split between sections, never cut."""
    blocks: Blocks = []
    text = head
    for line in lines:
        if text and len(text) + 1 + len(line) > SECTION_LIMIT:
            blocks.append(section(text))
            text = ""
        text = f"{text}\n{line}" if text else line
    if text:
        blocks.append(section(text))
    return blocks


def context(text: str) -> dict[str, Any]:
    """A context block with one mrkdwn element, shortened to Slack's limit."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": shorten(text)}]}


def button(label: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    """A button; `style` is 'primary', 'danger' or None."""
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "action_id": action_id,
        "value": value,
    }
    if style:
        element["style"] = style
    return element


def actions(block_id: str, *elements: dict[str, Any]) -> dict[str, Any]:
    """An actions block (block ids are cut to Slack's 255 characters)."""
    return {"type": "actions", "block_id": block_id[:255], "elements": list(elements)}
