"""What the consult flows tell a user whose request they refuse (the text of a `Refused`,
or a form field's error), every text in one place, and the audit of a refusal. The
lifecycle's own refusals (wrong state, wrong role) are in `bot.domain.lifecycle`."""

from __future__ import annotations

from bot.domain.catalogue import Catalogue, IntakeField, Service
from bot.domain.text import clean, escape, normalize_ref
from bot.flows.consults.context import Context
from storage import repo

# The modal's and the command's input.
CHOOSE_SERVICE = "Choose a service."
BAD_URGENCY = "Urgency must be stat, urgent or routine."
NO_PATIENT = "Enter the patient reference (e.g. MRN or encounter number)."
NO_QUESTION = "Enter the clinical question."
# Actions.
NO_ANSWER = "Write the answer (the text after the reference)."
NO_NEED_INFO_QUESTION = "Write the question for the requester."
NO_REPLY = "Write your reply."
SNOOZE_TOO_LONG = "Reminders can be snoozed for at most 24h."
HANDOFF_TO_SELF = "Choose someone else to hand off to."
NO_PATIENT_TO_LOOK_UP = "Give a patient reference: /consult patient <patient>"


def too_long(what: str, limit: int) -> str:
    """`what` (the answer, the reply, the question, the patient reference) is too long."""
    return f"The {what} is longer than {limit} characters."


def unknown_service_in_draft(typed: str, catalogue: Catalogue) -> str:
    return f"Unknown service '{_quote(typed)}'. Choose one of: {_known(catalogue)}."


def unknown_service_for_on_call(typed: str, catalogue: Catalogue) -> str:
    return f"Unknown service '{_quote(typed)}'. Known: {_known(catalogue)}."


def patient_pattern(service: Service) -> str:
    hint = service.patient_hint or f"the pattern {service.patient_pattern}"
    return f"The patient reference must look like {hint}."


def intake_required(field: IntakeField, service: Service) -> str:
    return f"{field.label} is required for {service.name}."


def intake_too_long(field: IntakeField) -> str:
    return f"{field.label} is longer than {field.max_length} characters."


def not_a_reference(typed: str) -> str:
    return f"'{_quote(typed)}' is not a consult reference (like RAD-42)."


def no_such_consult(ref: str) -> str:
    return f"There is no consult {ref}."


def not_a_duration(problem: ValueError) -> str:
    return escape(str(problem))  # it quotes what was typed


def only_requester_replies(ref: str) -> str:
    return f"Only the requester of {ref} can reply here; write in the consult's thread instead."


NO_SCHEDULES = "No service has an on-call schedule, so there is nothing to reload."


def may_not_set_on_call(service: Service) -> str:
    return f"Only {service.name}'s leads or its current on-call can change who is on call."


def audit_refusal(
    ctx: Context,
    *,
    user: str,
    action: str,
    reason: str,
    ref: str | None,
) -> None:
    """Refusals are audited (without free text) and change nothing else."""
    # `ref` may be anything a payload carried (NUL is refused by PostgreSQL).
    normal = normalize_ref(ref) if ref else None
    with ctx.unit() as s:
        consult = repo.get_by_ref(session=s, ref=normal) if normal else None
        repo.add_audit(
            session=s,
            consult_id=consult.id if consult else None,
            actor=clean(user, max_length=32),
            action="refused",
            at=ctx.clock.now(),
            details={
                "attempted": clean(action, max_length=64),
                "ref": normal or (clean(ref, max_length=40) or None),
                "reason": clean(reason, max_length=200),
            },
        )


def _quote(typed: str) -> str:
    return escape(clean(typed, max_length=40))


def _known(catalogue: Catalogue) -> str:
    return ", ".join(s.key for s in catalogue.services)
