"""Follow-ups, what is owed to the patient: open one (`create`, from a patient or from a
consult, whose patient it takes), finish it (`done`, with an outcome) or give it to a
colleague (`hand_over`); the person's own list and App Home's rows. Each change stores the
row, its audit event and its messages in one transaction, exactly once (the request's key
as the origin key of a new follow-up, a processed key for Done and Hand over). The owner's
messages go through `bot.flows.followup_owner`; the overdue sweep is
`bot.flows.followup_sweep`. Patient, what is owed and the Done note live only in the
`followups` row and in message bodies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.domain.durations import parse_due
from bot.domain.lifecycle import OPEN_STATES, Refused
from bot.domain.text import clean, escape, normalize_ref
from bot.domain.vocabulary import OUTCOME_LABELS, FollowUpOutcome, FollowUpStep, Template
from bot.flows.consults.context import Context
from bot.flows.consults.roles import Permissions, acts_as_requester
from bot.flows.followup_owner import audit, recipients_for, tell_owner
from storage import followups, repo
from storage.models import Consult
from storage.models_followups import FollowUp

OWED_MAX = 2000
NOTE_MAX = 1000
WHO_MAY_LINK = (
    "Only the consult's requester, the consultant who owns it and its service's consultants "
    "may add a follow-up to it."
)


class FollowUpInvalid(Refused):
    """A refusal about one field of the follow-up form (`field`: patient, owed, owner, due or
    consult), shown next to it in the form and as a notice after a command."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FollowUpDraft:
    """What the person typed or filled in; empty `owner`: themselves; empty `due`: the
    `due_within` after the linked consult's answer (or from now, without one)."""

    owed: str
    patient: str = ""
    consult: str = ""
    owner: str = ""
    due: str = ""


@dataclass(frozen=True)
class Opened:
    """A stored follow-up (detached), and whether the request had already created it."""

    followup: FollowUp
    duplicate: bool


def detached(s: Session, f: FollowUp) -> FollowUp:
    """`f`, flushed and usable after the session closes."""
    s.flush()
    s.expunge(f)
    return f


class FollowUpService:
    """The follow-up flows, given their collaborators."""

    def __init__(self, ctx: Context, permissions: Permissions) -> None:
        self.ctx, self.permissions = ctx, permissions
        self.settings = ctx.catalogue.followups

    # ------------------------------------------------------------------ opening
    def is_consult_ref(self, text: str) -> bool:
        """Whether `text` names a consult (`RAD-42`: a reference with a service's prefix),
        rather than a patient."""
        ref = normalize_ref(text)
        return ref is not None and self.ctx.catalogue.service(ref.partition("-")[0]) is not None

    def create(self, draft: FollowUpDraft, *, creator: str, origin_key: str | None) -> Opened:
        """Store the follow-up and the owner's message; a replayed request (same origin
        key) returns what it created. FollowUpInvalid names the field that is wrong."""
        owed = clean(draft.owed, max_length=OWED_MAX)
        if not owed:
            raise FollowUpInvalid("owed", "Say what is owed to the patient.")
        ref = self._consult_ref(draft.consult)
        now = self.ctx.clock.now()
        due = self._due(draft.due, now)
        if ref:
            self._check_link(ref, creator)
        with self.ctx.unit() as s:
            if origin_key and (found := followups.by_origin(session=s, origin_key=origin_key)):
                return Opened(detached(s, found), duplicate=True)
            consult = self._linked(s, ref) if ref else None
            patient = clean(draft.patient, max_length=200) or (consult.patient if consult else "")
            if not patient:
                raise FollowUpInvalid(
                    "patient", "Name the patient, or give the consult it comes from."
                )
            waits = consult is not None and consult.status in OPEN_STATES and due is None
            within = self.settings.due_within
            due_at = None if waits else (due or now + within)
            f = FollowUp(
                creator=creator, owner=draft.owner or creator, patient=patient, owed=owed,
                consult_id=consult.id if consult else None, origin_key=origin_key,
                created_at=now, due_at=due_at, next_nudge_at=due_at, handovers=0, nudge_count=0,
                due_within=int(within.total_seconds()) if waits else None,
            )  # fmt: skip
            if not followups.create(session=s, row=f):  # a replay stored it meanwhile
                return self.create(draft, creator=creator, origin_key=origin_key)
            audit(s, f, FollowUpStep.OPENED, creator, now, owner=f.owner, consult=ref)
            tell_owner(self.ctx.notify(s, now), f, "opened", "opened", by=creator)
            return Opened(detached(s, f), duplicate=False)

    def _consult_ref(self, typed: str) -> str | None:
        text = typed.strip()
        if not text:
            return None
        ref = normalize_ref(text)
        if ref is None:
            raise FollowUpInvalid(
                "consult", f"'{escape(text[:40])}' is not a consult reference (like RAD-42)."
            )
        return ref

    def _due(self, typed: str, now: datetime) -> datetime | None:
        if not typed.strip():
            return None
        try:
            return parse_due(typed, now)
        except ValueError as exc:
            raise FollowUpInvalid("due", str(exc)) from None

    def _check_link(self, ref: str, creator: str) -> None:
        """Refused unless the consult `ref` exists and `creator` may link a follow-up to it
        (asked before any row is locked: channel membership may be asked of Slack)."""
        with self.ctx.sessions() as s:
            consult = repo.get_by_ref(session=s, ref=ref)
            if consult is None:
                raise FollowUpInvalid("consult", f"{ref} is not a consult I know.")
            if creator == consult.assignee or acts_as_requester(s, consult, creator):
                return
            service = self.ctx.catalogue.service(consult.service)
        if service is None or not self.permissions.speaks_for(service, creator):
            raise FollowUpInvalid("consult", f"{WHO_MAY_LINK} ({ref})")

    @staticmethod
    def _linked(s: Session, ref: str) -> Consult:
        """The consult `ref`, its row locked: its answer then waits for this follow-up, so
        the owner is told of it."""
        consult = repo.get_by_ref(session=s, ref=ref, lock=True)
        if consult is None:
            raise FollowUpInvalid("consult", f"{ref} is not a consult I know.")
        return consult

    # ------------------------------------------------------------------ the owner
    def get(self, ref: str, user: str) -> FollowUp:
        """The follow-up `ref`, for someone who may act on it (detached); Refused otherwise."""
        with self.ctx.unit() as s:
            return detached(s, self._may_act(s, ref, user, lock=False))

    def _may_act(self, s: Session, ref: str, user: str, *, lock: bool = True) -> FollowUp:
        """The follow-up's row (locked), if `user` owns it (or receives its owner's
        messages), opened it, or is someone it escalates to; Refused otherwise."""
        f = followups.by_ref(session=s, ref=ref.upper(), lock=lock)
        if f is None:
            raise Refused(f"{escape(ref[:40])} is not a follow-up I know.")
        allowed = {*recipients_for(s, f.owner), f.creator, *self.settings.escalate_to}
        if user not in allowed:
            raise Refused(
                f"{f.ref} is not yours; only its owner or whoever opened it may act on it."
            )
        return f

    def done(
        self, ref: str, *, actor: str, outcome: str, note: str = "", key: str | None = None
    ) -> bool:
        """Record how it ended, once; whoever opened it is told. False: already done."""
        if outcome not in OUTCOME_LABELS:
            raise Refused("Choose the outcome: " + ", ".join(OUTCOME_LABELS.values()) + ".")
        text = clean(note, max_length=NOTE_MAX)
        if outcome == FollowUpOutcome.OTHER and not text:
            raise Refused("Say what happened in the note (the outcome is Other).")
        now = self.ctx.clock.now()
        with self.ctx.unit() as s:
            f = self._may_act(s, ref, actor)
            if f.done_at is not None:
                return False
            if key and not repo.claim_key(session=s, key=key, at=now):
                return False
            f.done_at, f.done_by, f.outcome = now, actor, outcome
            f.note, f.next_nudge_at = text or None, None
            hours = round((now - f.created_at).total_seconds() / 3600, 2)
            audit(s, f, FollowUpStep.DONE, actor, now, outcome=outcome, hours=hours)
            notify = self.ctx.notify(s, now)
            for user in dict.fromkeys((f.creator, f.owner)):
                if user != actor:
                    notify.once(f"followup:{f.id}:done:{user}").dm_user(
                        user, Template.FOLLOWUP_DONE, {"followup": f.id}
                    )
        return True

    def hand_over(
        self, ref: str, *, actor: str, to: str, note: str = "", key: str | None = None
    ) -> FollowUp | None:
        """Give the follow-up to `to` for good, with a note; they get the owner's message.
        None: this request was handled before."""
        if not to:
            raise Refused("Choose the colleague who takes it over.")
        text = clean(note, max_length=NOTE_MAX)
        now = self.ctx.clock.now()
        with self.ctx.unit() as s:
            f = self._may_act(s, ref, actor)
            if key and not repo.claim_key(session=s, key=key, at=now):
                return None  # a replay (a refusal below rolls the key back)
            if f.done_at is not None:
                raise Refused(f"{f.ref} is already done.")
            if to == f.owner:
                raise Refused(f"{f.ref} is already with <@{to}>; choose someone else.")
            previous, f.owner = f.owner, to
            f.handovers = (f.handovers or 0) + 1
            audit(s, f, FollowUpStep.HANDED_OVER, actor, now, to=to, previous=previous)
            params = {"by": actor, "previous": previous, "note": text}
            tell_owner(
                self.ctx.notify(s, now), f, "handed_over", f"handover{f.handovers}", **params
            )
            return detached(s, f)

    # ------------------------------------------------------------------ lists
    def mine(self, user: str) -> list[FollowUp]:
        """`user`'s open follow-ups (detached), due first."""
        with self.ctx.unit() as s:
            rows: Sequence[FollowUp] = followups.open_owned_by(session=s, user=user)
            return [detached(s, f) for f in rows]

    def overdue(self, f: FollowUp, now: datetime | None = None) -> bool:
        """Whether an open follow-up is past its due time."""
        at = now or self.ctx.clock.now()
        return f.done_at is None and f.due_at is not None and f.due_at < at


def due_after_answer(f: FollowUp) -> timedelta | None:
    """How long after the linked consult's answer it is due (None: it has a due time)."""
    return None if f.due_at is not None or f.due_within is None else timedelta(seconds=f.due_within)
