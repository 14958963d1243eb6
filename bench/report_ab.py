"""Side by side: `compute_report` of two source trees on one PostgreSQL database, alternated.

Each round runs every period once per tree (A, B, B, A, ... order), each in a fresh process
with that tree first on PYTHONPATH, and prints per report: wall time, the client process's
CPU, the database's CPU (every backend of that database, from /proc: the server must be
local) and the SHA-1 of the report's JSON (identical reports, bit for bit, give the same).
CPU seconds depend far less than wall time on what else runs on the machine (the database's
CPU leaves out parallel workers, which exit with their query: the counts query of trees
before 2026-11-29 used two).

    .venv/bin/python bench/report_bench.py --keep careloop_report_1m --runs 1   # load once
    git archive <old commit> | tar -x -C /tmp/old
    .venv/bin/python bench/report_ab.py --db careloop_report_1m --a /tmp/old --b . \\
        [--rounds 3] [--days 365,90]

No assertions: it prints what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import hashlib, importlib.util, json, os, resource, sys, time
from datetime import timedelta
from sqlalchemy import text
sys.path.insert(0, os.environ["BENCH_DIR"])
from report_bench import CATALOGUE
from bot.domain.catalogue_load import parse_catalogue
from bot.reports.compute import compute_report
from storage.db import create_db_engine, session_factory

# This bench's own timing.py (the tree measured may predate `backend_cpu`).
_spec = importlib.util.spec_from_file_location("ab_timing", os.environ["BENCH_TIMING"])
_timing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_timing)
backends = _timing.backend_cpu

import bot
assert bot.__file__.startswith(sys.argv[1]), (bot.__file__, sys.argv[1])
engine = create_db_engine(os.environ["BENCH_URL"])
sessions = session_factory(engine)
catalogue = parse_catalogue(CATALOGUE, "bench.toml")
with engine.connect() as conn:
    latest = conn.execute(text("SELECT max(created_at) FROM consults")).scalar()
until = (latest + timedelta(seconds=1)).replace(microsecond=0)
days = int(os.environ["BENCH_DAYS"])
def report():
    with sessions() as session:
        return compute_report(session, catalogue=catalogue, since=until - timedelta(days=days),
                              until=until, now=until).as_dict()
report()  # warm: pool connections, imports, caches
before, cpu0, t0 = backends(engine), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
result = report()
wall = time.perf_counter() - t0
cpu1, after = resource.getrusage(resource.RUSAGE_SELF), backends(engine)
print(json.dumps({
    "wall": wall,
    "client_cpu": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
    "db_cpu": sum(v - before.get(p, 0.0) for p, v in after.items()),
    "sha1": hashlib.sha1(json.dumps(result, sort_keys=True).encode()).hexdigest()[:12],
}))
"""


def run(tree: Path, url: str, days: int) -> dict:
    tree = tree.resolve()
    env = dict(os.environ, PYTHONPATH=str(tree), BENCH_URL=url, BENCH_DAYS=str(days))
    env["BENCH_DIR"] = str(tree / "bench")  # that tree's bench: it puts its own tree first
    env["BENCH_TIMING"] = str(Path(__file__).resolve().with_name("timing.py"))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree)],
        cwd=tree,  # `python -c` puts the working directory first on sys.path
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="database name (bench/report_bench --keep)")
    parser.add_argument("--a", required=True, type=Path, help="source tree A (e.g. before)")
    parser.add_argument("--b", required=True, type=Path, help="source tree B (e.g. after)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--days", default="365,90")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    url = f"{args.pg}/{args.db}"
    best: dict[tuple[str, int], dict] = {}
    for r in range(args.rounds):
        order = [("A", args.a), ("B", args.b)]
        for name, tree in order if r % 2 == 0 else order[::-1]:
            for days in (int(d) for d in args.days.split(",")):
                m = run(tree, url, days)
                load = os.getloadavg()[0]
                print(
                    f"round {r + 1} {name} {days:>3} days: wall {m['wall']:.3f} s, client CPU "
                    f"{m['client_cpu']:.2f} s, database CPU {m['db_cpu']:.2f} s, "
                    f"report {m['sha1']}, load {load:.1f}",
                    flush=True,
                )
                key = (name, days)
                if key not in best or m["wall"] < best[key]["wall"]:
                    best[key] = m
    for (name, days), m in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(
            f"best {name} {days:>3} days: wall {m['wall']:.3f} s, CPU client {m['client_cpu']:.2f}"
            f" + database {m['db_cpu']:.2f} s, report {m['sha1']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
