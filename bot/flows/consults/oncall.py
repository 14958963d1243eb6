"""Who is on call for each service at a moment: an override set in Slack (`/consult oncall`,
timed on a scheduled service), else the people the schedule names, else the catalogue's
fixed on-call, else (a gap) the backup schedule, the backup or the first lead — never
nobody. `OnCallRoster` reads the overrides (cached for a moment, or fresh), changes them,
and lists them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.domain.catalogue import Service
from bot.domain.lifecycle import Refused
from bot.domain.schedule import Standing, changes, on_call_at, override_end
from bot.domain.vocabulary import Template
from bot.flows.consults import refusals
from bot.flows.consults.context import Context
from bot.flows.consults.keys import request_key
from bot.flows.schedules import ScheduleBook
from bot.flows.work import audit_change
from storage import repo

# How long a process reuses the on-call overrides it read (see `OnCallRoster.cached`).
ON_CALL_CACHE_SECONDS = 2.0


# An override set on a scheduled service without an end lasts this long when the
# schedule shows no change ahead.
OVERRIDE_WITHOUT_CHANGE = timedelta(hours=12)


@dataclass(frozen=True)
class OnCall:
    """Who is on call at `now`: the overrides read then (service key → user, until) and
    the schedules."""

    overrides: dict[str, tuple[str, datetime | None]]
    now: datetime
    book: ScheduleBook | None = None

    def at(self, moment: datetime) -> OnCall:
        """The same overrides and schedules, asked about another moment."""
        return OnCall(self.overrides, moment, self.book)

    def of(self, service: Service) -> str:
        """Who is on call for `service` (the first, when shifts overlap)."""
        return self.people(service)[0]

    def override(self, service: Service) -> tuple[str, datetime | None] | None:
        """The override in force for `service` now, if any."""
        found = self.overrides.get(service.key)
        if found is None or (found[1] is not None and self.now >= found[1]):
            return None
        if found[1] is None and self.scheduled(service) is not None:
            return None  # an untimed override never outlives a schedule
        return found

    def scheduled(self, service: Service, kind: str = "schedule") -> tuple[str, ...] | None:
        """The people `service`'s schedule names now; None without a schedule."""
        if self.book is None or not self.book.has(service, kind):
            return None
        return on_call_at(self.book.shifts(service, self.now, kind), self.now)

    def people(self, service: Service) -> tuple[str, ...]:
        """Everyone on call for `service` now, never empty."""
        override = self.override(service)
        if override is not None:
            return (override[0],)
        return self.scheduled(service) or self.fallback(service)

    def fallback(self, service: Service) -> tuple[str, ...]:
        """Who takes consults when the schedule names nobody."""
        if service.on_call:
            return (service.on_call,)
        backup = self.scheduled(service, "backup_schedule")
        if backup:
            return backup
        return (service.backup,) if service.backup else (service.leads[0],)

    def in_gap(self, service: Service) -> bool:
        """Whether `service` has a schedule that names nobody now (and no override)."""
        return self.override(service) is None and self.scheduled(service) == ()

    def next_change(self, service: Service) -> datetime | None:
        """When the people on call for `service` next change (schedule or override end)."""
        found = [self._schedule_change(service)]
        override = self.override(service)
        if override is not None:
            found.append(override[1])
        later = [m for m in found if m is not None]
        return min(later) if later else None

    def _schedule_change(self, service: Service) -> datetime | None:
        if self.book is None or not self.book.has(service):
            return None
        people = self.people(service)
        for moment in changes(self.book.shifts(service, self.now)):
            if moment > self.now and self.at(moment).people(service) != people:
                return moment
        return None


class OnCallRoster:
    """Reads and changes who is on call, given the consult flows' collaborators."""

    def __init__(self, ctx: Context, book: ScheduleBook | None = None) -> None:
        self.ctx = ctx
        self.book = book
        # (monotonic time read, overrides); `_generation` changes on every change made
        # here, so a read that raced a change is not cached.
        self._cache: tuple[float, dict[str, tuple[str, datetime | None]]] | None = None
        self._generation = 0
        self._lock = threading.Lock()

    def current(self, session: Session) -> OnCall:
        """Who is on call, read now from the table (inside `session`)."""
        return self._at_now(repo.on_call_overrides(session=session))

    def _at_now(self, overrides: dict[str, tuple[str, datetime | None]]) -> OnCall:
        return OnCall(overrides, self.ctx.clock.now(), self.book)

    def cached(self, session: Session | None = None) -> OnCall:
        """Who is on call, read at most every ON_CALL_CACHE_SECONDS: every create and every
        role check needs it.

        A change made through `set` in this process is seen at once. One made by another
        process (another gunicorn worker, the sweeper) is seen here up to
        ON_CALL_CACHE_SECONDS later: until then a new consult may record the previous
        on-call, and the previous on-call keeps the consultant role. The sweeper's
        escalations, App Home and `/consult oncall` always read the table.
        """
        cached = self._cache
        started = time.monotonic()
        if cached is not None and started - cached[0] < ON_CALL_CACHE_SECONDS:
            return self._at_now(cached[1])
        generation = self._generation
        if session is None:
            with self.ctx.unit() as s:
                overrides = repo.on_call_overrides(session=s)
        else:
            overrides = repo.on_call_overrides(session=session)
        with self._lock:
            if generation == self._generation:
                self._cache = (started, overrides)
        return self._at_now(overrides)

    def table(self) -> list[Standing]:
        """Every service: who is on call now, until when, who next, any override."""
        with self.ctx.unit() as s:
            on_call = self.current(s)
        rows = []
        for svc in self.ctx.catalogue.services:
            until = on_call.next_change(svc)
            following = on_call.at(until).people(svc) if until else ()
            override = on_call.override(svc)
            rows.append(
                Standing(
                    svc,
                    on_call.people(svc),
                    until,
                    following,
                    override[1] if override else None,
                    overridden=override is not None,
                )
            )
        return rows

    def set(
        self,
        *,
        service_key: str,
        actor: str,
        user: str,
        key: str | None = None,
        length: timedelta | None = None,
        until: str | None = None,
    ) -> tuple[Service, datetime | None]:
        """Change who is on call; allowed for the service's leads and current on-call. On a
        scheduled service (or with `length`/`until`) only until then: by default the end
        of the current shift. Returns the service and when the change ends."""
        service = self.ctx.catalogue.service(service_key)
        if service is None:
            raise Refused(refusals.unknown_service_for_on_call(service_key, self.ctx.catalogue))
        with self.ctx.unit() as s:
            on_call = self.current(s)
            current = on_call.of(service)
            if actor not in (*service.leads, *on_call.people(service), *self.ctx.catalogue.admins):
                raise Refused(refusals.may_not_set_on_call(service))
            now = self.ctx.clock.now()
            ends = self._override_end(on_call, service, now, length, until)
            key = request_key(key)
            if key and not repo.claim_key(session=s, key=key, at=now):
                return service, ends  # a replay of a change already made
            repo.set_on_call(
                session=s, service=service.key, user=user, set_by=actor, at=now, until=ends
            )
            # Consults still waiting for acknowledgement now wait for the new on-call (the
            # sweep nudges them): their cards say so. Owned consults keep their owner.
            moved = repo.move_unowned_to(session=s, service=service.key, user=user)
            notify = self.ctx.notify(s, now)
            for consult_id in moved:
                notify.card_update(consult_id)
            change = {"service": service.key, "from": current, "to": user}
            details = change | {"consults": moved, "until": ends.isoformat() if ends else None}
            audit_change(s, "on_call_changed", actor=actor, now=now, details=details)
            notify.channel_message(
                service.channel, Template.ON_CALL_CHANGED, change | {"by": actor}
            )
        self.forget()
        return service, ends

    def _override_end(
        self,
        on_call: OnCall,
        service: Service,
        now: datetime,
        length: timedelta | None,
        until: str | None,
    ) -> datetime | None:
        """When an override asked now ends: as asked, else (scheduled) the shift's end."""
        zone = str(self.book.zone(service)) if self.book else "UTC"
        try:
            asked = override_end(now, hours=length, clock_time=until, zone=zone)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        if asked is not None or on_call.scheduled(service) is None:
            return asked
        without = OnCall(
            {k: v for k, v in on_call.overrides.items() if k != service.key}, now, self.book
        )
        return without.next_change(service) or now + OVERRIDE_WITHOUT_CHANGE

    def forget(self) -> None:
        """Drop the cached overrides (a change was made here or by a schedule job)."""
        with self._lock:
            self._generation += 1
            self._cache = None
