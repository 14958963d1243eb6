"""`/consult transfer` and `/consult urgency`, the card's Transfer button (its form) and
the form's submission: each reads what Slack sent and calls the consult flow
(`ConsultService.transfer`, `ConsultService.change_urgency`); refusals come back as
`Refused` for the caller to show."""

from __future__ import annotations

from typing import Any

from bot.domain.lifecycle import Refused
from bot.domain.parsing import Parsed
from bot.domain.text import escape
from bot.services import Services
from bot.slack.ids import BlockId
from bot.slack.render.moves import transfer_modal
from bot.slack.render.primitives import urgency_label


def transfer_command(svc: Services, parsed: Parsed, user: str, key: str | None) -> str:
    """`/consult transfer <ref> <service> <reason>`."""
    assert parsed.ref
    outcome = svc.consults.transfer(
        parsed.ref, actor=user, to=parsed.service or "", reason=parsed.text, key=key
    )
    c = outcome.consult
    name = escape(svc.catalogue.service_by_key(c.service).name)
    return (
        f":arrow_right_hook: {parsed.ref} is transferred to {name}, now {c.ref}; their "
        "on-call has the card and the requester has been told."
    )


def urgency_command(svc: Services, parsed: Parsed, user: str, key: str | None) -> str:
    """`/consult urgency <ref> <stat|urgent|routine> <reason>`."""
    assert parsed.ref
    outcome = svc.consults.change_urgency(
        parsed.ref, actor=user, urgency=parsed.urgency or "", reason=parsed.text, key=key
    )
    c = outcome.consult
    return (
        f":arrows_counterclockwise: {c.ref} is now {urgency_label(c.urgency)}; its deadlines "
        "follow the new urgency and the card shows them."
    )


def transfer_form(svc: Services, ref: str) -> dict[str, Any]:
    """The card's Transfer button: the form (every service but the consult's own)."""
    consult = svc.consults.get(ref)
    return transfer_modal(svc.catalogue, consult.ref, consult.service)


def transfer_submitted(
    svc: Services, ref: str, user: str, value: str, view: dict[str, Any], key: str | None
) -> None:
    """The Transfer form: the service it goes to (`value`) and why."""
    if not value:
        raise Refused("Choose the service to transfer it to.")
    values = (view.get("state") or {}).get("values") or {}
    element = next(iter((values.get(BlockId.REASON) or {}).values()), {}) or {}
    reason = str(element.get("value") or "")
    svc.consults.transfer(ref, actor=user, to=value, reason=reason, key=key)
