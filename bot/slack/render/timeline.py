"""`/consult show <ref>`'s ephemeral reply, from plain data: the consult's card (without its
buttons) and its timeline — each hop with its holder and duration, each nudge, escalation
and reminder, and the answer — in time order. It carries patient data (the card, the
answer): it is shown only to the person who asked, who may see the consult."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.domain.hops import HopRole, TimelineEvent, TimelineRow
from bot.domain.text import escape
from bot.slack.render.card import consult_card
from bot.slack.render.context import RenderContext
from bot.slack.render.figures import format_elapsed
from bot.slack.render.primitives import Blocks, context, mention, quote, section, slack_date
from storage.models import Consult

MAX_BLOCKS = 50
# Timeline lines per section (a section holds at most 3000 characters).
LINES_PER_SECTION = 12

_EVENT_WORDS = {
    "nudged": ":bell: Nudged",
    "escalated": ":rotating_light: Escalated to",
    "requester_reminded": ":hourglass: Reminder to the requester",
}


def holder_text(row: TimelineRow, ctx: RenderContext) -> str:
    """Who held the consult during a hop, in words."""
    hop = row.hop
    service = escape(ctx.service_name(hop.service))
    if hop.role is HopRole.QUEUE:
        return f"{service} queue (nobody owned it)"
    if hop.role is HopRole.REQUESTER:
        return f"{mention(hop.user)}, requester (waiting on them for information)"
    return f"{mention(hop.user)}, {service} consultant"


def hop_line(row: TimelineRow, ctx: RenderContext) -> str:
    """One hop: when it began, who held it, for how long (so far, while it runs)."""
    length = format_elapsed(row.seconds)
    held = f"*{length}* so far" if row.running else f"*{length}*"
    return f"• {slack_date(row.hop.started_at)} — {holder_text(row, ctx)}: {held}"


def event_line(event: TimelineEvent) -> str:
    """One nudge, escalation or reminder: when, and to whom."""
    words = _EVENT_WORDS.get(event.action, escape(event.action))
    whom = ", ".join(mention(t) for t in event.targets)
    return f"• {slack_date(event.at)} — {words}{' ' + whom if whom else ''}"


def _entries(
    c: Consult, rows: Sequence[TimelineRow], events: Sequence[TimelineEvent], ctx: RenderContext
) -> list[str]:
    """The timeline's lines in time order (at equal times: hops, events, the answer)."""
    opened = f"• {slack_date(c.created_at)} — Opened by {mention(c.requester)}"
    dated: list[tuple[datetime, int, str]] = [(c.created_at, 0, opened)]
    dated += [(r.hop.started_at, 1, hop_line(r, ctx)) for r in rows]
    dated += [(e.at, 2, event_line(e)) for e in events]
    if c.answered_at is not None:
        by = mention(c.assignee)
        text = f"• {slack_date(c.answered_at)} — :white_check_mark: Answered by {by}"
        if c.answer:
            text += "\n" + quote(c.answer, 1500)
        dated.append((c.answered_at, 3, text))
    dated.sort(key=lambda d: (d[0], d[1]))
    return [text for _, _, text in dated]


def timeline_reply(
    c: Consult,
    rows: Sequence[TimelineRow],
    events: Sequence[TimelineEvent],
    ctx: RenderContext,
) -> dict[str, Any]:
    """The ephemeral reply: ``{"text", "blocks"}`` with the card and the timeline."""
    headline, card = consult_card(c, ctx)
    blocks: Blocks = [b for b in card if b.get("type") != "actions"]
    blocks.append(section("*Timeline*"))
    lines = _entries(c, rows, events, ctx)
    room = MAX_BLOCKS - len(blocks) - 1
    chunks = [lines[i : i + LINES_PER_SECTION] for i in range(0, len(lines), LINES_PER_SECTION)]
    shown = chunks[:room]
    blocks += [section("\n".join(chunk)) for chunk in shown]
    left = sum(len(chunk) for chunk in chunks[room:])
    note = "Durations are clock time; each hop is charged to whoever held the consult then."
    if left:
        note = f"…and {left} more step(s) not shown. " + note
    blocks.append(context(note))
    return {"text": f"{headline}: timeline", "blocks": blocks}
