"""The overdue sweep at scale, on PostgreSQL: for 10k, 100k and 1M stored consults (90 %
closed, 9 % open with a nudge ahead, 1 % open and due), the plan of the sweep's claim
(`storage.repo.due_nudges_statement`, EXPLAIN ANALYZE) and the time of one claim of up to
500 due consults (rolled back, best of 5) and of one whole sweep (claim, plans, nudges,
storm summaries, commit). `--quick`: 10k only (a smoke run well under a minute).

    .venv/bin/python bench/sweep_bench.py [--sizes 10000,100000,1000000] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402

from bot.dev.fakeslack import FakeSlack  # noqa: E402
from bot.flows.sweep import sweep  # noqa: E402
from storage import repo  # noqa: E402
from storage.db import create_db_engine, migrate  # noqa: E402
from tests.harness import start_bot  # noqa: E402
from tests.procs import fresh_postgres  # noqa: E402

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
LIMIT = 500

# n consults: every 100th open and due (1 %), 9 in 100 open with a nudge an hour ahead, the
# rest closed a while ago; three services, as in the test catalogue.
_LOAD = """
INSERT INTO consults (ref, service, seq, urgency, requester, on_call, status, channel,
    channel_ts, created_at, acknowledge_due_at, answer_due_at, closed_at, next_nudge_at,
    nudge_phase, waiting_seconds, nudge_level, nudges_at_level, nudge_count,
    escalation_count, reopened_count, handoff_count, version, intake)
SELECT 'B' || i, s.key, i, 'routine', 'UREQ' || (i % 500), s.on_call,
    CASE WHEN i % 100 < 10 THEN 'open' ELSE 'closed' END, s.channel, '1.' || i,
    CAST(:now AS timestamptz) - make_interval(mins => (i % 500000)::int), :now, :now,
    CASE WHEN i % 100 < 10 THEN NULL ELSE :now - interval '1 day' END,
    CASE WHEN i % 100 = 0 THEN CAST(:now AS timestamptz) - make_interval(secs => i % 3600)
         WHEN i % 100 < 10 THEN :now + interval '1 hour' END,
    CASE WHEN i % 100 < 10 THEN 'acknowledge' END, 0, 0, 0, 0, 0, 0, 0, 1, '{}'
FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS i
JOIN (VALUES (0, 'radiology', 'CRAD', 'URADON'), (1, 'pathology', 'CPATH', 'UPATHON'),
             (2, 'cardiology', 'CCARD', 'UCARDON')) AS s(n, key, channel, on_call)
  ON s.n = i % 3
"""


def load(bot, upto: int, have: int) -> None:
    with bot.services.engine.begin() as conn:
        conn.execute(text(_LOAD), {"now": NOW, "start": have + 1, "stop": upto})
        conn.execute(text("ANALYZE consults"))


def explain(bot) -> str:
    stmt = repo.due_nudges_statement(now=NOW, limit=LIMIT)
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with bot.services.engine.connect() as conn:
        rows = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql)).scalars()
        plan = "\n".join("    " + r for r in rows)
        conn.rollback()
    return plan


def time_claim(bot) -> tuple[float, int]:
    best, found = float("inf"), 0
    for _ in range(5):
        with bot.services.sessions() as s:
            started = time.perf_counter()
            found = len(repo.claim_due_nudges(session=s, now=NOW, limit=LIMIT))
            best = min(best, time.perf_counter() - started)
            s.rollback()
    return best * 1000, found


def time_sweep(bot) -> tuple[float, int]:
    svc = bot.services
    bot.clock.set(NOW)
    started = time.perf_counter()
    result = sweep(
        sessions=svc.sessions,
        catalogue=svc.catalogue,
        clock=bot.clock,
        outbox=svc.outbox,
        on_call=svc.consults.roster,
        limit=LIMIT,
    )
    return (time.perf_counter() - started) * 1000, len(result.nudged)


def run(url: str, sizes: list[int]) -> None:
    engine = create_db_engine(url)
    migrate(engine)
    engine.dispose()
    with FakeSlack() as slack:
        bot = start_bot(url, slack, dispatcher=False)
        have = 0
        for size in sizes:
            started = time.perf_counter()
            load(bot, size, have)
            have = size
            loaded = time.perf_counter() - started
            print(f"\n{size} consults stored ({size // 100} due), loaded in {loaded:.1f} s")
            print("  plan of the claim:")
            print(explain(bot))
            claim_ms, claimed = time_claim(bot)
            print(
                f"sweep claim at {size} consults: {claim_ms:.2f} ms to claim {claimed} "
                f"(limit {LIMIT}, best of 5)"
            )
        # One whole sweep at the largest size (it commits: nudges and storm summaries queued).
        sweep_ms, nudged = time_sweep(bot)
        print(f"one sweep at {have} consults: {sweep_ms:.0f} ms, {nudged} nudged")
        bot.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--quick", action="store_true", help="10k consults only")
    opts = parser.parse_args()
    sizes = [10_000] if opts.quick else [int(n) for n in opts.sizes.split(",")]
    with fresh_postgres("careloop_bench_sweep") as url:
        run(url, sizes)


if __name__ == "__main__":
    main()
