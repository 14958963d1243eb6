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


class WorkClock:
    """W(t) of one `WorkingHours` over [first, last] (microseconds since `EPOCH`): build it
    once, then `seconds` of any intervals inside that span."""

    __slots__ = ("_before", "_lengths", "_starts")

    def __init__(self, hours: WorkingHours, first: int, last: int) -> None:
        starts, ends = _windows(hours, first, last) if last > first else ([], [])
        self._starts = np.asarray(starts, dtype=np.int64)
        self._lengths = np.asarray(ends, dtype=np.int64) - self._starts
        self._before = np.concatenate(([0], np.cumsum(self._lengths)[:-1])).astype(np.int64)

    def _cumulative(self, t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self._starts, t, side="right") - 1
        j = np.maximum(i, 0)
        w = self._before[j] + np.clip(t - self._starts[j], 0, self._lengths[j])
        return np.where(i < 0, 0, w)

    def us(self, started: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """Working microseconds from each `started` to its `ended` (both inside the span);
        0 where `ended` is not after `started`."""
        if not len(started) or not len(self._starts):
            return np.zeros(len(started), dtype=np.int64)
        return np.maximum(self._cumulative(ended) - self._cumulative(started), 0)

    def seconds(self, started: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """`us` as float64 seconds, as ``elapsed(...).total_seconds()`` gives them."""
        return self.us(started, ended).astype(np.float64) / 1000000.0


def span(*arrays: np.ndarray) -> tuple[int, int]:
    """(earliest, latest) of the times in `arrays` ((0, 0) for none)."""
    full = [a for a in arrays if len(a)]
    if not full:
        return 0, 0
    return min(int(a.min()) for a in full), max(int(a.max()) for a in full)


def working_seconds(hours: WorkingHours, started: np.ndarray, ended: np.ndarray) -> np.ndarray:
    """Working seconds from each `started` to its `ended` (int64 arrays, microseconds since
    `EPOCH`), bit for bit ``hours.elapsed(...).total_seconds()``; 0.0 where `ended` is not
    after `started`."""
    return WorkClock(hours, *span(started, ended)).seconds(started, ended)
