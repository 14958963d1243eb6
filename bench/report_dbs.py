"""Side by side: `compute_report` of one source tree on several PostgreSQL databases
loaded by `report_bench.py --keep` (e.g. the same consults stored in creation order and in
random order, `--order`), alternated round by round.

Each round runs every period on every database (the databases' order reversed every
other round), in this one process, and prints at the end per period and database: the
best and median wall time, the median CPU of this process (client) and of the
database's backends (from /proc: the server must be local), and the SHA-1 of each
report's JSON (one value per period and database: every round gave the same report).
Each database's period ends at its latest consult's creation, as in `report_bench.py
--reuse`.

    .venv/bin/python bench/report_bench.py --keep careloop_report_1m_ordered --runs 1
    .venv/bin/python bench/report_bench.py --keep careloop_report_1m --order random --runs 1
    .venv/bin/python bench/report_dbs.py --dbs careloop_report_1m,careloop_report_1m_ordered \\
        [--rounds 9] [--days 365,90,30,7]
    .venv/bin/python bench/report_dbs.py --quick   (smoke run: loads 10,000 consults in each
        order into two temporary databases, one round, then drops them)

No assertions: it prints what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report_bench import CATALOGUE, PG_ADMIN, load_postgres  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from timing import backend_cpu  # noqa: E402

from bot.domain.catalogue_load import parse_catalogue  # noqa: E402
from bot.reports.compute import compute_report  # noqa: E402
from storage.db import create_db_engine, migrate, session_factory  # noqa: E402

QUICK_ROWS = 10_000


@contextlib.contextmanager
def quick_databases(pg_admin: str) -> Iterator[list[str]]:
    """Two temporary databases of `QUICK_ROWS` consults, in creation and in random order,
    dropped afterwards."""
    admin = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    tag = uuid.uuid4().hex[:8]
    names = [f"careloop_dbs_{order}_{tag}" for order in ("creation", "random")]
    until = datetime.now(UTC).replace(microsecond=0)
    try:
        for name, order in zip(names, ("creation", "random"), strict=True):
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            engine = create_db_engine(pg_admin.rsplit("/", 1)[0] + f"/{name}")
            migrate(engine)
            load_postgres(engine, QUICK_ROWS, until, order)
            engine.dispose()
        yield names
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dbs", help="databases, comma-separated (not with --quick)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--days", default="365,90,30,7")
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="admin URL of the PG server")
    parser.add_argument("--quick", action="store_true", help="smoke run on two small databases")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
        with quick_databases(args.pg_admin) as names:
            return compare(names, args)
    if not args.dbs:
        parser.error("--dbs is required (or --quick)")
    return compare(args.dbs.split(","), args)


def compare(names: list[str], args: argparse.Namespace) -> int:
    """Run every period on every database `args.rounds` times, then print the figures."""
    periods = [int(d) for d in args.days.split(",")]
    catalogue = parse_catalogue(CATALOGUE, "bench.toml")
    engines, untils = {}, {}
    for name in names:
        engines[name] = create_db_engine(args.pg_admin.rsplit("/", 1)[0] + f"/{name}")
        with engines[name].connect() as conn:
            latest = conn.execute(text("SELECT max(created_at) FROM consults")).scalar()
        untils[name] = (latest + timedelta(seconds=1)).replace(microsecond=0)
    runs: dict[tuple[str, int], list[tuple[float, float, float, str]]] = {}
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    for r in range(args.rounds):
        for days in periods:
            for name in names if r % 2 == 0 else names[::-1]:
                engine, until = engines[name], untils[name]
                before = backend_cpu(engine)
                with session_factory(engine)() as session:
                    wall, cpu = time.perf_counter(), time.process_time()
                    report = compute_report(
                        session,
                        catalogue=catalogue,
                        since=until - timedelta(days=days),
                        until=until,
                        now=until,
                    )
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                after = backend_cpu(engine)
                db = sum(v - before.get(pid, 0.0) for pid, v in after.items())
                sha = hashlib.sha1(repr(report.as_dict()).encode()).hexdigest()[:12]
                runs.setdefault((name, days), []).append((wall, cpu, db, sha))
        print(f"round {r + 1}: load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"load average at the end: {os.getloadavg()}")
    for days in periods:
        for name in names:
            walls, cpus, dbs, shas = zip(*runs[(name, days)], strict=True)
            print(
                f"{days:>3} days {name:<28} wall best {min(walls):.3f} s, median "
                f"{statistics.median(walls):.3f} s; CPU median client {statistics.median(cpus):.3f}"
                f" + database {statistics.median(dbs):.3f} s; report {' '.join(sorted(set(shas)))}"
            )
    same = all(len({r[3] for n in names for r in runs[(n, d)]}) == 1 for d in periods)
    print(f"same report on every database: {same}")
    for engine in engines.values():
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
