"""The report's time figures from raw times, vectorised with numpy: seconds between two
times exactly as ``date_part('epoch', later - earlier)`` computes them, and medians and
90th percentiles exactly as ``percentile_cont`` interpolates them, bit for bit.

Times arrive as whole microseconds (int64, any common epoch; PostgreSQL sends microseconds
since 2000-01-01) with `NONE` for a missing time; `seconds` turns those of a finest group
(service, urgency, assignee), or of a part of one, into time values, and `roll_up` pools
the parts into the report's groups (per service, service and urgency, service and
consultant) and takes their percentiles: each group's values sorted (numpy's vectorised
sort, quicker here than ``numpy.partition`` and the minimum scans it needs), then its two
order statistics interpolated with the same float operations, in the same order, as
`bot.reports.percentiles.percentile`. Each service's groups are computed apart, services
on `ROLL_UP_THREADS` threads (numpy's sort releases the GIL).

`part` also counts what the times tell (`bot.reports.queries.ARRAY_COUNTS`: consults,
acknowledged, answered, waiting), which the queries therefore do not aggregate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from bot.reports.model import COUNT_FIELDS, TIME_FIELDS, Counts, Group, GroupKey, Pair
from bot.reports.queries import ARRAY_COUNTS, group_keys

NONE = np.iinfo(np.int64).min  # a missing time (PostgreSQL's '-infinity' timestamptz)
US_PER_DAY = 86_400_000_000
_PERCENTS = (0.5, 0.9)
_ELEMENT = {8: np.dtype([("n", ">i4"), ("v", ">i8")]), 4: np.dtype([("n", ">i4"), ("v", ">i4")])}
_HEADER_BYTES = 20  # ndim, has-nulls flag, element type, length, lower bound: int4 each
# Threads rolling services up at once; below ROLL_UP_ALONE values in all, one.
ROLL_UP_THREADS = 2
ROLL_UP_ALONE = 200_000

FinestKey = tuple[str, str, str | None]  # (service, urgency, assignee)


Part = tuple[FinestKey, Counts, dict[str, np.ndarray]]  # a finest group's share of the period


def seconds(
    created: np.ndarray,
    acknowledged: np.ndarray,
    first_reply: np.ndarray,
    answered: np.ndarray,
    waiting: np.ndarray,
) -> dict[str, np.ndarray]:
    """Consults' time values (float64 seconds) by field, from their times (int64
    microseconds, `NONE` when missing) and seconds waited (int64), like the reference's
    ``date_part('epoch', …)`` expressions: only the consults that have the time."""
    has_ack, has_first, has_answer = acknowledged != NONE, first_reply != NONE, answered != NONE
    answered_s = epoch_seconds(answered[has_answer], created[has_answer])
    return {
        "tta": epoch_seconds(acknowledged[has_ack], created[has_ack]),
        "ttfr": epoch_seconds(first_reply[has_first], created[has_first]),
        "ttans": answered_s - waiting[has_answer].astype(np.float64),
        "waiting": waiting[waiting > 0].astype(np.float64),
    }


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def epoch_seconds(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """`bot.reports.percentiles.epoch_seconds` over arrays of microseconds, bit for bit:
    whole days (with the difference's sign) and the rest, the rest made seconds first."""
    total = later - earlier
    days = np.abs(total) // US_PER_DAY
    np.negative(days, out=days, where=total < 0)
    rest = (total - days * US_PER_DAY).astype(np.float64)
    return rest / 1000000.0 + 86400.0 * days.astype(np.float64)


def percentiles(values: np.ndarray) -> Pair:
    """(median, 90th percentile) of `values` (float64, sorted in place) like
    ``percentile_cont``; None each for no values. Same positions and interpolation as
    `bot.reports.percentiles.percentile`."""
    n = len(values)
    if n == 0:
        return (None, None)
    values.sort()
    out = []
    for p in _PERCENTS:
        pos = p * (n - 1)
        first, second = math.floor(pos), math.ceil(pos)
        low = float(values[first])
        if first == second:
            out.append(low)
        else:
            high = float(values[second])
            out.append(low + (pos - first) * (high - low))
    return (out[0], out[1])


def part(
    key: FinestKey,
    counted: Sequence[int],
    created: np.ndarray,
    acknowledged: np.ndarray,
    first_reply: np.ndarray,
    answered: np.ndarray,
    waiting: np.ndarray,
) -> Part:
    """A finest group's part: its counts (`counted`: the SQL's, in `Counts` order without
    `ARRAY_COUNTS`; those from the times, as the SQL would count them) and time values."""
    positive = waiting[waiting > 0]
    from_times = {
        "consults": len(created),
        "acknowledged": int(np.count_nonzero(acknowledged != NONE)),
        "answered": int(np.count_nonzero(answered != NONE)),
        "waiting_total": int(positive.sum()),
        "waiting_n": len(positive),
    }
    sql = iter(counted)
    counts = Counts(
        **{f: from_times[f] if f in ARRAY_COUNTS else int(next(sql) or 0) for f in COUNT_FIELDS}
    )
    return key, counts, seconds(created, acknowledged, first_reply, answered, waiting)


def roll_up(parts: Iterable[Part]) -> dict[GroupKey, Group]:
    """The report's groups (`bot.reports.queries.group_keys`) from parts of the finest
    ones (a finest group may come in several parts): counts added up, time values pooled,
    then each group's percentiles; each service apart, several at once when large."""
    services: dict[str, list[Part]] = {}
    for p in parts:
        services.setdefault(p[0][0], []).append(p)
    size = sum(len(v) for ps in services.values() for _, _, times in ps for v in times.values())
    out: dict[GroupKey, Group] = {}
    if ROLL_UP_THREADS < 2 or len(services) < 2 or size < ROLL_UP_ALONE:
        for ps in services.values():
            out.update(_service_groups(ps))
        return out
    with ThreadPoolExecutor(max_workers=ROLL_UP_THREADS) as pool:
        for groups in pool.map(_service_groups, services.values()):
            out.update(groups)
    return out


def _service_groups(parts: list[Part]) -> dict[GroupKey, Group]:
    """`roll_up` of one service's parts."""
    counts: dict[GroupKey, Counts] = {}
    pooled: dict[GroupKey, dict[str, list[np.ndarray]]] = {}
    for (service, urgency, assignee), n, times in parts:
        for key in group_keys(service, urgency, assignee):
            was = counts.get(key)
            if was is None:
                counts[key] = replace(n)
                pooled[key] = {f: [times[f]] for f in TIME_FIELDS}
            else:
                was.add(n)
                for f in TIME_FIELDS:
                    pooled[key][f].append(times[f])
    return {
        key: Group.of(n, {f: percentiles(_joined(pooled[key][f])) for f in TIME_FIELDS})
        for key, n in counts.items()
    }


def from_array_send(data: bytes, width: int) -> np.ndarray:
    """A one-dimensional PostgreSQL array without NULLs of 8-byte (int8, timestamptz) or
    4-byte (int4) elements, in its binary send format (``array_send``), as int64."""
    ndim, flags, _oid, length, _lbound = (int(v) for v in np.frombuffer(data, ">i4", 5))
    if ndim != 1 or flags != 0:
        raise ValueError(f"expected a 1-D array without NULLs, not ndim={ndim} flags={flags}")
    elements = np.frombuffer(data, _ELEMENT[width], offset=_HEADER_BYTES)
    if len(elements) != length or (elements["n"] != width).any():
        raise ValueError("unexpected array element layout")
    return elements["v"].astype(np.int64)


def from_raw(data: bytes, width: int) -> np.ndarray:
    """Big-endian integers of `width` bytes back to back (``int8send``/``timestamptz_send``
    or ``int4send`` values joined, as `bot.reports.days` stores them), as int64."""
    if len(data) % width:
        raise ValueError(f"{len(data)} bytes are not whole {width}-byte values")
    return np.frombuffer(data, f">i{width}").astype(np.int64)
