"""Modal submissions: the new-consult form, answer, hand off, need info, the requester's
reply, reopen, feedback.

Invalid input is shown in the modal (`response_action: errors`), never lost. A form submitted
twice (same view id) has one effect."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App

from bot.domain.lifecycle import Refused
from bot.flows.consults.drafts import Draft, DraftInvalid
from bot.slack.ids import BlockId, CallbackId
from handlers.common import Services, services, tell

log = logging.getLogger("careloop.handlers")


def register(app: App) -> None:
    """Listen for every CareLoop modal submission."""
    app.view(CallbackId.NEW_CONSULT)(new_consult)
    for callback_id, (block_id, handler) in REF_VIEWS.items():
        app.view(callback_id)(_ref_view(block_id, handler))
    app.view(re.compile(".*"))(unknown_form)


def unknown_form(ack: Ack, body: dict[str, Any], context: dict[str, Any]) -> None:
    """A form this version does not know (opened before an upgrade that retired it): it
    closes, and the person is told nothing was saved and what to do."""
    ack()
    svc = services(context)
    user = (body.get("user") or {}).get("id", "")
    log.warning("unknown form", extra={"event": "unknown_view"})
    tell(
        svc,
        user=user,
        channel=None,
        text=":warning: That form is no longer in use, so nothing was saved. Use `/consult` "
        "or the buttons on the consult's latest message to start again.",
    )


def _values(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return (view.get("state") or {}).get("values") or {}


def _text(values: dict[str, dict[str, Any]], block_id: str) -> str:
    element = next(iter((values.get(block_id) or {}).values()), {}) or {}
    return str(element.get("value") or "")


def _selected(values: dict[str, dict[str, Any]], block_id: str) -> str:
    element = next(iter((values.get(block_id) or {}).values()), {}) or {}
    if element.get("selected_user"):
        return str(element["selected_user"])
    return str((element.get("selected_option") or {}).get("value") or "")


def _block_for(field: str) -> str:
    if field.startswith("intake."):
        return BlockId.INTAKE_PREFIX + field.split(".", 1)[1]
    return field


def new_consult(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: dict[str, Any]
) -> None:
    """Store the consult, or show what is wrong next to the field."""
    svc = services(context)
    values = _values(view)
    service = svc.catalogue.service(_selected(values, BlockId.SERVICE))
    draft = Draft(
        service=_selected(values, BlockId.SERVICE),
        urgency=_selected(values, BlockId.URGENCY) or None,
        patient=_text(values, BlockId.PATIENT),
        question=_text(values, BlockId.QUESTION),
        intake={f.key: _text(values, BlockId.INTAKE_PREFIX + f.key) for f in service.intake}
        if service
        else {},
    )
    user = (body.get("user") or {}).get("id", "")
    try:
        svc.consults.open(draft, requester=user, origin_key=f"view:{view.get('id')}")
    except DraftInvalid as invalid:
        present = {b.get("block_id") for b in view.get("blocks") or []}
        errors = {}
        for field, message in invalid.errors.items():
            block = _block_for(field)
            # An intake field the view does not show yet (service chosen without refresh)
            # is reported on the service field, so the message is still seen.
            errors[block if block in present or not present else BlockId.SERVICE] = message
        ack(response_action="errors", errors=errors)
        return
    ack()


def _ref_view(
    block_id: str, handler: Callable[[Services, str, str, str, dict[str, Any]], None]
) -> Callable[..., None]:
    def listener(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], context: dict[str, Any]
    ) -> None:
        svc = services(context)
        user = (body.get("user") or {}).get("id", "")
        ref = str(view.get("private_metadata") or "").split("|")[0]
        values = _values(view)
        value = _selected(values, block_id) or _text(values, block_id)
        try:
            handler(svc, ref, user, value, view)
        except Refused as refusal:
            svc.consults.audit_refusal(
                user=user, action=str(view.get("callback_id")), reason=str(refusal), ref=ref or None
            )
            ack(response_action="errors", errors={block_id: str(refusal)[:1900]})
            return
        ack()

    listener.__name__ = handler.__name__
    return listener


def answered(svc: Services, ref: str, user: str, value: str, view: dict[str, Any]) -> None:
    svc.consults.answer(ref, actor=user, text=value, key=f"view:{view.get('id')}")


def handed_off(svc: Services, ref: str, user: str, value: str, view: dict[str, Any]) -> None:
    if not value:
        raise Refused("Choose who takes over.")
    note = _text(_values(view), BlockId.NOTE)
    svc.consults.handoff(ref, actor=user, to=value, note=note, key=f"view:{view.get('id')}")


def asked(svc: Services, ref: str, user: str, value: str, view: dict[str, Any]) -> None:
    svc.consults.need_info(ref, actor=user, question=value, key=f"view:{view.get('id')}")


def reopened(svc: Services, ref: str, user: str, value: str, view: dict[str, Any]) -> None:
    svc.consults.reopen(ref, actor=user, text=value, key=f"view:{view.get('id')}")


def commented(svc: Services, ref: str, user: str, value: str, view: dict[str, Any]) -> None:
    helpful = str(view.get("private_metadata") or "").endswith("|1")
    if value.strip():
        svc.consults.feedback(
            ref, actor=user, helpful=helpful, comment=value, key=f"view:{view.get('id')}"
        )


def replied(svc: Services, ref: str, user: str, value: str, view: dict[str, Any]) -> None:
    """The requester's Reply form: recorded as their thread reply and posted in the thread;
    they are told once (a repeated submission of the same view does nothing)."""
    outcome = svc.consults.requester_reply(ref, user=user, text=value, key=f"view:{view.get('id')}")
    if outcome.changed:
        tell(svc, user=user, channel=None, text=outcome.message)


REF_VIEWS: dict[str, tuple[str, Callable[[Services, str, str, str, dict[str, Any]], None]]] = {
    CallbackId.ANSWER: (BlockId.ANSWER, answered),
    CallbackId.HANDOFF: (BlockId.HANDOFF_TO, handed_off),
    CallbackId.NEED_INFO: (BlockId.QUESTION, asked),
    CallbackId.REOPEN: (BlockId.FOLLOW_UP, reopened),
    CallbackId.FEEDBACK: (BlockId.COMMENT, commented),
    CallbackId.REPLY: (BlockId.REPLY, replied),
}
