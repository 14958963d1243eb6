"""Block Kit rendering, in one place: consult cards, notifications, modals, App Home, help.

User text is always escaped (`&`, `<`, `>`) so nobody can ping `@channel`, forge a mention or
a link through a consult, and shortened to Slack's limits with a marker (the database keeps
it whole). Notification fallback `text` never carries patient details or free text; those
appear only in message blocks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain.catalogue import Catalogue, Service
from bot.domain.lifecycle import OPEN_STATES, STATUS_LABELS, Status
from bot.domain.vocabulary import URGENCIES
from bot.slack.ids import ActionId, BlockId, CallbackId
from storage.models import Consult

SECTION_LIMIT = 3000
TRUNCATED = " … [shortened; the full text is kept in CareLoop]"
URGENCY_LABELS = {"stat": "Stat", "urgent": "Urgent", "routine": "Routine"}
URGENCY_ICONS = {
    "stat": ":red_circle:",
    "urgent": ":large_orange_circle:",
    "routine": ":white_circle:",
}

Blocks = list[dict[str, Any]]


def escape(text: str | None) -> str:
    """Escape user text for mrkdwn: `&`, `<` and `>` lose their control meaning."""
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
    return f"<{url}|{escape(label)}>" if url else escape(label)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": shorten(text)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": shorten(text)}]}


def button(label: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
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
    return {"type": "actions", "block_id": block_id[:255], "elements": list(elements)}


def status_line(c: Consult) -> str:
    status = Status(c.status)
    label = STATUS_LABELS[status]
    if status is Status.OPEN:
        return f"*{label}* — waiting for {mention(c.on_call)} to acknowledge"
    if status is Status.ACKNOWLEDGED:
        # The owner may differ from whoever acknowledged (handoffs): name the owner.
        return f"*{label}* {slack_date(c.acknowledged_at)} — owned by {mention(c.assignee)}"
    if status is Status.WAITING:
        return f"*{label}* — {mention(c.assignee)} asked {mention(c.requester)} for information"
    if status is Status.ANSWERED:
        return f"*{label}* by {mention(c.assignee)} {slack_date(c.answered_at)}"
    if status is Status.CLOSED:
        return f"*{label}* {slack_date(c.closed_at)}"
    return f"*{label}* {slack_date(c.cancelled_at)}"


def headline(c: Consult, service_name: str) -> str:
    """Fallback/notification text: reference, urgency, service — no patient details."""
    return f"{c.ref} · {URGENCY_LABELS.get(c.urgency, c.urgency)} consult for {service_name}"


@dataclass
class RenderContext:
    """What rendering may look up: the catalogue, other consults by id, and the time."""

    catalogue: Catalogue
    now: datetime
    load: Callable[[list[int]], list[Consult]] = lambda ids: []

    def service(self, key: str) -> Service:
        return self.catalogue.service_by_key(key)

    def service_name(self, key: str) -> str:
        try:
            return self.catalogue.service_by_key(key).name
        except KeyError:
            return key


# ---------------------------------------------------------------------------- the card
def consult_card(c: Consult, ctx: RenderContext) -> tuple[str, Blocks]:
    """The consult's message in the service channel, kept current with chat.update."""
    service = ctx.service(c.service)
    icon = URGENCY_ICONS.get(c.urgency, "")
    blocks: Blocks = [
        section(
            f"{icon} *{c.ref}* · *{URGENCY_LABELS.get(c.urgency, c.urgency)}* consult for "
            f"*{escape(service.name)}*\n{status_line(c)}"
        ),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Patient*\n{user_text(c.patient, 1900)}"},
                {"type": "mrkdwn", "text": f"*Requested by*\n{mention(c.requester)}"},
                {"type": "mrkdwn", "text": f"*On call*\n{mention(c.on_call)}"},
                {"type": "mrkdwn", "text": f"*Assigned to*\n{mention(c.assignee)}"},
            ],
        },
        section(f"*Question*\n{user_text(c.question)}"),
    ]
    for fld in service.intake:
        value = (c.intake or {}).get(fld.key)
        if value:
            blocks.append(section(f"*{escape(fld.label)}*\n{user_text(value, 1900)}"))
    blocks.append(context(due_line(c)))
    if Status(c.status) in OPEN_STATES:
        buttons = []
        if c.status == Status.OPEN.value:
            buttons.append(button("Acknowledge", ActionId.ACKNOWLEDGE, c.ref, "primary"))
        buttons += [
            button("Answer", ActionId.ANSWER, c.ref),
            button("Need info", ActionId.NEED_INFO, c.ref),
            button("Hand off", ActionId.HANDOFF, c.ref),
        ]
        blocks.append(actions(f"card:{c.ref}", *buttons))
    return headline(c, service.name), blocks


def due_line(c: Consult) -> str:
    parts = [f"Opened {slack_date(c.created_at)}"]
    if c.status == Status.OPEN.value:
        parts.append(f"acknowledge by {slack_date(c.acknowledge_due_at)}")
    if Status(c.status) in OPEN_STATES:
        parts.append(f"answer by {slack_date(c.answer_due_at)}")
    if c.escalation_count:
        parts.append(f"escalated {c.escalation_count}×")
    return " · ".join(parts)


# ---------------------------------------------------------------------------- messages
def _other_lines(others: Sequence[Consult], ctx: RenderContext) -> str:
    return "\n".join(
        f"• {link(o.permalink, o.ref)} — {escape(ctx.service_name(o.service))}, "
        f"{STATUS_LABELS[Status(o.status)].lower()}"
        for o in others
    )


def render_message(
    template: str, c: Consult | None, params: dict[str, Any], ctx: RenderContext
) -> tuple[str, Blocks]:
    """Text and blocks for one outbox template."""
    renderer = TEMPLATES.get(template)
    if renderer is None:
        raise KeyError(f"unknown message template {template!r}")
    return renderer(c, params, ctx)


def _confirmation(c: Consult, p: dict[str, Any], ctx: RenderContext) -> tuple[str, Blocks]:
    name = ctx.service_name(c.service)
    blocks: Blocks = [
        section(
            f":white_check_mark: Your consult *{link(c.permalink, c.ref)}* is in <#{c.channel}> "
            f"for *{escape(name)}* ({URGENCY_LABELS.get(c.urgency, c.urgency)}).\n"
            f"Patient: {user_text(c.patient, 300)}\n"
            f"On call: {mention(c.on_call)} · acknowledge by {slack_date(c.acknowledge_due_at)} · "
            f"answer by {slack_date(c.answer_due_at)}\n"
            "I'll tell you when it is acknowledged, asked about, answered, overdue or escalated."
        )
    ]
    others = ctx.load(list(p.get("others") or []))
    if others:
        blocks.append(
            section("*This patient has other open consults:*\n" + _other_lines(others, ctx))
        )
    blocks.append(actions(f"req:{c.ref}", button("Cancel", ActionId.CANCEL, c.ref, "danger")))
    return f"{c.ref} is in the {name} channel", blocks


def _simple(text_fn: Callable[[Consult, dict[str, Any], RenderContext], tuple[str, str]]) -> Any:
    def render(c: Consult, p: dict[str, Any], ctx: RenderContext) -> tuple[str, Blocks]:
        fallback, body = text_fn(c, p, ctx)
        return fallback, [section(body)]

    return render


def _ref(c: Consult) -> str:
    return link(c.permalink, c.ref)


def _answered(c: Consult, p: dict[str, Any], ctx: RenderContext) -> tuple[str, Blocks]:
    blocks: Blocks = [
        section(
            f":speech_balloon: {mention(p.get('by'))} answered *{_ref(c)}* "
            f"({escape(ctx.service_name(c.service))}):\n{quote(p.get('text'))}"
        ),
        context("Close it if this answers your question, or reopen it with a follow-up."),
        actions(
            f"req:{c.ref}",
            button("Close", ActionId.CLOSE, c.ref, "primary"),
            button("Reopen", ActionId.REOPEN, c.ref),
            button("Helpful", ActionId.HELPFUL, c.ref),
            button("Not helpful", ActionId.NOT_HELPFUL, c.ref),
        ),
    ]
    return f"{c.ref} was answered", blocks


def _reply_button(c: Consult) -> dict[str, Any]:
    """The requester's Reply button: answers the consultant without finding the thread."""
    return actions(f"req:{c.ref}", button("Reply", ActionId.REPLY, c.ref, "primary"))


def _need_info(c: Consult, p: dict[str, Any], ctx: RenderContext) -> tuple[str, Blocks]:
    return f"{c.ref}: the consultant needs information from you", [
        section(
            f":question: {mention(p.get('by'))} needs information for *{_ref(c)}*:\n"
            f"{quote(p.get('text'))}\nAnswer with *Reply* below (I post it in the consult's "
            f"thread for you), or reply in the thread yourself ({link(c.permalink, 'open it')}); "
            "the answer clock resumes when you do."
        ),
        _reply_button(c),
    ]


def _handoff_received(
    c: Consult | None, p: dict[str, Any], ctx: RenderContext
) -> tuple[str, Blocks]:
    consults = ctx.load(list(p.get("ids") or []))
    lines = "\n".join(
        f"• {link(x.permalink, x.ref)} — {escape(ctx.service_name(x.service))}, "
        f"{URGENCY_LABELS.get(x.urgency, x.urgency)}, {STATUS_LABELS[Status(x.status)].lower()}, "
        f"answer by {slack_date(x.answer_due_at)}"
        for x in consults
    )
    note = f"\nNote from {mention(p.get('from'))}:\n{quote(p.get('note'))}" if p.get("note") else ""
    return f"{len(consults)} consult(s) handed off to you", [
        section(
            f":arrows_counterclockwise: {mention(p.get('from'))} handed off {len(consults)} "
            f"consult(s) to you. You own them now:\n{lines}{note}"
        ),
        context("Each thread has the history, the question and the clocks."),
    ]


def _nudge_thread(c: Consult, p: dict[str, Any], ctx: RenderContext) -> tuple[str, Blocks]:
    who = " ".join(mention(u) for u in p.get("targets") or [])
    what = "acknowledged" if p.get("phase") == "acknowledge" else "answered"
    lead = ":rotating_light: Escalated — " if p.get("escalated") else ":alarm_clock: "
    return f"{c.ref} is overdue", [
        section(
            f"{lead}{who} *{c.ref}* has not been {what} "
            f"(due {slack_date(c.acknowledge_due_at if what == 'acknowledged' else c.answer_due_at)})."
        )
    ]


def _escalation_dm(c: Consult, p: dict[str, Any], ctx: RenderContext) -> tuple[str, Blocks]:
    what = "acknowledged" if p.get("phase") == "acknowledge" else "answered"
    return f"{c.ref} escalated to you", [
        section(
            f":rotating_light: *{_ref(c)}* ({escape(ctx.service_name(c.service))}, "
            f"{URGENCY_LABELS.get(c.urgency, c.urgency)}) has not been {what} and was escalated "
            f"to you. Opened {slack_date(c.created_at)} by {mention(c.requester)}."
        )
    ]


def _requester_overdue(c: Consult, p: dict[str, Any], ctx: RenderContext) -> tuple[str, Blocks]:
    targets = " ".join(mention(u) for u in p.get("targets") or [])
    what = "acknowledged" if p.get("phase") == "acknowledge" else "answered"
    if p.get("escalated"):
        body = f":hourglass: *{_ref(c)}* is still waiting; escalated to {targets}."
        fallback = f"{c.ref}: still waiting; escalated"
    else:
        body = (
            f":hourglass: *{_ref(c)}* is overdue: not yet {what}. "
            f"I have reminded {targets} and will keep at it."
        )
        fallback = f"{c.ref} is overdue"
    return fallback, [section(body)]


def _requester_reminder(c: Consult, p: dict[str, Any], ctx: RenderContext) -> tuple[str, Blocks]:
    return f"{c.ref}: the consultant is waiting for your reply", [
        section(
            f":bell: {mention(c.assignee)} is waiting for your reply on *{_ref(c)}*. "
            "Answer with *Reply* below or in the consult's thread to resume it."
        ),
        _reply_button(c),
    ]


def _storm(c: Consult | None, p: dict[str, Any], ctx: RenderContext) -> tuple[str, Blocks]:
    consults = ctx.load(list(p.get("ids") or []))
    who = " ".join(mention(u) for u in p.get("targets") or [])
    lines = "\n".join(
        f"• {link(x.permalink, x.ref)} — {URGENCY_LABELS.get(x.urgency, x.urgency)}, "
        f"{STATUS_LABELS[Status(x.status)].lower()}, opened {slack_date(x.created_at)}"
        for x in consults
    )
    return f"{len(consults)} consults are overdue", [
        section(f":rotating_light: {who} {len(consults)} consults are overdue:\n{lines}")
    ]


def _on_call_changed(
    c: Consult | None, p: dict[str, Any], ctx: RenderContext
) -> tuple[str, Blocks]:
    name = escape(ctx.service_name(p.get("service", "")))
    return f"On-call for {name} changed", [
        section(
            f":pager: {mention(p.get('to'))} is now on call for *{name}* "
            f"(was {mention(p.get('from'))}; changed by {mention(p.get('by'))})."
        )
    ]


def _text(c: Consult | None, p: dict[str, Any], ctx: RenderContext) -> tuple[str, Blocks]:
    """A plain notice (refusals, errors): params carry the text, already safe."""
    return str(p.get("text", "")), [section(str(p.get("text", "")))]


TEMPLATES: dict[str, Callable[..., tuple[str, Blocks]]] = {
    "card": lambda c, p, ctx: consult_card(c, ctx),
    "confirmation": _confirmation,
    "acknowledged": _simple(
        lambda c, p, ctx: (
            f"{c.ref} was acknowledged",
            f":eyes: {mention(p.get('by'))} acknowledged *{_ref(c)}* and owns it now.",
        )
    ),
    "acknowledged_thread": _simple(
        lambda c, p, ctx: (f"{c.ref} acknowledged", f"Acknowledged by {mention(p.get('by'))}.")
    ),
    "reply_relay": _simple(
        lambda c, p, ctx: (
            f"New reply on {c.ref}",
            f":speech_balloon: {mention(p.get('by'))} replied on *{_ref(c)}*:\n"
            f"{quote(p.get('text'), 600)}",
        )
    ),
    "answer_thread": _simple(
        lambda c, p, ctx: (
            f"{c.ref} answered",
            f":white_check_mark: *Answer* from {mention(p.get('by'))}:\n{quote(p.get('text'))}",
        )
    ),
    "answered": _answered,
    "need_info_thread": _simple(
        lambda c, p, ctx: (
            f"{c.ref}: information needed",
            f":question: {mention(p.get('by'))} asks {mention(c.requester)}:\n"
            f"{quote(p.get('text'))}\n_The answer clock is paused until the requester replies "
            "in this thread._",
        )
    ),
    "need_info": _need_info,
    "requester_reply_thread": _simple(
        lambda c, p, ctx: (
            f"{c.ref}: the requester replied",
            f":leftwards_arrow_with_hook: {mention(p.get('by'))} replied:\n{quote(p.get('text'))}"
            + ("\n_The answer clock is running again._" if p.get("resumed") else ""),
        )
    ),
    "info_given": _simple(
        lambda c, p, ctx: (
            f"{c.ref}: the requester replied",
            f":leftwards_arrow_with_hook: {mention(c.requester)} replied on *{_ref(c)}*; "
            "the answer clock is running again.",
        )
    ),
    "handoff_thread": _simple(
        lambda c, p, ctx: (
            f"{c.ref} handed off",
            f":arrows_counterclockwise: Handed off from {mention(p.get('from'))} to "
            f"{mention(p.get('to'))}"
            + (f": {user_text(p.get('note'), 2000)}" if p.get("note") else "."),
        )
    ),
    "handoff_received": _handoff_received,
    "handed_off": _simple(
        lambda c, p, ctx: (
            f"{c.ref} has a new owner",
            f":arrows_counterclockwise: *{_ref(c)}* is now with {mention(p.get('to'))}.",
        )
    ),
    "closed_thread": _simple(
        lambda c, p, ctx: (f"{c.ref} closed", f":lock: Closed by {mention(p.get('by'))}.")
    ),
    "reopened_thread": _simple(
        lambda c, p, ctx: (
            f"{c.ref} reopened",
            f":leftwards_arrow_with_hook: Reopened by {mention(p.get('by'))} for "
            f"{mention(p.get('assignee'))}"
            + (f" with a follow-up:\n{quote(p.get('text'))}" if p.get("text") else "."),
        )
    ),
    "reopened": _simple(
        lambda c, p, ctx: (
            f"{c.ref} was reopened",
            f":leftwards_arrow_with_hook: {mention(p.get('by'))} reopened *{_ref(c)}*"
            + (f":\n{quote(p.get('text'))}" if p.get("text") else "."),
        )
    ),
    "cancelled_thread": _simple(
        lambda c, p, ctx: (
            f"{c.ref} cancelled",
            f":no_entry_sign: Cancelled by {mention(p.get('by'))}"
            + (f": {user_text(p.get('text'), 2000)}" if p.get("text") else "."),
        )
    ),
    "cancelled": _simple(
        lambda c, p, ctx: (
            f"{c.ref} was cancelled",
            f":no_entry_sign: {mention(p.get('by'))} cancelled *{_ref(c)}*; nothing more to do.",
        )
    ),
    "post_failed": _simple(
        lambda c, p, ctx: (
            f"{c.ref} could not be posted",
            f":warning: I could not post *{c.ref}* to <#{c.channel}> "
            f"(Slack said `{escape(p.get('error'))}`). It is stored and still tracked; "
            "please call the service and tell your CareLoop admin.",
        )
    ),
    "snoozed_thread": _simple(
        lambda c, p, ctx: (
            f"{c.ref} reminders snoozed",
            f":zzz: {mention(p.get('by'))} snoozed reminders until "
            f"{slack_date(datetime.fromisoformat(p['until']))}.",
        )
    ),
    "nudge": _nudge_thread,
    "escalation": _escalation_dm,
    "requester_overdue": _requester_overdue,
    "requester_reminder": _requester_reminder,
    "storm": _storm,
    "on_call_changed": _on_call_changed,
    "text": _text,
    "digest": lambda c, p, ctx: _digest(p, ctx),
}


def _digest(params: dict[str, Any], ctx: RenderContext) -> tuple[str, Blocks]:
    from bot.slack.render.digest import render_digest  # noqa: PLC0415 - it imports blocks

    return render_digest(params, ctx)


# ---------------------------------------------------------------------------- ephemeral
def consult_list(consults: Sequence[Consult], user: str, ctx: RenderContext) -> str:
    """`/consult list`: my consults as requester and as assignee, with status and age."""
    mine = [c for c in consults if c.requester == user]
    owned = [c for c in consults if c.assignee == user and c.requester != user]

    def lines(items: Sequence[Consult]) -> str:
        return (
            "\n".join(
                f"• {link(c.permalink, c.ref)} — {escape(ctx.service_name(c.service))}, "
                f"{URGENCY_LABELS.get(c.urgency, c.urgency)}, "
                f"{STATUS_LABELS[Status(c.status)].lower()}, {age(c.created_at, ctx.now)} old"
                for c in items
            )
            or "• none"
        )

    return f"*Requested by you*\n{lines(mine)}\n*Assigned to you*\n{lines(owned)}"


def patient_list(patient: str, consults: Sequence[Consult], ctx: RenderContext) -> str:
    """`/consult patient`: a patient's open consults across services."""
    if not consults:
        return f"No open consults for patient {user_text(patient, 200)}."
    rows = "\n".join(
        f"• {link(c.permalink, c.ref)} — {escape(ctx.service_name(c.service))}, "
        f"{URGENCY_LABELS.get(c.urgency, c.urgency)}, {STATUS_LABELS[Status(c.status)].lower()}, "
        f"requested by {mention(c.requester)}, assigned to {mention(c.assignee)}"
        for c in consults
    )
    return f"*Open consults for patient {user_text(patient, 200)}*\n{rows}"


def on_call_text(rows: Sequence[tuple[Service, str]]) -> str:
    """`/consult oncall`: who is on call for every service."""
    lines = "\n".join(
        f"• *{escape(svc.name)}* (`{svc.key}`): {mention(user)}"
        + (f", backup {mention(svc.backup)}" if svc.backup else "")
        for svc, user in rows
    )
    return f"*On call now*\n{lines}"


def opened_ack(c: Consult, duplicate: bool, others: Sequence[Consult], ctx: RenderContext) -> str:
    """The immediate ephemeral answer to a quick-form `/consult`."""
    name = escape(ctx.service_name(c.service))
    if duplicate:
        return f"This request was already received as *{c.ref}* ({name}); nothing new was created."
    text = (
        f":inbox_tray: *{c.ref}* received for *{name}* "
        f"({URGENCY_LABELS.get(c.urgency, c.urgency)}). I'm posting it to <#{c.channel}> and "
        "will send you a link when it is there."
    )
    if others:
        text += "\nThis patient has other open consults:\n" + _other_lines(others, ctx)
    return text


def help_text(catalogue: Catalogue) -> str:
    """`/consult help`: every form, with an example."""
    services = ", ".join(
        f"`{s.key}`" + (f" ({', '.join(s.aliases)})" if s.aliases else "")
        for s in catalogue.services
    )
    return "\n".join(
        [
            "*CareLoop — consult requests that always come back*",
            "`/consult` — open the form",
            "`/consult <service> [stat|urgent|routine] <patient>: <question>` — quick form, "
            "e.g. `/consult rad stat MRN 12345: CT head, r/o bleed?`",
            "`/consult list` — your open consults, as requester and as assignee",
            "`/consult ack RAD-42` — acknowledge (take ownership)",
            "`/consult answer RAD-42 <text>` — answer",
            "`/consult needinfo RAD-42 <question>` — ask the requester; pauses your clock",
            "`/consult handoff @user [note]` — hand all your open consults to someone (shift change)",
            "`/consult close RAD-42` · `/consult reopen RAD-42 <follow-up>` · "
            "`/consult cancel RAD-42 [reason]` — for requesters",
            "`/consult patient <patient>` — a patient's open consults across services",
            "`/consult oncall` — who is on call; `/consult oncall <service> @user` — change it",
            "`/consult snooze RAD-42 30m` — hold a consult's reminders (at most 24h)",
            "`/consult stats [service] [7d|30d|90d]` — response times (service leads)",
            "`/consult help` — this message",
            f"Services: {services}",
        ]
    )


# ---------------------------------------------------------------------------- modals
def _text_input(
    block_id: str,
    label: str,
    *,
    initial: str | None = None,
    multiline: bool = False,
    optional: bool = False,
    hint: str | None = None,
    max_length: int = 3000,
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "multiline": multiline,
        "max_length": max_length,
    }
    if initial:
        element["initial_value"] = initial[:max_length]
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": label[:2000]},
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint[:2000]}
    return block


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text[:75]}, "value": value}


def new_consult_modal(
    catalogue: Catalogue,
    *,
    service: Service | None = None,
    urgency: str | None = None,
    patient: str = "",
    question: str = "",
    intake: dict[str, str] | None = None,
    channel: str = "",
) -> dict[str, Any]:
    """The /consult form. Choosing a service updates the view with its intake fields."""
    options = [_option(s.name, s.key) for s in catalogue.services][:100]
    select: dict[str, Any] = {
        "type": "static_select",
        "action_id": ActionId.SERVICE_SELECT,
        "placeholder": {"type": "plain_text", "text": "Choose a service"},
        "options": options,
    }
    if service:
        select["initial_option"] = _option(service.name, service.key)
    urgency_select: dict[str, Any] = {
        "type": "static_select",
        "action_id": "value",
        "options": [_option(URGENCY_LABELS[u], u) for u in URGENCIES],
        "initial_option": _option(URGENCY_LABELS[urgency or "routine"], urgency or "routine"),
    }
    blocks: Blocks = [
        {
            "type": "input",
            "block_id": BlockId.SERVICE,
            "label": {"type": "plain_text", "text": "Service"},
            "element": select,
            "dispatch_action": True,
        },
        {
            "type": "input",
            "block_id": BlockId.URGENCY,
            "label": {"type": "plain_text", "text": "Urgency"},
            "element": urgency_select,
        },
        _text_input(
            BlockId.PATIENT,
            "Patient",
            initial=patient,
            hint=(service.patient_hint if service and service.patient_hint else "MRN or encounter"),
            max_length=200,
        ),
        _text_input(BlockId.QUESTION, "Question", initial=question, multiline=True),
    ]
    for fld in service.intake if service else []:
        blocks.append(
            _text_input(
                BlockId.INTAKE_PREFIX + fld.key,
                fld.label,
                initial=(intake or {}).get(fld.key),
                optional=not fld.required,
                hint=fld.hint,
                max_length=fld.max_length,
            )
        )
    return {
        "type": "modal",
        "callback_id": CallbackId.NEW_CONSULT,
        "title": {"type": "plain_text", "text": "New consult"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": channel,
        "blocks": blocks,
    }


def _ref_modal(
    callback_id: str, title: str, submit: str, ref: str, blocks: Blocks
) -> dict[str, Any]:
    # Titles are generic on purpose: no patient details in modal titles.
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": ref,
        "blocks": [context(f"Consult *{ref}*"), *blocks],
    }


def answer_modal(ref: str, initial: str = "") -> dict[str, Any]:
    """Answer modal, pre-filled with the consultant's latest thread reply."""
    return _ref_modal(
        CallbackId.ANSWER,
        "Answer consult",
        "Send answer",
        ref,
        [_text_input(BlockId.ANSWER, "Answer", initial=initial, multiline=True)],
    )


def handoff_modal(ref: str) -> dict[str, Any]:
    """Hand off: to whom, and a one-line note on status and next step."""
    return _ref_modal(
        CallbackId.HANDOFF,
        "Hand off consult",
        "Hand off",
        ref,
        [
            {
                "type": "input",
                "block_id": BlockId.HANDOFF_TO,
                "label": {"type": "plain_text", "text": "Hand off to"},
                "element": {"type": "users_select", "action_id": "value"},
            },
            _text_input(BlockId.NOTE, "Status and next step", max_length=300),
        ],
    )


def need_info_modal(ref: str) -> dict[str, Any]:
    return _ref_modal(
        CallbackId.NEED_INFO,
        "Ask the requester",
        "Ask",
        ref,
        [_text_input(BlockId.QUESTION, "Question for the requester", multiline=True)],
    )


def requester_reply_modal(
    ref: str, question: str = "", asked_by: str | None = None
) -> dict[str, Any]:
    """The requester's answer to a need-info question, with the question shown above it;
    what they write is posted in the consult's thread for them."""
    asked = (
        [
            section(
                f"{mention(asked_by) if asked_by else 'The consultant'} asked:\n{quote(question)}"
            )
        ]
        if question
        else []
    )
    return _ref_modal(
        CallbackId.REPLY,
        "Reply to the consultant",
        "Send reply",
        ref,
        [
            *asked,
            _text_input(
                BlockId.REPLY,
                "Your reply",
                multiline=True,
                hint="Posted in the consult's thread for you.",
            ),
        ],
    )


def reopen_modal(ref: str) -> dict[str, Any]:
    return _ref_modal(
        CallbackId.REOPEN,
        "Reopen consult",
        "Reopen",
        ref,
        [_text_input(BlockId.FOLLOW_UP, "Follow-up question", multiline=True)],
    )


def feedback_modal(ref: str, helpful: bool) -> dict[str, Any]:
    view = _ref_modal(
        CallbackId.FEEDBACK,
        "Rate the answer",
        "Send",
        ref,
        [
            _text_input(
                BlockId.COMMENT,
                "Comment",
                multiline=True,
                optional=True,
                max_length=1000,
            )
        ],
    )
    view["private_metadata"] = f"{ref}|{'1' if helpful else '0'}"
    return view


# ---------------------------------------------------------------------------- plain text
# Emoji the bot uses, as a terminal can show them (unknown :codes: stay as written).
PLAIN_EMOJI = {
    "red_circle": "🔴",
    "large_orange_circle": "🟠",
    "white_circle": "⚪",
    "white_check_mark": "✅",
    "eyes": "👀",
    "speech_balloon": "💬",
    "question": "❓",
    "rotating_light": "🚨",
    "alarm_clock": "⏰",
    "hourglass": "⌛",
    "bell": "🔔",
    "lock": "🔒",
    "no_entry_sign": "🚫",
    "no_entry": "⛔",
    "arrows_counterclockwise": "🔄",
    "inbox_tray": "📥",
    "leftwards_arrow_with_hook": "↩️",
    "warning": "⚠️",
    "pager": "📟",
    "bar_chart": "📊",
    "chart_with_upwards_trend": "📈",
    "calendar": "📅",
}


def mrkdwn_to_plain(
    text: str,
    *,
    names: dict[str, str] | None = None,
    channels: dict[str, str] | None = None,
    when: Callable[[int], str] | None = None,
    emoji: bool = True,
) -> str:
    """Slack mrkdwn as plain text a person reads.

    ``<@U1>`` becomes ``@<name>`` (from `names`, else the id), ``<#C1>`` ``#<name>``,
    ``<url|label>`` its label, ``<!date^epoch^…|fallback>`` ``when(epoch)`` (else the
    fallback), ``<!here>`` ``@here``; ``*bold*``/``_italic_`` lose their markers; ``&lt;``,
    ``&gt;``, ``&amp;`` come back as ``<``, ``>``, ``&`` (after the control sequences, so
    escaped user text is shown, never interpreted); known ``:emoji:`` become characters.
    """
    import re  # noqa: PLC0415 - only the demo renders plain text

    names, channels = names or {}, channels or {}

    def control(match: re.Match[str]) -> str:
        body = match.group(1)
        target, _, label = body.partition("|")
        if target.startswith("@"):
            user = target[1:]
            return "@" + names.get(user, label or user)
        if target.startswith("#"):
            channel = target[1:]
            return "#" + channels.get(channel, label or channel)
        if target.startswith("!date^"):
            try:
                epoch = int(target.split("^")[1])
            except (IndexError, ValueError):
                return label or target
            return when(epoch) if when is not None else (label or str(epoch))
        if target.startswith("!subteam^"):
            return "@" + (label or target.split("^", 1)[1])
        if target.startswith("!"):
            return "@" + (label or target[1:])
        return label or target

    out = re.sub(r"<([^<>\n]+)>", control, text)
    out = re.sub(r"`([^`\n]+)`", r"\1", out)
    out = re.sub(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])", r"\1", out)
    out = re.sub(r"(?<![\w_])_(?!\s)([^_\n]+?)(?<!\s)_(?![\w_])", r"\1", out)
    out = re.sub(r"(?<![\w~])~(?!\s)([^~\n]+?)(?<!\s)~(?![\w~])", r"\1", out)
    if emoji:
        out = re.sub(r":([a-z0-9_+-]+):", lambda m: PLAIN_EMOJI.get(m.group(1), m.group(0)), out)
    return out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _plain_element(element: dict[str, Any]) -> str:
    """One interactive element: a button as ``[Label]``, a menu as ``[Choice ▾]``."""
    kind = element.get("type", "")
    label = (
        (element.get("text") or {}).get("text", "") if isinstance(element.get("text"), dict) else ""
    )
    if kind == "button":
        return f"[{label}]"
    if kind.endswith("_select") or kind == "overflow":
        chosen = (element.get("initial_option") or {}).get("text", {}).get("text")
        placeholder = (element.get("placeholder") or {}).get("text", "choose")
        return f"[{chosen or placeholder} ▾]"
    if kind == "datepicker":
        return f"[{element.get('initial_date') or 'pick a date'} ▾]"
    return ""


def to_plain_text(
    text: str,
    blocks: Blocks | None,
    *,
    names: dict[str, str] | None = None,
    channels: dict[str, str] | None = None,
    when: Callable[[int], str] | None = None,
    emoji: bool = True,
) -> str:
    """Render a message (or a modal's blocks) as a clinician would read it; for the demo.

    Buttons show as ``[Label]``, section fields two to a line as ``Label: value``, modal
    inputs as ``Label: value`` (``____`` when empty), and the mrkdwn inside goes through
    `mrkdwn_to_plain` with `names` (user id → display name), `channels` (id → name) and
    `when` (epoch seconds → short time). Without blocks the fallback `text` is rendered.
    """

    def plain(value: str) -> str:
        return mrkdwn_to_plain(value, names=names, channels=channels, when=when, emoji=emoji)

    if not blocks:
        return plain(text or "")
    out: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "section":
            if block.get("text"):
                out.append(plain(block["text"].get("text", "")))
            fields = [
                plain(f.get("text", "")).replace("\n", ": ", 1) for f in block.get("fields") or []
            ]
            for i in range(0, len(fields), 2):
                out.append("   ".join(fields[i : i + 2]))
            accessory = block.get("accessory")
            if isinstance(accessory, dict) and _plain_element(accessory):
                out.append(_plain_element(accessory))
        elif kind == "context":
            out.append(
                " ".join(
                    plain(e.get("text", "")) if e.get("type") != "image" else ""
                    for e in block.get("elements", [])
                ).strip()
            )
        elif kind == "actions":
            out.append(" ".join(filter(None, map(_plain_element, block.get("elements", [])))))
        elif kind == "header":
            out.append(plain(block["text"].get("text", "")).upper())
        elif kind == "divider":
            out.append("────────")
        elif kind == "image":
            out.append(
                f"[image: {block.get('alt_text') or block.get('title', {}).get('text', '')}]"
            )
        elif kind == "input":
            label = plain((block.get("label") or {}).get("text", ""))
            element = block.get("element") or {}
            if element.get("type") == "plain_text_input":
                value = element.get("initial_value") or "____"
            else:
                value = _plain_element(element) or "____"
            optional = (
                " (optional)" if block.get("optional") and "optional" not in label.lower() else ""
            )
            out.append(f"{label}{optional}: {value}")
    return "\n".join(out)
