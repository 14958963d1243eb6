"""The report's groups computed entirely in PostgreSQL: grouped counts and
``percentile_cont`` through ``GROUPING SETS``, with seconds from ``date_part('epoch', …)``.

This is how the report was computed before `bot.reports.postgres` streamed the raw times
out and took the percentiles with numpy (`bot.reports.vectors`). It stays as the reference
the report is checked against, bit for bit: by `tests/data/test_report_figures.py` and by
``bench/report_bench.py`` on a million consults. It runs on the session alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Double, case, cast, func, literal_column, select, tuple_
from sqlalchemy.orm import Session

from bot.reports.model import TIME_FIELDS, Counts, Group, GroupKey
from bot.reports.postgres import tune
from bot.reports.queries import C, count_columns, group_keys, period_filter

Percentiles = dict[GroupKey, dict[str, tuple[float | None, float | None]]]


def _epoch(later: Any, earlier: Any) -> Any:
    # date_part returns double precision (EXTRACT returns numeric since PostgreSQL 14).
    return func.date_part(literal_column("'epoch'"), later - earlier, type_=Double)


def percentile_sql(
    keys: Sequence[str], since: datetime, until: datetime, fields: Sequence[str] = TIME_FIELDS
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


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _percentiles(
    session: Session, keys: Sequence[str], since: datetime, until: datetime
) -> Percentiles:
    out: Percentiles = {}
    result = session.execute(percentile_sql(keys, since, until))
    for service, urgency, assignee, g_urgency, g_assignee, *values in result:
        if g_urgency == 0:
            key: GroupKey = (service, "u", urgency)
        elif g_assignee == 0:
            if not assignee:
                continue  # unassigned consults have no consultant row
            key = (service, "c", assignee)
        else:
            key = (service, "", "")
        out[key] = {
            f: (_float(values[2 * i]), _float(values[2 * i + 1])) for i, f in enumerate(TIME_FIELDS)
        }
    return out


def period_groups_reference(
    session: Session, keys: Sequence[str], since: datetime, until: datetime, now: datetime
) -> dict[GroupKey, Group]:
    """The report's groups as `bot.reports.postgres.period_groups_sql` returns them, all
    computed by PostgreSQL: counts per (service, urgency, assignee) rolled up here, and
    ``percentile_cont`` per service, service+urgency and service+assignee."""
    tune(session)
    columns = count_columns(now)
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
    times = _percentiles(session, keys, since, until) if counts else {}
    return {key: Group.of(n, times.get(key, {})) for key, n in counts.items()}
