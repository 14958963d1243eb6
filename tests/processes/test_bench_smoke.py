"""Each benchmark in `bench/` still runs: its `--quick` mode, as a real process, ends well
and prints its figures line. No timings are asserted (these machines are shared); the
figures themselves are recorded in BENCHMARKS.md. The PostgreSQL benchmarks run in the
suite's PostgreSQL run, the SQLite ones in its SQLite run (each once)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import use_postgres

REPO = Path(__file__).resolve().parents[2]

# (script and arguments, a line its output must contain, needs PostgreSQL)
BENCHES = [
    (["bench/press_inprocess.py", "--quick", "--sqlite"], "acknowledge presses (sqlite)", False),
    (["bench/report_bench.py", "--quick", "--sqlite"], "live: 365 days, all services", False),
    (["bench/press_inprocess.py", "--quick"], "acknowledge presses (postgresql)", True),
    (["bench/press_layers.py", "--quick"], "psycopg: both round trips (press._send)", True),
    (["bench/report_bench.py", "--quick"], "same report, bit for bit: True", True),
    (
        ["bench/report_dbs.py", "--quick", "--days", "365,90"],
        "same report on every database: True",
        True,
    ),
    (["bench/sweep_bench.py", "--quick"], "sweep claim at 10000 consults:", True),
    (["bench/create_bench.py", "--quick"], "CareLoop hand-off submit throughput =", True),
    (["bench/storm_bench.py", "--quick", "--sqlite"], "429s from the fake Slack:", False),
    (["bench/storm_bench.py", "--quick"], "429s from the fake Slack:", True),
    (["bench/backlog_bench.py", "--quick", "--sqlite"], "their confirmations (DM)", False),
    (["bench/backlog_bench.py", "--quick"], "their confirmations (DM)", True),
    (["bench/replica_bench.py", "--quick"], "no duplicated effect: True", True),
    (["bench/fault_bench.py", "--quick"], "faults survived: True", True),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "figures", "postgres"), BENCHES, ids=lambda v: str(v))
def test_bench_quick_mode_prints_its_figures(args: list[str], figures: str, postgres: bool):
    if postgres != use_postgres():
        pytest.skip(f"runs in the suite's {'PostgreSQL' if postgres else 'SQLite'} run")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert figures in done.stdout, done.stdout[-3000:]
