"""The messages the outbox sends: one renderer per `Template`, each turning a consult (or
none), the message's params and a `RenderContext` into fallback text and blocks.

Fallback `text` never carries patient details or free text; those appear only in blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.domain.text import escape
from bot.domain.vocabulary import Template
from bot.slack.ids import ActionId
from bot.slack.render import moves, shifts
from bot.slack.render.card import consult_card, on_call_mentions
from bot.slack.render.context import RenderContext
from bot.slack.render.cover import (
    cover_ended,
    cover_started,
    handover_received,
    handover_sent,
    handover_thread,
)
from bot.slack.render.critical import (
    critical_acknowledged,
    critical_forwarded,
    critical_not_received,
    critical_result,
)
from bot.slack.render.digest import render_digest
from bot.slack.render.followups import followup_done, followup_escalated, followup_owed
from bot.slack.render.primitives import (
    Blocks,
    actions,
    button,
    context,
    link,
    mention,
    quote,
    ref_link,
    section,
    sections,
    slack_date,
    status_word,
    urgency_label,
    user_text,
)
from bot.slack.render.texts import other_consult_lines
from storage.models import Consult

Params = dict[str, Any]
Rendered = tuple[str, Blocks]
# The consult is None for the templates about several consults or none (handoff_received,
# storm, storm_dm, on_call_changed, text, digest).
Renderer = Callable[[Any, Params, RenderContext], Rendered]


def render_message(
    template: str, c: Consult | None, params: Params, ctx: RenderContext
) -> Rendered:
    """Text and blocks for one outbox template; KeyError for a template nobody renders."""
    renderer = TEMPLATES.get(template)
    if renderer is None:
        raise KeyError(f"unknown message template {template!r}")
    return renderer(c, params, ctx)


def _one(fallback: str, body: str) -> Rendered:
    """A message of one section."""
    return fallback, [section(body)]


def _phase(p: Params) -> str:
    """What an overdue consult has not been: 'acknowledged' or 'answered'."""
    return "acknowledged" if p.get("phase") == "acknowledge" else "answered"


def _reply_button(c: Consult) -> dict[str, Any]:
    """The requester's Reply button: answers the consultant without finding the thread."""
    return actions(f"req:{c.ref}", button("Reply", ActionId.REPLY, c.ref, "primary"))


# ---------------------------------------------------------------- to the service channel
def _card(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    return consult_card(c, ctx)


def _acknowledged_thread(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    return _one(f"{c.ref} acknowledged", f"Acknowledged by {mention(p.get('by'))}.")


def _answer_thread(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    by, answer = mention(p.get("by")), quote(p.get("text"))
    return _one(f"{c.ref} answered", f":white_check_mark: *Answer* from {by}:\n{answer}")


def _need_info_thread(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    return _one(
        f"{c.ref}: information needed",
        f":question: {mention(p.get('by'))} asks {mention(c.requester)}:\n"
        f"{quote(p.get('text'))}\n_The answer clock is paused until the requester replies "
        "in this thread._",
    )


def _requester_reply_thread(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    by = mention(p.get("by"))
    if p.get("covering_for"):
        by += f" (covering for {mention(p.get('covering_for'))})"
    body = f":leftwards_arrow_with_hook: {by} replied:\n{quote(p.get('text'))}"
    if p.get("resumed"):
        body += "\n_The answer clock is running again._"
    return _one(f"{c.ref}: the requester replied", body)


def _handoff_thread(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    note = f": {user_text(p.get('note'), 2000)}" if p.get("note") else "."
    return _one(
        f"{c.ref} handed off",
        f":arrows_counterclockwise: Handed off from {mention(p.get('from'))} to "
        f"{mention(p.get('to'))}" + note,
    )


def _closed_thread(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    return _one(f"{c.ref} closed", f":lock: Closed by {mention(p.get('by'))}.")


def _reopened_thread(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    by, assignee = mention(p.get("by")), mention(p.get("assignee"))
    follow_up = f" with a follow-up:\n{quote(p.get('text'))}" if p.get("text") else "."
    body = f":leftwards_arrow_with_hook: Reopened by {by} for {assignee}{follow_up}"
    return _one(f"{c.ref} reopened", body)


def _cancelled_thread(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    reason = f": {user_text(p.get('text'), 2000)}" if p.get("text") else "."
    by = mention(p.get("by"))
    return _one(f"{c.ref} cancelled", f":no_entry_sign: Cancelled by {by}{reason}")


def _snoozed_thread(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    until = slack_date(datetime.fromisoformat(p["until"]))
    by = mention(p.get("by"))
    return _one(f"{c.ref} reminders snoozed", f":zzz: {by} snoozed reminders until {until}.")


def _nudge(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    who = " ".join(mention(u) for u in p.get("targets") or [])
    what = _phase(p)
    lead = ":rotating_light: Escalated — " if p.get("escalated") else ":alarm_clock: "
    due = c.acknowledge_due_at if what == "acknowledged" else c.answer_due_at
    body = f"{lead}{who} *{c.ref}* has not been {what} (due {slack_date(due)})."
    return _one(f"{c.ref} is overdue", body)


def _storm(c: Consult | None, p: Params, ctx: RenderContext) -> Rendered:
    consults = ctx.load(list(p.get("ids") or []))
    who = " ".join(mention(u) for u in p.get("targets") or [])
    lines = [
        f"• {ref_link(x)} — {urgency_label(x.urgency)}, "
        f"{status_word(x.status)}, opened {slack_date(x.created_at)}"
        for x in consults
    ]
    # Every consult listed: a long list goes on in further sections, never cut (the sweep
    # keeps one summary to `STORM_CHUNK` consults, well within Slack's 50 blocks).
    head = f":rotating_light: {who} {len(consults)} consults are overdue:"
    return f"{len(consults)} consults are overdue", sections(head, lines)


def _storm_dm(c: Consult | None, p: Params, ctx: RenderContext) -> Rendered:
    """To one person, in a storm: the consults escalated to them (`role` "escalation"), or
    their own overdue consults (`role` "requester"), in one message instead of one each."""
    consults = ctx.load(list(p.get("ids") or []))
    n, who = len(consults), " ".join(mention(u) for u in p.get("targets") or [])
    lines = [
        f"• {ref_link(x)} — {escape(ctx.service_name(x.service))}, {urgency_label(x.urgency)}, "
        f"not yet {'acknowledged' if x.nudge_phase == 'acknowledge' else 'answered'}, "
        f"opened {slack_date(x.created_at)}"
        for x in consults
    ]
    if p.get("role") == "escalation":
        head = f":rotating_light: {n} overdue consults were escalated to you:"
        return f"{n} consults escalated to you", sections(head, lines)
    if p.get("escalated"):
        head = f":hourglass: {n} of your consults are still waiting; escalated to {who}:"
    else:
        head = f":hourglass: {n} of your consults are overdue. I have reminded {who}:"
    return f"{n} of your consults are overdue", sections(head, lines)


def _on_call_changed(c: Consult | None, p: Params, ctx: RenderContext) -> Rendered:
    name = escape(ctx.service_name(p.get("service", "")))
    return _one(
        f"On-call for {name} changed",
        f":pager: {mention(p.get('to'))} is now on call for *{name}* "
        f"(was {mention(p.get('from'))}; changed by {mention(p.get('by'))}).",
    )


# ---------------------------------------------------------------- to the requester
def _confirmation(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    name = ctx.service_name(c.service)
    blocks: Blocks = [
        section(
            f":white_check_mark: Your consult *{ref_link(c)}* is in <#{c.channel}> "
            f"for *{escape(name)}* ({urgency_label(c.urgency)}).\n"
            f"Patient: {user_text(c.patient, 300)}\n"
            f"On call: {on_call_mentions(c, ctx)} · acknowledge by {slack_date(c.acknowledge_due_at)} · "
            f"answer by {slack_date(c.answer_due_at)}\n"
            "I'll tell you when it is acknowledged, asked about, answered, overdue or escalated."
        )
    ]
    others = ctx.load(list(p.get("others") or []))
    if others:
        blocks.append(
            section("*This patient has other open consults:*\n" + other_consult_lines(others, ctx))
        )
    blocks.append(
        actions(
            f"req:{c.ref}",
            button("Hand over", ActionId.HANDOVER, c.ref),
            button("Cancel", ActionId.CANCEL, c.ref, "danger"),
        )
    )
    return f"{c.ref} is in the {name} channel", blocks


def _acknowledged(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    body = f":eyes: {mention(p.get('by'))} acknowledged *{ref_link(c)}* and owns it now."
    return _one(f"{c.ref} was acknowledged", body)


def _reply_relay(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    return _one(
        f"New reply on {c.ref}",
        f":speech_balloon: {mention(p.get('by'))} replied on *{ref_link(c)}*:\n"
        f"{quote(p.get('text'), 600)}",
    )


def _answered(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    blocks: Blocks = [
        section(
            f":speech_balloon: {mention(p.get('by'))} answered *{ref_link(c)}* "
            f"({escape(ctx.service_name(c.service))}):\n{quote(p.get('text'))}"
        ),
        context("Close it if this answers your question, or reopen it with a follow-up."),
        actions(
            f"req:{c.ref}",
            button("Close", ActionId.CLOSE, c.ref, "primary"),
            button("Reopen", ActionId.REOPEN, c.ref),
            button("Helpful", ActionId.HELPFUL, c.ref),
            button("Not helpful", ActionId.NOT_HELPFUL, c.ref),
            button("Follow-up", ActionId.FOLLOWUP_FROM_ANSWER, c.ref),
        ),
    ]
    return f"{c.ref} was answered", blocks


def _need_info(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    return f"{c.ref}: the consultant needs information from you", [
        section(
            f":question: {mention(p.get('by'))} needs information for *{ref_link(c)}*:\n"
            f"{quote(p.get('text'))}\nAnswer with *Reply* below (I post it in the consult's "
            f"thread for you), or reply in the thread yourself ({link(c.permalink, 'open it')}); "
            "the answer clock resumes when you do."
        ),
        _reply_button(c),
    ]


def _info_given(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    return _one(
        f"{c.ref}: the requester replied",
        f":leftwards_arrow_with_hook: {mention(c.requester)} replied on *{ref_link(c)}*; "
        "the answer clock is running again.",
    )


def _handed_off(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    to = mention(p.get("to"))
    return _one(
        f"{c.ref} has a new owner", f":arrows_counterclockwise: *{ref_link(c)}* is now with {to}."
    )


def _reopened(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    follow_up = f":\n{quote(p.get('text'))}" if p.get("text") else "."
    return _one(
        f"{c.ref} was reopened",
        f":leftwards_arrow_with_hook: {mention(p.get('by'))} reopened *{ref_link(c)}*" + follow_up,
    )


def _cancelled(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    by = mention(p.get("by"))
    body = f":no_entry_sign: {by} cancelled *{ref_link(c)}*; nothing more to do."
    return _one(f"{c.ref} was cancelled", body)


def _post_failed(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    error = escape(p.get("error"))
    return _one(
        f"{c.ref} could not be posted",
        f":warning: I could not post *{c.ref}* to <#{c.channel}> (Slack said `{error}`). "
        "It is stored and still tracked; please call the service and tell your CareLoop admin.",
    )


def _requester_overdue(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    targets = " ".join(mention(u) for u in p.get("targets") or [])
    if p.get("escalated"):
        return _one(
            f"{c.ref}: still waiting; escalated",
            f":hourglass: *{ref_link(c)}* is still waiting; escalated to {targets}.",
        )
    return _one(
        f"{c.ref} is overdue",
        f":hourglass: *{ref_link(c)}* is overdue: not yet {_phase(p)}. "
        f"I have reminded {targets} and will keep at it.",
    )


def _requester_reminder(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    return f"{c.ref}: the consultant is waiting for your reply", [
        section(
            f":bell: {mention(c.assignee)} is waiting for your reply on *{ref_link(c)}*. "
            "Answer with *Reply* below or in the consult's thread to resume it."
        ),
        _reply_button(c),
    ]


# ---------------------------------------------------------------- to consultants
def _handoff_received(c: Consult | None, p: Params, ctx: RenderContext) -> Rendered:
    consults = ctx.load(list(p.get("ids") or []))
    lines = "\n".join(
        f"• {ref_link(x)} — {escape(ctx.service_name(x.service))}, "
        f"{urgency_label(x.urgency)}, {status_word(x.status)}, "
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


def _escalation(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    return _one(
        f"{c.ref} escalated to you",
        f":rotating_light: *{ref_link(c)}* ({escape(ctx.service_name(c.service))}, "
        f"{urgency_label(c.urgency)}) has not been {_phase(p)} and was escalated "
        f"to you. Opened {slack_date(c.created_at)} by {mention(c.requester)}.",
    )


# ---------------------------------------------------------------- anywhere
def _text(c: Consult | None, p: Params, ctx: RenderContext) -> Rendered:
    """A plain notice (refusals, errors): params carry the text, already safe."""
    return _one(str(p.get("text", "")), str(p.get("text", "")))


def _digest(c: Consult | None, p: Params, ctx: RenderContext) -> Rendered:
    return render_digest(p, ctx)


TEMPLATES: dict[Template, Renderer] = {
    Template.CARD: _card,
    Template.CONFIRMATION: _confirmation,
    Template.ACKNOWLEDGED: _acknowledged,
    Template.ACKNOWLEDGED_THREAD: _acknowledged_thread,
    Template.REPLY_RELAY: _reply_relay,
    Template.ANSWER_THREAD: _answer_thread,
    Template.ANSWERED: _answered,
    Template.NEED_INFO_THREAD: _need_info_thread,
    Template.NEED_INFO: _need_info,
    Template.REQUESTER_REPLY_THREAD: _requester_reply_thread,
    Template.INFO_GIVEN: _info_given,
    Template.HANDOFF_THREAD: _handoff_thread,
    Template.HANDOFF_RECEIVED: _handoff_received,
    Template.HANDED_OFF: _handed_off,
    Template.CLOSED_THREAD: _closed_thread,
    Template.REOPENED_THREAD: _reopened_thread,
    Template.REOPENED: _reopened,
    Template.CANCELLED_THREAD: _cancelled_thread,
    Template.CANCELLED: _cancelled,
    Template.POST_FAILED: _post_failed,
    Template.SNOOZED_THREAD: _snoozed_thread,
    Template.NUDGE: _nudge,
    Template.ESCALATION: _escalation,
    Template.REQUESTER_OVERDUE: _requester_overdue,
    Template.REQUESTER_REMINDER: _requester_reminder,
    Template.STORM: _storm,
    Template.STORM_DM: _storm_dm,
    Template.ON_CALL_CHANGED: _on_call_changed,
    Template.TEXT: _text,
    Template.DIGEST: _digest,
    # A critical result's renderers get the `CriticalResult` instead of a consult.
    Template.CRITICAL_RESULT: critical_result,
    Template.CRITICAL_ACKNOWLEDGED: critical_acknowledged,
    Template.CRITICAL_FORWARDED: critical_forwarded,
    Template.CRITICAL_NOT_RECEIVED: critical_not_received,
    Template.SHIFT_STARTED: shifts.shift_started,
    Template.HANDOFF_REMINDER: shifts.handoff_reminder,
    Template.COVERAGE_GAP: shifts.coverage_gap,
    Template.SCHEDULE_PROBLEM: shifts.schedule_problem,
    # A follow-up's renderers get the `FollowUp` (params["followup"]) instead of a consult.
    Template.FOLLOWUP_OWED: followup_owed,
    Template.FOLLOWUP_ESCALATED: followup_escalated,
    Template.FOLLOWUP_DONE: followup_done,
    Template.COVER_STARTED: cover_started,
    Template.COVER_ENDED: cover_ended,
    Template.HANDOVER_THREAD: handover_thread,
    Template.HANDOVER_RECEIVED: handover_received,
    Template.HANDOVER_SENT: handover_sent,
    Template.TRANSFERRED_CARD: moves.transferred_card,
    Template.TRANSFERRED: moves.transferred,
    Template.URGENCY_THREAD: moves.urgency_thread,
    Template.URGENCY_CHANGED: moves.urgency_changed,
}
