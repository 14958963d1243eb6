"""Working time over many intervals at once, bit for bit as `WorkingHours.elapsed`.

A service's working windows between the earliest start and the latest end are laid out
once (`WorkingHours.windows`: local wall-clock windows made UTC, DST as `elapsed` counts
it), merged where they touch or overlap, and turned into a cumulative function W(t): the
working microseconds from the first window to `t`. An interval's working time is then
W(end) - W(start), in whole microseconds (int64) like the sum of timedeltas `elapsed`
adds up; as seconds, that integer divided by 10**6, which is what
``timedelta.total_seconds()`` computes (an int64 below 2**53 converts to float exactly, and
the division is correctly rounded either way).

Times are int64 microseconds since `EPOCH` (PostgreSQL's binary timestamptz).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from bot.domain.hours import WorkingHours

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _windows(hours: WorkingHours, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint [start, end) windows (microseconds) covering the working time in [first,
    last], in order."""
    starts: list[int] = []
    ends: list[int] = []
    lo, hi = EPOCH + first * _US, EPOCH + last * _US
    for w_start, w_end in hours.windows(lo, hi):
        s, e = (w_start - EPOCH) // _US, (w_end - EPOCH) // _US
        if starts and s <= ends[-1]:
            ends[-1] = max(ends[-1], e)  # touching or overlapping (DST): their union
        else:
            starts.append(s)
            ends.append(e)
    return np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


def working_us(hours: WorkingHours, started: np.ndarray, ended: np.ndarray) -> np.ndarray:
    """Working microseconds from each `started` to its `ended` (int64 arrays, microseconds
    since `EPOCH`); 0 where `ended` is not after `started`."""
    out = np.zeros(len(started), dtype=np.int64)
    if not len(started):
        return out
    first, last = int(started.min()), int(ended.max())
    if last <= first:
        return out
    starts, ends = _windows(hours, first, last)
    if not len(starts):
        return out
    lengths = ends - starts
    before = np.concatenate(([0], np.cumsum(lengths)[:-1]))

    def cumulative(t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(starts, t, side="right") - 1
        j = np.maximum(i, 0)
        w = before[j] + np.clip(t - starts[j], 0, lengths[j])
        return np.where(i < 0, 0, w)

    return np.maximum(cumulative(ended) - cumulative(started), 0, out=out)


def working_seconds(hours: WorkingHours, started: np.ndarray, ended: np.ndarray) -> np.ndarray:
    """`working_us` as float64 seconds, as ``elapsed(...).total_seconds()`` gives them."""
    return working_us(hours, started, ended).astype(np.float64) / 1000000.0
