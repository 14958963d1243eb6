"""The words CareLoop uses, each defined once as an enum: urgencies, where a message goes
(outbox `Kind`) and which message it is (`Template`). Values are the strings stored in the
database and payloads, so an enum member compares equal to its stored string."""

from __future__ import annotations

from enum import StrEnum


class Urgency(StrEnum):
    """How soon a consult must be acknowledged and answered (targets in the catalogue)."""

    STAT = "stat"
    URGENT = "urgent"
    ROUTINE = "routine"


# Most urgent first: the order of the form's options, reports and the catalogue's tables.
URGENCIES: tuple[Urgency, ...] = (Urgency.STAT, Urgency.URGENT, Urgency.ROUTINE)


class Kind(StrEnum):
    """Where an outbox message goes; delivery renders it from the consult's current state."""

    POST = "post"  # the consult card, into the service channel
    UPDATE = "update"  # chat.update of the consult card
    THREAD = "thread"  # a reply in the consult's thread
    DM = "dm"  # a direct message to one person
    CHANNEL = "channel"  # a top-level message in a channel (storm summary, on-call change)
    EPHEMERAL = "ephemeral"  # visible to one person in one channel
    HOME = "home"  # App Home for one person
    UPLOAD = "upload"  # a file (the digest chart) into a DM


class Template(StrEnum):
    """Which message an outbox row renders; every member has a renderer
    (`bot.slack.render.messages.TEMPLATES`), checked by a test."""

    CARD = "card"
    CONFIRMATION = "confirmation"
    ACKNOWLEDGED = "acknowledged"
    ACKNOWLEDGED_THREAD = "acknowledged_thread"
    REPLY_RELAY = "reply_relay"
    ANSWER_THREAD = "answer_thread"
    ANSWERED = "answered"
    NEED_INFO_THREAD = "need_info_thread"
    NEED_INFO = "need_info"
    REQUESTER_REPLY_THREAD = "requester_reply_thread"
    INFO_GIVEN = "info_given"
    HANDOFF_THREAD = "handoff_thread"
    HANDOFF_RECEIVED = "handoff_received"
    HANDED_OFF = "handed_off"
    CLOSED_THREAD = "closed_thread"
    REOPENED_THREAD = "reopened_thread"
    REOPENED = "reopened"
    CANCELLED_THREAD = "cancelled_thread"
    CANCELLED = "cancelled"
    POST_FAILED = "post_failed"
    SNOOZED_THREAD = "snoozed_thread"
    NUDGE = "nudge"
    ESCALATION = "escalation"
    REQUESTER_OVERDUE = "requester_overdue"
    REQUESTER_REMINDER = "requester_reminder"
    STORM = "storm"
    STORM_DM = "storm_dm"  # to one person: the consults of a storm escalated to them, or theirs
    ON_CALL_CHANGED = "on_call_changed"
    TEXT = "text"
    DIGEST = "digest"
    CRITICAL_RESULT = "critical_result"  # to a recipient: the finding, with its two buttons
    CRITICAL_ACKNOWLEDGED = "critical_acknowledged"  # to the sender: the read-back
    CRITICAL_FORWARDED = "critical_forwarded"  # to the sender: "not my patient", sent on
    CRITICAL_NOT_RECEIVED = "critical_not_received"  # to the sender at escalation: phone
    SHIFT_STARTED = "shift_started"  # to the incoming on-call, listing the consults moved
    HANDOFF_REMINDER = "handoff_reminder"  # to the outgoing consultant, with a hand-off button
    COVERAGE_GAP = "coverage_gap"  # to the leads: nobody scheduled from … until …
    SCHEDULE_PROBLEM = "schedule_problem"  # to the leads: a schedule failed to load
    FOLLOWUP_OWED = "followup_owed"  # to the owner: what is owed to the patient, Done / Hand over
    FOLLOWUP_ESCALATED = "followup_escalated"  # to `[followups] escalate_to`: overdue follow-up
    FOLLOWUP_DONE = "followup_done"  # to whoever opened it: done, with the outcome
    COVER_STARTED = "cover_started"  # to a covering clinician: whom they cover, their consults
    COVER_ENDED = "cover_ended"  # to the covering clinician: the cover is over
    HANDOVER_THREAD = "handover_thread"  # the requester's side moved to a colleague, with a note
    HANDOVER_RECEIVED = "handover_received"  # to the new requester: the consult, the buttons
    HANDOVER_SENT = "handover_sent"  # to the previous requester: it is no longer theirs
    TRANSFERRED_CARD = "transferred_card"  # the old service's card: moved to …, no buttons
    TRANSFERRED = "transferred"  # to the requester: moved to another service, new reference
    URGENCY_THREAD = "urgency_thread"  # the thread note: urgency from … to …, and why
    URGENCY_CHANGED = "urgency_changed"  # to the requester (or owner): the new deadlines


# Critical results' references read CRIT-12 (`storage.critical.PREFIX` is the same word);
# no service may take it as its prefix.
CRITICAL_PREFIX = "CRIT"


# Follow-ups' references read FU-12 (`storage.followups.PREFIX` is the same word); no
# service may take it as its prefix.
FOLLOWUP_PREFIX = "FU"


class FollowUpStep(StrEnum):
    """The audit actions of a follow-up (audit rows with consult_id NULL and the follow-up's
    id and reference in `details`)."""

    OPENED = "followup_opened"
    ANSWER_IN = "followup_answer_in"
    NUDGED = "followup_nudged"
    ESCALATED = "followup_escalated"
    HANDED_OVER = "followup_handed_over"
    DONE = "followup_done"


class FollowUpOutcome(StrEnum):
    """How a follow-up ended (the Done form's choices, in its order)."""

    REACHED = "reached"
    LEFT_MESSAGE = "left_message"
    OTHER = "other"


OUTCOME_LABELS: dict[str, str] = {
    FollowUpOutcome.REACHED: "Reached the patient",
    FollowUpOutcome.LEFT_MESSAGE: "Left a message",
    FollowUpOutcome.OTHER: "Other",
}


class CriticalStep(StrEnum):
    """The audit actions of a critical result (audit rows with consult_id NULL and the
    result's id and reference in `details`)."""

    SENT = "critical_sent"
    DELIVERED = "critical_delivered"
    RENOTIFIED = "critical_renotified"
    FORWARDED = "critical_forwarded"
    ESCALATED = "critical_escalated"
    ACKNOWLEDGED = "critical_acknowledged"

    @property
    def informational(self) -> bool:
        """Whether this message only records a step (see `INFORMATIONAL`)."""
        return self in INFORMATIONAL


# Thread notes that record a step nobody is waiting on: the card update shows the new
# state, and whoever must act is told by direct message. When a channel is paced (Slack's
# one post a second), they go after time-critical posts there (new cards, nudges,
# escalations, storm summaries, answers, questions and replies, card updates), and a
# time-critical message of the same consult may overtake them. `ACKNOWLEDGED_THREAD` is
# no longer queued at all (the card says who acknowledged and when); it stays here for
# rows queued before that change.
INFORMATIONAL: frozenset[Template] = frozenset(
    {
        Template.ACKNOWLEDGED_THREAD,
        Template.SNOOZED_THREAD,
        Template.HANDOFF_THREAD,
        Template.CLOSED_THREAD,
        Template.REOPENED_THREAD,
        Template.CANCELLED_THREAD,
        Template.HANDOVER_THREAD,
    }
)

# Posts about consults already overdue (thread nudges, storm summaries). In a paced channel
# they go before the other time-critical posts queued earlier (new cards: their clocks have
# only started), never before their own consult's card.
OVERDUE_NOTICES: frozenset[Template] = frozenset({Template.NUDGE, Template.STORM})


class Artifact(StrEnum):
    """What an outbox row of kind HOME or UPLOAD builds instead of a chat message."""

    HOME = "home"  # the App Home view (views.publish)
    DIGEST_CHART = "digest_chart"  # the weekly digest's PNG chart (files.upload_v2)
