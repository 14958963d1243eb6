"""Slack action, callback and block ids as constants, so handlers and renderers agree."""

from __future__ import annotations

from enum import StrEnum


class ActionId(StrEnum):
    ACKNOWLEDGE = "consult_acknowledge"
    ANSWER = "consult_answer"
    HANDOFF = "consult_handoff"
    NEED_INFO = "consult_need_info"
    CLOSE = "consult_close"
    REOPEN = "consult_reopen"
    CANCEL = "consult_cancel"
    HELPFUL = "consult_helpful"
    NOT_HELPFUL = "consult_not_helpful"
    OPEN_MODAL = "consult_open_modal"
    SERVICE_SELECT = "consult_service_select"
    REPLY = "consult_requester_reply"  # the requester answers a need-info question from a DM
    CRITICAL_ACK = "critical_acknowledge"  # a critical result's Acknowledge receipt
    CRITICAL_NOT_MINE = "critical_not_mine"  # a critical result's Not my patient
    CRITICAL_FROM_CARD = "critical_from_card"  # the card's Critical result entry
    HANDOFF_ALL = "consult_handoff_all"  # the shift-end reminder: hand everything to <user>
    FOLLOWUP_FROM_ANSWER = "followup_from_answer"  # the answer DM's Follow-up (the form)
    FOLLOWUP_DONE = "followup_done"  # the owner's Done (the outcome form)
    FOLLOWUP_HANDOVER = "followup_handover"  # the owner's Hand over (to a colleague)
    HANDOVER = "consult_handover"  # the requester's Hand over: their side to a colleague
    TRANSFER = "consult_transfer"  # the card's Transfer: the form to send it to another service


class CallbackId(StrEnum):
    NEW_CONSULT = "consult_new"
    ANSWER = "consult_answer_modal"
    HANDOFF = "consult_handoff_modal"
    NEED_INFO = "consult_need_info_modal"
    REOPEN = "consult_reopen_modal"
    FEEDBACK = "consult_feedback_modal"
    REPLY = "consult_requester_reply_modal"
    CRITICAL_NEW = "critical_new_modal"
    CRITICAL_ACK = "critical_ack_modal"
    CRITICAL_FORWARD = "critical_forward_modal"
    FOLLOWUP_NEW = "followup_new_modal"
    FOLLOWUP_DONE = "followup_done_modal"
    FOLLOWUP_HANDOVER = "followup_handover_modal"
    HANDOVER = "consult_handover_modal"
    TRANSFER = "consult_transfer_modal"


class BlockId(StrEnum):
    SERVICE = "service"
    URGENCY = "urgency"
    PATIENT = "patient"
    QUESTION = "question"
    ANSWER = "answer"
    HANDOFF_TO = "handoff_to"
    NOTE = "note"
    FOLLOW_UP = "follow_up"
    COMMENT = "comment"
    REPLY = "reply"
    INTAKE_PREFIX = "intake__"
    READ_BACK = "read_back"
    FORWARD_TO = "forward_to"
    REASON = "reason"
    TO = "to"
    FINDING = "finding"
    CALLBACK = "callback"
    OWED = "owed"
    OWNER = "owner"
    DUE = "due"
    CONSULT = "consult"
    OUTCOME = "outcome"
    HANDOVER_TO = "handover_to"
    TRANSFER_TO = "transfer_to"


# Outbox metadata: tells our own posts apart in channel history after an unclear failure.
OUTBOX_EVENT_TYPE = "careloop_outbox"
