"""The report's per-day partial results of settled consults on PostgreSQL (`report_days`):
the fill, and the period's groups read from them plus the rest computed live.

A (UTC day, service) is *settled* once every consult of it is answered, closed or
cancelled (`SETTLED`), and *fillable* once the day ended at least a full day before the
database's now(). `fill` stores, for each fillable settled (day, service) not stored yet,
one row per (urgency, assignee) with the counts of `count_columns` and the raw times, so
a period's rows are concatenated in SQL (``string_agg``) into one row per finest group, parsed by one
``numpy.frombuffer`` each. The times are stored as their binary values back to back (8
bytes a time, 4 a waiting time: ``timestamptz_send``, ``int4send``). Every time column of
a row, and of a report's concatenation, is aggregated in the same order, so they stay
aligned consult by consult: one aggregation step feeds each input row to every aggregate
of the query (also through a hash table spilled to disk, or partial aggregates combined),
which is what the live query's ``array_agg`` columns rely on too. No ``ORDER BY day`` in
the aggregates: it made PostgreSQL sort the year's 47,000 rows (60 MB) instead of hashing
them, 312 ms instead of 145 ms. Each row keeps ``valid_after``, the latest due time the
counts compare with `now`; a report uses the rows of a day only when its `now` is after
that (the counts were taken with a `now` after every due time, which such a report's are
too).

`period_groups_cached` reads the whole days of ``[since, until)`` that have rows, and
computes the rest (the period's partial days at both ends, days not settled, not filled or
invalidated) live, in the same statement (`bot.reports.postgres.period_sql` restricted to
those creation-time ranges): one snapshot, each consult counted once. Percentiles sort
the pooled values, so the order the parts come in does not matter: the figures are bit for
bit the live computation's. The days are listed by a first small query; if the statement
then finds fewer (a write deleted some in between) it is run again, and after
`RETRIES` the period is computed live. With no cached day in the period the report is
computed live exactly as before (`bot.reports.postgres.period_groups_sql`), and so is a
period of fewer than `MIN_DAYS` whole days (quicker live).

The rows are kept right by triggers on `consults` (migration 0009): a write that could
change a stored day deletes its rows, and the fill's table lock orders it against writes.
SQLite keeps computing every report live.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    LargeBinary,
    and_,
    cast,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from bot.domain.lifecycle import OPEN_STATES, Status
from bot.reports.model import Group, GroupKey
from bot.reports.postgres import (
    Batch,
    C,
    _batches,
    fetch_binary,
    joined,
    period_sql,
    tune,
)
from bot.reports.queries import count_columns
from bot.reports.vectors import from_array_send, from_raw, part, roll_up
from storage.db import unit_of_work
from storage.models_report_days import SQL_COUNT_COLUMNS, TIME_COLUMNS, ReportDay

D = ReportDay.__table__.c
SETTLED: tuple[str, ...] = tuple(sorted(s.value for s in Status if s not in OPEN_STATES))
# A day is filled once it ended at least this long before the database's now().
FILL_AFTER = timedelta(days=1)
# Days of the table each fill transaction covers (the first fill of a year takes several):
# the fill's lock holds invalidating writes (e.g. closing an answered consult) that long.
FILL_CHUNK_DAYS = 31
# The scheduler's fill (`bot.runtime`): every hour, the first five minutes after start.
FILL_EVERY = timedelta(hours=1)
FILL_FIRST_AFTER = timedelta(minutes=5)
# A period with fewer whole days than this is computed live: at 1M consults, 30 days took
# as long either way and 7 days 0.056 s stored against 0.034 s live (BENCHMARKS.md).
MIN_DAYS = 28
# Reads of the cache a report tries before computing the period live.
RETRIES = 2
# Later than any due time: the stored counts are those of a report `now` after them all.
_FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
_DAY = cast(func.timezone(literal_column("'UTC'"), C.created_at), Date)

Runs = dict[str, list[tuple[date, date]]]  # service -> [first day, end day) of stored days

if tuple(count_columns(_FAR_FUTURE, from_arrays=True)) != SQL_COUNT_COLUMNS:
    raise RuntimeError("report_days' count columns differ from count_columns'")


def midnight(day: date) -> datetime:
    """The UTC start of `day`."""
    return datetime.combine(day, time(), tzinfo=UTC)


def whole_days(since: datetime, until: datetime) -> tuple[date, date]:
    """[first, end) of the UTC days lying wholly inside ``[since, until)`` (UTC times)."""
    first = since.date() if since == midnight(since.date()) else since.date() + timedelta(1)
    return first, until.date()


def runs_of(pairs: Iterable[tuple[str, date]]) -> Runs:
    """Sorted (service, day) pairs as runs of consecutive days per service."""
    out: Runs = {}
    for service, day in pairs:
        runs = out.setdefault(service, [])
        if runs and runs[-1][1] == day:
            runs[-1] = (runs[-1][0], day + timedelta(1))
        else:
            runs.append((day, day + timedelta(1)))
    return out


def in_runs(runs: Runs, table: Any = D) -> Any:
    """Rows of `table` (columns ``service`` and ``day``: `report_days` by default) of the
    days in `runs`."""
    return or_(
        false(),
        *(
            and_(table.service == s, table.day >= first, table.day < end)
            for s, spans in runs.items()
            for first, end in spans
        ),
    )


def days_in(runs: Runs) -> int:
    """How many (service, day) pairs `runs` hold."""
    return sum((end - first).days for spans in runs.values() for first, end in spans)


def day_ranges(pairs: Iterable[tuple[str, date]]) -> list[tuple[str, datetime, datetime]]:
    """(service, from, to): the (service, day) pairs as ranges of times, consecutive days
    joined."""
    return [
        (s, midnight(first), midnight(end))
        for s, spans in runs_of(sorted(pairs)).items()
        for first, end in spans
    ]


def stored_runs(
    session: Session, keys: Sequence[str], first: date, end: date, now: datetime
) -> Runs:
    """The days of [first, end) with rows usable by a report at `now`, per service."""
    stmt = (
        select(D.service, D.day)
        .where(D.service.in_(list(keys)), D.day >= first, D.day < end, D.valid_after < now)
        .group_by(D.service, D.day)
        .order_by(D.service, D.day)
    )
    return runs_of((row[0], row[1]) for row in session.execute(stmt))


def live_ranges(
    keys: Sequence[str], runs: Runs, since: datetime, until: datetime
) -> list[tuple[str, datetime, datetime]]:
    """(service, from, to): the period's creation times not covered by `runs`."""
    out = []
    for key in keys:
        start = since
        for first, end in runs.get(key, []):
            if start < midnight(first):
                out.append((key, start, midnight(first)))
            start = midnight(end)
        if start < until:
            out.append((key, start, until))
    return out


def _cached_stmt(
    keys: Sequence[str], runs: Runs, since: datetime, until: datetime, now: datetime
) -> Any:
    """The stored days' groups (concatenated times) and, in the same statement, the live
    groups of the rest of the period; each row says which, and the stored ones also how
    many (service, day) pairs the statement found."""
    used = and_(in_runs(runs), D.valid_after < now)
    pairs = select(D.service, D.day).where(used).distinct().subquery()
    found = select(func.count()).select_from(pairs).scalar_subquery()
    glued = [func.string_agg(D[t], literal(b"", LargeBinary)) for t in TIME_COLUMNS]
    stored = (
        select(
            D.service,
            D.urgency,
            D.assignee,
            *(func.sum(D[c]) for c in SQL_COUNT_COLUMNS),
            *glued,
            literal(True).label("stored"),
            found.label("found"),
        )  # fmt: skip
        .where(used)
        .group_by(D.service, D.urgency, D.assignee)
    )
    ranges = live_ranges(keys, runs, since, until)
    if not ranges:
        return stored
    rest = or_(
        *(and_(C.service == s, C.created_at >= lo, C.created_at < hi) for s, lo, hi in ranges)
    )
    live = period_sql(keys, since, until, now, rest).add_columns(
        literal(False).label("stored"), literal(0).label("found")
    )
    return union_all(stored, live)


def _parse(rows: list[tuple[Any, ...]]) -> tuple[Batch, int | None]:
    """The parts of `_cached_stmt`'s rows, and the pairs found (None: no stored row)."""
    width = len(SQL_COUNT_COLUMNS)
    out: Batch = []
    found = None
    for service, urgency, assignee, *values, stored, pairs in rows:
        times = values[width:]
        if stored:
            found = pairs
            arrays = [from_raw(v, 8) for v in times[:4]] + [from_raw(times[4], 4)]
            if any(len(a) != len(arrays[0]) for a in arrays):
                raise ValueError("stored time columns of unequal lengths")
        else:
            arrays = [from_array_send(v, 8) for v in times[:4]] + [from_array_send(times[4], 4)]
        key = (service, urgency, assignee or None)
        out.append(part(key, [int(v or 0) for v in values[:width]], *arrays))
    return out, found


def cached_parts(
    session: Session, keys: Sequence[str], since: datetime, until: datetime, now: datetime
) -> Batch | None:
    """The period's parts from the stored days and the rest live, or None when no whole
    day of the period is stored (or the stored days kept changing under the reads)."""
    first, end = whole_days(since, until)
    if (end - first).days < MIN_DAYS:
        return None
    for _ in range(RETRIES):
        runs = stored_runs(session, keys, first, end, now)
        expected = days_in(runs)
        if not expected:
            return None
        parts, found = _parse(fetch_binary(session, _cached_stmt(keys, runs, since, until, now)))
        if found == expected:
            return parts
    return None


def period_groups_cached(
    session: Session, keys: Sequence[str], since: datetime, until: datetime, now: datetime
) -> dict[GroupKey, Group]:
    """`bot.reports.postgres.period_groups_sql`, with the stored days read instead of
    recomputed: the same groups, bit for bit."""
    tune(session)
    parts = cached_parts(session, keys, since, until, now)
    if parts is None:
        parts = _batches(session, keys, since, until, now)
    return roll_up(parts)


def fill_sql(ranges: Sequence[tuple[str, datetime, datetime]]) -> Any:
    """INSERT the settled days' rows of the consults created in `ranges` ((service, from,
    to)), skipping rows already there: per (day, service, urgency, assignee) the counts
    (with a `now` after every due time), the times, and per (day, service) ``valid_after``;
    a (day, service) with a consult still open gets no row."""
    missing = literal("-infinity").cast(C.created_at.type)
    counts = count_columns(_FAR_FUTURE, from_arrays=True)
    inner = (
        select(
            C.service.label("service"),
            _DAY.label("day"),
            C.urgency.label("urgency"),
            func.coalesce(C.assignee, "").label("assignee"),
            *(column.label(name) for name, column in counts.items()),
            joined("timestamptz_send", C.created_at).label("t_created"),
            joined("timestamptz_send", func.coalesce(C.acknowledged_at, missing)).label(
                "t_acknowledged"
            ),
            joined("timestamptz_send", func.coalesce(C.first_reply_at, missing)).label(
                "t_first_reply"
            ),
            joined("timestamptz_send", func.coalesce(C.answered_at, missing)).label("t_answered"),
            joined("int4send", C.waiting_seconds).label("t_waiting"),
            func.max(func.greatest(C.acknowledge_due_at, C.answer_due_at)).label("due"),
            func.bool_and(C.status.in_(SETTLED)).label("settled"),
        )  # fmt: skip
        .where(
            or_(
                *(
                    and_(C.service == s, C.created_at >= lo, C.created_at < hi)
                    for s, lo, hi in ranges
                )
            )
        )
        .group_by(C.service, _DAY, C.urgency, C.assignee)
        .subquery()
    )
    day = (inner.c.service, inner.c.day)
    mid = select(
        inner,
        func.bool_and(inner.c.settled).over(partition_by=day).label("all_settled"),
        func.max(inner.c.due).over(partition_by=day).label("valid_after"),
    ).subquery()
    names = ("service", "day", "urgency", "assignee", *SQL_COUNT_COLUMNS, *TIME_COLUMNS)
    rows = select(
        *(mid.c[n] for n in names),
        func.coalesce(mid.c.valid_after, missing),
        func.now(),
    ).where(mid.c.all_settled)
    insert = (
        pg_insert(ReportDay.__table__)
        .from_select([*names, "valid_after", "filled_at"], rows)
        .on_conflict_do_nothing()
        .returning(D.day)
        .cte("written")
    )
    return select(func.count()).select_from(insert)


def on_postgres(sessions: sessionmaker[Session]) -> bool:
    """Whether `sessions` are bound to PostgreSQL: only there are days stored."""
    bind = sessions.kw.get("bind")
    return bind is not None and bind.dialect.name == "postgresql"


def missing_days(
    session: Session,
    keys: Sequence[str],
    stored: set[tuple[str, date]],
    service: Any,
    at: Any,
) -> list[tuple[str, date]]:
    """The fillable (service, day) pairs not in `stored`, in order: per service of `keys`,
    each UTC day from that of its oldest `at` (a time column; `service` the same table's
    service column) to the first day that ended less than `FILL_AFTER` before now()."""
    now = session.execute(select(func.now())).scalar_one()
    end_day = (now.astimezone(UTC) - FILL_AFTER).date()
    out = []
    for key in keys:
        oldest = session.execute(select(func.min(at)).where(service == key)).scalar_one_or_none()
        if oldest is None:
            continue
        day = oldest.astimezone(UTC).date()
        while day < end_day:
            if (key, day) not in stored:
                out.append((key, day))
            day += timedelta(1)
    return out


def in_chunks(pairs: Sequence[tuple[str, date]]) -> Iterator[list[tuple[str, date]]]:
    """The (service, day) pairs in groups of at most `FILL_CHUNK_DAYS` consecutive days,
    oldest first: each filled in a transaction of its own."""
    pending = sorted(pairs, key=lambda pair: pair[1])
    while pending:
        stop = pending[0][1] + timedelta(FILL_CHUNK_DAYS)
        yield [pair for pair in pending if pair[1] < stop]
        pending = [pair for pair in pending if pair[1] >= stop]


def fill(sessions: sessionmaker[Session], services: Sequence[str]) -> int:
    """Store the missing settled days of `services` (PostgreSQL only; elsewhere 0);
    returns the rows written. Idempotent, and safe with another process filling at once
    (the lock makes one wait; ON CONFLICT DO NOTHING skips what the other stored). Each
    `FILL_CHUNK_DAYS` of the table is filled in a transaction of its own."""
    if not on_postgres(sessions) or not services:
        return 0
    with sessions() as session:
        stmt = select(D.service, D.day).where(D.service.in_(list(services))).distinct()
        stored = {(service, day) for service, day in session.execute(stmt)}
        missing = missing_days(session, services, stored, C.service, C.created_at)
        session.rollback()
    return sum(_fill_chunk(sessions, chunk) for chunk in in_chunks(missing))


def _fill_chunk(sessions: sessionmaker[Session], pairs: list[tuple[str, date]]) -> int:
    """One fill transaction over the (service, day) pairs."""
    ranges = day_ranges(pairs)
    with unit_of_work(sessions) as session:
        # Before reading consults: a writer whose trigger already ran (it holds ROW
        # EXCLUSIVE) is waited for, so its change is read; one that comes later waits for
        # this commit and deletes what it makes stale (migration 0009).
        session.execute(text("LOCK TABLE report_days IN SHARE ROW EXCLUSIVE MODE"))
        session.execute(
            text(
                "INSERT INTO report_days_gate (id, filled_at) VALUES (1, now())"
                " ON CONFLICT (id) DO UPDATE SET filled_at = excluded.filled_at"
            )
        )
        tune(session)
        return session.execute(fill_sql(ranges)).scalar_one()
