"""Arithmetic the Python aggregation shares with PostgreSQL, bit for bit: percentiles
interpolated like ``percentile_cont`` and seconds between two times like
``date_part('epoch', later - earlier)``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

_US = timedelta(microseconds=1)
_US_PER_DAY = 86_400_000_000


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


def median_and_p90(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(median, 90th percentile) of `values`, None each when there are none."""
    return percentile(values, 0.5), percentile(values, 0.9)


def epoch_seconds(later: datetime, earlier: datetime, minus: int = 0) -> float:
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
