"""Follow-ups from Slack: `/consult followup …` and `/consult followups`, the Follow-up button
on the answer message, the owner's Done and Hand over buttons, and their three forms. Used by
the tables of `handlers.commands`, `handlers.actions` and `handlers.views` (no listener of
its own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.domain.lifecycle import Refused
from bot.domain.parsing import Parsed
from bot.domain.vocabulary import OUTCOME_LABELS
from bot.flows.followups import FollowUpDraft, FollowUpInvalid, Opened
from bot.services import Services
from bot.slack.ids import BlockId
from bot.slack.render.followups import (
    due_text,
    followup_done_modal,
    followup_handover_modal,
    followup_list,
    followup_new_modal,
)
from handlers.common import open_modal, tell

NOT_OPENED = ":warning: Slack did not open the form just now; try again in a moment."
# The form's fields, by the flow's field names (a refusal is shown next to its field).
FIELDS = {
    "patient": BlockId.PATIENT,
    "owed": BlockId.OWED,
    "owner": BlockId.OWNER,
    "due": BlockId.DUE,
    "consult": BlockId.CONSULT,
}


def opened_notice(opened: Opened, consult: str | None = None) -> str:
    """What the person reads after opening a follow-up (no patient data)."""
    f = opened.followup
    if opened.duplicate:
        return f"{f.ref} was already saved."
    owner = "You own it" if f.owner == f.creator else f"<@{f.owner}> owns it and has been told"
    return f":clipboard: {f.ref} saved. {owner}; due {due_text(f, consult)}. `/consult followups` lists yours."


def command(
    svc: Services, parsed: Parsed, user: str, trigger_id: str | None, key: str | None
) -> str:
    """`/consult followup <patient or RAD-42>: <what is owed>`, or the form with no text."""
    if not parsed.question:
        if open_modal(svc, trigger_id, followup_new_modal(user)):
            return "Opening the follow-up form…"
        return NOT_OPENED
    linked = svc.followups.is_consult_ref(parsed.patient)
    draft = FollowUpDraft(
        owed=parsed.question,
        patient="" if linked else parsed.patient,
        consult=(parsed.ref or "") if linked else "",
    )
    opened = svc.followups.create(draft, creator=user, origin_key=key)
    return opened_notice(opened, draft.consult)


def mine(svc: Services, user: str) -> str:
    """`/consult followups`: the person's open follow-ups (ephemeral: for them alone)."""
    rows = svc.followups.mine(user)
    consults = svc.consults.by_ids([f.consult_id for f in rows if f.consult_id])
    refs = {c.id: c.ref for c in consults}
    return followup_list(rows, refs, svc.clock.now())


def from_answer_button(
    svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None
) -> str | None:
    """The answer message's Follow-up: the form, with the consult filled in."""
    view = followup_new_modal(user, consult_ref=ref)
    return None if open_modal(svc, body.get("trigger_id"), view) else NOT_OPENED


def done_button(
    svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None
) -> str | None:
    """Done: the outcome form (a follow-up already done says so)."""
    return _form_for_open(svc, ref, user, body, followup_done_modal)


def handover_button(
    svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None
) -> str | None:
    """Hand over: the form to choose the colleague (a follow-up already done says so)."""
    return _form_for_open(svc, ref, user, body, lambda f: followup_handover_modal(str(f.ref)))


def _form_for_open(
    svc: Services, ref: str, user: str, body: dict[str, Any], form: Callable[[Any], dict[str, Any]]
) -> str | None:
    """Opens `form` of the follow-up `ref` for `user` (who may act on it), unless it is done."""
    f = svc.followups.get(ref, user)
    if f.done_at is not None:
        return f"{f.ref} is already done."
    return None if open_modal(svc, body.get("trigger_id"), form(f)) else NOT_OPENED


def _values(view: dict[str, Any]) -> dict[str, Any]:
    return (view.get("state") or {}).get("values") or {}


def _text(values: dict[str, Any], block_id: str) -> str:
    element = next(iter((values.get(block_id) or {}).values()), {}) or {}
    return str(element.get("value") or element.get("selected_user") or "")


def submitted(svc: Services, user: str, view: dict[str, Any], key: str | None) -> str | None:
    """The new follow-up form; FollowUpInvalid names the field to show the problem on.
    The person is told the reference (a notice: a form has nowhere else to say it)."""
    values = _values(view)
    draft = FollowUpDraft(
        owed=_text(values, BlockId.OWED), patient=_text(values, BlockId.PATIENT),
        consult=_text(values, BlockId.CONSULT), owner=_text(values, BlockId.OWNER),
        due=_text(values, BlockId.DUE),
    )  # fmt: skip
    opened = svc.followups.create(draft, creator=user, origin_key=key)
    return None if opened.duplicate else opened_notice(opened, draft.consult.strip().upper())


def error_block(refused: Refused) -> str:
    """The form field a refusal of the new follow-up form belongs next to."""
    return (
        FIELDS.get(refused.field, BlockId.OWED)
        if isinstance(refused, FollowUpInvalid)
        else BlockId.OWED
    )


def done(
    svc: Services, ref: str, user: str, value: str, view: dict[str, Any], key: str | None
) -> None:
    """The Done form: the outcome and the note, once."""
    note = _text(_values(view), BlockId.NOTE)
    if svc.followups.done(ref, actor=user, outcome=value, note=note, key=key):
        label = OUTCOME_LABELS.get(value, value)
        tell(svc, user=user, channel=None, text=f":white_check_mark: {ref} done: {label}.")


def handed_over(
    svc: Services, ref: str, user: str, value: str, view: dict[str, Any], key: str | None
) -> None:
    """The Hand over form: to whom, with a note, once."""
    note = _text(_values(view), BlockId.NOTE)
    svc.followups.hand_over(ref, actor=user, to=value, note=note, key=key)
