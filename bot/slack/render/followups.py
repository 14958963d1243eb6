"""Follow-ups in Slack: the owner's message (what is owed to the patient, with **Done** and
**Hand over** while it is open), the escalation and the "done" note, the three forms (new,
Done with its outcome, Hand over), the person's own list (`/consult followups`, ephemeral:
it may show patients) and App Home's "Owed to patients" (references and due times only,
never the patient or what is owed). Fallback texts and modal titles carry no patient data."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.domain.durations import format_duration
from bot.domain.vocabulary import OUTCOME_LABELS
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.render import primitives as ui
from bot.slack.render.context import RenderContext
from bot.slack.render.critical import _user_input
from bot.slack.render.modals import _option, _text_input, modal
from bot.slack.render.primitives import Blocks, mention, section, slack_date, user_text
from storage.models_followups import FollowUp

Params = dict[str, Any]
Rendered = tuple[str, Blocks]
MAX_ROWS = 15


def _consult_ref(f: FollowUp, ctx: RenderContext) -> str | None:
    found = ctx.load([f.consult_id]) if f.consult_id else []
    return found[0].ref if found else None


def due_text(f: FollowUp, consult_ref: str | None = None) -> str:
    """When it is due: a time, or how long after the linked consult's answer."""
    if f.due_at is not None:
        return slack_date(f.due_at)
    after = format_duration(timedelta(seconds=f.due_within or 0))
    return f"{after} after the answer to {consult_ref or 'the consult'} arrives"


def _head(f: FollowUp, p: Params, consult: str | None) -> str:
    why = p.get("why")
    if why == "answer_in":
        return f":inbox_tray: *The answer to {p.get('consult_ref') or consult} is in.* Follow-up *{f.ref}* is now yours to do"
    if why == "cancelled":
        return f":no_entry_sign: *{p.get('consult_ref') or consult} was cancelled*, so no answer will come. Follow-up *{f.ref}* is still owed"
    if why == "overdue":
        return f":alarm_clock: *{f.ref} is overdue* — reminder {int(p.get('reminder') or 0)}"
    if why == "handed_over":
        note = f": {user_text(p.get('note'), 500)}" if p.get("note") else ""
        return (
            f":arrows_counterclockwise: {mention(p.get('by'))} handed *{f.ref}* over to you{note}"
        )
    by = p.get("by")
    opened = f" (opened by {mention(by)})" if by and by != f.owner else ""
    return f":clipboard: *Follow-up {f.ref}* is yours{opened}"


def _body(f: FollowUp, consult: str | None) -> list[str]:
    lines = [
        f"*Patient:* {user_text(f.patient, 200)}",
        f"*What is owed:*\n{ui.quote(f.owed, 2000)}",
    ]
    lines.append(f"*Due:* {due_text(f, consult)}")
    if consult:
        lines.append(f"*Consult:* {consult}")
    return lines


def _state(f: FollowUp) -> Blocks:
    """Done (by whom, how) or the two buttons."""
    if f.done_at is not None:
        label = OUTCOME_LABELS.get(str(f.outcome), str(f.outcome))
        return [ui.context(f"Done by {mention(f.done_by)} {slack_date(f.done_at)}: {label}")]
    ref = str(f.ref)
    return [
        ui.actions(
            f"followup:{ref}",
            ui.button("Done", ActionId.FOLLOWUP_DONE, ref, "primary"),
            ui.button("Hand over", ActionId.FOLLOWUP_HANDOVER, ref),
        )
    ]


def followup_owed(f: FollowUp, p: Params, ctx: RenderContext) -> Rendered:
    """To the owner (and whoever receives their messages): why now, the patient, what is
    owed, when it is due; Done and Hand over while it is open."""
    consult = _consult_ref(f, ctx)
    blocks: Blocks = [section("\n".join([_head(f, p, consult), *_body(f, consult)]))]
    if p.get("covering"):
        blocks.append(ui.context(f"You receive this for {mention(p['covering'])}."))
    return f"Follow-up {f.ref}: what is owed to a patient", blocks + _state(f)


def followup_escalated(f: FollowUp, p: Params, ctx: RenderContext) -> Rendered:
    """To `[followups] escalate_to`: an overdue follow-up its owner has not done."""
    consult = _consult_ref(f, ctx)
    head = (
        f":rotating_light: *{f.ref}*, owed by {mention(f.owner)}, is overdue after "
        f"{int(p.get('reminders') or 0)} reminders. Escalated to you."
    )
    blocks: Blocks = [section("\n".join([head, *_body(f, consult)]))]
    return f"Follow-up {f.ref} is overdue: escalated to you", blocks + _state(f)


def followup_done(f: FollowUp, p: Params, ctx: RenderContext) -> Rendered:
    """To whoever opened it (and the owner, when someone else did it): done, and how."""
    label = OUTCOME_LABELS.get(str(f.outcome), str(f.outcome))
    body = f":white_check_mark: *{f.ref}* done by {mention(f.done_by)}: *{label}*"
    blocks: Blocks = [section(body + (f"\n{ui.quote(f.note, 1000)}" if f.note else ""))]
    return f"Follow-up {f.ref} done: {label}", blocks


# ---------------------------------------------------------------- forms
def followup_new_modal(owner: str, consult_ref: str = "") -> dict[str, Any]:
    """New follow-up: Patient, What is owed, Owner (default me), Due, Consult (optional)."""
    return modal(
        CallbackId.FOLLOWUP_NEW, "Follow-up", "Save", "",
        [
            _text_input(BlockId.PATIENT, "Patient", optional=True, max_length=200,
                        hint="Leave empty when a consult is given: its patient is used."),
            _text_input(BlockId.OWED, "What is owed", multiline=True, max_length=2000,
                        hint="e.g. Call with the biopsy result."),
            _user_input(BlockId.OWNER, "Owner", owner),
            _text_input(BlockId.DUE, "Due", optional=True, max_length=40,
                        hint="e.g. 4h, 2d or 2026-12-01 14:00 (UTC). Empty: a set time after the consult's answer arrives."),
            _text_input(BlockId.CONSULT, "Consult", optional=True, initial=consult_ref, max_length=20,
                        hint="e.g. RAD-42 (optional)"),
        ],
    )  # fmt: skip


def followup_done_modal(f: FollowUp) -> dict[str, Any]:
    """Done: the outcome (Reached the patient, Left a message, Other) and a note."""
    options = [_option(label, value) for value, label in OUTCOME_LABELS.items()]
    outcome = {
        "type": "input",
        "block_id": BlockId.OUTCOME,
        "label": {"type": "plain_text", "text": "Outcome"},
        "element": {"type": "static_select", "action_id": "value", "options": options},
    }
    shown = section(f"*{f.ref}* · *Patient:* {user_text(f.patient, 200)}\n{ui.quote(f.owed, 1500)}")
    note = _text_input(BlockId.NOTE, "Note", optional=True, multiline=True, max_length=1000)
    return modal(
        CallbackId.FOLLOWUP_DONE, "Follow-up done", "Done", str(f.ref), [shown, outcome, note]
    )


def followup_handover_modal(ref: str) -> dict[str, Any]:
    """Hand over: to which colleague, with a note."""
    return modal(
        CallbackId.FOLLOWUP_HANDOVER, "Hand over follow-up", "Hand over", ref,
        [
            ui.context(f"Follow-up *{ref}*"),
            _user_input(BlockId.HANDOFF_TO, "Hand over to"),
            _text_input(BlockId.NOTE, "Note", optional=True, max_length=1000),
        ],
    )  # fmt: skip


# ---------------------------------------------------------------- lists
def _overdue(f: FollowUp, now: datetime) -> str:
    return " :warning: overdue" if f.due_at is not None and f.due_at < now else ""


def followup_list(rows: Sequence[FollowUp], refs: dict[int, str], now: datetime) -> str:
    """`/consult followups` (ephemeral, to the owner alone): reference, patient, what is
    owed, due, linked consult."""
    if not rows:
        return "You owe no follow-ups right now. `/consult followup <patient>: <what is owed>` adds one."
    lines = [f"*Follow-ups you own ({len(rows)}):*"]
    for f in rows[:50]:
        consult = refs.get(f.consult_id or 0)
        linked = f" · {consult}" if consult else ""
        lines.append(
            f"• *{f.ref}* — {user_text(f.patient, 100)}: {user_text(f.owed, 200)} · due "
            f"{due_text(f, consult)}{_overdue(f, now)}{linked}"
        )
    return "\n".join(lines)


def followups_home(rows: Sequence[FollowUp], now: datetime) -> Blocks:
    """App Home's "Owed to patients": references, due times and overdue marks only."""
    if not rows:
        return []
    lines = []
    for f in rows[:MAX_ROWS]:
        due = slack_date(f.due_at) if f.due_at is not None else "after the consult's answer"
        lines.append(f"• *{f.ref}* — due {due}{_overdue(f, now)}")
    if len(rows) > MAX_ROWS:
        lines.append(f"…and {len(rows) - MAX_ROWS} more (`/consult followups`).")
    return [section("*Owed to patients*"), section("\n".join(lines))]
