"""Buttons on consult cards and on the requester's messages, and the form's service picker."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

import handlers.cover as cover
import handlers.critical as critical
import handlers.followups as followups
import handlers.moves as moves
from bot.domain.lifecycle import Action, Refused
from bot.domain.text import normalize_ref
from bot.services import Services
from bot.slack.ids import ActionId, BlockId
from bot.slack.render.modals import (
    answer_modal,
    feedback_modal,
    handoff_modal,
    need_info_modal,
    new_consult_modal,
    reopen_modal,
    requester_reply_modal,
)
from handlers.common import one_of, open_modal, retired, services, tell
from handlers.middleware import audited, refusal_notice, request_key_of

log = logging.getLogger("careloop.handlers")
SHIFT_END_NOTE = "End of shift."


def register(app: App) -> None:
    """Listen for every CareLoop button, then for any other action id (last: bolt runs the
    first listener that matches). The buttons are one bolt listener that picks the button's
    own by action id: bolt tries every listener before the one that matches, each try
    costing it a build of the listener's arguments, so a form submitted (its listeners come
    after these) went through 18 of them."""
    buttons = {str(action_id): _button(handler) for action_id, handler in BUTTONS.items()}

    def button(ack: Ack, body: dict[str, Any], context: dict[str, Any]) -> None:
        # The id bolt matched: a block action's action id, a legacy payload's callback id.
        action = (body.get("actions") or [{}])[0]
        found = buttons.get(str(action.get("action_id") or body.get("callback_id")))
        (found or unknown_button)(ack, body, context)

    app.action(one_of(buttons))(button)
    app.action(ActionId.SERVICE_SELECT)(service_selected)
    app.action(ActionId.HANDOFF_ALL)(handoff_all)
    app.action(re.compile(".*"))(unknown_button)


def unknown_button(ack: Ack, body: dict[str, Any], context: dict[str, Any]) -> None:
    """A button this version does not know (a retired one on an old message, or a forged
    id): the person is told what to do instead of Slack's bare failure mark."""
    ack()
    user, channel = _who_where(body)
    retired(
        services(context),
        user=user,
        channel=channel,
        what="unknown action id",
        event="unknown_action",
        text=":warning: That button is no longer in use. Use the buttons on the consult's "
        "latest message, or `/consult list` to find your consults.",
    )


def _who_where(body: dict[str, Any]) -> tuple[str, str | None]:
    """Who clicked, and the channel of the message the button was on (None in App Home)."""
    user = (body.get("user") or {}).get("id", "")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    return user, channel


Button = Callable[[Services, str, str, dict[str, Any], str | None], str | None]


def _button(handler: Button) -> Callable[..., None]:
    def listener(ack: Ack, body: dict[str, Any], context: dict[str, Any]) -> None:
        ack()
        svc = services(context)
        user, channel = _who_where(body)
        action = (body.get("actions") or [{}])[0]
        ref = normalize_ref(str(action.get("value") or ""))
        if ref is None:
            tell(
                svc, user=user, channel=channel, text=":warning: That button is not for a consult."
            )
            return
        key = request_key_of(context)
        notice = audited(
            svc,
            lambda: handler(svc, ref, user, body, key),
            user=user,
            action=str(action.get("action_id")),
            ref=ref,
        )
        if isinstance(notice, Refused):
            notice = refusal_notice(notice)
        if notice:
            tell(svc, user=user, channel=channel, text=notice)

    listener.__name__ = handler.__name__
    return listener


def acknowledge(
    svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None
) -> str | None:
    """Acknowledge: take the consult (the card and the requester show it)."""
    svc.consults.acknowledge(ref, actor=user, key=key)
    return None


def _modal(builder: Callable[[Services, str], dict[str, Any]], action: Action) -> Button:
    def handler(
        svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None
    ) -> str | None:
        consult = svc.consults.get(ref)
        svc.consults.check(consult, user, action)
        if not open_modal(svc, body.get("trigger_id"), builder(svc, ref)):
            return ":warning: Slack did not open the form just now; try again in a moment."
        return None

    handler.__name__ = f"open_{action.value}_modal"
    return handler


def _answer_view(svc: Services, ref: str) -> dict[str, Any]:
    consult = svc.consults.get(ref)
    return answer_modal(ref, svc.consults.latest_consultant_reply(consult))


def close(svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None) -> str | None:
    """Close: the requester is done with the answer."""
    outcome = svc.consults.close(ref, actor=user, key=key)
    return None if not outcome.changed else f":lock: {ref} is closed. Thank you."


def cancel(svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None) -> str | None:
    """Cancel: the requester withdraws the consult."""
    outcome = svc.consults.cancel(ref, actor=user, key=key)
    return None if not outcome.changed else f":no_entry_sign: {ref} is cancelled."


def _rate(helpful: bool) -> Button:
    def handler(
        svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None
    ) -> str | None:
        svc.consults.feedback(ref, actor=user, helpful=helpful, key=key)
        # The tap is stored; the modal only adds an optional comment.
        open_modal(svc, body.get("trigger_id"), feedback_modal(ref, helpful))
        return f"Thanks — your rating of {ref} was recorded."

    handler.__name__ = "helpful" if helpful else "not_helpful"
    return handler


def reply(svc: Services, ref: str, user: str, body: dict[str, Any], key: str | None) -> str | None:
    """The requester's Reply button (need-info message and reminders): the form to answer
    in, with the consultant's question above it."""
    consult = svc.consults.get(ref)
    svc.consults.check_requester_reply(consult, user)
    asked_by, question = svc.consults.need_info_question(consult)
    view = requester_reply_modal(ref, question, asked_by)
    if not open_modal(svc, body.get("trigger_id"), view):
        return ":warning: Slack did not open the form just now; try again in a moment."
    return None


BUTTONS: dict[str, Button] = {
    ActionId.ACKNOWLEDGE: acknowledge,
    ActionId.ANSWER: _modal(_answer_view, Action.ANSWER),
    ActionId.NEED_INFO: _modal(lambda svc, ref: need_info_modal(ref), Action.NEED_INFO),
    ActionId.HANDOFF: _modal(lambda svc, ref: handoff_modal(ref), Action.HANDOFF),
    ActionId.REOPEN: _modal(lambda svc, ref: reopen_modal(ref), Action.REOPEN),
    ActionId.CLOSE: close,
    ActionId.CANCEL: cancel,
    ActionId.HELPFUL: _rate(True),
    ActionId.NOT_HELPFUL: _rate(False),
    ActionId.REPLY: reply,
    ActionId.CRITICAL_ACK: critical.acknowledge_button,
    ActionId.CRITICAL_NOT_MINE: critical.not_mine_button,
    ActionId.CRITICAL_FROM_CARD: critical.from_card_button,
    ActionId.FOLLOWUP_FROM_ANSWER: followups.from_answer_button,
    ActionId.FOLLOWUP_DONE: followups.done_button,
    ActionId.FOLLOWUP_HANDOVER: followups.handover_button,
    ActionId.HANDOVER: cover.handover_button,
    ActionId.TRANSFER: _modal(moves.transfer_form, Action.TRANSFER),
}


def handoff_all(ack: Ack, body: dict[str, Any], context: dict[str, Any]) -> None:
    """The shift-end reminder's "Hand off to …": every open consult of the person who
    clicked goes to the incoming on-call (the `/consult handoff` flow); a second click
    finds nothing left to hand off."""
    ack()
    svc = services(context)
    user, channel = _who_where(body)
    to = str(((body.get("actions") or [{}])[0]).get("value") or "")
    try:
        outcomes = svc.consults.handoff_all(actor=user, to=to, note=SHIFT_END_NOTE)
    except Refused as refused:
        tell(svc, user=user, channel=channel, text=f":warning: {refused}")
        return
    if not outcomes:
        text = "You have no open consults assigned to you, so there is nothing to hand off."
    else:
        refs = ", ".join(o.consult.ref for o in outcomes)
        text = f":arrows_counterclockwise: Handed off to <@{to}>: {refs}. They have the list."
    tell(svc, user=user, channel=channel, text=text)


def service_selected(ack: Ack, body: dict[str, Any], context: dict[str, Any]) -> None:
    """Choosing a service in the form shows that service's intake fields."""
    ack()
    svc = services(context)
    view = body.get("view") or {}
    values = (view.get("state") or {}).get("values") or {}
    action = (body.get("actions") or [{}])[0]
    key = ((action.get("selected_option") or {}).get("value")) or ""
    service = svc.catalogue.service(key)
    if service is None or not view.get("id"):
        return

    def text(block: str) -> str:
        return str(((values.get(block) or {}).get("value") or {}).get("value") or "")

    urgency = ((values.get(BlockId.URGENCY) or {}).get("value") or {}).get("selected_option")
    new_view = new_consult_modal(
        svc.catalogue,
        service=service,
        urgency=(urgency or {}).get("value"),
        patient=text(BlockId.PATIENT),
        question=text(BlockId.QUESTION),
        intake={f.key: text(BlockId.INTAKE_PREFIX + f.key) for f in service.intake},
        channel=view.get("private_metadata", ""),
    )
    try:
        svc.quick_client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
    except (SlackApiError, OSError, TimeoutError) as exc:
        log.warning("could not update the form", extra={"error": type(exc).__name__})
