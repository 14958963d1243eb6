"""Requester cover and hand-over in Slack: `/consult cover …`, `/consult handover …`, the
Hand over button (on the requester's confirmation and hand-over messages) and its form.
Thin: the work is in `ConsultService` (`cover_*`, `handover`)."""

from __future__ import annotations

from typing import Any

from bot.domain.commands import OFF
from bot.domain.lifecycle import Action, Refused
from bot.domain.parsing import Parsed
from bot.services import Services
from bot.slack.ids import BlockId
from bot.slack.render.context import RenderContext
from bot.slack.render.cover import cover_text, handover_modal
from handlers.common import open_modal


def command(svc: Services, parsed: Parsed, user: str, key: str | None) -> str:
    """`/consult cover` (who covers whom), `/consult cover off`, `/consult cover @user`."""
    if parsed.extra.get(OFF):
        return svc.consults.cover_stop(user=user, key=key)
    if parsed.user:
        return svc.consults.cover_start(user=user, cover=parsed.user, key=key)
    status = svc.consults.cover_status(user=user)
    ctx = RenderContext(catalogue=svc.catalogue, now=svc.clock.now(), load=svc.consults.by_ids)
    return cover_text(status.mine, status.covering, ctx)


def handover_command(svc: Services, parsed: Parsed, user: str, key: str | None) -> str:
    """`/consult handover <ref> @user [note]`."""
    assert parsed.ref and parsed.user
    outcome = svc.consults.handover(
        parsed.ref, actor=user, to=parsed.user, note=parsed.text, key=key
    )
    return _handed_over(outcome, parsed.user)


def _handed_over(outcome: Any, to: str) -> str:
    ref = outcome.consult.ref
    if not outcome.changed:
        return f"<@{to}> is already the requester of {ref}."
    return (
        f":arrows_counterclockwise: {ref} is handed over to <@{to}>: they are its requester "
        "now and get its messages; the thread records it."
    )


def handover_button(
    svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None
) -> str | None:
    """Hand over: the form (colleague and note), once the person may hand it over."""
    consult = svc.consults.get(ref)
    svc.consults.check(consult, user, Action.HANDOVER)
    if not open_modal(svc, body.get("trigger_id"), handover_modal(ref)):
        return ":warning: Slack did not open the form just now; try again in a moment."
    return None


def handover_form(
    svc: Services, ref: str, user: str, value: str, view: dict[str, Any], key: str | None
) -> None:
    """The hand-over form: who takes the requester's side, and a note for them."""
    if not value:
        raise Refused("Choose who takes it over.")
    values = (view.get("state") or {}).get("values") or {}
    element = next(iter((values.get(BlockId.NOTE) or {}).values()), {}) or {}
    note = str(element.get("value") or "")
    svc.consults.handover(ref, actor=user, to=value, note=note, key=key)
