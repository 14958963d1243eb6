"""Consult flows: open, acknowledge, reply, need-info, answer, hand off, close, reopen, cancel,
rate. Each flow is one unit of work: the state change, its audit event and the messages it
causes (queued in the outbox) commit together or not at all. No Slack payloads here, and the
only database access is through `storage.repo`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.domain import policy as sla
from bot.domain.catalogue import Catalogue, Service
from bot.domain.clock import Clock
from bot.domain.durations import parse_duration
from bot.domain.lifecycle import (
    OPEN_STATES,
    Action,
    Refused,
    Role,
    Status,
    Transition,
    check_allowed,
    next_status,
)
from bot.domain.text import clean, escape, normalize_ref, patient_key
from bot.domain.vocabulary import URGENCIES, Kind
from bot.flows.outbox import Outbox
from bot.slack.membership import ChannelMembers
from storage import repo
from storage.models import Consult, Reply

log = logging.getLogger("careloop.consults")

PATIENT_MAX = 200
SNOOZE_MAX = timedelta(hours=24)
# Actions that need the consultant role, which may mean asking Slack for channel members.
CONSULTANT_ACTIONS = (
    Action.ACKNOWLEDGE,
    Action.ANSWER,
    Action.NEED_INFO,
    Action.HANDOFF,
    Action.SNOOZE,
)
QUESTION_MAX = 20_000
NOTE_MAX = 3_000
REPLY_TS_MAX = 32  # replies.ts


def reply_ts(key: str) -> str:
    """A form submission's exactly-once key as a reply's `ts` (the column holds 32
    characters): kept when it fits (Slack's view ids do), else a digest of it."""
    value = request_key(key) or ""
    if len(value) <= REPLY_TS_MAX:
        return value
    return "key:" + hashlib.sha256(value.encode()).hexdigest()[: REPLY_TS_MAX - 4]


def request_key(key: str | None) -> str | None:
    """An exactly-once key as the database can store it: Slack's ids never hold control
    characters (PostgreSQL refuses NUL) or exceed the column, a forged payload might."""
    return clean(key, max_length=255) or None if key else None


# How long a process reuses the on-call overrides it read (see `ConsultService.overrides`).
ON_CALL_CACHE_SECONDS = 2.0


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
class Opened:
    """Result of opening a consult: the consult, whether it existed already, and the
    patient's other open consults."""

    consult: Consult
    duplicate: bool
    others: list[Consult]


@dataclass(frozen=True)
class Outcome:
    """Result of an action on a consult; `changed` is False for a harmless repeat."""

    consult: Consult
    changed: bool = True
    message: str = ""


class ConsultService:
    """The consult domain, given its collaborators (catalogue, database, clock, outbox)."""

    def __init__(
        self,
        *,
        catalogue: Catalogue,
        sessions: sessionmaker[Session],
        clock: Clock,
        outbox: Outbox,
        members: ChannelMembers,
    ) -> None:
        self.catalogue = catalogue
        self.sessions = sessions
        self.clock = clock
        self.outbox = outbox
        self.members = members
        # (monotonic time read, overrides); `_on_call_generation` changes on every change
        # made here, so a read that raced a change is not cached.
        self._on_call_cache: tuple[float, dict[str, str]] | None = None
        self._on_call_generation = 0
        self._on_call_lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
    @contextmanager
    def unit(self) -> Iterator[Session]:
        """One transaction; commits on success."""
        session = self.sessions()
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    def service_of(self, consult: Consult) -> Service:
        return self.catalogue.service_by_key(consult.service)

    def on_call(self, service: Service, session: Session | None = None) -> str:
        """Who is on call for a service now (set in Slack, else the catalogue's)."""
        return self.overrides(session).get(service.key, service.on_call)

    def overrides(self, session: Session | None = None) -> dict[str, str]:
        """The on-call overrides (service key → user), read at most every
        ON_CALL_CACHE_SECONDS: every create and every role check needs them.

        A change made through `set_on_call` in this process is seen at once. One made by
        another process (another gunicorn worker, the sweeper) is seen here up to
        ON_CALL_CACHE_SECONDS later: until then a new consult may record the previous
        on-call, and the previous on-call keeps the consultant role. The sweeper's
        escalations, App Home and `/consult oncall` always read the table.
        """
        cached = self._on_call_cache
        started = time.monotonic()
        if cached is not None and started - cached[0] < ON_CALL_CACHE_SECONDS:
            return cached[1]
        generation = self._on_call_generation
        if session is None:
            with self.unit() as s:
                overrides = repo.on_call_overrides(session=s)
        else:
            overrides = repo.on_call_overrides(session=session)
        with self._on_call_lock:
            if generation == self._on_call_generation:
                self._on_call_cache = (started, overrides)
        return overrides

    def _forget_on_call(self) -> None:
        with self._on_call_lock:
            self._on_call_generation += 1
            self._on_call_cache = None

    def roles(self, consult: Consult, user: str, *, need_consultant: bool = True) -> set[Role]:
        """The roles `user` holds for `consult`."""
        service = self.service_of(consult)
        roles: set[Role] = set()
        if user == consult.requester:
            roles.add(Role.REQUESTER)
        if user in service.leads or user in self.catalogue.admins:
            roles.update({Role.LEAD, Role.CONSULTANT})
        named = {service.on_call, service.backup, consult.assignee, consult.on_call}
        if user in named or user == self.on_call(service):
            roles.add(Role.CONSULTANT)
        if need_consultant and Role.CONSULTANT not in roles and user != consult.requester:
            if self.members.is_member(service.channel, user):
                roles.add(Role.CONSULTANT)
        return roles

    def check(self, consult: Consult, user: str, action: Action) -> None:
        """Refused unless `user` may perform `action` on `consult` in its current state."""
        self._check_role(consult, user, action)
        next_status(consult.ref, consult.status, action)

    def _check_role(self, consult: Consult, user: str, action: Action) -> None:
        """Refused unless `user` holds a role that may perform `action` on `consult`."""
        need_consultant = action in CONSULTANT_ACTIONS
        check_allowed(
            consult.ref, action, self.roles(consult, user, need_consultant=need_consultant)
        )

    def get(self, ref: str) -> Consult:
        """A consult by reference, or Refused naming the unknown reference."""
        normal = normalize_ref(ref)
        if normal is None:
            raise Refused(
                f"'{escape(clean(ref, max_length=40))}' is not a consult reference (like RAD-42)."
            )
        with self.unit() as s:
            consult = repo.get_by_ref(session=s, ref=normal)
        if consult is None:
            raise Refused(f"There is no consult {normal}.")
        return consult

    def get_by_id(self, consult_id: int) -> Consult | None:
        with self.unit() as s:
            return repo.get_consult(session=s, consult_id=consult_id)

    def audit_refusal(self, *, user: str, action: str, reason: str, ref: str | None) -> None:
        """Refusals are audited (without free text) and change nothing else."""
        # `ref` may be anything a payload carried (NUL is refused by PostgreSQL).
        normal = normalize_ref(ref) if ref else None
        with self.unit() as s:
            consult = repo.get_by_ref(session=s, ref=normal) if normal else None
            repo.add_audit(
                session=s,
                consult_id=consult.id if consult else None,
                actor=clean(user, max_length=32),
                action="refused",
                at=self.clock.now(),
                details={
                    "attempted": clean(action, max_length=64),
                    "ref": normal or (clean(ref, max_length=40) or None),
                    "reason": clean(reason, max_length=200),
                },
            )

    # ------------------------------------------------------------------ opening
    def validate(self, draft: Draft) -> tuple[Service, str, dict[str, str]]:
        """Check a draft against the catalogue; DraftInvalid lists every problem."""
        errors: dict[str, str] = {}
        service = self.catalogue.service(draft.service.strip()) if draft.service else None
        if service is None:
            known = ", ".join(s.key for s in self.catalogue.services)
            errors["service"] = (
                f"Unknown service '{escape(clean(draft.service, max_length=40))}'. "
                f"Choose one of: {known}."
                if draft.service
                else "Choose a service."
            )
        urgency = (draft.urgency or "routine").strip().lower()
        if urgency not in URGENCIES:
            errors["urgency"] = "Urgency must be stat, urgent or routine."
        patient = clean(draft.patient)
        if not patient:
            errors["patient"] = "Enter the patient reference (e.g. MRN or encounter number)."
        elif len(patient) > PATIENT_MAX:
            errors["patient"] = f"The patient reference is longer than {PATIENT_MAX} characters."
        elif (
            service
            and service.patient_pattern
            and not re.fullmatch(service.patient_pattern, patient)
        ):
            hint = service.patient_hint or f"the pattern {service.patient_pattern}"
            errors["patient"] = f"The patient reference must look like {hint}."
        question = clean(draft.question)
        if not question:
            errors["question"] = "Enter the clinical question."
        elif len(question) > QUESTION_MAX:
            errors["question"] = f"The question is longer than {QUESTION_MAX} characters."
        intake: dict[str, str] = {}
        if service:
            for fld in service.intake:
                value = clean(draft.intake.get(fld.key, ""))
                if fld.required and not value:
                    errors[f"intake.{fld.key}"] = f"{fld.label} is required for {service.name}."
                elif len(value) > fld.max_length:
                    errors[f"intake.{fld.key}"] = (
                        f"{fld.label} is longer than {fld.max_length} characters."
                    )
                elif value:
                    intake[fld.key] = value
        if errors:
            raise DraftInvalid(errors, service)
        assert service is not None
        return service, urgency, intake

    def open(self, draft: Draft, *, requester: str, origin_key: str | None) -> Opened:
        """Store a new consult and queue its channel post and the requester's confirmation.

        `origin_key` (the Slack trigger or view id) makes a replayed or doubled request
        return the consult it already created instead of creating another.
        """
        origin_key = request_key(origin_key)
        service, urgency, intake = self.validate(draft)
        patient, question = clean(draft.patient), clean(draft.question)
        try:
            return self._insert(service, urgency, patient, question, intake, requester, origin_key)
        except IntegrityError:
            # The same request is being handled concurrently and won the unique key.
            with self.unit() as s:
                existing = repo.get_by_origin(session=s, origin_key=origin_key or "")
            if existing is None:
                raise
            return Opened(existing, True, [])

    def _insert(
        self,
        service: Service,
        urgency: str,
        patient: str,
        question: str,
        intake: dict[str, str],
        requester: str,
        origin_key: str | None,
    ) -> Opened:
        now = self.clock.now()
        clocks = self.catalogue.policy(service, urgency)
        ack_due, answer_due = sla.due_times(clocks, now)
        on_call = self.on_call(service)
        key = patient_key(patient)
        consult = Consult(
            service=service.key,
            urgency=urgency,
            patient=patient,
            patient_key=key,
            question=question,
            intake=intake,
            requester=requester,
            on_call=on_call,
            status=Status.OPEN.value,
            origin_key=origin_key,
            channel=service.channel,
            created_at=now,
            acknowledge_due_at=ack_due,
            answer_due_at=answer_due,
            next_nudge_at=ack_due,
            nudge_phase=sla.Phase.ACKNOWLEDGE,
        )
        # One atomic write (one statement on PostgreSQL): a known repeat (same trigger or
        # view) is answered before a number is taken. A create that fails after taking its
        # number (or a repeat racing the original) leaves a gap, never a duplicate.
        messages = self.outbox.rows(
            [
                {"kind": Kind.POST, "template": "card"},
                {
                    "kind": Kind.DM,
                    "template": "confirmation",
                    "user": requester,
                    "params": {"others": repo.OTHERS},
                },
            ],
            now=now,
        )
        with self.sessions() as s:
            created = repo.create_consult(
                session=s,
                consult=consult,
                prefix=service.prefix,
                audit={
                    "actor": requester,
                    "action": "created",
                    "at": now,
                    "details": {"service": service.key, "urgency": urgency},
                },
                messages=messages,
            )
            if created is None:
                found = repo.get_by_origin(session=s, origin_key=origin_key or "")
                assert found is not None
                return Opened(found, True, [])
        self.outbox.wake()
        log.info("consult opened", extra={"ref": consult.ref, "service": service.key})
        return Opened(created.consult, False, created.others)

    # ------------------------------------------------------------------ transitions
    def _act(
        self,
        ref: str,
        actor: str,
        action: Action,
        apply: Callable[[Session, Consult, Transition, datetime], None],
        *,
        key: str | None = None,
        audit_details: dict[str, Any] | None = None,
        repeat_ok: Callable[[Consult], bool] | None = None,
    ) -> Outcome:
        """Check, transition, apply and audit one action on one consult, exactly once."""
        key = request_key(key)
        current = self.get(ref)
        self._check_role(current, actor, action)
        with self.unit() as s:
            consult = repo.get_by_ref(session=s, ref=current.ref, lock=True)
            assert consult is not None
            if key and not repo.claim_key(session=s, key=key, at=self.clock.now()):
                return Outcome(consult, changed=False)
            if repeat_ok and repeat_ok(consult):
                return Outcome(consult, changed=False)
            transition = next_status(consult.ref, consult.status, action)
            now = self.clock.now()
            consult.status = transition.after.value
            consult.version += 1
            apply(s, consult, transition, now)
            repo.add_audit(
                session=s,
                consult_id=consult.id,
                actor=actor,
                action=action.value,
                at=now,
                details={"from": transition.before.value, "to": transition.after.value}
                | (audit_details or {}),
            )
            self.outbox.add(s, kind=Kind.UPDATE, template="card", consult_id=consult.id, now=now)
        log.info("consult %s", action.value, extra={"ref": consult.ref, "actor": actor})
        return Outcome(consult)

    def _take_ownership(self, c: Consult, actor: str, now: datetime) -> None:
        """Answering or asking implies acknowledging: the first to act owns the consult."""
        if c.acknowledged_at is None:
            c.acknowledged_at = now
        if c.assignee is None:
            c.assignee = actor
        if c.first_reply_at is None:
            c.first_reply_at = now

    def _tell(
        self, s: Session, c: Consult, now: datetime, *, thread: str, dm: str, params: dict[str, Any]
    ) -> None:
        """Record a step in the consult's thread and tell the requester about it."""
        self.outbox.add(
            s, kind=Kind.THREAD, template=thread, consult_id=c.id, now=now, params=params
        )
        self.outbox.add(
            s, kind=Kind.DM, template=dm, consult_id=c.id, user=c.requester, now=now, params=params
        )

    def _start_answer_clock(self, consult: Consult, now: datetime) -> None:
        consult.nudge_phase = sla.Phase.ANSWER
        consult.nudge_level = 0
        consult.nudges_at_level = 0
        due = consult.answer_due_at or now
        consult.next_nudge_at = due if due > now else now

    def _stop_clocks(self, consult: Consult) -> None:
        consult.next_nudge_at = None
        consult.nudge_phase = None

    def acknowledge(self, ref: str, *, actor: str, key: str | None = None) -> Outcome:
        """The actor takes ownership; the requester is told."""

        def apply(s: Session, c: Consult, t: Transition, now: datetime) -> None:
            c.assignee = actor
            c.acknowledged_at = now
            self._start_answer_clock(c, now)
            self._tell(
                s, c, now, thread="acknowledged_thread", dm="acknowledged", params={"by": actor}
            )

        return self._act(
            ref,
            actor,
            Action.ACKNOWLEDGE,
            apply,
            key=key,
            repeat_ok=lambda c: (
                c.assignee == actor
                and c.status in (Status.ACKNOWLEDGED.value, Status.WAITING.value)
            ),
        )

    def answer(self, ref: str, *, actor: str, text: str, key: str | None = None) -> Outcome:
        """Record the answer; post it in the thread and send it to the requester."""
        answer = clean(text)
        if not answer:
            raise Refused("Write the answer (the text after the reference).")
        if len(answer) > QUESTION_MAX:
            raise Refused(f"The answer is longer than {QUESTION_MAX} characters.")

        def apply(s: Session, c: Consult, t: Transition, now: datetime) -> None:
            self._end_waiting(c, now)
            self._take_ownership(c, actor, now)
            c.assignee = actor  # whoever answers owns the answer (and any follow-up)
            if c.answered_at is None:
                c.answered_at = now
            c.answer = answer
            self._stop_clocks(c)
            self._tell(
                s,
                c,
                now,
                thread="answer_thread",
                dm="answered",
                params={"by": actor, "text": answer},
            )

        return self._act(ref, actor, Action.ANSWER, apply, key=key)

    def need_info(self, ref: str, *, actor: str, question: str, key: str | None = None) -> Outcome:
        """Ask the requester something; the consultant's answer clock pauses."""
        text = clean(question)
        if not text:
            raise Refused("Write the question for the requester.")

        def apply(s: Session, c: Consult, t: Transition, now: datetime) -> None:
            self._take_ownership(c, actor, now)
            c.waiting_since = now
            clocks = self.catalogue.policy(self.service_of(c), c.urgency)
            c.nudge_phase = sla.Phase.REQUESTER
            c.nudge_level = 0
            c.nudges_at_level = 0
            c.next_nudge_at = now + clocks.nudge_every
            self._tell(
                s,
                c,
                now,
                thread="need_info_thread",
                dm="need_info",
                params={"by": actor, "text": text},
            )

        return self._act(ref, actor, Action.NEED_INFO, apply, key=key)

    def _end_waiting(self, c: Consult, now: datetime) -> None:
        if c.waiting_since is None:
            return
        clocks = self.catalogue.policy(self.service_of(c), c.urgency)
        c.waiting_seconds = (c.waiting_seconds or 0) + int(
            max((now - c.waiting_since).total_seconds(), 0)
        )
        if c.answer_due_at is not None:
            c.answer_due_at = sla.resume_answer_due(clocks, c.answer_due_at, c.waiting_since, now)
        c.waiting_since = None

    def handoff(
        self, ref: str, *, actor: str, to: str, note: str = "", key: str | None = None
    ) -> Outcome:
        """Give one consult to another consultant, with a note on status and next step."""
        outcomes = self._handoff([ref], actor=actor, to=to, note=note, key=key)
        return outcomes[0]

    def handoff_all(self, *, actor: str, to: str, note: str = "") -> list[Outcome]:
        """Shift change: give every open consult assigned to `actor` to `to`."""
        with self.unit() as s:
            refs = [c.ref for c in repo.assigned_open(session=s, user=actor)]
        if not refs:
            return []
        return self._handoff(refs, actor=actor, to=to, note=note, key=None)

    def _handoff(
        self, refs: list[str], *, actor: str, to: str, note: str, key: str | None
    ) -> list[Outcome]:
        if to == actor:
            raise Refused("Choose someone else to hand off to.")
        text = clean(note, max_length=NOTE_MAX)
        outcomes: list[Outcome] = []
        for ref in refs:

            def apply(s: Session, c: Consult, t: Transition, now: datetime) -> None:
                previous = c.assignee or c.on_call or actor
                c.assignee = to
                c.handoff_count = (c.handoff_count or 0) + 1
                if c.nudge_phase:
                    c.nudge_level, c.nudges_at_level = 0, 0
                self.outbox.add(
                    s,
                    kind=Kind.THREAD,
                    template="handoff_thread",
                    consult_id=c.id,
                    now=now,
                    params={"from": previous, "to": to, "note": text},
                )

            outcomes.append(
                self._act(ref, actor, Action.HANDOFF, apply, key=key, audit_details={"to": to})
            )
        changed = [o.consult for o in outcomes if o.changed]
        if changed:
            with self.unit() as s:
                now = self.clock.now()
                self.outbox.add(
                    s,
                    kind=Kind.DM,
                    template="handoff_received",
                    user=to,
                    now=now,
                    params={"from": actor, "ids": [c.id for c in changed], "note": text},
                )
                for c in changed:
                    self.outbox.add(
                        s,
                        kind=Kind.DM,
                        template="handed_off",
                        consult_id=c.id,
                        user=c.requester,
                        now=now,
                        params={"to": to},
                    )
        return outcomes

    def close(self, ref: str, *, actor: str, key: str | None = None) -> Outcome:
        """The requester confirms the loop is closed."""

        def apply(s: Session, c: Consult, t: Transition, now: datetime) -> None:
            c.closed_at = now
            self._stop_clocks(c)
            self.outbox.add(
                s,
                kind=Kind.THREAD,
                template="closed_thread",
                consult_id=c.id,
                now=now,
                params={"by": actor},
            )

        return self._act(
            ref,
            actor,
            Action.CLOSE,
            apply,
            key=key,
            repeat_ok=lambda c: c.status == Status.CLOSED.value,
        )

    def reopen(self, ref: str, *, actor: str, text: str = "", key: str | None = None) -> Outcome:
        """A follow-up on an answered consult: back to the consultant who answered it."""
        follow_up = clean(text)

        def apply(s: Session, c: Consult, t: Transition, now: datetime) -> None:
            clocks = self.catalogue.policy(self.service_of(c), c.urgency)
            c.reopened_count = (c.reopened_count or 0) + 1
            c.answer_due_at = sla.add_time(clocks, now, clocks.answer_within)
            self._start_answer_clock(c, now)
            self.outbox.add(
                s,
                kind=Kind.THREAD,
                template="reopened_thread",
                consult_id=c.id,
                now=now,
                params={"by": actor, "text": follow_up, "assignee": c.assignee},
            )
            if c.assignee:
                self.outbox.add(
                    s,
                    kind=Kind.DM,
                    template="reopened",
                    consult_id=c.id,
                    user=c.assignee,
                    now=now,
                    params={"by": actor, "text": follow_up},
                )

        return self._act(ref, actor, Action.REOPEN, apply, key=key)

    def cancel(self, ref: str, *, actor: str, reason: str = "", key: str | None = None) -> Outcome:
        """The requester no longer needs it; all nudges stop."""
        why = clean(reason, max_length=NOTE_MAX)

        def apply(s: Session, c: Consult, t: Transition, now: datetime) -> None:
            c.cancelled_at = now
            self._end_waiting(c, now)
            self._stop_clocks(c)
            self.outbox.add(
                s,
                kind=Kind.THREAD,
                template="cancelled_thread",
                consult_id=c.id,
                now=now,
                params={"by": actor, "text": why},
            )
            if c.assignee and c.assignee != actor:
                self.outbox.add(
                    s,
                    kind=Kind.DM,
                    template="cancelled",
                    consult_id=c.id,
                    user=c.assignee,
                    now=now,
                    params={"by": actor},
                )

        return self._act(
            ref,
            actor,
            Action.CANCEL,
            apply,
            key=key,
            repeat_ok=lambda c: c.status == Status.CANCELLED.value,
        )

    def feedback(
        self, ref: str, *, actor: str, helpful: bool, comment: str = "", key: str | None = None
    ) -> Outcome:
        """The requester rates the answer (Helpful / Not helpful, optional comment)."""
        text = clean(comment, max_length=NOTE_MAX) or None

        def apply(s: Session, c: Consult, t: Transition, now: datetime) -> None:
            c.feedback_helpful = helpful
            if text:
                c.feedback_comment = text
            c.feedback_at = now

        return self._act(
            ref,
            actor,
            Action.FEEDBACK,
            apply,
            key=key,
            audit_details={"helpful": helpful},
            # A second tap of the same rating (double-click) records nothing new.
            repeat_ok=lambda c: c.feedback_helpful is helpful and not text,
        )

    def snooze(self, ref: str, *, actor: str, duration: str, key: str | None = None) -> Outcome:
        """Hold a consult's reminders for a while (at most 24 h); recorded in its thread."""
        try:
            length = parse_duration(duration)
        except ValueError as exc:
            raise Refused(escape(str(exc))) from None  # it quotes what was typed
        if length > SNOOZE_MAX:
            raise Refused("Reminders can be snoozed for at most 24h.")

        def apply(s: Session, c: Consult, t: Transition, now: datetime) -> None:
            c.snoozed_until = now + length
            if c.next_nudge_at is not None and c.next_nudge_at < c.snoozed_until:
                c.next_nudge_at = c.snoozed_until
            self.outbox.add(
                s,
                kind=Kind.THREAD,
                template="snoozed_thread",
                consult_id=c.id,
                now=now,
                params={"by": actor, "until": c.snoozed_until.isoformat()},
            )

        return self._act(
            ref,
            actor,
            Action.SNOOZE,
            apply,
            key=key,
            audit_details={"seconds": int(length.total_seconds())},
        )

    # ------------------------------------------------------------------ thread replies
    def record_reply(
        self, *, channel: str, thread_ts: str, user: str, ts: str, text: str
    ) -> Consult | None:
        """Store a reply in a consult's thread; relay it to the requester, or resume a
        consult that was waiting on the requester. Repeated deliveries are ignored."""
        with self.unit() as s:
            consult = repo.get_by_message(session=s, channel=channel, ts=thread_ts)
            if consult is None:
                return None
            consult = repo.get_consult(session=s, consult_id=consult.id, lock=True)
            assert consult is not None
            self._store_reply(s, consult, user=user, ts=ts, text=text, now=self.clock.now())
        return consult

    def _store_reply(
        self, s: Session, consult: Consult, *, user: str, ts: str, text: str, now: datetime
    ) -> bool:
        """A reply's effects (the consult row locked): stored once per `ts`, audited; the
        requester's resumes a consult waiting on them, anyone else's is relayed to the
        requester. False, with no effect, when that `ts` was already stored."""
        by_requester = user == consult.requester
        body = clean(text)
        stored = repo.add_reply(
            session=s,
            reply=Reply(
                consult_id=consult.id,
                user=user,
                ts=ts,
                at=now,
                by_requester=by_requester,
                text=body,
            ),
        )
        if not stored:
            return False
        if by_requester:
            repo.add_audit(
                session=s, consult_id=consult.id, actor=user, action="requester_reply", at=now
            )
            if consult.status == Status.WAITING.value:
                self._resume(s, consult, user, now)
            return True
        if consult.first_reply_at is None:
            consult.first_reply_at = now
        repo.add_audit(session=s, consult_id=consult.id, actor=user, action="reply", at=now)
        if consult.status in {st.value for st in OPEN_STATES} | {Status.ANSWERED.value}:
            self.outbox.add(
                s,
                kind=Kind.DM,
                template="reply_relay",
                consult_id=consult.id,
                user=consult.requester,
                now=now,
                params={"by": user, "text": body, "ts": ts},
            )
        return True

    def check_requester_reply(self, consult: Consult, user: str) -> None:
        """Refused unless `user` may answer through the Reply form: the requester only, as
        only the requester's thread replies count as theirs (`record_reply`)."""
        if user != consult.requester:
            raise Refused(
                f"Only the requester of {consult.ref} can reply here; "
                "write in the consult's thread instead."
            )

    def requester_reply(self, ref: str, *, user: str, text: str, key: str) -> Outcome:
        """The requester answers from the Reply form on their need-info message (they may
        not see the service channel, or not want to look for the thread).

        The reply is recorded exactly as the requester's reply in the thread would be
        (stored as theirs, audited, and resuming the consult if it waits on them; a late
        reply changes no status) and posted in the thread by the bot, where the consultant
        asked. `key` (the form's view id) is the reply's `ts`, its exactly-once key: a
        repeated submission records and posts nothing (`changed` False). `message` is the
        confirmation for the requester.
        """
        body = clean(text)
        if not body:
            raise Refused("Write your reply.")
        if len(body) > QUESTION_MAX:
            raise Refused(f"The reply is longer than {QUESTION_MAX} characters.")
        current = self.get(ref)
        self.check_requester_reply(current, user)
        ts = reply_ts(key)
        with self.unit() as s:
            consult = repo.get_by_ref(session=s, ref=current.ref, lock=True)
            assert consult is not None
            now = self.clock.now()
            waiting = consult.status == Status.WAITING.value
            if not self._store_reply(s, consult, user=user, ts=ts, text=body, now=now):
                return Outcome(consult, changed=False)
            self.outbox.add(
                s,
                kind=Kind.THREAD,
                template="requester_reply_thread",
                consult_id=consult.id,
                now=now,
                params={"by": user, "text": body, "resumed": waiting},
            )
        log.info("requester replied from the form", extra={"ref": consult.ref})
        message = f":white_check_mark: Your reply on *{consult.ref}* is posted in its thread"
        message += "; the answer clock is running again." if waiting else "."
        return Outcome(consult, message=message)

    def need_info_question(self, consult: Consult) -> tuple[str | None, str]:
        """(who asked, the question) of the latest need-info message sent to the requester,
        or (None, "") when there is none left (retention deletes delivered messages)."""
        # The question is not a consult column: it lives in the outbox row of the DM.
        with self.unit() as s:
            payload = repo.latest_dm_payload(session=s, consult_id=consult.id, template="need_info")
        if payload is None:
            return None, ""
        params = payload.get("params") or {}
        return params.get("by"), str(params.get("text") or "")

    def _resume(self, s: Session, c: Consult, user: str, now: datetime) -> None:
        transition = next_status(c.ref, c.status, Action.INFO_GIVEN)
        c.status = transition.after.value
        c.version += 1
        self._end_waiting(c, now)
        self._start_answer_clock(c, now)
        repo.add_audit(
            session=s,
            consult_id=c.id,
            actor=user,
            action=Action.INFO_GIVEN.value,
            at=now,
            details={"from": transition.before.value, "to": transition.after.value},
        )
        self.outbox.add(s, kind=Kind.UPDATE, template="card", consult_id=c.id, now=now)
        if c.assignee:
            self.outbox.add(
                s,
                kind=Kind.DM,
                template="info_given",
                consult_id=c.id,
                user=c.assignee,
                now=now,
            )

    # ------------------------------------------------------------------ look-ups
    def latest_consultant_reply(self, consult: Consult) -> str:
        """Text of the newest non-requester reply (pre-fills the Answer modal)."""
        with self.unit() as s:
            reply = repo.latest_consultant_reply(session=s, consult_id=consult.id)
        return reply.text or "" if reply else ""

    def for_user(self, user: str) -> list[Consult]:
        """Consults the user requested or is assigned, not yet closed."""
        with self.unit() as s:
            return list(repo.open_for_user(session=s, user=user))

    def for_patient(self, patient: str) -> list[Consult]:
        """A patient's open consults across services."""
        key = patient_key(clean(patient))
        if not key:
            raise Refused("Give a patient reference: /consult patient <patient>")
        with self.unit() as s:
            return list(repo.open_for_patient(session=s, patient_key=key))

    def by_ids(self, ids: list[int]) -> list[Consult]:
        with self.unit() as s:
            found = [repo.get_consult(session=s, consult_id=i) for i in ids]
        return [c for c in found if c is not None]

    # ------------------------------------------------------------------ on-call
    def set_on_call(
        self, *, service_key: str, actor: str, user: str, key: str | None = None
    ) -> Service:
        """Change who is on call; allowed for the service's leads and current on-call."""
        service = self.catalogue.service(service_key)
        if service is None:
            known = ", ".join(s.key for s in self.catalogue.services)
            raise Refused(
                f"Unknown service '{escape(clean(service_key, max_length=40))}'. Known: {known}."
            )
        with self.unit() as s:
            current = repo.on_call_overrides(session=s).get(service.key, service.on_call)
            if (
                actor not in service.leads
                and actor != current
                and actor not in self.catalogue.admins
            ):
                raise Refused(
                    f"Only {service.name}'s leads or its current on-call can change who is on call."
                )
            now = self.clock.now()
            key = request_key(key)
            if key and not repo.claim_key(session=s, key=key, at=now):
                return service  # a replay of a change already made
            repo.set_on_call(session=s, service=service.key, user=user, set_by=actor, at=now)
            # Consults still waiting for acknowledgement now wait for the new on-call (the
            # sweep nudges them): their cards say so. Owned consults keep their owner.
            moved = repo.move_unowned_to(session=s, service=service.key, user=user)
            for consult_id in moved:
                self.outbox.add(
                    s, kind=Kind.UPDATE, template="card", consult_id=consult_id, now=now
                )
            repo.add_audit(
                session=s,
                consult_id=None,
                actor=actor,
                action="on_call_changed",
                at=now,
                details={"service": service.key, "from": current, "to": user, "consults": moved},
            )
            self.outbox.add(
                s,
                kind=Kind.CHANNEL,
                template="on_call_changed",
                channel=service.channel,
                now=now,
                params={"service": service.key, "from": current, "to": user, "by": actor},
            )
        self._forget_on_call()
        return service

    def on_call_table(self) -> list[tuple[Service, str]]:
        """Every service with its current on-call."""
        with self.unit() as s:
            overrides = repo.on_call_overrides(session=s)
        return [(svc, overrides.get(svc.key, svc.on_call)) for svc in self.catalogue.services]
