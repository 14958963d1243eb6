"""Who is on call for each service: the catalogue's on-call unless someone set another in
Slack (`/consult oncall`, stored as an override). `OnCallRoster` reads the overrides (cached
for a moment, or fresh), changes them, and lists them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session

from bot.domain.catalogue import Service
from bot.domain.lifecycle import Refused
from bot.domain.vocabulary import Template
from bot.flows.consults import refusals
from bot.flows.consults.context import Context
from bot.flows.consults.keys import request_key
from bot.flows.work import audit_change
from storage import repo

# How long a process reuses the on-call overrides it read (see `OnCallRoster.cached`).
ON_CALL_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class OnCall:
    """The on-call overrides read at one moment (service key → user)."""

    overrides: dict[str, str]

    def of(self, service: Service) -> str:
        """Who is on call for `service`: set in Slack, else the catalogue's."""
        return self.overrides.get(service.key, service.on_call)


class OnCallRoster:
    """Reads and changes who is on call, given the consult flows' collaborators."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # (monotonic time read, on-call); `_generation` changes on every change made here,
        # so a read that raced a change is not cached.
        self._cache: tuple[float, OnCall] | None = None
        self._generation = 0
        self._lock = threading.Lock()

    def current(self, session: Session) -> OnCall:
        """Who is on call, read now from the table (inside `session`)."""
        return OnCall(repo.on_call_overrides(session=session))

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
            return cached[1]
        generation = self._generation
        if session is None:
            with self.ctx.unit() as s:
                on_call = self.current(s)
        else:
            on_call = self.current(session)
        with self._lock:
            if generation == self._generation:
                self._cache = (started, on_call)
        return on_call

    def table(self) -> list[tuple[Service, str]]:
        """Every service with its current on-call."""
        with self.ctx.unit() as s:
            on_call = self.current(s)
        return [(svc, on_call.of(svc)) for svc in self.ctx.catalogue.services]

    def set(self, *, service_key: str, actor: str, user: str, key: str | None = None) -> Service:
        """Change who is on call; allowed for the service's leads and current on-call."""
        service = self.ctx.catalogue.service(service_key)
        if service is None:
            raise Refused(refusals.unknown_service_for_on_call(service_key, self.ctx.catalogue))
        with self.ctx.unit() as s:
            current = self.current(s).of(service)
            if (
                actor not in service.leads
                and actor != current
                and actor not in self.ctx.catalogue.admins
            ):
                raise Refused(refusals.may_not_set_on_call(service))
            now = self.ctx.clock.now()
            key = request_key(key)
            if key and not repo.claim_key(session=s, key=key, at=now):
                return service  # a replay of a change already made
            repo.set_on_call(session=s, service=service.key, user=user, set_by=actor, at=now)
            # Consults still waiting for acknowledgement now wait for the new on-call (the
            # sweep nudges them): their cards say so. Owned consults keep their owner.
            moved = repo.move_unowned_to(session=s, service=service.key, user=user)
            notify = self.ctx.notify(s, now)
            for consult_id in moved:
                notify.card_update(consult_id)
            change = {"service": service.key, "from": current, "to": user}
            details = change | {"consults": moved}
            audit_change(s, "on_call_changed", actor=actor, now=now, details=details)
            notify.channel_message(
                service.channel, Template.ON_CALL_CHANGED, change | {"by": actor}
            )
        self._forget()
        return service

    def _forget(self) -> None:
        with self._lock:
            self._generation += 1
            self._cache = None
