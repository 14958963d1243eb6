"""The report's aggregation on SQLite: one grouped query per (service, urgency, assignee)
returns each finest group's counts and its consults' times as comma-separated text
(``group_concat``); numpy parses each list at once and `bot.reports.vectors` computes the
seconds and percentiles, bit for bit as on PostgreSQL.

SQLite keeps times as naive UTC text (``2026-10-24 13:45:12.123456``), which numpy reads as
``datetime64[us]``; a missing time is sent as an empty item and read as NaT, which is
`bot.reports.vectors.NONE`. Every aggregate of a group reads its rows in the same order,
so the lists line up consult by consult.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import String, func, literal, select, type_coerce
from sqlalchemy.orm import Session

from bot.reports.model import COUNT_FIELDS, Group, GroupKey
from bot.reports.queries import ARRAY_COUNTS, C, count_columns, period_filter
from bot.reports.vectors import NONE, part, roll_up

# The times sent, in `bot.reports.vectors.seconds`' order (the waiting seconds follow).
_TIMES = (C.created_at, C.acknowledged_at, C.first_reply_at, C.answered_at)

if np.datetime64("NaT", "us").astype(np.int64) != NONE:  # pragma: no cover - numpy's NaT
    raise ImportError("numpy's NaT is not the smallest int64")


def _listed(column: Any) -> Any:
    """``group_concat`` of `column` as text, a NULL as an empty item (never skipped)."""
    return func.group_concat(func.coalesce(type_coerce(column, String), literal("")), ",")


def period_sql_sqlite(keys: Sequence[str], since: datetime, until: datetime, now: datetime) -> Any:
    """Per (service, urgency, assignee) of the period: the `Counts` aggregates but those
    the lists give (`bot.reports.queries.ARRAY_COUNTS`), then five lists with one item per consult in the same order: created, acknowledged, first reply
    and answered times, and the seconds waited on the requester."""
    return (
        select(
            C.service,
            C.urgency,
            C.assignee,
            *count_columns(now, from_arrays=True).values(),
            *(_listed(t) for t in _TIMES),
            _listed(C.waiting_seconds),
        )
        .where(period_filter(keys, since, until))
        .group_by(C.service, C.urgency, C.assignee)
    )


def _times(listed: str) -> np.ndarray:
    return np.array(listed.split(","), dtype="datetime64[us]").view(np.int64)


def period_groups_sqlite(
    session: Session, keys: Sequence[str], since: datetime, until: datetime, now: datetime
) -> dict[GroupKey, Group]:
    """The report's groups of the period, as `bot.reports.postgres.period_groups_sql`."""
    width = len(COUNT_FIELDS) - len(ARRAY_COUNTS)
    parts = []
    for service, urgency, assignee, *values in session.execute(
        period_sql_sqlite(keys, since, until, now)
    ):
        arrays = [_times(v) for v in values[width : width + 4]]
        waiting = np.array(values[width + 4].split(","), dtype=np.int64)
        parts.append(part((service, urgency, assignee), values[:width], *arrays, waiting))
    return roll_up(parts)
