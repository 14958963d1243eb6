"""The report's aggregation in PostgreSQL: one grouped count per (service, urgency,
assignee), rolled up here, and one scan feeding ``percentile_cont`` through ``GROUPING
SETS`` (for a large period, one such query per share of the services, run at once on two
connections in one snapshot). Seconds come from ``date_part('epoch', ...)``, which
`bot.reports.percentiles.epoch_seconds` reproduces for the Python path."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Double, and_, case, cast, func, literal_column, or_, select, text, tuple_
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot.domain.lifecycle import Status
from bot.reports.model import TIME_FIELDS, Counts, Group, GroupKey, Pair
from bot.reports.queries import C, group_keys, period_filter

PERCENTILE_FIELDS = TIME_FIELDS
# Percentile work grows with the rows; below this many, one query is quicker than two.
PARALLEL_MIN_ROWS = 100_000
# Queries run at once for a large report: the services are shared out between the
# session's connection and PARALLEL_QUERIES - 1 more connections from the engine's pool.
PARALLEL_QUERIES = 2
# For the report's queries, in its transaction only (SET LOCAL): the grouping and
# percentile sorts of a large period stay in memory instead of spilling to temporary files,
# and no JIT compilation (about 50 ms) for queries that each run once.
REPORT_SETTINGS = {"work_mem": "64MB", "jit": "off"}
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")

Percentiles = dict[GroupKey, dict[str, Pair]]


def _epoch(later: Any, earlier: Any) -> Any:
    # date_part returns double precision (EXTRACT returns numeric since PostgreSQL 14, which
    # costs a third more here); `epoch_seconds` reproduces its arithmetic bit for bit.
    return func.date_part(literal_column("'epoch'"), later - earlier, type_=Double)


def _count_columns(now: datetime) -> dict[str, Any]:
    """The period counts of `Counts`, by field name and in its order, as SQL aggregates."""
    not_cancelled = C.status != Status.CANCELLED
    sla_base = and_(not_cancelled, or_(C.answered_at.is_not(None), C.answer_due_at < now))
    ack_base = and_(not_cancelled, or_(C.acknowledged_at.is_not(None), C.acknowledge_due_at < now))

    def count_if(cond: Any) -> Any:
        return func.count().filter(cond)

    columns = {
        "consults": func.count(),
        "acknowledged": func.count(C.acknowledged_at),
        "answered": func.count(C.answered_at),
        "closed": count_if(C.status == Status.CLOSED),
        "cancelled": count_if(C.status == Status.CANCELLED),
        "escalated": count_if(C.escalation_count > 0),
        "handed_off": count_if(C.handoff_count > 0),
        "reopened": count_if(C.reopened_count > 0),
        "waiting_total": func.coalesce(
            func.sum(C.waiting_seconds).filter(C.waiting_seconds > 0), 0
        ),
        "waiting_n": count_if(C.waiting_seconds > 0),
        "sla_n": count_if(sla_base),
        "sla_ok": count_if(and_(sla_base, C.answered_at <= C.answer_due_at)),
        "ack_n": count_if(ack_base),
        "ack_ok": count_if(and_(ack_base, C.acknowledged_at <= C.acknowledge_due_at)),
        "fb_n": func.count(C.feedback_helpful),
        "fb_helpful": count_if(C.feedback_helpful.is_(True)),
    }
    return columns


def percentile_sql(
    keys: Sequence[str], since: datetime, until: datetime, fields: Sequence[str]
) -> Any:
    """Median and p90 of some time fields per service, service+urgency, service+assignee.

    The times are computed once per row in a fenced subquery (OFFSET 0), then one scan
    feeds GROUPING SETS; percentile_cont(0.5) and (0.9) over the same input share a sort.
    """
    exprs = {
        "tta": _epoch(C.acknowledged_at, C.created_at),
        "ttfr": _epoch(C.first_reply_at, C.created_at),
        "ttans": _epoch(C.answered_at, C.created_at) - C.waiting_seconds,
        "waiting": case((C.waiting_seconds > 0, cast(C.waiting_seconds, Double))),
    }
    # The group keys compare bytewise ("C"): the grouping sorts get abbreviated keys and
    # memcmp instead of the database's locale; only the grouping order changes.
    rows = (
        select(
            *(C[name].collate("C").label(name) for name in ("service", "urgency", "assignee")),
            *(exprs[f].label(f) for f in fields),
        )
        .where(period_filter(keys, since, until))
        .offset(0)
        .subquery("period")
    )
    aggregates = []
    for f in fields:
        aggregates += [
            func.percentile_cont(0.5).within_group(rows.c[f]),
            func.percentile_cont(0.9).within_group(rows.c[f]),
        ]
    return select(
        rows.c.service,
        rows.c.urgency,
        rows.c.assignee,
        func.grouping(rows.c.urgency),
        func.grouping(rows.c.assignee),
        *aggregates,
    ).group_by(
        func.grouping_sets(
            tuple_(rows.c.service),
            tuple_(rows.c.service, rows.c.urgency),
            tuple_(rows.c.service, rows.c.assignee),
        )
    )


def tune(runner: Session | Connection) -> None:
    """Apply `REPORT_SETTINGS` to `runner`'s current transaction (like SET LOCAL)."""
    params = {f"v{i}": v for i, v in enumerate(REPORT_SETTINGS.values())}
    calls = ", ".join(
        f"set_config('{name}', :v{i}, true)" for i, name in enumerate(REPORT_SETTINGS)
    )
    runner.execute(text(f"SELECT {calls}"), params)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _read_percentiles(result: Iterable[Any], fields: Sequence[str], out: Percentiles) -> None:
    for service, urgency, assignee, g_urgency, g_assignee, *values in result:
        if g_urgency == 0:
            key: GroupKey = (service, "u", urgency)
        elif g_assignee == 0:
            if not assignee:
                continue  # unassigned consults have no consultant row
            key = (service, "c", assignee)
        else:
            key = (service, "", "")
        slot = out.setdefault(key, {})
        for i, f in enumerate(fields):
            slot[f] = (_float(values[2 * i]), _float(values[2 * i + 1]))


def _run_percentiles(
    runner: Session | Connection,
    keys: Sequence[str],
    since: datetime,
    until: datetime,
    out: Percentiles,
) -> None:
    """One percentile query for `keys` on a session or connection, read into `out`."""
    stmt = percentile_sql(keys, since, until, PERCENTILE_FIELDS)
    _read_percentiles(runner.execute(stmt), PERCENTILE_FIELDS, out)


def _share_out(keys: Sequence[str], rows: dict[str, int], parts: int) -> list[list[str]]:
    """`keys` in at most `parts` lists of about equal rows (largest first, to the lightest)."""
    bins: list[tuple[int, list[str]]] = [(0, []) for _ in range(parts)]
    for key in sorted(keys, key=lambda k: -rows.get(k, 0)):
        if not rows.get(key):
            continue  # no consults: no percentile rows
        i = min(range(parts), key=lambda j: bins[j][0])
        bins[i] = (bins[i][0] + rows[key], [*bins[i][1], key])
    return [b for _, b in bins if b]


def _one_query(session: Session, shares: list[list[str]], rows: dict[str, int]) -> bool:
    """Whether the percentiles run as one query on the session itself."""
    return (
        len(shares) < 2
        or sum(rows.values()) < PARALLEL_MIN_ROWS
        or not isinstance(session.get_bind(), Engine)
        or session.execute(text("SELECT pg_current_xact_id_if_assigned()")).scalar() is not None
    )


def _percentiles(
    session: Session,
    keys: Sequence[str],
    counts: dict[GroupKey, Counts],
    since: datetime,
    until: datetime,
    out: Percentiles,
) -> None:
    """Fill `out` with the percentiles of `keys`' groups.

    One query per service share, run at once on several connections when the period is
    large (percentile_cont has no parallel plan; this keeps every core busy). The other
    connections import the session's snapshot, so they read exactly what it reads; a
    session that has written in this transaction (invisible to other connections) or that
    is not bound to an engine with a pool runs one query itself.
    """
    rows = {k: counts[(k, "", "")].consults if (k, "", "") in counts else 0 for k in keys}
    shares = _share_out(keys, rows, PARALLEL_QUERIES)
    if _one_query(session, shares, rows):
        _run_percentiles(session, keys, since, until, out)
        return
    bind = session.get_bind()
    snapshot = session.execute(text("SELECT pg_export_snapshot()")).scalar_one()
    if not _SNAPSHOT_ID.fullmatch(snapshot):  # inlined below: SET takes no parameters
        raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
    mine, *others = shares
    results: Percentiles = {}
    with ThreadPoolExecutor(max_workers=len(others)) as pool:
        futures = [
            pool.submit(_percentiles_elsewhere, bind, snapshot, share, since, until)
            for share in others
        ]
        _run_percentiles(session, mine, since, until, results)
        for future, share in zip(futures, others, strict=True):
            try:
                results.update(future.result())
            except DBAPIError:
                # e.g. a pooled connection left in autocommit cannot import the snapshot:
                # the session computes that share itself.
                _run_percentiles(session, share, since, until, results)
    out.update(results)


def _percentiles_elsewhere(
    engine: Engine, snapshot: str, keys: Sequence[str], since: datetime, until: datetime
) -> Percentiles:
    """`percentile_sql` of `keys` on another pooled connection, in the exported snapshot."""
    out: Percentiles = {}
    with engine.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            tune(conn)
            _run_percentiles(conn, keys, since, until, out)
    return out


def period_groups_sql(
    session: Session, keys: Sequence[str], since: datetime, until: datetime, now: datetime
) -> dict[GroupKey, Group]:
    """Aggregate in PostgreSQL: counts per (service, urgency, assignee), rolled up here, and
    percentile_cont per service, service+urgency and service+assignee."""
    tune(session)
    columns = _count_columns(now)
    counts_stmt = (
        select(C.service, C.urgency, C.assignee, *columns.values())
        .where(period_filter(keys, since, until))
        .group_by(C.service, C.urgency, C.assignee)
    )
    counts: dict[GroupKey, Counts] = {}
    for service, urgency, assignee, *values in session.execute(counts_stmt):
        part = Counts(**{name: int(v) for name, v in zip(columns, values, strict=True)})
        for key in group_keys(service, urgency, assignee):
            was = counts.get(key)
            if was is None:
                counts[key] = replace(part)
            else:
                was.add(part)
    times: Percentiles = {}
    if counts:
        _percentiles(session, keys, counts, since, until, times)
    return {key: Group.of(n, times.get(key, {})) for key, n in counts.items()}
