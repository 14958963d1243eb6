"""`bot.reports.worktime` gives, for many intervals at once, bit for bit the seconds
`WorkingHours.elapsed(...).total_seconds()` gives one by one: random intervals over three
years, short ones straddling DST changes, windows that touch across midnight, a zone with a
half-hour DST change, empty and backwards intervals."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bot.domain.hours import WorkingHours
from bot.reports.worktime import EPOCH, working_seconds

US = timedelta(microseconds=1)
SPECS = [
    ("Mon-Fri 08:00-18:00", "America/Toronto"),
    ("Mon-Fri 08:00-18:00; Sat 09:00-13:00", "Europe/London"),
    ("Sat-Sun 00:00-24:00", "Europe/Berlin"),
    ("Mon 22:00-24:00; Tue 00:00-06:00", "America/Toronto"),
    ("Mon-Sun 00:30-03:30", "Europe/London"),  # contains both DST changes' local hour
    ("Sun 01:00-03:00", "Australia/Lord_Howe"),  # a 30-minute DST change
    ("Mon-Fri 00:00-24:00", "UTC"),
]
# DST changes in the zones above (UTC), to put short intervals across.
CHANGES = [
    datetime(2025, 3, 9, 7, tzinfo=UTC), datetime(2025, 11, 2, 6, tzinfo=UTC),
    datetime(2025, 3, 30, 1, tzinfo=UTC), datetime(2025, 10, 26, 1, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2025, 4, 5, 15, tzinfo=UTC),
    datetime(2025, 10, 4, 15, 30, tzinfo=UTC),
]  # fmt: skip


def intervals(rng: random.Random, n: int) -> list[tuple[datetime, datetime]]:
    out = []
    for i in range(n):
        if i % 3 == 0:
            start = rng.choice(CHANGES) + timedelta(seconds=rng.uniform(-30000, 30000))
        else:
            start = datetime(2024, 6, 1, tzinfo=UTC) + timedelta(seconds=rng.random() * 9.5e7)
        start += timedelta(microseconds=rng.randrange(10**6))
        length = rng.choice([0, -rng.random() * 600, rng.random() * 7200, rng.random() * 5e5,
                             rng.random() * 6e6])  # fmt: skip
        out.append((start, start + timedelta(seconds=length, microseconds=rng.randrange(10**6))))
    return out


@pytest.mark.parametrize(("spec", "zone"), SPECS)
def test_working_seconds_are_elapsed_bit_for_bit(spec: str, zone: str) -> None:
    hours = WorkingHours.parse(spec, zone)
    pairs = intervals(random.Random(spec), 4000)
    started = np.array([(s - EPOCH) // US for s, _ in pairs], dtype=np.int64)
    ended = np.array([(e - EPOCH) // US for _, e in pairs], dtype=np.int64)
    got = working_seconds(hours, started, ended).tolist()
    want = [hours.elapsed(s, e).total_seconds() for s, e in pairs]
    assert [repr(v) for v in got] == [repr(v) for v in want]
    assert any(w > 0 for w in want) and any(w == 0 for w in want)


def test_no_intervals_and_none_forward() -> None:
    hours = WorkingHours.parse("Mon-Fri 08:00-18:00", "UTC")
    empty = np.array([], dtype=np.int64)
    assert working_seconds(hours, empty, empty).tolist() == []
    t = np.array([10**15], dtype=np.int64)
    assert working_seconds(hours, t, t - 5).tolist() == [0.0]
