"""The time held on SQLite, vectorised like on PostgreSQL (`bot.reports.holders_pg`): the
period's hops come as one row per (service, role, holder, urgency) with their start and
end times as comma-separated text (``group_concat``, both lists in the same row order, as
`bot.reports.sqlite` relies on), which numpy reads as ``datetime64[us]`` (SQLite keeps
naive UTC text); the seconds are then computed by the same functions as on PostgreSQL,
bit for bit each hop's `WorkingHours.elapsed` (else clock time) computed alone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import String, func, select, type_coerce
from sqlalchemy.orm import Session

from bot.reports.holders_pg import HoursOf, Pooled, parse, seconds_of
from bot.reports.worktime import EPOCH
from storage.models import Consult
from storage.models_hops import ConsultHop

# numpy reads the text as microseconds since 1970; the working-time functions count from
# `EPOCH` (2000-01-01, PostgreSQL's): the same instants, shifted by a whole number.
_SHIFT = (EPOCH - datetime(1970, 1, 1, tzinfo=UTC)) // np.timedelta64(1, "us").item()


def hops_sql_sqlite(services: Sequence[str], since: datetime, until: datetime) -> Any:
    """Per (service, role, user, urgency): the start and end times, as text lists, of the
    hops of `services` that ended in ``[since, until)``."""
    H = ConsultHop
    user = func.coalesce(H.user, "")
    return (
        select(
            H.service,
            H.role,
            user,
            Consult.urgency,
            func.group_concat(type_coerce(H.started_at, String), ","),
            func.group_concat(type_coerce(H.ended_at, String), ","),
        )
        .join(Consult, Consult.id == H.consult_id)
        .where(H.service.in_(list(services)), H.ended_at >= since, H.ended_at < until)
        .group_by(H.service, H.role, user, Consult.urgency)
    )


def _times(listed: str) -> np.ndarray:
    return np.array(listed.split(","), dtype="datetime64[us]").view(np.int64) - _SHIFT


def pooled_seconds_sqlite(
    session: Session, services: Sequence[str], since: datetime, until: datetime, hours_of: HoursOf
) -> Pooled:
    """The seconds of the period's hops per (service, role, user), in parts; the user is
    "" for queue hops and for hops without one."""
    rows = session.execute(hops_sql_sqlite(services, since, until))
    return seconds_of(parse(rows, _times), hours_of)
