"""The report's per-day seconds of finished hops on PostgreSQL (`report_hop_days`): the
fill, and a period's time held read from them plus the rest computed live.

A finished hop never changes, and is stored when it ends (`bot.flows.hops.settle`), so the
hops of a UTC day of *ending* that ended at least `FILL_AFTER` before the database's now()
are all there. `fill` stores, for each such (service, day) not stored yet (or stored under
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
from datetime import UTC, date, datetime, timedelta
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
from bot.reports.days import MIN_DAYS, RETRIES, Runs, _live_ranges, _runs, midnight, whole_days
from bot.reports.days import fill as days_fill
from bot.reports.holders_pg import HoursOf, Pooled, hops_sql, hours_for, parse, seconds_of
from bot.reports.postgres import fetch_binary, tune
from storage.db import unit_of_work
from storage.models_hops import ConsultHop
from storage.models_report_days import ReportHopDay

T = ReportHopDay.__table__.c
FILL_AFTER = timedelta(days=1)
FILL_CHUNK_DAYS = 31
# Bumped when the way a hop's seconds are computed changes: every stored row is then unused.
VERSION = "1"
_ENDED_DAY = cast(func.timezone(literal_column("'UTC'"), ConsultHop.ended_at), Date)


def fingerprint(catalogue: Catalogue, service: str) -> str:
    """What a service's stored seconds depend on: its working hours for every urgency."""
    return ";".join([VERSION, *(f"{u}={hours_for(catalogue, service, u)!r}" for u in URGENCIES)])


def _hours_of(catalogue: Catalogue) -> HoursOf:
    return lambda service, urgency: hours_for(catalogue, service, urgency)


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
    return _runs((row[0], row[1]) for row in session.execute(stmt))


def _stored_stmt(catalogue: Catalogue, keys: Sequence[str], runs: Runs) -> Any:
    """Per (service, role, user): the stored seconds of the days in `runs`, and how many
    markers the statement found (the marker rows come as role '')."""
    days = or_(
        *(and_(T.service == s, T.day >= a, T.day < b) for s, sp in runs.items() for a, b in sp)
    )
    used = and_(_current(catalogue, keys), days)
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
        expected = sum((e - f).days for spans in runs.values() for f, e in spans)
        if not expected:
            return None
        out: Pooled = {}
        rows = fetch_binary(session, _stored_stmt(catalogue, keys, runs))
        found = rows[0][4] if rows else 0
        for service, role, user, seconds, _found in rows:
            if role:
                out.setdefault((service, role, user), []).append(
                    np.frombuffer(seconds, ">f8").astype(np.float64)
                )
        if found != expected:
            continue
        ranges = _live_ranges(keys, runs, since, until)
        if ranges:
            live = fetch_binary(session, hops_sql(keys, since, until, ranges))
            for key, parts in seconds_of(parse(live), _hours_of(catalogue)).items():
                out.setdefault(key, []).extend(parts)
        return out
    return None


def _missing(session: Session, catalogue: Catalogue, keys: Sequence[str]) -> list[tuple[str, date]]:
    """The fillable (service, day) pairs not stored under the current hours, in order."""
    end_day = (session.execute(select(func.now())).scalar_one().astimezone(UTC) - FILL_AFTER).date()
    stmt = select(T.service, T.day).where(_current(catalogue, keys), T.role == "")
    stored = {(service, day) for service, day in session.execute(stmt)}
    out = []
    for key in keys:
        oldest = session.execute(
            select(func.min(ConsultHop.ended_at)).where(ConsultHop.service == key)
        ).scalar_one_or_none()
        day = oldest.astimezone(UTC).date() if oldest is not None else end_day
        while day < end_day:
            if (key, day) not in stored:
                out.append((key, day))
            day += timedelta(1)
    return out


def fill(sessions: sessionmaker[Session], catalogue: Catalogue, services: Sequence[str]) -> int:
    """Store the missing days of `services` (PostgreSQL only; elsewhere 0); returns the
    (service, day) pairs written. Idempotent; each `FILL_CHUNK_DAYS` in a transaction."""
    bind = sessions.kw.get("bind")
    if bind is None or bind.dialect.name != "postgresql" or not services:
        return 0
    with sessions() as session:
        missing = _missing(session, catalogue, services)
        session.rollback()
    written = 0
    while missing:
        stop = missing[0][1] + timedelta(FILL_CHUNK_DAYS)
        chunk = [(s, d) for s, d in missing if d < stop]
        missing = [(s, d) for s, d in missing if d >= stop]
        written += _fill_chunk(sessions, catalogue, chunk)
    return written


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
        for (svc, role, user), parts in seconds_of(parse(rows), _hours_of(catalogue)).items():
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
    ranges = [
        (s, midnight(a), midnight(b)) for s, sp in _runs(sorted(pairs)).items() for a, b in sp
    ]
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
