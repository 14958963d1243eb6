"""What a requester typed or entered in the modal (`Draft`), and its validation against the
catalogue: every problem found at once, by field (`DraftInvalid`), or the clean consult."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.domain.catalogue import Catalogue, Service
from bot.domain.text import clean
from bot.domain.vocabulary import URGENCIES, Urgency
from bot.flows.consults import refusals

PATIENT_MAX = 200
QUESTION_MAX = 20_000  # also the longest answer and requester reply
NOTE_MAX = 3_000  # hand-off notes, cancel reasons, feedback comments


@dataclass
class Draft:
    """What a requester typed or entered in the modal, before validation."""

    service: str = ""
    urgency: str | None = None
    patient: str = ""
    question: str = ""
    intake: dict[str, str] = field(default_factory=dict)


class DraftInvalid(Exception):
    """Input that cannot become a consult; `errors` maps a field to what is wrong with it."""

    def __init__(self, errors: dict[str, str], service: Service | None = None) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors
        self.service = service


@dataclass(frozen=True)
class Valid:
    """A draft that passed validation, cleaned."""

    service: Service
    urgency: Urgency
    patient: str
    question: str
    intake: dict[str, str]


def validate(catalogue: Catalogue, draft: Draft) -> Valid:
    """Check a draft against the catalogue; DraftInvalid lists every problem."""
    errors: dict[str, str] = {}
    service = catalogue.service(draft.service.strip()) if draft.service else None
    if service is None:
        errors["service"] = (
            refusals.unknown_service_in_draft(draft.service, catalogue)
            if draft.service
            else refusals.CHOOSE_SERVICE
        )
    urgency = (draft.urgency or Urgency.ROUTINE).strip().lower()
    if urgency not in URGENCIES:
        errors["urgency"] = refusals.BAD_URGENCY
    patient, question = clean(draft.patient), clean(draft.question)
    problems = {
        "patient": _patient_problem(patient, service),
        "question": _question_problem(question),
    }
    errors |= {name: problem for name, problem in problems.items() if problem}
    intake: dict[str, str] = {}
    if service:
        intake = _intake(service, draft.intake, errors)
    if errors:
        raise DraftInvalid(errors, service)
    assert service is not None
    return Valid(service, Urgency(urgency), patient, question, intake)


def _patient_problem(patient: str, service: Service | None) -> str:
    if not patient:
        return refusals.NO_PATIENT
    if len(patient) > PATIENT_MAX:
        return refusals.too_long("patient reference", PATIENT_MAX)
    if service and service.patient_pattern and not re.fullmatch(service.patient_pattern, patient):
        return refusals.patient_pattern(service)
    return ""


def _question_problem(question: str) -> str:
    if not question:
        return refusals.NO_QUESTION
    if len(question) > QUESTION_MAX:
        return refusals.too_long("question", QUESTION_MAX)
    return ""


def _intake(service: Service, typed: dict[str, str], errors: dict[str, str]) -> dict[str, str]:
    """The service's intake answers, cleaned; a problem with one is added to `errors`."""
    intake: dict[str, str] = {}
    for fld in service.intake:
        value = clean(typed.get(fld.key, ""))
        if fld.required and not value:
            errors[f"intake.{fld.key}"] = refusals.intake_required(fld, service)
        elif len(value) > fld.max_length:
            errors[f"intake.{fld.key}"] = refusals.intake_too_long(fld)
        elif value:
            intake[fld.key] = value
    return intake
