"""The time held on PostgreSQL, vectorised: the period's hops come as one row per
(service, role, holder, urgency) with their start and end times as binary values back to
back (``timestamptz_send``: int64 microseconds since 2000-01-01), and numpy turns them into
seconds (`bot.reports.worktime` for working hours, `bot.reports.vectors.epoch_seconds` for
clock time), bit for bit each hop's `WorkingHours.elapsed` (else clock time) computed alone.

Both aggregates of a row aggregate the hops in the same order (one aggregation step feeds
each input row to every aggregate of the query, as `bot.reports.days` relies on), so the
i-th start and the i-th end are one hop's. The order of the hops within a group does not
matter: totals are exactly rounded sums and percentiles sort.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, false, func, or_, select
from sqlalchemy.orm import Session

from bot.domain.catalogue import Catalogue
from bot.domain.hours import WorkingHours
from bot.reports.postgres import fetch_binary, joined, tune
from bot.reports.vectors import epoch_seconds, from_raw
from bot.reports.worktime import WorkClock, span
from storage.models import Consult
from storage.models_hops import ConsultHop

HoursOf = Callable[[str, str], WorkingHours | None]  # (service, urgency) -> hours
Pooled = dict[tuple[str, str, str], list[np.ndarray]]  # (service, role, user) -> seconds
# A period shorter than this reads its hops' urgencies by key rather than by hashing every
# consult: at 1M consults a week's time held took 0.146 s against 0.188 s, 13 days 0.255
# against 0.267 s, 20 days 0.399 against 0.380 s (BENCHMARKS.md).
SHORT = timedelta(days=14)


def hops_sql(
    services: Sequence[str],
    since: datetime,
    until: datetime,
    ranges: Sequence[tuple[str, datetime, datetime]] | None = None,
    by: Sequence[Any] = (),
) -> Any:
    """Per (service, role, user, urgency, *`by`): the start and end times of the hops of
    `services` that ended in ``[since, until)`` (only in `ranges`' (service, from, to)
    when given). A whole period joins `consults` by hash; the few hops of `ranges` (the
    rest of a period with stored days, a fill's days) look each consult's urgency up by
    its key instead of hashing the whole table (about 125 ms against 250 ms for a week at
    1M consults)."""
    H = ConsultHop
    where = [H.service.in_(list(services)), H.ended_at >= since, H.ended_at < until]
    if ranges is None:
        urgency = Consult.urgency
        source = H.__table__.join(Consult.__table__, Consult.id == H.consult_id)
    else:
        where.append(
            or_(
                false(),
                *(and_(H.service == s, H.ended_at >= a, H.ended_at < b) for s, a, b in ranges),
            )
        )
        urgency = select(Consult.urgency).where(Consult.id == H.consult_id).scalar_subquery()
        source = H.__table__
    inner = (
        select(
            H.service.label("service"),
            H.role.label("role"),
            func.coalesce(H.user, "").label("user"),
            urgency.label("urgency"),
            H.started_at.label("started_at"),
            H.ended_at.label("ended_at"),
            *(column.label(f"by{i}") for i, column in enumerate(by)),
        )
        .select_from(source)
        .where(*where)
        .subquery()
    )
    keys = [inner.c.service, inner.c.role, inner.c.user, inner.c.urgency]
    extra = [inner.c[f"by{i}"] for i in range(len(by))]
    times = [joined("timestamptz_send", inner.c[t]) for t in ("started_at", "ended_at")]
    return select(*keys, *times, *extra).group_by(*keys, *extra)


def hours_for(catalogue: Catalogue, service: str, urgency: str) -> WorkingHours | None:
    """The working hours `service`'s clocks for `urgency` count in (None: around the clock)."""
    try:
        return catalogue.policy(catalogue.service_by_key(service), urgency).hours
    except KeyError:
        return None


def hours_of(catalogue: Catalogue) -> HoursOf:
    """`hours_for` of `catalogue`, as `seconds_of` asks for it."""
    return lambda service, urgency: hours_for(catalogue, service, urgency)


Rows = list[tuple[str, str, str, str, np.ndarray, np.ndarray]]


def _binary_times(data: bytes) -> np.ndarray:
    return from_raw(data, 8)


def parse(
    rows: Iterable[Sequence[Any]], times: Callable[[Any], np.ndarray] = _binary_times
) -> Rows:
    """`hops_sql`'s rows with their times as int64 arrays (extra `by` columns dropped);
    `times` reads one row's start or end times (by default, `hops_sql`'s binary values)."""
    out: Rows = []
    for service, role, user, urgency, started, ended, *_by in rows:
        starts, ends = times(started), times(ended)
        if len(starts) != len(ends):
            raise ValueError("hop start and end times of unequal lengths")
        out.append((service, role, user, urgency, starts, ends))
    return out


def seconds_of(rows: Rows, hours_of: HoursOf) -> Pooled:
    """The hops' seconds per (service, role, user), in parts: working time where the
    (service, urgency) has hours (one `WorkClock` per hours over all their hops), else
    clock time like `bot.reports.vectors.epoch_seconds`, never below 0."""
    spans: dict[WorkingHours, list[np.ndarray]] = {}
    for service, _role, _user, urgency, starts, ends in rows:
        hours = hours_of(service, urgency)
        if hours is not None:
            spans.setdefault(hours, []).extend((starts, ends))
    clocks = {hours: WorkClock(hours, *span(*arrays)) for hours, arrays in spans.items()}
    out: Pooled = {}
    for service, role, user, urgency, starts, ends in rows:
        hours = hours_of(service, urgency)
        if hours is not None:
            seconds = clocks[hours].seconds(starts, ends)
        else:
            seconds = np.maximum(epoch_seconds(ends, starts), 0.0)
        out.setdefault((service, role, user), []).append(seconds)
    return out


def pooled_seconds(
    session: Session, services: Sequence[str], since: datetime, until: datetime, hours_of: HoursOf
) -> Pooled:
    """The seconds of the period's hops per (service, role, user), in parts; the user is
    "" for queue hops and for hops without one."""
    tune(session)
    # A short period's few hops look their consults up by key (`hops_sql` with ranges).
    ranges = [(s, since, until) for s in services] if until - since < SHORT else None
    stmt = hops_sql(services, since, until, ranges)
    return seconds_of(parse(fetch_binary(session, stmt)), hours_of)
