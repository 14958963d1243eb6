"""Under backlog, in real time: one channel fed at twice Slack's pace for a minute (2 new
consults a second to cardiology over signed HTTP for 60 s; `--quick` 5 s), while every
2 s one consult in each of five channels falls due and the sweep nudges it (a thread
nudge, and the requester's first "overdue" message). The same nudges run first without
the flood: the baseline, in the same run. The dispatcher runs on its own thread at Slack's
pace (a burst of 4, then one post a second per channel); the fake Slack enforces Slack's
per-channel limit (a burst of 5, one a second) and counts its 429s. Fresh PostgreSQL
database (or SQLite with `--sqlite`).

Prints, for the baseline and the flood: the lateness (p50, p99; from the sweep's commit to
the post reaching Slack) of the nudges in the flooded channel, of the nudges in the other
channels, of the requesters' "overdue" messages; and, during the flood, of the flooded
channel's new cards and their requesters' confirmations (which follow their card), plus
the rules checked on the way: 429s, consults nudged twice, thread notes posted.

    .venv/bin/python bench/backlog_bench.py [--seconds 60] [--rate 2] [--sqlite]
    .venv/bin/python bench/backlog_bench.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import update  # noqa: E402

from bench.storm_bench import percentile  # noqa: E402
from bot.dev.fakeslack import FakeSlack  # noqa: E402
from storage.db import create_db_engine, migrate  # noqa: E402
from storage.models import Consult  # noqa: E402
from tests.harness import Bot, start_bot  # noqa: E402
from tests.procs import fresh_postgres  # noqa: E402
from tests.storm import (  # noqa: E402
    CHANNELS,
    REF,
    nudge_times,
    open_storm,
    posts,
    requesters,
    storm_catalogue,
    told_times,
)

FLOODED = CHANNELS["cards"]
NUDGE_EVERY = 2.0


def flood(bot: Bot, rate: float, seconds: float, created: dict[str, float]) -> None:
    """`rate` new cardiology consults a second for `seconds`, over signed HTTP, from 20
    requesters; `created` gets each one's reference and when its request was answered."""
    start = time.monotonic()
    n = 0
    while (due := start + n / rate) < start + seconds:
        time.sleep(max(0.0, due - time.monotonic()))
        resp = bot.command(f"cards routine MRN F{n}: echo please?", user=f"UFLOOD{n % 20:02d}")
        refs = REF.findall(resp.text or "")
        if refs:
            created[refs[0]] = time.time()
        n += 1


def nudge_round(bot: Bot, refs: list[str], queued: dict[str, float]) -> None:
    """Make `refs` due now and sweep: each gets its first nudge."""
    with bot.services.engine.begin() as conn:
        conn.execute(
            update(Consult.__table__)
            .where(Consult.__table__.c.ref.in_(refs))
            .values(next_nudge_at=bot.clock.now())
        )
    result = bot.sweep()
    at = time.time()
    for ref in result.nudged:
        queued[ref] = at


def phase(bot: Bot, targets: list[str], seconds: float, rate: float | None) -> dict:
    """One phase: a nudge round every 2 s for `seconds` (with the flood when `rate`), then
    wait for the outbox to drain. What was queued when, and the calls since the start."""
    since = len(bot.slack.calls)
    queued: dict[str, float] = {}
    created: dict[str, float] = {}
    flooder = None
    if rate:
        flooder = threading.Thread(target=flood, args=(bot, rate, seconds, created))
        flooder.start()
    start = time.monotonic()
    rounds = int(seconds / NUDGE_EVERY)
    for r in range(rounds):
        time.sleep(max(0.0, start + r * NUDGE_EVERY - time.monotonic()))
        nudge_round(bot, targets[r * 5 : r * 5 + 5], queued)
    if flooder:
        flooder.join()
    deadline = time.monotonic() + 10 * seconds + 60
    while bot.pending() and time.monotonic() < deadline:
        time.sleep(0.2)
    return {"since": since, "queued": queued, "created": created}


def lateness(times: dict[str, float], start: dict[str, float], refs=None) -> str:
    late = [times[r] - start[r] for r in start if r in times and (refs is None or r in refs)]
    if not late:
        return "none"
    return f"p50 {percentile(late, 50):6.2f} s  p99 {percentile(late, 99):6.2f} s  ({len(late)})"


def report(name: str, bot: Bot, got: dict, flooded_refs: set[str]) -> None:
    slack, since, queued = bot.slack, got["since"], got["queued"]
    nudged, told = nudge_times(slack, since), told_times(slack, since)
    others = set(queued) - flooded_refs
    print(f"  {name}:")
    print(f"    nudges, flooded channel   {lateness(nudged, queued, flooded_refs)}")
    print(f"    nudges, other channels    {lateness(nudged, queued, others)}")
    print(f"    requesters told overdue   {lateness(told, queued)}")
    if got["created"]:
        cards, confirmations = {}, {}
        for call in posts(slack, since):
            text = str(call.args.get("text") or "")
            refs = REF.findall(text)
            if refs and call.args.get("channel") == FLOODED and not call.args.get("thread_ts"):
                cards.setdefault(refs[0], call.at)
            elif refs and str(call.args.get("channel")).startswith("UFLOOD"):
                confirmations.setdefault(refs[0], call.at)
        print(f"    flooded channel's cards   {lateness(cards, got['created'])}")
        print(f"    their confirmations (DM)  {lateness(confirmations, got['created'])}")
    twice = [r for r, n in Counter(nudge_refs(slack, since)).items() if n > 1]
    print(
        f"    consults nudged twice: {len(twice)}; missing nudges: {len(set(queued) - set(nudged))}"
    )


def nudge_refs(slack: FakeSlack, since: int) -> list[str]:
    """The consult of every thread nudge posted since call `since`."""
    return [
        ref
        for call in posts(slack, since)
        if call.args.get("thread_ts") and "has not been" in str(call.args.get("blocks"))
        for ref in REF.findall(str(call.args.get("blocks")))[:1]
    ]


def run(url: str, seconds: float, rate: float) -> None:
    engine = create_db_engine(url)
    migrate(engine)
    engine.dispose()
    rounds = int(seconds / NUDGE_EVERY)
    with FakeSlack() as slack:
        bot = start_bot(url, slack, catalogue=storm_catalogue(storm_threshold=5), dispatcher=False)
        count = 2 * rounds * 5
        refs = open_storm(bot, count, requesters(50), over=timedelta(seconds=1))
        baseline, flooded = refs[: count // 2], refs[count // 2 :]
        in_flooded = {r for r in refs if r.startswith("CARD-")}
        slack.limit_rate(1.0, burst=5)
        bot.services.dispatcher.start()
        load = os.getloadavg()[0]
        print(
            f"backlog: {rate:g} creates/s to {FLOODED} for {seconds:g} s, a nudge round "
            f"(one consult per channel) every {NUDGE_EVERY:g} s "
            f"({bot.services.engine.dialect.name}; load {load:.2f} at start)"
        )
        base = phase(bot, baseline, seconds, None)
        report("baseline (no flood)", bot, base, in_flooded)
        under = phase(bot, flooded, seconds, rate)
        report(f"flood ({rate:g}/s to {FLOODED})", bot, under, in_flooded)
        print(
            f"  429s from the fake Slack: {slack.rate_limited}; load at end {os.getloadavg()[0]:.2f}"
        )
        thread_notes = [c for c in posts(slack) if c.args.get("thread_ts")]
        print(f"  thread posts: {len(thread_notes)} (nudges only: {len(nudge_refs(slack, 0))})")
        bot.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=2.0, help="creates a second")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--quick", action="store_true", help="5 s phases")
    opts = parser.parse_args()
    seconds = 5.0 if opts.quick else opts.seconds
    if opts.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.db", seconds, opts.rate)
    else:
        with fresh_postgres("careloop_bench_backlog") as url:
            run(url, seconds, opts.rate)


if __name__ == "__main__":
    main()
