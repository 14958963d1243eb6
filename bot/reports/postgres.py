"""The report's aggregation on PostgreSQL: one grouped query per (service, urgency,
assignee) returns each finest group's counts and its consults' raw times; the seconds and
the percentiles are computed here with numpy (`bot.reports.vectors`), bit for bit as
``date_part('epoch', …)`` and ``percentile_cont`` compute them (`bot.reports.pg_reference`
keeps that SQL as the reference the tests and the bench compare with).

The database only scans and hashes: no sort. The times leave it as binary arrays
(``array_send(array_agg(…))``: big-endian microseconds since 2000, a missing time sent as
``'-infinity'``), parsed by one ``numpy.frombuffer`` each. A large period is split by
``id % PARALLEL_QUERIES`` over that many connections, run at once in one snapshot.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy import LargeBinary, and_, func, literal, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot.reports.model import COUNT_FIELDS, Group, GroupKey
from bot.reports.queries import ARRAY_COUNTS, C, count_columns, period_filter
from bot.reports.vectors import Part, from_array_send, part, roll_up

# Below this many consults (the planner's estimate), one query on the session is quicker
# than sharing the period out.
PARALLEL_MIN_ROWS = 100_000
# Queries run at once for a large period: the session's connection and
# PARALLEL_QUERIES - 1 more from the engine's pool, each taking a share of the consults
# (`_shares`; array_agg has no parallel plan before PostgreSQL 16).
PARALLEL_QUERIES = 2
# For the report's queries, in its transaction only (SET LOCAL): the hash table of a
# large period's arrays stays in memory instead of spilling to temporary files, and no JIT
# compilation (about 50 ms) for queries that each run once.
REPORT_SETTINGS = {"work_mem": "64MB", "jit": "off"}
# A period of at least this share of the table's rows is shared out by block ranges.
WHOLE_TABLE = 0.5
# So is one whose consults lie all over the table (creation times out of storage order:
# the planner's correlation of ``created_at`` under SCATTERED either way) once it holds
# SCATTERED_PER_BLOCK consults a block: it reads nearly every block (1 - e^-3 = 95 %),
# and time cuts would make each share read them all.
SCATTERED = 0.5
SCATTERED_PER_BLOCK = 3.0
# The table's rows and blocks, and the planner's histogram and correlation of creation
# times.
_TABLE_STATS = text(
    "SELECT c.reltuples, pg_relation_size(c.oid) / current_setting('block_size')::int,"
    " s.histogram_bounds::text::timestamptz[], s.correlation"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname"
    "  AND s.attname = 'created_at' AND NOT s.inherited"
    " WHERE c.oid = CAST('consults' AS regclass)"
)
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")
# The times sent, in `bot.reports.vectors.seconds`' order (the waiting seconds follow).
_TIMES = (C.created_at, C.acknowledged_at, C.first_reply_at, C.answered_at)

Batch = list[Part]


def _sent(column: Any) -> Any:
    """``array_send(array_agg(column))``: the group's values as one binary array."""
    return func.array_send(func.array_agg(column), type_=LargeBinary)


def joined(send: str, column: Any) -> Any:
    """The group's values of `column` in their binary form (`send`: the type's send
    function, e.g. ``timestamptz_send``, ``int4send``) back to back, parsed by
    `bot.reports.vectors.from_raw`. Every `joined` (and `_sent`) of one query aggregates the
    rows in the same order (one aggregation step feeds each row to all of them): the
    columns stay aligned row by row."""
    return func.string_agg(
        getattr(func, send)(column, type_=LargeBinary), literal(b"", LargeBinary)
    )


def period_sql(
    keys: Sequence[str], since: datetime, until: datetime, now: datetime, share: Any = None
) -> Any:
    """Per (service, urgency, assignee) of the period's consults (those also matching
    `share`, when given): the `Counts` aggregates but those the arrays give
    (`bot.reports.queries.ARRAY_COUNTS`), then five binary arrays, one value per consult in
    the same order: created, acknowledged, first reply and answered times (a missing one
    as ``'-infinity'``) and the seconds waited on the requester."""
    missing = literal("-infinity").cast(C.created_at.type)
    period = period_filter(keys, since, until)
    if share is not None:
        period = and_(period, share)
    return (
        select(
            C.service,
            C.urgency,
            C.assignee,
            *count_columns(now, from_arrays=True).values(),
            _sent(C.created_at),
            *(_sent(func.coalesce(t, missing)) for t in _TIMES[1:]),
            _sent(C.waiting_seconds),
        )
        .where(period)
        .group_by(C.service, C.urgency, C.assignee)
    )


def _shares(session: Session, since: datetime, until: datetime, estimate: int, n: int) -> list[Any]:
    """`n` predicates that share the period's consults out in about equal parts.

    A period of most of the table (the planner's `estimate` against its row count), or
    spread over nearly all its blocks (`SCATTERED`), is read whole anyway: each share
    scans its own range of the table's blocks (a TID range scan). A shorter one is cut by
    creation time at the quantiles of the planner's histogram of ``created_at`` (evenly,
    without one), so that each share keeps the period's index. Not ``id % n``: the
    planner cannot estimate it, and sorts.
    """
    tuples, blocks, bounds, correlation = session.execute(_TABLE_STATS).one()
    scattered = correlation is not None and abs(correlation) < SCATTERED
    if (
        tuples > 0
        and blocks >= n
        and (
            estimate >= WHOLE_TABLE * tuples
            or (scattered and estimate >= SCATTERED_PER_BLOCK * blocks)
        )
    ):
        cuts = [blocks * i // n for i in range(1, n)]
        return [_blocks(lo, hi) for lo, hi in zip([None, *cuts], [*cuts, None], strict=True)]
    inside = sorted({b for b in bounds or [] if since < b < until})
    if len(inside) >= n:
        cuts = [inside[len(inside) * i // n] for i in range(1, n)]
    else:
        cuts = [since + (until - since) * i / n for i in range(1, n)]
    edges = [since, *sorted(set(cuts)), until]
    return [
        and_(C.created_at >= lo, C.created_at < hi)
        for lo, hi in zip(edges, edges[1:], strict=False)
    ]


def _blocks(first: int | None, end: int | None) -> Any:
    """Consults stored in blocks [first, end) of the table (None: from the start, to the
    end, including blocks added since the size was read)."""
    parts = []
    if first is not None:
        parts.append(
            text("consults.ctid >= CAST(:tid_from AS tid)").bindparams(tid_from=f"({first},0)")
        )
    if end is not None:
        parts.append(text("consults.ctid < CAST(:tid_to AS tid)").bindparams(tid_to=f"({end},0)"))
    return and_(*parts)


def tune(runner: Session | Connection) -> None:
    """Apply `REPORT_SETTINGS` to `runner`'s current transaction (like SET LOCAL)."""
    params = {f"v{i}": v for i, v in enumerate(REPORT_SETTINGS.values())}
    calls = ", ".join(
        f"set_config('{name}', :v{i}, true)" for i, name in enumerate(REPORT_SETTINGS)
    )
    runner.execute(text(f"SELECT {calls}"), params)


def fetch_binary(runner: Session | Connection, stmt: Any) -> list[tuple[Any, ...]]:
    """All rows of `stmt` on `runner`'s connection, in PostgreSQL's binary format: bytea
    arrives as its bytes (not as hex text to decode, a fifth of the report's client time)."""
    conn = runner.connection() if isinstance(runner, Session) else runner
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    with conn.connection.driver_connection.cursor(binary=True) as cursor:
        cursor.execute(str(compiled), compiled.params)
        return cursor.fetchall()


def _run(runner: Session | Connection, stmt: Any) -> Batch:
    """Execute one `period_sql` and parse its rows: (finest key, counts, time values)."""
    width = len(COUNT_FIELDS) - len(ARRAY_COUNTS)
    # Parsed here, in the thread that fetched them: numpy lets the others run.
    return [
        part(
            (service, urgency, assignee),
            values[:width],
            *(from_array_send(v, 8) for v in values[width : width + 4]),
            from_array_send(values[width + 4], 4),
        )
        for service, urgency, assignee, *values in fetch_binary(runner, stmt)
    ]


def _estimated_rows(session: Session, keys: Sequence[str], since: datetime, until: datetime) -> int:
    """The planner's estimate of the period's consults (one EXPLAIN, no execution)."""
    stmt = select(literal(1)).where(period_filter(keys, since, until))
    compiled = stmt.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    plan = (
        session.connection()
        .exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params)
        .scalar_one()
    )
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def _session_state(session: Session) -> tuple[bool, bool]:
    """(whether the session's transaction has written, whether it keeps one snapshot for
    the whole transaction: REPEATABLE READ or SERIALIZABLE)."""
    written, isolation = session.execute(
        text("SELECT pg_current_xact_id_if_assigned(), current_setting('transaction_isolation')")
    ).one()
    return written is not None, isolation != "read committed"


def _export_snapshot(session: Session) -> str:
    """The id of a snapshot of the session's transaction that other connections import."""
    snapshot = session.execute(text("SELECT pg_export_snapshot()")).scalar_one()
    if not _SNAPSHOT_ID.fullmatch(snapshot):  # inlined later: SET takes no parameters
        raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
    return snapshot


def _batches(
    session: Session, keys: Sequence[str], since: datetime, until: datetime, now: datetime
) -> Batch:
    """All the period's finest groups, from one query on the session or, for a large
    period, from `PARALLEL_QUERIES` queries run at once, each on its own connection.

    Every share reads one snapshot: the session exports it and the other connections import
    it. The session runs a share itself only when its transaction keeps that snapshot
    (REPEATABLE READ); under READ COMMITTED each of its statements would take a new one.
    A session that has written in this transaction (its writes are invisible elsewhere) or
    is not bound to an engine with a pool runs one query itself; so does a period the
    planner expects to be small (`PARALLEL_MIN_ROWS`).
    """
    bind = session.get_bind()
    if PARALLEL_QUERIES < 2 or not isinstance(bind, Engine):
        return _run(session, period_sql(keys, since, until, now))
    written, one_snapshot = _session_state(session)
    estimate = 0 if written else _estimated_rows(session, keys, since, until)
    if written or estimate < PARALLEL_MIN_ROWS:
        return _run(session, period_sql(keys, since, until, now))
    snapshot = _export_snapshot(session)
    n = PARALLEL_QUERIES
    shares = _shares(session, since, until, estimate, n)
    stmts = [period_sql(keys, since, until, now, share) for share in shares]
    mine = stmts[:1] if one_snapshot else []
    out: Batch = []
    with ThreadPoolExecutor(max_workers=max(1, len(stmts) - len(mine))) as pool:
        futures = [pool.submit(_elsewhere, bind, snapshot, s) for s in stmts[len(mine) :]]
        for stmt in mine:
            out += _run(session, stmt)
        try:
            for future in futures:
                out += future.result()
        except DBAPIError:
            # e.g. a pooled connection left in autocommit cannot import the snapshot: the
            # session computes the whole period itself, in one query.
            return _run(session, period_sql(keys, since, until, now))
    return out


def _elsewhere(engine: Engine, snapshot: str, stmt: Any) -> Batch:
    """`_run` of `stmt` on another pooled connection, in the exported snapshot."""
    with engine.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            tune(conn)
            return _run(conn, stmt)


def period_groups_sql(
    session: Session, keys: Sequence[str], since: datetime, until: datetime, now: datetime
) -> dict[GroupKey, Group]:
    """The report's groups of the period: counts per service, service+urgency and
    service+consultant, and the median and p90 of each time (`bot.reports.vectors`)."""
    tune(session)
    return roll_up(_batches(session, keys, since, until, now))
