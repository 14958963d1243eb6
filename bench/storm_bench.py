"""A storm, in real time: N stat consults (500; `--quick` 100) across five channels fall due
in the same minute; one sweep finds them, and the dispatcher (its own thread, Slack's pace:
a burst of 4, then one post a second per channel) delivers to the fake Slack, which
enforces Slack's per-channel limit (a burst of 5, one a second) and answers 429 when it is
exceeded. The consults are opened through the flow the slash command uses, as if their
cards had been posted long ago (`tests/storm.py`), on a fresh PostgreSQL database (or
SQLite with `--sqlite`).

Prints the sweep's time, when the last storm summary (or thread nudge) was posted, the
429s the fake Slack sent, and the lateness of each consult's listing and of its
requester's "overdue" message (p50, p99), all counted from the start of the sweep that
found them (the sweep's own cadence, `sweep_interval`, comes on top in production).

    .venv/bin/python bench/storm_bench.py [--consults 500] [--requesters 100] [--sqlite]
    .venv/bin/python bench/storm_bench.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.dev.fakeslack import FakeSlack  # noqa: E402
from storage.db import create_db_engine, migrate  # noqa: E402
from tests.harness import start_bot  # noqa: E402
from tests.procs import fresh_postgres  # noqa: E402
from tests.storm import (  # noqa: E402
    nudge_times,
    open_storm,
    requesters,
    storm_catalogue,
    told_times,
)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def figures(name: str, times: dict[str, float], start: float) -> str:
    """'<name>: last after X s, p50 Y s, p99 Z s' for the times in `times` after `start`."""
    late = [t - start for t in times.values()]
    if not late:
        return f"{name}: none"
    return (
        f"{name}: last after {max(late):.2f} s, p50 {percentile(late, 50):.2f} s, "
        f"p99 {percentile(late, 99):.2f} s ({len(late)})"
    )


def run(url: str, count: int, people: int, timeout: float) -> None:
    engine = create_db_engine(url)
    migrate(engine)
    engine.dispose()
    with FakeSlack() as slack:
        bot = start_bot(url, slack, catalogue=storm_catalogue(storm_threshold=5), dispatcher=False)
        refs = open_storm(bot, count, requesters(people), over=timedelta(seconds=50))
        slack.limit_rate(1.0, burst=5)
        bot.services.dispatcher.start()
        since = len(slack.calls)
        load = os.getloadavg()[0]
        bot.clock.advance(timedelta(minutes=15))
        start = time.time()
        result = bot.sweep()
        swept = time.time() - start
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = len(nudge_times(slack, since)) == count == len(told_times(slack, since))
            if done and bot.pending() == 0:
                break
            time.sleep(0.1)
        listed, told = nudge_times(slack, since), told_times(slack, since)
        dialect = bot.services.engine.dialect.name
        bot.stop()
    print(
        f"storm of {count} consults in 5 channels, {people} requesters ({dialect}; "
        f"load {load:.2f} at start, {os.getloadavg()[0]:.2f} at end)"
    )
    print(f"sweep: {swept * 1000:.0f} ms, {len(result.nudged)} nudged, storms {result.storms}")
    print(figures("nudged or listed in a storm summary", listed, start))
    print(figures("requester told", told, start))
    print(f"429s from the fake Slack: {slack.rate_limited}")
    missing = set(refs) - set(listed)
    untold = set(refs) - set(told)
    print(f"not listed: {len(missing)}, requester not told: {len(untold)}")
    if missing or untold:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consults", type=int, default=500)
    parser.add_argument("--requesters", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--quick", action="store_true", help="100 consults")
    opts = parser.parse_args()
    count = 100 if opts.quick else opts.consults
    if opts.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.db", count, opts.requesters, opts.timeout)
    else:
        with fresh_postgres("careloop_bench_storm") as url:
            run(url, count, opts.requesters, opts.timeout)


if __name__ == "__main__":
    main()
