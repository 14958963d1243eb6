"""The PostgreSQL create alone (`storage.creation.create_consult`, no Slack, no bolt), its
statement sent two ways in alternating blocks in one process on a fresh database: through
SQLAlchemy's driver-SQL execution on `db.autocommit` (as before b-createdrv) and straight
to psycopg (`db.send_autocommitted`). Prints the median CPU time per create of each.

    .venv/bin/python bench/create_driver_ab.py [--blocks 8] [--creates 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import creation  # noqa: E402
from storage.db import create_db_engine, migrate, send_autocommitted  # noqa: E402
from tests.data.test_create_writes import _create, _through_sqlalchemy  # noqa: E402
from tests.procs import fresh_postgres  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--creates", type=int, default=500, help="per block")
    opts = parser.parse_args()
    paths = {"through SQLAlchemy (before)": _through_sqlalchemy, "to psycopg": send_autocommitted}
    spent: dict[str, list[float]] = {name: [] for name in paths}
    with fresh_postgres("careloop_bench_createdrv") as url:
        engine = create_db_engine(url)
        migrate(engine)
        n = 0
        for n in range(50):  # warm-up: the sequence, the prepared statement
            _create(engine, f"MRN w{n}")
        for block in range(opts.blocks):
            order = list(paths.items())
            for name, send in order if block % 2 == 0 else reversed(order):
                creation.send_autocommitted = send  # type: ignore[assignment]
                start = time.process_time()
                for _ in range(opts.creates):
                    n += 1
                    _create(engine, f"MRN {n}")
                spent[name].append((time.process_time() - start) / opts.creates * 1e6)
        creation.send_autocommitted = send_autocommitted  # type: ignore[assignment]
        engine.dispose()
    for name, runs in spent.items():
        print(
            f"{name}: median {statistics.median(runs):.0f} µs CPU per create, blocks {[round(x) for x in runs]}"
        )


if __name__ == "__main__":
    main()
