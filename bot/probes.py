"""Readiness and the database's metrics, both read at request time with cheap queries.

`readiness` says why this process should not be sent work (None when it may): the database
does not answer, its schema is not the newest migration, or the outbox is stuck (its oldest
undelivered message is older than `READY_OUTBOX_MAX_AGE`). Liveness (`/healthz`) asks
nothing of the database: a process that serves is alive, and restarting it would not bring
a database back.

`DatabaseGauges` is a Prometheus collector run at each scrape: the outbox backlog and its
oldest message's age by kind, and consults open and overdue by service and urgency. When
the database does not answer, it reports `careloop_database_up 0` and nothing else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.domain.clock import Clock
from bot.domain.vocabulary import Kind
from storage import observability
from storage.db import ping

log = logging.getLogger("careloop.probes")


def readiness(
    *, engine: Engine, sessions: sessionmaker[Session], clock: Clock, max_age: float
) -> str | None:
    """Why this process is not ready (one short line, no patient data), or None.
    `max_age` 0 leaves the outbox out of it."""
    if not ping(engine):
        return "database unreachable"
    try:
        behind = observability.schema_behind(engine)
        if behind is not None:
            return f"database schema not current (at {behind}); run python -m bot migrate"
        if max_age <= 0:
            return None
        with sessions() as s:
            oldest = observability.oldest_undelivered(session=s)
    except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
        log.warning("readiness check failed", extra={"error": type(exc).__name__})
        return "database unreachable"
    if oldest is not None and (age := (clock.now() - oldest).total_seconds()) > max_age:
        return f"outbox stuck: oldest undelivered message queued {int(age)} s ago"
    return None


def ready_body(reason: str | None) -> str:
    """The one-line JSON answer of `/readyz`."""
    return json.dumps(
        {"status": "ready"} if reason is None else {"status": "not ready", "reason": reason}
    )


class DatabaseGauges(Collector):
    """Scrape-time gauges from the database (see the module docstring)."""

    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("careloop_database_up", "1 when the database answered this scrape.")
        try:
            families = self._read()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the outage, never fails
            log.warning("metrics: database did not answer", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> list[GaugeMetricFamily]:
        now = self.clock.now()
        with self.sessions() as s:
            backlog = observability.outbox_backlog(session=s)
            consults = observability.open_consults(session=s, now=now)
        pending = GaugeMetricFamily(
            "careloop_outbox_pending",
            "Outbox messages not yet delivered, by kind.",
            labels=["kind"],
        )
        oldest = GaugeMetricFamily(
            "careloop_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered outbox message, by kind.",
            labels=["kind"],
        )
        waiting = {kind: (count, first) for kind, count, first in backlog}
        for kind in sorted(set(Kind) | set(waiting)):  # every kind, 0 when none waits
            count, first = waiting.get(kind, (0, now))
            pending.add_metric([kind], count)
            oldest.add_metric([kind], max((now - first).total_seconds(), 0.0))
        open_ = GaugeMetricFamily(
            "careloop_consults_open",
            "Consults open, acknowledged or waiting, by service and urgency.",
            labels=["service", "urgency"],
        )
        overdue = GaugeMetricFamily(
            "careloop_consults_overdue",
            "Open consults past their acknowledge-by or answer-by time, by service and urgency.",
            labels=["service", "urgency"],
        )
        for service, urgency, count, late in consults:
            open_.add_metric([service, urgency], count)
            overdue.add_metric([service, urgency], late)
        return [pending, oldest, open_, overdue]
