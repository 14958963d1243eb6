"""Read-only look-ups of consults for the handlers: by reference or id, a user's or a
patient's open consults, and what pre-fills a form (the latest consultant reply, the
need-info question the requester is answering)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.lifecycle import Refused
from bot.domain.text import clean, normalize_ref, patient_key
from bot.domain.vocabulary import Template
from bot.flows.consults import refusals
from storage import covers, outbox_store, press, repo
from storage.db import unit_of_work
from storage.models import Consult


@dataclass(frozen=True)
class Lookups:
    """Consults as stored, each read in its own short transaction."""

    sessions: sessionmaker[Session]

    def get(self, ref: str) -> Consult:
        """A consult by reference, or Refused naming the unknown reference."""
        normal = normalize_ref(ref)
        if normal is None:
            raise Refused(refusals.not_a_reference(ref))
        consult = press.read(self.sessions, normal)  # a modal's button: one round trip
        if consult is None:
            raise Refused(refusals.no_such_consult(normal))
        return consult

    def get_by_id(self, consult_id: int) -> Consult | None:
        with unit_of_work(self.sessions) as s:
            return repo.get_consult(session=s, consult_id=consult_id)

    def by_ids(self, ids: list[int]) -> list[Consult]:
        with unit_of_work(self.sessions) as s:
            found = [repo.get_consult(session=s, consult_id=i) for i in ids]
        return [c for c in found if c is not None]

    def for_user(self, user: str) -> list[Consult]:
        """Consults the user requested or is assigned, not yet closed, and those of the
        requesters they cover now; oldest first."""
        with unit_of_work(self.sessions) as s:
            found = {c.id: c for c in repo.open_for_user(session=s, user=user)}
            for c in covers.covered_requests(s, user):
                found.setdefault(c.id, c)
        return sorted(found.values(), key=lambda c: (c.created_at, c.id))

    def for_patient(self, patient: str) -> list[Consult]:
        """A patient's open consults across services."""
        key = patient_key(clean(patient))
        if not key:
            raise Refused(refusals.NO_PATIENT_TO_LOOK_UP)
        with unit_of_work(self.sessions) as s:
            return list(repo.open_for_patient(session=s, patient_key=key))

    def latest_consultant_reply(self, consult: Consult) -> str:
        """Text of the newest non-requester reply (pre-fills the Answer modal)."""
        with unit_of_work(self.sessions) as s:
            reply = repo.latest_consultant_reply(session=s, consult_id=consult.id)
        return reply.text or "" if reply else ""

    def need_info_question(self, consult: Consult) -> tuple[str | None, str]:
        """(who asked, the question) of the latest need-info message sent to the requester,
        or (None, "") when there is none left (retention deletes delivered messages)."""
        # The question is not a consult column: it lives in the outbox row of the DM.
        with unit_of_work(self.sessions) as s:
            payload = outbox_store.latest_dm_payload(
                session=s, consult_id=consult.id, template=Template.NEED_INFO
            )
        if payload is None:
            return None, ""
        params = payload.get("params") or {}
        return params.get("by"), str(params.get("text") or "")
