"""Critical results from Slack: `/consult critical`, `/consult ack CRIT-12`, the buttons on
the recipient's message and on the consult card, and the three forms. Used by the tables
of `handlers.commands`, `handlers.actions` and `handlers.views` (no listener of its own)."""

from __future__ import annotations

from typing import Any

from bot.domain.lifecycle import Action, Refused
from bot.domain.parsing import Parsed
from bot.domain.vocabulary import CRITICAL_PREFIX
from bot.flows.critical import WHO_MAY, CriticalDraft, Sent
from bot.services import Services
from bot.slack.ids import BlockId
from bot.slack.render.critical import critical_ack_modal, critical_forward_modal, critical_new_modal
from bot.slack.render.primitives import slack_date
from handlers.common import open_modal

NOT_OPENED = ":warning: Slack did not open the form just now; try again in a moment."


def is_critical(ref: str | None) -> bool:
    """Whether a reference names a critical result (`CRIT-12`), not a consult."""
    return bool(ref and ref.startswith(f"{CRITICAL_PREFIX}-"))


def sent_notice(sent: Sent) -> str:
    """What the sender reads after sending."""
    r = sent.result
    if sent.duplicate:
        return f"{r.ref} was already sent to <@{r.recipient}>."
    return (
        f":rotating_light: {r.ref} sent to <@{r.recipient}> {slack_date(r.sent_at)}. You will be "
        "told when they acknowledge it, and if they have not, who else was reached."
    )


def command(
    svc: Services, parsed: Parsed, user: str, trigger_id: str | None, key: str | None
) -> str:
    """`/consult critical …`: send at once, or open the form when nothing was typed."""
    if parsed.user is None:
        mine = svc.critical.services_of(user)
        if not mine:
            raise Refused(WHO_MAY)
        if open_modal(svc, trigger_id, critical_new_modal(svc.catalogue, mine)):
            return "Opening the critical result form…"
        return NOT_OPENED
    draft = CriticalDraft(
        to=parsed.user,
        patient=parsed.patient,
        finding=parsed.question,
        service=parsed.service or "",
    )
    return sent_notice(svc.critical.send(draft, sender=user, origin_key=key))


def open_ack(svc: Services, ref: str, user: str, trigger_id: str | None) -> str | None:
    """`/consult ack CRIT-12` and the Acknowledge receipt button: the read-back form."""
    result = svc.critical.get(ref, user)
    if result.acknowledged_at is not None:
        return f"{ref} was already acknowledged by <@{result.acknowledged_by}>."
    return None if open_modal(svc, trigger_id, critical_ack_modal(result)) else NOT_OPENED


def acknowledge_button(
    svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None
) -> str | None:
    """Acknowledge receipt: the read-back form."""
    return open_ack(svc, ref, user, body.get("trigger_id"))


def not_mine_button(
    svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None
) -> str | None:
    """Not my patient: the forward form."""
    result = svc.critical.get(ref, user)
    if result.acknowledged_at is not None:
        return f"{ref} was already acknowledged by <@{result.acknowledged_by}>."
    return (
        None if open_modal(svc, body.get("trigger_id"), critical_forward_modal(ref)) else NOT_OPENED
    )


def from_card_button(
    svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None
) -> str | None:
    """The card's Critical result entry: the form, addressed to the consult's requester."""
    consult = svc.consults.get(ref)
    svc.consults.permissions.check_role(consult, user, Action.ANSWER)
    service = svc.catalogue.service_by_key(consult.service)
    view = critical_new_modal(svc.catalogue, [service], to=consult.requester, meta=ref)
    return None if open_modal(svc, body.get("trigger_id"), view) else NOT_OPENED


def acknowledged(
    svc: Services, ref: str, user: str, value: str, view: dict[str, Any], key: str | None
) -> None:
    """The read-back form: the acknowledgement, once."""
    svc.critical.acknowledge(ref, actor=user, read_back=value, key=key)


def forwarded(
    svc: Services, ref: str, user: str, value: str, view: dict[str, Any], key: str | None
) -> None:
    """The forward form: who it goes to, and why."""
    reason = _text((view.get("state") or {}).get("values") or {}, BlockId.REASON)
    svc.critical.forward(ref, actor=user, to=value, reason=reason, key=key)


def _text(values: dict[str, Any], block_id: str) -> str:
    element = next(iter((values.get(block_id) or {}).values()), {}) or {}
    return str(element.get("value") or element.get("selected_user") or "")


def _selected(values: dict[str, Any], block_id: str) -> str:
    element = next(iter((values.get(block_id) or {}).values()), {}) or {}
    return str((element.get("selected_option") or {}).get("value") or "")


def submitted(svc: Services, user: str, view: dict[str, Any], key: str | None) -> None:
    """The send form (Refused: shown on the form)."""
    values = (view.get("state") or {}).get("values") or {}
    meta = str(view.get("private_metadata") or "")
    consult_id = svc.consults.get(meta).id if meta else None
    draft = CriticalDraft(
        to=_text(values, BlockId.TO), patient=_text(values, BlockId.PATIENT),
        finding=_text(values, BlockId.FINDING), service=_selected(values, BlockId.SERVICE),
        callback=_text(values, BlockId.CALLBACK), consult_id=consult_id,
    )  # fmt: skip
    svc.critical.send(draft, sender=user, origin_key=key)
