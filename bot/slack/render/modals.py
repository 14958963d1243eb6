"""The modals: the /consult form (its intake fields follow the chosen service) and the
one-consult forms behind the card's and the requester's buttons (answer, hand off, need info,
reply, reopen, feedback). Titles are generic: no patient details in modal titles."""

from __future__ import annotations

from typing import Any

from bot.domain.catalogue import Catalogue, Service
from bot.domain.vocabulary import URGENCIES, Urgency
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.render.primitives import URGENCY_LABELS, Blocks, context, mention, quote, section


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


def _service_input(catalogue: Catalogue, service: Service | None) -> dict[str, Any]:
    """The service picker; choosing one dispatches an action that redraws the form."""
    select: dict[str, Any] = {
        "type": "static_select",
        "action_id": ActionId.SERVICE_SELECT,
        "placeholder": {"type": "plain_text", "text": "Choose a service"},
        "options": [_option(s.name, s.key) for s in catalogue.services][:100],
    }
    if service:
        select["initial_option"] = _option(service.name, service.key)
    return {
        "type": "input",
        "block_id": BlockId.SERVICE,
        "label": {"type": "plain_text", "text": "Service"},
        "element": select,
        "dispatch_action": True,
    }


def _urgency_input(urgency: str | None) -> dict[str, Any]:
    """The urgency picker, routine unless told otherwise."""
    chosen = urgency or Urgency.ROUTINE
    return {
        "type": "input",
        "block_id": BlockId.URGENCY,
        "label": {"type": "plain_text", "text": "Urgency"},
        "element": {
            "type": "static_select",
            "action_id": "value",
            "options": [_option(URGENCY_LABELS[u], u) for u in URGENCIES],
            "initial_option": _option(URGENCY_LABELS[chosen], chosen),
        },
    }


def _intake_inputs(service: Service | None, intake: dict[str, str] | None) -> Blocks:
    """One input per intake field of the chosen service."""
    return [
        _text_input(
            BlockId.INTAKE_PREFIX + fld.key,
            fld.label,
            initial=(intake or {}).get(fld.key),
            optional=not fld.required,
            hint=fld.hint,
            max_length=fld.max_length,
        )
        for fld in (service.intake if service else [])
    ]


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
    blocks: Blocks = [
        _service_input(catalogue, service),
        _urgency_input(urgency),
        _text_input(
            BlockId.PATIENT,
            "Patient",
            initial=patient,
            hint=(service.patient_hint if service and service.patient_hint else "MRN or encounter"),
            max_length=200,
        ),
        _text_input(BlockId.QUESTION, "Question", initial=question, multiline=True),
        *_intake_inputs(service, intake),
    ]
    return {
        "type": "modal",
        "callback_id": CallbackId.NEW_CONSULT,
        "title": {"type": "plain_text", "text": "New consult"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": channel,
        "blocks": blocks,
    }


def modal(callback_id: str, title: str, submit: str, meta: str, blocks: Blocks) -> dict[str, Any]:
    """A modal with a submit and a Cancel button; `meta` is its private metadata. Titles
    are generic on purpose: no patient details in modal titles."""
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": meta,
        "blocks": blocks,
    }


def _ref_modal(
    callback_id: str, title: str, submit: str, ref: str, blocks: Blocks
) -> dict[str, Any]:
    return modal(callback_id, title, submit, ref, [context(f"Consult *{ref}*"), *blocks])


def answer_modal(ref: str, initial: str = "") -> dict[str, Any]:
    """Answer modal, pre-filled with the consultant's latest thread reply."""
    answer = _text_input(BlockId.ANSWER, "Answer", initial=initial, multiline=True)
    return _ref_modal(CallbackId.ANSWER, "Answer consult", "Send answer", ref, [answer])


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
    """Need info: the consultant's question for the requester."""
    question = _text_input(BlockId.QUESTION, "Question for the requester", multiline=True)
    return _ref_modal(CallbackId.NEED_INFO, "Ask the requester", "Ask", ref, [question])


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
    """Reopen: the requester's follow-up question."""
    follow_up = _text_input(BlockId.FOLLOW_UP, "Follow-up question", multiline=True)
    return _ref_modal(CallbackId.REOPEN, "Reopen consult", "Reopen", ref, [follow_up])


def feedback_modal(ref: str, helpful: bool) -> dict[str, Any]:
    """Rate the answer: an optional comment; the rating rides in the private metadata."""
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
