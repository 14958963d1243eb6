"""Modal submissions: the new-consult form, answer, hand off, need info, the requester's
reply, reopen, feedback, critical results' and follow-ups' forms.

Invalid input is shown in the modal (`response_action: errors`), never lost. A form submitted
twice (same view id) has one effect."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App

import handlers.cover as cover
import handlers.critical as critical
import handlers.followups as followups
import handlers.moves as moves
from bot.domain.lifecycle import Refused
from bot.flows.consults.drafts import Draft, DraftInvalid
from bot.services import Services
from bot.slack.ids import BlockId, CallbackId
from handlers.common import one_of, retired, services, tell
from handlers.middleware import audited, request_key_of


def register(app: App) -> None:
    """Listen for every CareLoop modal submission."""
    app.view(CallbackId.NEW_CONSULT)(new_consult)
    app.view(CallbackId.CRITICAL_NEW)(new_critical)
    app.view(CallbackId.FOLLOWUP_NEW)(new_followup)
    # One bolt listener for the consult forms, as for the buttons (`handlers.actions`).
    forms = {
        str(cid): _ref_view(block_id, handler) for cid, (block_id, handler) in REF_VIEWS.items()
    }

    def form(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: dict[str, Any]) -> None:
        found = forms.get(str(view.get("callback_id")))
        if found is None:  # bolt matched this view's callback id: not reached
            unknown_form(ack, body, context)
            return
        found(ack, body, view, context)

    app.view(one_of(forms))(form)
    app.view(re.compile(".*"))(unknown_form)


def unknown_form(ack: Ack, body: dict[str, Any], context: dict[str, Any]) -> None:
    """A form this version does not know (opened before an upgrade that retired it): it
    closes, and the person is told nothing was saved and what to do."""
    ack()
    retired(
        services(context),
        user=(body.get("user") or {}).get("id", ""),
        channel=None,
        what="unknown form",
        event="unknown_view",
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
        svc.consults.open(draft, requester=user, origin_key=request_key_of(context))
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


def new_critical(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: dict[str, Any]
) -> None:
    """Send the critical result, or show why not on the form."""
    _new_record(
        ack, body, context, lambda svc, user, key: critical.submitted(svc, user, view, key),
        action=CallbackId.CRITICAL_NEW, block_of=lambda _: BlockId.FINDING,
    )  # fmt: skip


def new_followup(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: dict[str, Any]
) -> None:
    """Store the follow-up, or show what is wrong next to the field; its owner is told."""
    _new_record(
        ack, body, context, lambda svc, user, key: followups.submitted(svc, user, view, key),
        action=CallbackId.FOLLOWUP_NEW, block_of=followups.error_block,
    )  # fmt: skip


def _new_record(
    ack: Ack,
    body: dict[str, Any],
    context: dict[str, Any],
    submit: Callable[[Services, str, str | None], Any],
    *,
    action: str,
    block_of: Callable[[Refused], str],
) -> None:
    """A form that creates a record (a critical result, a follow-up), audited: a refusal is
    shown next to the field `block_of` names; a text result is told to the submitter."""
    svc = services(context)
    user = (body.get("user") or {}).get("id", "")
    result = audited(
        svc, lambda: submit(svc, user, request_key_of(context)), user=user, action=action, ref=None
    )
    if isinstance(result, Refused):
        ack(response_action="errors", errors={block_of(result): str(result)[:1900]})
        return
    ack()
    if isinstance(result, str) and result:
        tell(svc, user=user, channel=None, text=result)


Submission = Callable[[Services, str, str, str, dict[str, Any], str | None], None]


def _ref_view(block_id: str, handler: Submission) -> Callable[..., None]:
    def listener(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], context: dict[str, Any]
    ) -> None:
        svc = services(context)
        user = (body.get("user") or {}).get("id", "")
        ref = str(view.get("private_metadata") or "").split("|")[0]
        values = _values(view)
        value = _selected(values, block_id) or _text(values, block_id)
        key = request_key_of(context)
        refused = audited(
            svc,
            lambda: handler(svc, ref, user, value, view, key),
            user=user,
            action=str(view.get("callback_id")),
            ref=ref or None,
        )
        if isinstance(refused, Refused):
            ack(response_action="errors", errors={block_id: str(refused)[:1900]})
            return
        ack()

    listener.__name__ = handler.__name__
    return listener


def _to_flow(name: str, flow: str, text_as: str) -> Submission:
    """A form whose value goes to one consult flow (a `ConsultService` method) as `text_as`."""

    def handler(
        svc: Services, ref: str, user: str, value: str, view: dict[str, Any], key: str | None
    ) -> None:
        getattr(svc.consults, flow)(ref, actor=user, key=key, **{text_as: value})

    handler.__name__ = name
    return handler


def handed_off(
    svc: Services, ref: str, user: str, value: str, view: dict[str, Any], key: str | None
) -> None:
    """The hand-off form: who takes over, and a note."""
    if not value:
        raise Refused("Choose who takes over.")
    note = _text(_values(view), BlockId.NOTE)
    svc.consults.handoff(ref, actor=user, to=value, note=note, key=key)


def commented(
    svc: Services, ref: str, user: str, value: str, view: dict[str, Any], key: str | None
) -> None:
    """The feedback form's optional comment (the rating was stored at the tap)."""
    helpful = str(view.get("private_metadata") or "").endswith("|1")
    if value.strip():
        svc.consults.feedback(ref, actor=user, helpful=helpful, comment=value, key=key)


def replied(
    svc: Services, ref: str, user: str, value: str, view: dict[str, Any], key: str | None
) -> None:
    """The requester's Reply form: recorded as their thread reply and posted in the thread;
    they are told once (a repeated submission of the same view does nothing)."""
    outcome = svc.consults.requester_reply(ref, user=user, text=value, key=key)
    if outcome.changed:
        tell(svc, user=user, channel=None, text=outcome.message)


REF_VIEWS: dict[str, tuple[str, Submission]] = {
    CallbackId.ANSWER: (BlockId.ANSWER, _to_flow("answered", "answer", "text")),
    CallbackId.HANDOFF: (BlockId.HANDOFF_TO, handed_off),
    CallbackId.NEED_INFO: (BlockId.QUESTION, _to_flow("asked", "need_info", "question")),
    CallbackId.REOPEN: (BlockId.FOLLOW_UP, _to_flow("reopened", "reopen", "text")),
    CallbackId.FEEDBACK: (BlockId.COMMENT, commented),
    CallbackId.REPLY: (BlockId.REPLY, replied),
    CallbackId.CRITICAL_ACK: (BlockId.READ_BACK, critical.acknowledged),
    CallbackId.CRITICAL_FORWARD: (BlockId.FORWARD_TO, critical.forwarded),
    CallbackId.FOLLOWUP_DONE: (BlockId.OUTCOME, followups.done),
    CallbackId.FOLLOWUP_HANDOVER: (BlockId.HANDOFF_TO, followups.handed_over),
    CallbackId.HANDOVER: (BlockId.HANDOVER_TO, cover.handover_form),
    CallbackId.TRANSFER: (BlockId.TRANSFER_TO, moves.transfer_submitted),
}
