"""Response-time reports for department leads and the quality office.

Figures per service, and within each service per urgency and per consultant, over a period
``[since, until)`` of consult *creation* time:

* counts: consults, acknowledged, answered, closed, cancelled, escalated, handed off, reopened;
  ``open_now`` / ``open_overdue`` describe the service *now* (every open consult, whatever
  its creation date);
* times in seconds from creation (median and 90th percentile): to acknowledge, to the first
  response, and to the answer. Time to answer is the consultant's time: need-info waiting
  (``waiting_seconds``) is subtracted and reported apart as ``waiting_on_requester``;
* SLA shares (answered / acknowledged within the due time) and answer feedback.

Percentiles interpolate linearly between ranks exactly like PostgreSQL's
``percentile_cont``. On PostgreSQL everything is aggregated in the database: one grouped
count per (service, urgency, assignee), rolled up here, and one scan feeding
``percentile_cont`` through ``GROUPING SETS`` (for a large period, one such query per share
of the services, run at once on two connections in one snapshot). On SQLite the needed
columns (never whole ORM objects) are fetched and aggregated in Python. Seconds are
computed the way PostgreSQL's ``date_part('epoch', later - earlier)`` computes them, so
both paths give bit-identical numbers. The period filter uses ``ix_consults_service_created``.

Nothing here reads or prints patient references, questions or answers: outputs carry
service keys, urgencies, Slack user ids and consult references only.

Also here: the ``python -m bot report`` command, ``/consult stats``, the leads' App Home
"week at a glance", the weekly digest DM (queued through the outbox, exactly once per week)
and its chart.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Double,
    String,
    and_,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    type_coerce,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot.domain.catalogue import Catalogue, Service
from bot.domain.catalogue_load import load_catalogue
from bot.domain.clock import SystemClock
from bot.domain.durations import parse_duration
from bot.domain.vocabulary import URGENCIES, Kind
from bot.slack.render.blocks import RenderContext, context, escape, link, section
from storage.db import create_db_engine, migrate, session_factory
from storage.models import Consult, OutboxMessage

if TYPE_CHECKING:
    from bot.services import Services
    from bot.settings import Settings

OPEN_STATUSES = ("open", "acknowledged", "waiting")
CHART_DAYS = 56
GLANCE_DAYS = 7
MAX_SLACK_BLOCKS = 50
MAX_REFS = 10
TOP_CONSULTANTS = 10
MAX_PERIOD = timedelta(days=100 * 366)
URGENCY_NAMES = {"stat": "Stat", "urgent": "Urgent", "routine": "Routine"}

# Only timing and count columns: never patient, question, answer or intake.
_C = Consult.__table__.c

GroupKey = tuple[str, str, str]  # (service, "" | "u" | "c", "" | urgency | user)


# --------------------------------------------------------------------------- percentiles
def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (p in [0, 1]) interpolated like PostgreSQL's ``percentile_cont``.

    Position ``p * (n - 1)`` in the sorted values, linear interpolation between the values
    at its floor and ceiling ranks. One value gives that value; no values give None.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"percentile must be between 0 and 1, not {p}")
    if not values:
        return None
    ordered = sorted(values)
    pos = p * (len(ordered) - 1)
    first, second = math.floor(pos), math.ceil(pos)
    low = float(ordered[first])
    if first == second:
        return low
    high = float(ordered[second])
    # Same operations, in the same order, as PostgreSQL's float8_lerp.
    return low + (pos - first) * (high - low)


def parse_period(text: str) -> timedelta:
    """A reporting period such as "7d", "30d" or "90d" (any `bot.domain.durations` duration)."""
    period = parse_duration(text)  # its ValueError messages are written for users
    if period > MAX_PERIOD:
        raise ValueError(f"{text.strip()!r} is too long a period; at most {MAX_PERIOD.days}d")
    return period


# --------------------------------------------------------------------------- aggregation
@dataclass
class _Group:
    """Aggregated period figures of one group, before formatting."""

    consults: int = 0
    acknowledged: int = 0
    answered: int = 0
    closed: int = 0
    cancelled: int = 0
    escalated: int = 0
    handed_off: int = 0
    reopened: int = 0
    tta: tuple[float | None, float | None] = (None, None)
    ttfr: tuple[float | None, float | None] = (None, None)
    ttans: tuple[float | None, float | None] = (None, None)
    waiting: tuple[float | None, float | None] = (None, None)
    waiting_total: int = 0
    waiting_n: int = 0
    sla_n: int = 0
    sla_ok: int = 0
    ack_n: int = 0
    ack_ok: int = 0
    fb_n: int = 0
    fb_helpful: int = 0


@dataclass
class _Acc:
    """Python-side accumulator for one group (the SQLite path)."""

    counts: list[int] = field(default_factory=lambda: [0] * 16)
    tta: list[float] = field(default_factory=list)
    ttfr: list[float] = field(default_factory=list)
    ttans: list[float] = field(default_factory=list)
    waiting: list[float] = field(default_factory=list)

    def merge(self, other: _Acc) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.tta += other.tta
        self.ttfr += other.ttfr
        self.ttans += other.ttans
        self.waiting += other.waiting

    def finish(self) -> _Group:
        n = self.counts

        def pair(values: list[float]) -> tuple[float | None, float | None]:
            return percentile(values, 0.5), percentile(values, 0.9)

        return _Group(
            consults=n[0],
            acknowledged=n[1],
            answered=n[2],
            closed=n[3],
            cancelled=n[4],
            escalated=n[5],
            handed_off=n[6],
            reopened=n[7],
            tta=pair(self.tta),
            ttfr=pair(self.ttfr),
            ttans=pair(self.ttans),
            waiting=pair(self.waiting),
            waiting_total=n[8],
            waiting_n=n[9],
            sla_n=n[10],
            sla_ok=n[11],
            ack_n=n[12],
            ack_ok=n[13],
            fb_n=n[14],
            fb_helpful=n[15],
        )


_US = timedelta(microseconds=1)
_US_PER_DAY = 86_400_000_000


def _seconds(later: datetime, earlier: datetime, minus: int = 0) -> float:
    """Seconds from `earlier` to `later`, less `minus` whole seconds, as PostgreSQL computes
    ``date_part('epoch', later - earlier) - minus`` in double precision.

    The interval is split into whole days and the rest with the rest's sign (PostgreSQL's
    justify_hours), the rest becomes seconds first and the days are added after: the same
    two roundings, so both databases give bit-identical figures.
    """
    total = (later - earlier) // _US
    days = abs(total) // _US_PER_DAY
    if total < 0:
        days = -days
    value = (total - days * _US_PER_DAY) / 1000000.0 + 86400.0 * days
    return value - minus if minus else value


def _period_filter(keys: Sequence[str], since: datetime, until: datetime) -> ColumnElement[bool]:
    # (service, created_at) is indexed: ix_consults_service_created.
    return and_(_C.service.in_(list(keys)), _C.created_at >= since, _C.created_at < until)


def _group_keys(service: str, urgency: str, assignee: str | None) -> list[GroupKey]:
    keys: list[GroupKey] = [(service, "", ""), (service, "u", urgency)]
    if assignee:
        keys.append((service, "c", assignee))
    return keys


def _same(value: Any) -> Any:
    return value


def _period_groups_python(
    session: Session, keys: Sequence[str], since: datetime, until: datetime, now: datetime
) -> dict[GroupKey, _Group]:
    """Fetch the period's timing columns and aggregate them in Python (SQLite)."""
    # SQLite keeps UTC times as ISO text; parsing it directly is several times faster than
    # the ORM type's conversion to aware datetimes, and naive UTC compares just as well.
    raw = session.get_bind().dialect.name == "sqlite"
    times = (
        _C.created_at,
        _C.acknowledged_at,
        _C.first_reply_at,
        _C.answered_at,
        _C.acknowledge_due_at,
        _C.answer_due_at,
    )
    stmt = select(
        _C.service,
        _C.urgency,
        _C.assignee,
        _C.status,
        *(type_coerce(t, String) if raw else t for t in times),
        _C.waiting_seconds,
        _C.escalation_count,
        _C.handoff_count,
        _C.reopened_count,
        _C.feedback_helpful,
    ).where(_period_filter(keys, since, until))
    parse = datetime.fromisoformat if raw else _same
    if raw:
        now = now.replace(tzinfo=None)
    # One accumulator per (service, urgency, assignee), merged into the report's groups after.
    finest: dict[tuple[str, str, str | None], _Acc] = {}
    for row in session.execute(stmt):
        (service, urgency, assignee, status, created, acked, first_reply, answered,
         ack_due, answer_due, waiting_s, escalations, handoffs, reopens, helpful) = row  # fmt: skip
        created = parse(created)
        acked = acked and parse(acked)
        first_reply = first_reply and parse(first_reply)
        answered = answered and parse(answered)
        ack_due = ack_due and parse(ack_due)
        answer_due = answer_due and parse(answer_due)
        waiting_s = waiting_s or 0
        not_cancelled = status != "cancelled"
        sla_counted = not_cancelled and (
            answered is not None or (answer_due is not None and answer_due < now)
        )
        ack_counted = not_cancelled and (
            acked is not None or (ack_due is not None and ack_due < now)
        )
        acc = finest.get((service, urgency, assignee))
        if acc is None:
            acc = finest[(service, urgency, assignee)] = _Acc()
        n = acc.counts
        n[0] += 1
        n[1] += acked is not None
        n[2] += answered is not None
        n[3] += status == "closed"
        n[4] += status == "cancelled"
        n[5] += (escalations or 0) > 0
        n[6] += (handoffs or 0) > 0
        n[7] += (reopens or 0) > 0
        if waiting_s > 0:
            n[8] += waiting_s
            n[9] += 1
            acc.waiting.append(float(waiting_s))
        if sla_counted:
            n[10] += 1
            n[11] += answered is not None and answer_due is not None and answered <= answer_due
        if ack_counted:
            n[12] += 1
            n[13] += acked is not None and ack_due is not None and acked <= ack_due
        if helpful is not None:
            n[14] += 1
            n[15] += helpful is True
        if acked is not None:
            acc.tta.append(_seconds(acked, created))
        if first_reply is not None:
            acc.ttfr.append(_seconds(first_reply, created))
        if answered is not None:
            acc.ttans.append(_seconds(answered, created, waiting_s))
    accs: dict[GroupKey, _Acc] = {}
    for (service, urgency, assignee), part in finest.items():
        for key in _group_keys(service, urgency, assignee):
            acc = accs.get(key)
            if acc is None:
                acc = accs[key] = _Acc()
            acc.merge(part)
    return {key: acc.finish() for key, acc in accs.items()}


def _epoch(later: Any, earlier: Any) -> Any:
    # date_part returns double precision (EXTRACT returns numeric since PostgreSQL 14, which
    # costs a third more here); `_seconds` reproduces its arithmetic bit for bit.
    return func.date_part(literal_column("'epoch'"), later - earlier, type_=Double)


def _count_columns(now: datetime) -> list[Any]:
    """The 16 period counts of `_Acc.counts`, in order, as SQL aggregates."""
    not_cancelled = _C.status != "cancelled"
    sla_base = and_(not_cancelled, or_(_C.answered_at.is_not(None), _C.answer_due_at < now))
    ack_base = and_(
        not_cancelled, or_(_C.acknowledged_at.is_not(None), _C.acknowledge_due_at < now)
    )

    def count_if(cond: Any) -> Any:
        return func.count().filter(cond)

    return [
        func.count(),
        func.count(_C.acknowledged_at),
        func.count(_C.answered_at),
        count_if(_C.status == "closed"),
        count_if(_C.status == "cancelled"),
        count_if(_C.escalation_count > 0),
        count_if(_C.handoff_count > 0),
        count_if(_C.reopened_count > 0),
        func.coalesce(func.sum(_C.waiting_seconds).filter(_C.waiting_seconds > 0), 0),
        count_if(_C.waiting_seconds > 0),
        count_if(sla_base),
        count_if(and_(sla_base, _C.answered_at <= _C.answer_due_at)),
        count_if(ack_base),
        count_if(and_(ack_base, _C.acknowledged_at <= _C.acknowledge_due_at)),
        func.count(_C.feedback_helpful),
        count_if(_C.feedback_helpful.is_(True)),
    ]


PERCENTILE_FIELDS = ("tta", "ttfr", "ttans", "waiting")


def _percentile_sql(
    keys: Sequence[str], since: datetime, until: datetime, fields: Sequence[str]
) -> Any:
    """Median and p90 of some time fields per service, service+urgency, service+assignee.

    The times are computed once per row in a fenced subquery (OFFSET 0), then one scan
    feeds GROUPING SETS; percentile_cont(0.5) and (0.9) over the same input share a sort.
    """
    exprs = {
        "tta": _epoch(_C.acknowledged_at, _C.created_at),
        "ttfr": _epoch(_C.first_reply_at, _C.created_at),
        "ttans": _epoch(_C.answered_at, _C.created_at) - _C.waiting_seconds,
        "waiting": case((_C.waiting_seconds > 0, cast(_C.waiting_seconds, Double))),
    }
    rows = (
        select(_C.service, _C.urgency, _C.assignee, *(exprs[f].label(f) for f in fields))
        .where(_period_filter(keys, since, until))
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


def _read_percentiles(
    result: Iterable[Any], fields: Sequence[str], out: dict[GroupKey, dict[str, Any]]
) -> None:
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


# Percentile work grows with the rows; below this many, one query is quicker than two.
PARALLEL_MIN_ROWS = 100_000
# Queries run at once for a large report: the services are shared out between the
# session's connection and PARALLEL_QUERIES - 1 more connections from the engine's pool.
PARALLEL_QUERIES = 2
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")


def _share_out(keys: Sequence[str], rows: dict[str, int], parts: int) -> list[list[str]]:
    """`keys` in at most `parts` lists of about equal rows (largest first, to the lightest)."""
    bins: list[tuple[int, list[str]]] = [(0, []) for _ in range(parts)]
    for key in sorted(keys, key=lambda k: -rows.get(k, 0)):
        if not rows.get(key):
            continue  # no consults: no percentile rows
        i = min(range(parts), key=lambda j: bins[j][0])
        bins[i] = (bins[i][0] + rows[key], [*bins[i][1], key])
    return [b for _, b in bins if b]


def _percentiles(
    session: Session,
    keys: Sequence[str],
    counts: dict[GroupKey, list[int]],
    since: datetime,
    until: datetime,
    out: dict[GroupKey, dict[str, Any]],
) -> None:
    """Fill `out` with the percentiles of `keys`' groups.

    One query per service share, run at once on several connections when the period is
    large (percentile_cont has no parallel plan; this keeps every core busy). The other
    connections import the session's snapshot, so they read exactly what it reads; a
    session that has written in this transaction (invisible to other connections) or that
    is not bound to an engine with a pool runs one query itself.
    """
    rows = {k: counts.get((k, "", ""), [0])[0] for k in keys}
    bind = session.get_bind()
    shares = _share_out(keys, rows, PARALLEL_QUERIES)
    if (
        len(shares) < 2
        or sum(rows.values()) < PARALLEL_MIN_ROWS
        or not isinstance(bind, Engine)
        or session.execute(text("SELECT pg_current_xact_id_if_assigned()")).scalar() is not None
    ):
        stmt = _percentile_sql(keys, since, until, PERCENTILE_FIELDS)
        _read_percentiles(session.execute(stmt), PERCENTILE_FIELDS, out)
        return
    snapshot = session.execute(text("SELECT pg_export_snapshot()")).scalar_one()
    if not _SNAPSHOT_ID.fullmatch(snapshot):  # inlined below: SET takes no parameters
        raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
    mine, *others = shares
    results: dict[GroupKey, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=len(others)) as pool:
        futures = [
            pool.submit(_percentiles_elsewhere, bind, snapshot, share, since, until)
            for share in others
        ]
        stmt = _percentile_sql(mine, since, until, PERCENTILE_FIELDS)
        _read_percentiles(session.execute(stmt), PERCENTILE_FIELDS, results)
        for future, share in zip(futures, others, strict=True):
            try:
                results.update(future.result())
            except DBAPIError:
                # e.g. a pooled connection left in autocommit cannot import the snapshot:
                # the session computes that share itself.
                stmt = _percentile_sql(share, since, until, PERCENTILE_FIELDS)
                _read_percentiles(session.execute(stmt), PERCENTILE_FIELDS, results)
    out.update(results)


def _percentiles_elsewhere(
    engine: Engine, snapshot: str, keys: Sequence[str], since: datetime, until: datetime
) -> dict[GroupKey, dict[str, Any]]:
    """`_percentile_sql` of `keys` on another pooled connection, in the exported snapshot."""
    out: dict[GroupKey, dict[str, Any]] = {}
    with engine.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            stmt = _percentile_sql(keys, since, until, PERCENTILE_FIELDS)
            _read_percentiles(conn.execute(stmt), PERCENTILE_FIELDS, out)
    return out


def _period_groups_sql(
    session: Session, keys: Sequence[str], since: datetime, until: datetime, now: datetime
) -> dict[GroupKey, _Group]:
    """Aggregate in PostgreSQL: counts per (service, urgency, assignee), rolled up here, and
    percentile_cont per service, service+urgency and service+assignee."""
    counts_stmt = (
        select(_C.service, _C.urgency, _C.assignee, *_count_columns(now))
        .where(_period_filter(keys, since, until))
        .group_by(_C.service, _C.urgency, _C.assignee)
    )
    counts: dict[GroupKey, list[int]] = {}
    for service, urgency, assignee, *values in session.execute(counts_stmt):
        for key in _group_keys(service, urgency, assignee):
            was = counts.get(key)
            counts[key] = (
                [int(v) for v in values]
                if was is None
                else [a + int(b) for a, b in zip(was, values, strict=True)]
            )
    times: dict[GroupKey, dict[str, Any]] = {}
    if counts:
        _percentiles(session, keys, counts, since, until, times)
    groups: dict[GroupKey, _Group] = {}
    for key, n in counts.items():
        t = times.get(key, {})
        groups[key] = _Group(
            consults=n[0],
            acknowledged=n[1],
            answered=n[2],
            closed=n[3],
            cancelled=n[4],
            escalated=n[5],
            handed_off=n[6],
            reopened=n[7],
            tta=t.get("tta", (None, None)),
            ttfr=t.get("ttfr", (None, None)),
            ttans=t.get("ttans", (None, None)),
            waiting=t.get("waiting", (None, None)),
            waiting_total=n[8],
            waiting_n=n[9],
            sla_n=n[10],
            sla_ok=n[11],
            ack_n=n[12],
            ack_ok=n[13],
            fb_n=n[14],
            fb_helpful=n[15],
        )
    return groups


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _due_now() -> Any:
    return case((_C.status == "open", _C.acknowledge_due_at), else_=_C.answer_due_at)


def _open_groups(
    session: Session, keys: Sequence[str], now: datetime
) -> dict[GroupKey, tuple[int, int]]:
    """(open now, overdue now) per group, over every open consult whatever its age."""
    overdue = case((_due_now() < now, 1), else_=0)
    # Filtering on status alone keeps SQLite on the status index (open consults are few);
    # with a service filter too it may pick the service index and read every consult.
    stmt = (
        select(_C.service, _C.urgency, _C.assignee, func.count(), func.sum(overdue))
        .where(_C.status.in_(OPEN_STATUSES))
        .group_by(_C.service, _C.urgency, _C.assignee)
    )
    wanted = set(keys)
    out: dict[GroupKey, tuple[int, int]] = {}
    for service, urgency, assignee, n, late in session.execute(stmt):
        if service not in wanted:
            continue
        for key in _group_keys(service, urgency, assignee):
            was = out.get(key, (0, 0))
            out[key] = (was[0] + int(n), was[1] + int(late or 0))
    return out


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _times(pair: tuple[float | None, float | None]) -> dict[str, float | None]:
    return {"median": pair[0], "p90": pair[1]}


def _figures(g: _Group, open_counts: tuple[int, int]) -> dict[str, Any]:
    return {
        "consults": g.consults,
        "acknowledged": g.acknowledged,
        "answered": g.answered,
        "closed": g.closed,
        "cancelled": g.cancelled,
        "open_now": open_counts[0],
        "open_overdue": open_counts[1],
        "escalated": g.escalated,
        "handed_off": g.handed_off,
        "reopened": g.reopened,
        "time_to_acknowledge": _times(g.tta),
        "time_to_first_response": _times(g.ttfr),
        "time_to_answer": _times(g.ttans),
        "waiting_on_requester": {
            "total": g.waiting_total,
            "median": g.waiting[0],
            "p90": g.waiting[1],
            "consults": g.waiting_n,
        },
        "within_sla": _share(g.sla_ok, g.sla_n),
        "ack_within_sla": _share(g.ack_ok, g.ack_n),
        "feedback": {
            "count": g.fb_n,
            "helpful": g.fb_helpful,
            "helpful_share": _share(g.fb_helpful, g.fb_n),
        },
    }


def iso_z(when: datetime) -> str:
    """'2026-10-24T00:00:00Z' (UTC, whole seconds; fractions shown only when present)."""
    when = _aware(when)
    if when.microsecond:
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _resolve(catalogue: Catalogue, services: Iterable[str] | None) -> list[Service]:
    if services is None:
        return list(catalogue.services)
    chosen: list[Service] = []
    for name in services:
        found = catalogue.service(name)
        if found is None:
            valid = ", ".join(s.key for s in catalogue.services)
            raise ValueError(f"unknown service {name!r}; valid services: {valid}")
        if found not in chosen:
            chosen.append(found)
    return chosen


def compute_report(
    session: Session,
    *,
    catalogue: Catalogue,
    since: datetime,
    until: datetime,
    now: datetime,
    services: list[str] | None = None,
) -> dict[str, Any]:
    """Figures for consults created in ``[since, until)``, per service (catalogue order).

    Every catalogue service is listed, with zeros when it had no consults, unless
    `services` (keys or aliases) narrows the list; an unknown name raises ValueError.
    ``open_now``/``open_overdue`` count the consults open at `now`, whatever their age.
    Returns ``{"since", "until", "services": [...]}`` (see the module docstring).
    """
    since, until, now = _aware(since), _aware(until), _aware(now)
    if since > until:
        raise ValueError("since must not be after until")
    chosen = _resolve(catalogue, services)
    keys = [s.key for s in chosen]
    if not keys:
        return {"since": iso_z(since), "until": iso_z(until), "services": []}
    if session.get_bind().dialect.name == "postgresql":
        groups = _period_groups_sql(session, keys, since, until, now)
    else:
        groups = _period_groups_python(session, keys, since, until, now)
    open_now = _open_groups(session, keys, now)
    empty = _Group()
    entries = []
    for key in keys:
        entry: dict[str, Any] = {"service": key}
        entry.update(
            _figures(groups.get((key, "", ""), empty), open_now.get((key, "", ""), (0, 0)))
        )
        entry["by_urgency"] = {
            u: _figures(groups.get((key, "u", u), empty), open_now.get((key, "u", u), (0, 0)))
            for u in _urgencies(key, groups, open_now)
        }
        users = sorted(
            {k[2] for k in groups if k[0] == key and k[1] == "c"}
            | {k[2] for k in open_now if k[0] == key and k[1] == "c"}
        )
        entry["by_consultant"] = {
            user: _figures(
                groups.get((key, "c", user), empty), open_now.get((key, "c", user), (0, 0))
            )
            for user in users
        }
        entries.append(entry)
    return {"since": iso_z(since), "until": iso_z(until), "services": entries}


def _urgencies(
    key: str, groups: dict[GroupKey, _Group], open_now: dict[GroupKey, tuple[int, int]]
) -> list[str]:
    """The catalogue's urgencies in order, then any other found in the data."""
    extra = sorted(
        {k[2] for k in (*groups, *open_now) if k[0] == key and k[1] == "u"} - set(URGENCIES)
    )
    return [*URGENCIES, *extra]


# --------------------------------------------------------------------------- formatting
def format_duration(seconds: float | None) -> str:
    """'45s', '12m', '2h 05m', '3d 4h'; '—' for no value."""
    if seconds is None:
        return "—"
    sign = "-" if seconds < 0 else ""
    total = int(round(abs(seconds)))
    if total < 60:
        return f"{sign}{total}s"
    minutes = total // 60
    if minutes < 60:
        return f"{sign}{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{sign}{days}d {hours}h"


def format_share(share: float | None) -> str:
    """'83%'; '—' for no value."""
    return "—" if share is None else f"{share * 100:.0f}%"


CSV_COLUMNS = (
    "service",
    "urgency",
    "consults",
    "acknowledged",
    "answered",
    "closed",
    "cancelled",
    "open_now",
    "open_overdue",
    "escalated",
    "handed_off",
    "reopened",
    "tta_median",
    "tta_p90",
    "ttfr_median",
    "ttfr_p90",
    "ttans_median",
    "ttans_p90",
    "waiting_total",
    "waiting_consults",
    "waiting_median",
    "waiting_p90",
    "within_sla",
    "ack_within_sla",
    "feedback_count",
    "feedback_helpful",
    "feedback_helpful_share",
)


def _flat(service: str, urgency: str, f: dict[str, Any]) -> dict[str, Any]:
    w, fb = f["waiting_on_requester"], f["feedback"]
    return {
        "service": service,
        "urgency": urgency,
        **{k: f[k] for k in CSV_COLUMNS[2:12]},
        "tta_median": f["time_to_acknowledge"]["median"],
        "tta_p90": f["time_to_acknowledge"]["p90"],
        "ttfr_median": f["time_to_first_response"]["median"],
        "ttfr_p90": f["time_to_first_response"]["p90"],
        "ttans_median": f["time_to_answer"]["median"],
        "ttans_p90": f["time_to_answer"]["p90"],
        "waiting_total": w["total"],
        "waiting_consults": w["consults"],
        "waiting_median": w["median"],
        "waiting_p90": w["p90"],
        "within_sla": f["within_sla"],
        "ack_within_sla": f["ack_within_sla"],
        "feedback_count": fb["count"],
        "feedback_helpful": fb["helpful"],
        "feedback_helpful_share": fb["helpful_share"],
    }


def _flat_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in report["services"]:
        rows.append(_flat(entry["service"], "all", entry))
        for urgency, figures in entry["by_urgency"].items():
            rows.append(_flat(entry["service"], urgency, figures))
    return rows


def report_csv(report: dict[str, Any]) -> str:
    """One row per service (urgency "all") and per service and urgency; seconds, shares 0..1."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in _flat_rows(report):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


TABLE_COLUMNS = (
    ("service", "Service"),
    ("urgency", "Urgency"),
    ("consults", "Consults"),
    ("acknowledged", "Acked"),
    ("answered", "Answered"),
    ("open_now", "Open"),
    ("open_overdue", "Overdue"),
    ("escalated", "Escalated"),
    ("tta_median", "Ack med"),
    ("tta_p90", "Ack p90"),
    ("ttfr_median", "1st resp med"),
    ("ttans_median", "Answer med"),
    ("ttans_p90", "Answer p90"),
    ("waiting_total", "Waiting (req.)"),
    ("within_sla", "In SLA"),
    ("ack_within_sla", "Ack in SLA"),
    ("feedback_helpful_share", "Helpful"),
)
_DURATION_COLUMNS = {
    "tta_median", "tta_p90", "ttfr_median", "ttans_median", "ttans_p90", "waiting_total"
}  # fmt: skip
_SHARE_COLUMNS = {"within_sla", "ack_within_sla", "feedback_helpful_share"}


def report_table(report: dict[str, Any]) -> str:
    """An aligned plain-text table: durations as '2h 05m', shares as percentages."""
    header = [title for _, title in TABLE_COLUMNS]
    lines: list[list[str]] = []
    for row in _flat_rows(report):
        cells = []
        for key, _ in TABLE_COLUMNS:
            value = row[key]
            if key in _DURATION_COLUMNS:
                cells.append(format_duration(value) if value or key != "waiting_total" else "—")
            elif key in _SHARE_COLUMNS:
                cells.append(format_share(value))
            else:
                cells.append(str(value))
        lines.append(cells)
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    title = f"CareLoop consults created {report['since']} to {report['until']}"
    out = [title, render(header), render(["-" * w for w in widths])]
    out += [render(cells) for cells in lines]
    out.append(
        "Times from creation. Answer times exclude need-info waiting, shown apart as "
        "'Waiting (req.)'. Open/Overdue are as of now."
    )
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- CLI
def report_cli(settings: Settings, *, since: str, service: str | None, fmt: str) -> int:
    """`python -m bot report [--since 30d] [--service KEY] [--format json|csv|table]`.

    Prints the report for consults created in the last `since`, to now; returns the exit
    code (2 for a bad period or an unknown service, with the reason on stderr).
    """
    try:
        period = parse_period(since)
    except ValueError as exc:
        print(f"--since: {exc}", file=sys.stderr)
        return 2
    if fmt not in ("json", "csv", "table"):
        print(f"--format: {fmt!r} is not one of json, csv, table", file=sys.stderr)
        return 2
    catalogue = load_catalogue(settings.consult_config)
    keys: list[str] | None = None
    if service is not None:
        found = catalogue.service(service)
        if found is None:
            valid = ", ".join(s.key for s in catalogue.services)
            print(f"--service: unknown service {service!r}; valid keys: {valid}", file=sys.stderr)
            return 2
        keys = [found.key]
    now = SystemClock().now().replace(microsecond=0)
    engine = create_db_engine(settings.database_url)
    try:
        migrate(engine)
        with session_factory(engine)() as session:
            report = compute_report(
                session, catalogue=catalogue, since=now - period, until=now, now=now,
                services=keys,
            )  # fmt: skip
    finally:
        engine.dispose()
    if fmt == "json":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    elif fmt == "csv":
        sys.stdout.write(report_csv(report))
    else:
        sys.stdout.write(report_table(report))
    return 0


# --------------------------------------------------------------------------- Slack
def can_see(catalogue: Catalogue, user: str, service: Service) -> bool:
    """Only a service's leads and CareLoop admins may see its figures."""
    return user in catalogue.admins or user in service.leads


def _summary_lines(f: dict[str, Any]) -> list[str]:
    w, fb = f["waiting_on_requester"], f["feedback"]
    helpful = (
        f" · feedback {fb['count']} ({format_share(fb['helpful_share'])} helpful)"
        if fb["count"]
        else ""
    )
    return [
        f"*{f['consults']}* consults · *{f['answered']}* answered · *{f['closed']}* closed · "
        f"{f['cancelled']} cancelled",
        f"Open now: *{f['open_now']}* ({f['open_overdue']} overdue)",
        f"Time to acknowledge: median *{format_duration(f['time_to_acknowledge']['median'])}*"
        f" · p90 {format_duration(f['time_to_acknowledge']['p90'])}",
        f"First response: median *{format_duration(f['time_to_first_response']['median'])}*"
        f" · p90 {format_duration(f['time_to_first_response']['p90'])}",
        f"Time to answer: median *{format_duration(f['time_to_answer']['median'])}*"
        f" · p90 {format_duration(f['time_to_answer']['p90'])}",
        f"Within SLA: *{format_share(f['within_sla'])}* answered · "
        f"{format_share(f['ack_within_sla'])} acknowledged",
        f"Waiting on requesters: {w['consults']} consult(s), "
        f"{format_duration(w['total']) if w['total'] else '—'} in total (not counted above)",
        f"Escalated {f['escalated']} · handed off {f['handed_off']} · "
        f"reopened {f['reopened']}{helpful}",
    ]


def _breakdown_line(label: str, f: dict[str, Any]) -> str:
    return (
        f"• {label}: {f['consults']} consults, {f['answered']} answered, "
        f"answer median {format_duration(f['time_to_answer']['median'])}, "
        f"in SLA {format_share(f['within_sla'])}, {f['open_overdue']} overdue now"
    )


def _service_blocks(entry: dict[str, Any], name: str, days: int) -> list[dict[str, Any]]:
    blocks = [
        section(
            f":bar_chart: *{escape(name)}* — consults created in the last {days} days\n"
            + "\n".join(_summary_lines(entry))
        )
    ]
    urgency_lines = [
        _breakdown_line(URGENCY_NAMES.get(u, escape(u)), f)
        for u, f in entry["by_urgency"].items()
        if f["consults"] or f["open_now"]
    ]
    if urgency_lines:
        blocks.append(section("*By urgency*\n" + "\n".join(urgency_lines)))
    people = sorted(
        entry["by_consultant"].items(), key=lambda item: (-item[1]["consults"], item[0])
    )
    if people:
        lines = [_breakdown_line(f"<@{escape(u)}>", f) for u, f in people[:TOP_CONSULTANTS]]
        if len(people) > TOP_CONSULTANTS:
            lines.append(f"…and {len(people) - TOP_CONSULTANTS} more (`python -m bot report`).")
        blocks.append(section("*By consultant*\n" + "\n".join(lines)))
    return blocks


def stats_for_slack(
    svc: Services, *, user: str, service: str | None, days: int
) -> str | dict[str, Any]:
    """`/consult stats [service] [7d|30d|90d]`: figures for services the user may see.

    A service's figures are for its leads and CareLoop admins; anyone else gets a refusal
    (audited) and no figures. Without a service: every service the user leads (admins:
    all). Returns refusal text, or ``{"text": fallback, "blocks": [...]}``.
    """
    catalogue = svc.catalogue
    if service:
        found = catalogue.service(service)
        if found is None:
            valid = ", ".join(f"`{s.key}`" for s in catalogue.services)
            return f":warning: There is no service `{escape(service)}`. Services: {valid}."
        if not can_see(catalogue, user, found):
            svc.consults.audit_refusal(
                user=user, action="stats", reason=f"not a lead of {found.key}", ref=None
            )
            return (
                f":no_entry: Only the leads of {escape(found.name)} and CareLoop admins can "
                "see its figures."
            )
        chosen = [found]
    else:
        chosen = [s for s in catalogue.services if can_see(catalogue, user, s)]
        if not chosen:
            svc.consults.audit_refusal(
                user=user, action="stats", reason="leads no service", ref=None
            )
            return (
                ":no_entry: Figures are for service leads and CareLoop admins, and you don't "
                "lead a service."
            )
    now = svc.clock.now()
    with svc.consults.unit() as session:
        report = compute_report(
            session,
            catalogue=catalogue,
            since=now - timedelta(days=days),
            until=now,
            now=now,
            services=[s.key for s in chosen],
        )
    blocks: list[dict[str, Any]] = []
    shown: list[str] = []
    for entry, s in zip(report["services"], chosen, strict=True):
        more = _service_blocks(entry, s.name, days)
        if len(blocks) + len(more) > MAX_SLACK_BLOCKS - 1:
            break
        blocks += more
        shown.append(s.name)
    note = (
        "Times are from when the consult was opened; time to answer leaves out time spent "
        "waiting on the requester. Overdue counts are as of now."
    )
    if len(shown) < len(chosen):
        note += (
            f" Showing {len(shown)} of {len(chosen)} services: use `/consult stats <service>` "
            "for the others."
        )
    blocks.append(context(note))
    text = f"CareLoop figures for the last {days} days: " + ", ".join(escape(n) for n in shown)
    return {"text": text, "blocks": blocks}


def _overdue_refs(
    session: Session, keys: Sequence[str], now: datetime
) -> dict[str, list[tuple[str, str | None]]]:
    """References (and permalinks) of consults overdue now, oldest first, per service."""
    stmt = (
        select(_C.service, _C.ref, _C.permalink)
        .where(_C.status.in_(OPEN_STATUSES), _due_now() < now)  # status index: see above
        .order_by(_C.created_at, _C.id)
    )
    out: dict[str, list[tuple[str, str | None]]] = {k: [] for k in keys}
    for service, ref, permalink in session.execute(stmt):
        if service in out:
            out[service].append((ref, permalink))
    return out


def _ref_list(refs: list[tuple[str, str | None]], *, links: bool) -> str:
    shown = [link(url, ref) if links else escape(ref) for ref, url in refs[:MAX_REFS]]
    text = ", ".join(shown)
    if len(refs) > MAX_REFS:
        text += f" …and {len(refs) - MAX_REFS} more"
    return text


def week_at_a_glance(
    *, session: Session, services: list[Service], ctx: RenderContext
) -> list[dict[str, Any]]:
    """App Home blocks for leads: each led service over the last 7 days, and what is
    overdue now (count and references only)."""
    if not services:
        return []
    now = _aware(ctx.now)
    keys = [s.key for s in services]
    report = compute_report(
        session,
        catalogue=ctx.catalogue,
        since=now - timedelta(days=GLANCE_DAYS),
        until=now,
        now=now,
        services=keys,
    )
    overdue = _overdue_refs(session, keys, now)
    blocks: list[dict[str, Any]] = [section("*Your services — last 7 days*")]
    for entry, s in zip(report["services"], services, strict=True):
        refs = overdue[s.key]
        late = f"*{len(refs)}*: {_ref_list(refs, links=True)}" if refs else "none"
        blocks.append(
            section(
                f"*{escape(s.name)}* · {entry['consults']} consults · {entry['answered']} "
                f"answered · median time to answer "
                f"{format_duration(entry['time_to_answer']['median'])} · within SLA "
                f"{format_share(entry['within_sla'])}\nOverdue now: {late}"
            )
        )
    blocks.append(context("`/consult stats` for the full figures."))
    return blocks


# --------------------------------------------------------------------------- digest
def digest_chart_png(session: Session, *, service: str, until: datetime) -> bytes:
    """PNG line chart: daily median time to answer (hours, need-info waiting excluded) of
    consults created on each of the 56 days before `until`. No patient data."""
    import matplotlib  # noqa: PLC0415 - heavy, and only the digest needs it

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # noqa: PLC0415 - thread-safe, no pyplot state

    until = _aware(until)
    start = until - timedelta(days=CHART_DAYS)
    stmt = select(_C.created_at, _C.answered_at, _C.waiting_seconds).where(
        _C.service == service,
        _C.created_at >= start,
        _C.created_at < until,
        _C.answered_at.is_not(None),
    )
    per_day: list[list[float]] = [[] for _ in range(CHART_DAYS)]
    for created, answered, waiting_s in session.execute(stmt):
        day = int((created - start) // timedelta(days=1))
        if 0 <= day < CHART_DAYS:
            per_day[day].append(_seconds(answered, created, waiting_s or 0) / 3600)
    days = [start + timedelta(days=i) for i in range(CHART_DAYS)]
    medians = [percentile(v, 0.5) for v in per_day]
    ys = [m if m is not None else math.nan for m in medians]

    fig = Figure(figsize=(8, 3.5), dpi=100)
    ax = fig.add_subplot()
    ax.plot(days, ys, marker="o", markersize=3, linewidth=1.5, color="#1f77b4")
    ax.set_title(f"{service}: daily median time to answer (hours), last {CHART_DAYS} days")
    ax.set_ylabel("hours")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if all(math.isnan(y) for y in ys):
        ax.text(0.5, 0.5, "no answered consults", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
    fig.autofmt_xdate()
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _digest_figures(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "consults": entry["consults"],
        "answered": entry["answered"],
        "acknowledged": entry["acknowledged"],
        "escalated": entry["escalated"],
        "tta_median": entry["time_to_acknowledge"]["median"],
        "ttans_median": entry["time_to_answer"]["median"],
        "ttans_p90": entry["time_to_answer"]["p90"],
        "within_sla": entry["within_sla"],
        "ack_within_sla": entry["ack_within_sla"],
        "waiting_total": entry["waiting_on_requester"]["total"],
        "helpful_share": entry["feedback"]["helpful_share"],
    }


@dataclass(frozen=True)
class DigestWeek:
    """The week a digest covers: the 7 calendar days before the day it is sent, in the
    digest's time zone (`since`/`until` in UTC), named by the ISO week it is sent in."""

    since: datetime
    until: datetime
    first_day: str  # "2026-10-24", local
    last_day: str  # "2026-10-30", local
    iso_week: str  # "2026-W44", of the sending day


def digest_week(catalogue: Catalogue, now: datetime) -> DigestWeek:
    """The digest week for a digest sent at `now` (midnight to midnight, local time)."""
    tz = ZoneInfo(catalogue.digest.timezone or "UTC")
    today = _aware(now).astimezone(tz).date()
    first = today - timedelta(days=7)
    year, week, _ = today.isocalendar()
    return DigestWeek(
        since=datetime.combine(first, time(0), tzinfo=tz).astimezone(UTC),
        until=datetime.combine(today, time(0), tzinfo=tz).astimezone(UTC),
        first_day=first.isoformat(),
        last_day=(today - timedelta(days=1)).isoformat(),
        iso_week=f"{year}-W{week:02d}",
    )


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def last_digest_time(catalogue: Catalogue, now: datetime) -> datetime | None:
    """The most recent scheduled digest time at or before `now` (aware, UTC), or None when
    the digest is off.

    The schedule is the catalogue's `[digest]` day, "HH:MM" time and time zone, read as the
    scheduler's cron trigger reads them: a wall-clock time skipped by a DST change falls one
    hour later (at the old offset), and one that happens twice is scheduled twice (the same
    day, so the same digest week: the second run is a no-op).
    """
    digest = catalogue.digest
    if not digest.enabled:
        return None
    tz = ZoneInfo(digest.timezone or "UTC")
    hour, minute = (int(x) for x in digest.time.split(":"))
    now = _aware(now)
    today = now.astimezone(tz).date()
    day = today - timedelta(days=(today.weekday() - _WEEKDAYS.index(digest.day)) % 7)

    def scheduled(on: date) -> list[datetime]:
        first, second = (
            datetime.combine(on, time(hour, minute, fold=fold), tzinfo=tz).astimezone(UTC)
            for fold in (0, 1)
        )
        return [first, second] if second > first else [first]  # second < first: a DST gap

    due = [when for when in scheduled(day) if when <= now]
    return due[-1] if due else scheduled(day - timedelta(days=7))[-1]


def _digest_key(service: str, iso_week: str, lead: str) -> str:
    return f"digest:{service}:{iso_week}:{lead}"


def send_weekly_digests(services: Services, *, at: datetime | None = None) -> int:
    """Queue each service lead's weekly digest DM and chart; returns how many were queued.

    `at` is the scheduled time the digest belongs to (default: now); it sets the week
    covered and the ISO week it is named by, so a digest sent late (start-up catch-up) still
    covers the week before its scheduled day. The week's figures come with the previous
    week's and the list of consults overdue *now* (references only). Dedupe keys per
    service, ISO week and lead make this exactly-once per week even when several processes
    run the job, or a late run follows a punctual one.
    """
    catalogue = services.catalogue
    now = _aware(services.clock.now())
    week = digest_week(catalogue, now if at is None else at)
    since, until, iso_week = week.since, week.until, week.iso_week
    previous_since = since - timedelta(days=7)
    targets = [s for s in catalogue.services if s.leads]
    if not targets:
        return 0
    keys = [s.key for s in targets]
    queued = 0
    with services.consults.unit() as session:
        current = compute_report(
            session, catalogue=catalogue, since=since, until=until, now=now, services=keys
        )
        before = compute_report(
            session, catalogue=catalogue, since=previous_since, until=since, now=now,
            services=keys,
        )  # fmt: skip
        overdue = _overdue_refs(session, keys, now)
        for s, this, prev in zip(targets, current["services"], before["services"], strict=True):
            refs = overdue[s.key]
            params = {
                "service": s.key,
                "week": iso_week,
                "since": iso_z(since),
                "until": iso_z(until),
                "first_day": week.first_day,
                "last_day": week.last_day,
                "this_week": _digest_figures(this),
                "previous_week": _digest_figures(prev),
                "overdue": {"count": len(refs), "refs": [r for r, _ in refs[:MAX_REFS]]},
            }
            for lead in dict.fromkeys(s.leads):
                if services.outbox.add(
                    session,
                    kind=Kind.DM,
                    template="digest",
                    user=lead,
                    now=now,
                    params=params,
                    dedupe_key=_digest_key(s.key, iso_week, lead),
                ):
                    queued += 1
                services.outbox.add(
                    session,
                    kind=Kind.UPLOAD,
                    template="digest_chart",
                    user=lead,
                    now=now,
                    params={"service": s.key, "until": iso_z(until)},
                    dedupe_key=f"digest-chart:{s.key}:{iso_week}:{lead}",
                )
    return queued


def digests_not_queued(services: Services, *, at: datetime) -> list[str]:
    """Keys of the services with leads at least one of whom has no digest DM queued for the
    digest scheduled at `at` (its ISO week). Reads dedupe keys only; sends nothing."""
    iso_week = digest_week(services.catalogue, at).iso_week
    expected = {
        _digest_key(s.key, iso_week, lead): s.key
        for s in services.catalogue.services
        for lead in s.leads
    }
    if not expected:
        return []
    with services.sessions() as session:
        found = set(
            session.execute(
                select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(expected))
            ).scalars()
        )
    return list(dict.fromkeys(key for dk, key in expected.items() if dk not in found))


_DIGEST_ROWS = (
    ("consults", "Consults", "count"),
    ("answered", "Answered", "count"),
    ("tta_median", "Median time to acknowledge", "duration"),
    ("ttans_median", "Median time to answer", "duration"),
    ("ttans_p90", "90th percentile time to answer", "duration"),
    ("within_sla", "Answered within SLA", "share"),
    ("ack_within_sla", "Acknowledged within SLA", "share"),
    ("escalated", "Escalated", "count"),
    ("waiting_total", "Waiting on requesters (not counted above)", "duration"),
    ("helpful_share", "Rated helpful", "share"),
)


def _digest_value(value: Any, kind: str) -> str:
    if kind == "count":
        return "—" if value is None else str(value)
    if kind == "share":
        return format_share(value)
    if kind == "duration" and not value:
        return "—" if value is None else "0m"
    return format_duration(value)


def render_digest(params: dict[str, Any], ctx: RenderContext) -> tuple[str, list[dict[str, Any]]]:
    """The "digest" DM: this week's figures beside last week's, and what is overdue now."""
    key = str(params.get("service", ""))
    name = escape(ctx.service_name(key))
    this = params.get("this_week") or {}
    prev = params.get("previous_week") or {}
    first_day = escape(str(params.get("first_day") or str(params.get("since", "?"))[:10]))
    last_day = escape(str(params.get("last_day") or "?"))
    lines = [
        f"{label}: *{_digest_value(this.get(k), kind)}* (week before: "
        f"{_digest_value(prev.get(k), kind)})"
        for k, label, kind in _DIGEST_ROWS
    ]
    overdue = params.get("overdue") or {}
    count = int(overdue.get("count") or 0)
    refs = [escape(str(r)) for r in overdue.get("refs") or []]
    if count:
        more = f" …and {count - len(refs)} more" if count > len(refs) else ""
        late = f":warning: *Overdue now: {count}* — {', '.join(refs)}{more}"
    else:
        late = ":white_check_mark: Nothing is overdue right now."
    blocks = [
        section(
            f":bar_chart: *Weekly digest — {name}*\n"
            f"Consults opened {first_day} to {last_day}, compared with the week before"
        ),
        section("\n".join(lines)),
        section(late),
        context(
            "Times run from when a consult was opened; time to answer leaves out waiting on "
            "the requester. A chart of the daily median time to answer follows. "
            "`/consult stats` for more."
        ),
    ]
    return f"Weekly CareLoop digest for {name}", blocks
