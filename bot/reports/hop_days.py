"""The report's per-day seconds of finished hops on PostgreSQL (`report_hop_days`): the
fill, and a period's time held read from them plus the rest computed live.

A finished hop never changes, and is stored when it ends (`bot.flows.hops.settle`), so the
hops of a UTC day of *ending* that ended at least `bot.reports.days.FILL_AFTER` before the
database's now() are all there. `fill` stores, for each such (service, day) not stored yet (or stored under
other working hours), one row per (role, holder) with the count and the seconds of its
hops as float8 values back to back, computed as the live report computes them
(`bot.reports.holders_pg`: working time under the hours of the consult's urgency, else
clock time), plus a marker row (role and holder '') saying the day is stored, hops or
not. Each row keeps `fingerprint` of the service's hours (every urgency's): a report uses
only the days whose marker carries the catalogue's current fingerprint, so a change of
working hours makes the old rows unused until the next fill replaces them.

`cached_pooled` reads the whole days of ``[since, until)`` stored with the current hours
(one statement, which also counts the markers it found: fewer than listed means a write
deleted some in between, and it reads again, then gives up) and computes the rest live
(`holders_pg.hops_sql` restricted to those end-time ranges). Totals are exactly rounded
sums and percentiles sort the pooled values, so the figures are bit for bit the live
computation's, whatever the parts. A period of fewer than `bot.reports.days.MIN_DAYS`
whole days is computed live.

Triggers (migration 0010) delete a day's rows when one of its hops is deleted or updated,
or a consult whose hops ended that day changes urgency. SQLite computes live.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    Date,
    LargeBinary,
    and_,
    cast,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue import Catalogue
from bot.domain.vocabulary import URGENCIES
from bot.reports.days import (
    MIN_DAYS,
    RETRIES,
    Runs,
    day_ranges,
    days_in,
    in_chunks,
    in_runs,
    live_ranges,
    missing_days,
    on_postgres,
    runs_of,
    whole_days,
)
from bot.reports.days import fill as days_fill
from bot.reports.holders_pg import Pooled, hops_sql, hours_for, hours_of, parse, seconds_of
from bot.reports.postgres import fetch_binary, tune
from storage.db import unit_of_work
from storage.models_hops import ConsultHop
from storage.models_report_days import ReportHopDay

T = ReportHopDay.__table__.c
# Bumped when the way a hop's seconds are computed changes: every stored row is then unused.
VERSION = "1"
_ENDED_DAY = cast(func.timezone(literal_column("'UTC'"), ConsultHop.ended_at), Date)


def fingerprint(catalogue: Catalogue, service: str) -> str:
    """What a service's stored seconds depend on: its working hours for every urgency."""
    return ";".join([VERSION, *(f"{u}={hours_for(catalogue, service, u)!r}" for u in URGENCIES)])


def _current(catalogue: Catalogue, keys: Sequence[str]) -> Any:
    """report_hop_days rows stored under each service's current hours."""
    return or_(*(and_(T.service == k, T.fingerprint == fingerprint(catalogue, k)) for k in keys))


def stored_runs(
    session: Session, catalogue: Catalogue, keys: Sequence[str], first: date, end: date
) -> Runs:
    """The days of [first, end) stored under the current hours, per service."""
    stmt = (
        select(T.service, T.day)
        .where(_current(catalogue, keys), T.role == "", T.day >= first, T.day < end)
        .order_by(T.service, T.day)
    )
    return runs_of((row[0], row[1]) for row in session.execute(stmt))


def _stored_stmt(catalogue: Catalogue, keys: Sequence[str], runs: Runs) -> Any:
    """Per (service, role, user): the stored seconds of the days in `runs`, and how many
    markers the statement found (the marker rows come as role '')."""
    used = and_(_current(catalogue, keys), in_runs(runs, T))
    found = select(func.count()).where(used, T.role == "").scalar_subquery()
    glued = func.string_agg(T.seconds, literal(b"", LargeBinary))
    return (
        select(T.service, T.role, T.user, glued, found)
        .where(used)
        .group_by(T.service, T.role, T.user)
    )


def cached_pooled(
    session: Session, catalogue: Catalogue, keys: Sequence[str], since: datetime, until: datetime
) -> Pooled | None:
    """The period's seconds per (service, role, user) from the stored days and the rest
    live, or None when no whole day is stored (or the stored days kept changing)."""
    first, end = whole_days(since, until)
    if (end - first).days < MIN_DAYS:
        return None
    tune(session)
    for _ in range(RETRIES):
        runs = stored_runs(session, catalogue, keys, first, end)
        expected = days_in(runs)
        if not expected:
            return None
        rows = fetch_binary(session, _stored_stmt(catalogue, keys, runs))
        if (rows[0][4] if rows else 0) != expected:
            continue
        out: Pooled = {}
        for service, role, user, seconds, _found in rows:
            if role:
                out.setdefault((service, role, user), []).append(
                    np.frombuffer(seconds, ">f8").astype(np.float64)
                )
        ranges = live_ranges(keys, runs, since, until)
        if ranges:
            live = fetch_binary(session, hops_sql(keys, since, until, ranges))
            for key, parts in seconds_of(parse(live), hours_of(catalogue)).items():
                out.setdefault(key, []).extend(parts)
        return out
    return None


def fill(sessions: sessionmaker[Session], catalogue: Catalogue, services: Sequence[str]) -> int:
    """Store the missing days of `services` (PostgreSQL only; elsewhere 0), those not
    stored under the current hours; returns the (service, day) pairs written. Idempotent;
    each `bot.reports.days.FILL_CHUNK_DAYS` in a transaction."""
    if not on_postgres(sessions) or not services:
        return 0
    with sessions() as session:
        stmt = select(T.service, T.day).where(_current(catalogue, services), T.role == "")
        stored = {(service, day) for service, day in session.execute(stmt)}
        hop = ConsultHop
        missing = missing_days(session, services, stored, hop.service, hop.ended_at)
        session.rollback()
    return sum(_fill_chunk(sessions, catalogue, chunk) for chunk in in_chunks(missing))


def _rows(
    catalogue: Catalogue, pairs: list[tuple[str, date]], hops: list[tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """The rows to store for `pairs`, from their hops grouped by day (`hops_sql` by day)."""
    by_day: dict[date, list[tuple[Any, ...]]] = {}
    for row in hops:
        by_day.setdefault(row[-1], []).append(row)
    now = datetime.now(UTC)
    out = []
    for service, day in pairs:
        fp = fingerprint(catalogue, service)
        out.append(
            dict(
                service=service,
                day=day,
                role="",
                user="",
                fingerprint=fp,
                hops=0,
                seconds=b"",
                filled_at=now,
            )
        )
        rows = [r for r in by_day.get(day, []) if r[0] == service]
        for (svc, role, user), parts in seconds_of(parse(rows), hours_of(catalogue)).items():
            values = np.concatenate(parts)
            out.append(
                dict(
                    service=svc,
                    day=day,
                    role=role,
                    user=user,
                    fingerprint=fp,
                    hops=len(values),
                    seconds=values.astype(">f8").tobytes(),
                    filled_at=now,
                )
            )
    return out


def _fill_chunk(
    sessions: sessionmaker[Session], catalogue: Catalogue, pairs: list[tuple[str, date]]
) -> int:
    """One fill transaction over the (service, day) pairs."""
    ranges = day_ranges(pairs)
    keys = sorted({s for s, _ in pairs})
    with unit_of_work(sessions) as session:
        # Before reading the hops: a writer whose trigger ran is waited for; one that comes
        # later waits for this commit and deletes what it makes stale (migration 0010).
        session.execute(text("LOCK TABLE report_hop_days IN SHARE ROW EXCLUSIVE MODE"))
        session.execute(text("UPDATE report_days_gate SET filled_at = now() WHERE id = 1"))
        tune(session)
        lo, hi = min(r[1] for r in ranges), max(r[2] for r in ranges)
        hops = fetch_binary(session, hops_sql(keys, lo, hi, ranges, by=[_ENDED_DAY]))
        session.execute(
            delete(ReportHopDay.__table__).where(
                or_(*(and_(T.service == s, T.day == d) for s, d in pairs))
            )
        )
        rows = _rows(catalogue, pairs, hops)
        for i in range(0, len(rows), 5000):
            session.execute(insert(ReportHopDay.__table__), rows[i : i + 5000])
    return len(pairs)


def fill_both(sessions: sessionmaker[Session], catalogue: Catalogue) -> tuple[int, int]:
    """Both stores of the report filled for every service of `catalogue`: the settled
    consults' days (`bot.reports.days.fill`, rows written) and the hops' days (pairs)."""
    keys = [s.key for s in catalogue.services]
    return days_fill(sessions, keys), fill(sessions, catalogue, keys)
