"""Benchmark `bot.reports.compute.compute_report` on a large consult table.

PostgreSQL (default): creates a throw-away database on 127.0.0.1:5432 (user postgres),
migrates it, COPYs N consults (default 1,000,000) spread over a year across 4 services,
3 urgencies and 40 consultants with realistic timings, and their finished hops (about 2.3
per consult, `bench/report_hops.py`; two (service, urgency) have working hours, so the
time held is partly working time), times the report's time-held section alone
(`bot.reports.holders`) for each period, runs the 365-day report over all
services 3 times (then 90, 30 and 7 days, 3 times each), prints the best and median
timings, the load average and a few figures, and drops the database. `--order creation`
(the default) inserts the consults sorted by creation time, as a live table stores them
(a recent period lies in the table's last blocks); `--order random` inserts the same rows
in the generator's order, creation times at random (every period spread over all the
blocks; the bench's only order before 2026-11-29). It then times the 365-day report
computed other ways and checks that each gives the same report, bit for bit: on
PostgreSQL in one query on one connection (`PARALLEL_MIN_ROWS` raised out of reach) and
with ``percentile_cont`` in the database (`bot.reports.pg_reference`, how it was computed
before 2026-11-29); on SQLite row by row in Python. `--explain` adds the plans of the
period query, of the reference's, and of the first share of a 90-day report (the blocks
one connection reads).
`--keep NAME` keeps the loaded PostgreSQL database and `--reuse NAME` reports on it
(`bench/report_ab.py` compares two source trees on it); a kept database without hops (kept
before 2026-11-29) gets them added first. On PostgreSQL, cold means no stored day of either
kind (`report_days`, `report_hop_days`), warm after both fills; the time held is also
compared warm against cold, bit for bit.

    .venv/bin/python bench/report_bench.py [--rows 1000000] [--runs 3] [--explain]
        [--order creation|random]
    .venv/bin/python bench/report_bench.py --keep NAME | --reuse NAME
    .venv/bin/python bench/report_bench.py --sqlite [--rows 100000]
    .venv/bin/python bench/report_bench.py --quick [--sqlite]   (10,000 rows, one run)

No assertions: it prints what it measured.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, create_engine, insert, text  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from bench import report_hops  # noqa: E402
from bot.domain.catalogue import Catalogue  # noqa: E402
from bot.domain.catalogue_load import parse_catalogue  # noqa: E402
from bot.reports import (  # noqa: E402
    compute,
    days,
    hop_days,
    pg_reference,
    postgres,
    queries,
)
from bot.reports.compute import compute_report  # noqa: E402
from bot.slack.render.figures import format_elapsed, format_share  # noqa: E402
from storage.db import create_db_engine, migrate, session_factory  # noqa: E402
from storage.models import Consult  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

SERVICES = [
    ("radiology", "Radiology", "RAD"),
    ("pathology", "Pathology", "PATH"),
    ("cardiology", "Cardiology", "CARD"),
    ("neurology", "Neurology", "NEURO"),
]
# Working hours for some (service, urgency): the time held of their hops is working time
# (`bot.reports.holders`); Toronto and London change their clocks on different days.
HOURS = {
    "radiology": '\n[services.urgency.routine]\nhours = "Mon-Fri 08:00-18:00"\n'
    'timezone = "America/Toronto"',
    "neurology": '\n[services.urgency.urgent]\nhours = "Mon-Fri 08:00-18:00; Sat 09:00-13:00"\n'
    'timezone = "Europe/London"',
}
CATALOGUE = "\n".join(
    [
        'admins = ["UADMIN"]',
        *[
            f'[urgency.{u}]\nacknowledge_within = "{a}"\nanswer_within = "{b}"\n'
            f'nudge_every = "{n}"\nescalate_after = 2'
            for u, a, b, n in (
                ("stat", "15m", "1h", "10m"),
                ("urgent", "1h", "4h", "30m"),
                ("routine", "4h", "24h", "2h"),
            )
        ],
        *[
            f'[[services]]\nkey = "{k}"\nname = "{n}"\nprefix = "{p}"\nchannel = "C{p}"\n'
            f'on_call = "U{p}ON"\nbackup = "U{p}BK"\nleads = ["U{p}LEAD"]{HOURS.get(k, "")}'
            for k, n, p in SERVICES
        ],
    ]
)
# (acknowledge within, answer within) in seconds; 15% stat, 35% urgent, 50% routine.
CLOCKS = {"stat": (900, 3600), "urgent": (3600, 14400), "routine": (14400, 86400)}
COLUMNS = (
    "ref", "service", "seq", "urgency", "intake", "requester", "assignee", "on_call",
    "status", "channel", "created_at", "acknowledged_at", "first_reply_at", "answered_at",
    "closed_at", "cancelled_at", "acknowledge_due_at", "answer_due_at", "waiting_seconds",
    "nudge_level", "nudges_at_level", "nudge_count", "escalation_count", "reopened_count",
    "handoff_count", "feedback_helpful", "version",
)  # fmt: skip
CREATED = COLUMNS.index("created_at")
ORDERS = ("creation", "random")
PERIODS = (365, 90, 30, 7)


def _exp(rng: random.Random, mean: float) -> float:
    return -math.log(1.0 - rng.random()) * mean


def generate(rows: int, until: datetime, seed: int = 7) -> Iterator[tuple]:
    """Consult rows (tuples in COLUMNS order): a year of traffic ending at `until`."""
    rng = random.Random(seed)
    year = 365 * 86400
    for i in range(rows):
        s = i % len(SERVICES)
        key, _name, prefix = SERVICES[s]
        seq = i // len(SERVICES) + 1
        r = rng.random()
        urgency = "stat" if r < 0.15 else "urgent" if r < 0.5 else "routine"
        ack_within, ans_within = CLOCKS[urgency]
        created = until - timedelta(seconds=rng.random() * year, microseconds=rng.randrange(10**6))
        age = (until - created).total_seconds()
        consultant = f"UCONS{s * 10 + rng.randrange(10):02d}"
        ack_s = _exp(rng, ack_within * 0.6)
        first_s = ack_s + _exp(rng, ans_within * 0.15)
        waiting = int(_exp(rng, ans_within)) if rng.random() < 0.15 else 0
        ans_s = ack_s + _exp(rng, ans_within * 0.5) + waiting
        ack_due = created + timedelta(seconds=ack_within)
        ans_due = created + timedelta(seconds=ans_within + waiting)
        fate = rng.random()
        acked = first = answered = closed = cancelled = None
        assignee = None
        if fate < 0.03:
            status = "cancelled"
            cancelled = created + timedelta(seconds=min(_exp(rng, 1800), age))
            if rng.random() < 0.5 and ack_s < age:
                acked, assignee = created + timedelta(seconds=ack_s), consultant
        elif ans_s < age and fate > 0.01:
            status = "closed" if rng.random() < 0.9 else "answered"
            acked = created + timedelta(seconds=ack_s)
            first = created + timedelta(seconds=first_s)
            answered = created + timedelta(seconds=ans_s)
            assignee = consultant
            if status == "closed":
                closed = answered + timedelta(seconds=_exp(rng, 3600))
        else:  # still open: recent, or one of the few forgotten ones
            if ack_s < age:
                acked, assignee = created + timedelta(seconds=ack_s), consultant
                status = "waiting" if waiting and rng.random() < 0.5 else "acknowledged"
                if first_s < age:
                    first = created + timedelta(seconds=first_s)
            else:
                status = "open"
        late = (answered or until) > ans_due
        escalations = 1 if late and rng.random() < 0.7 else 0
        h = rng.random()
        helpful = None
        if answered is not None and rng.random() < 0.3:
            helpful = rng.random() < 0.85
        yield (
            f"{prefix}-{seq}", key, seq, urgency, "{}", f"UREQ{rng.randrange(500):03d}",
            assignee, f"U{prefix}ON", status, f"C{prefix}", created, acked, first, answered,
            closed, cancelled, ack_due, ans_due, waiting, 0, 0, escalations, escalations,
            1 if 0.05 <= h < 0.08 else 0, 1 if h < 0.05 else 0, helpful, 1,
        )  # fmt: skip


def ordered(rows: int, until: datetime, order: str) -> Iterator[tuple]:
    """`generate`'s rows in `order`: "random", as generated (creation times in random
    order), or "creation", sorted by creation time (stable), as a hospital's table stores
    them (each consult is inserted when it is created). The same rows either way: only
    the insertion order, hence the ids and the blocks they are stored in, changes."""
    if order == "random":
        return generate(rows, until)
    return iter(sorted(generate(rows, until), key=lambda row: row[CREATED]))


def load_postgres(engine: Engine, rows: int, until: datetime, order: str = "creation") -> float:
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            with cur.copy(f"COPY consults ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in ordered(rows, until, order):
                    copy.write_row(row)
        conn.commit()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("VACUUM ANALYZE consults")
        finally:
            conn.autocommit = False  # the connection goes back to the pool
    finally:
        raw.close()
    report_hops.load_hops_postgres(engine)
    return time.perf_counter() - started


def load_sqlite(engine: Engine, rows: int, until: datetime, order: str = "creation") -> float:
    started = time.perf_counter()
    table = Consult.__table__
    batch: list[dict] = []
    with engine.begin() as conn:
        for row in ordered(rows, until, order):
            values = dict(zip(COLUMNS, row, strict=True))
            values["intake"] = {}
            batch.append(values)
            if len(batch) >= 20000:
                conn.execute(insert(table), batch)
                batch = []
        if batch:
            conn.execute(insert(table), batch)
    report_hops.load_hops_sqlite(engine)
    return time.perf_counter() - started


def time_report(
    sessions: sessionmaker[Session], catalogue: Catalogue, since: datetime, until: datetime
) -> tuple[float, dict[str, Any]]:
    with sessions() as session:
        started = time.perf_counter()
        report = compute_report(session, catalogue=catalogue, since=since, until=until, now=until)
        return time.perf_counter() - started, report.as_dict()


def _best_median(timings: list[float]) -> str:
    return f"best {min(timings):.3f} s, median {sorted(timings)[len(timings) // 2]:.3f} s"


def time_periods(
    sessions: sessionmaker[Session], catalogue: Catalogue, until: datetime, runs: int, label: str
) -> dict[int, tuple[list[float], dict[str, Any]]]:
    """Each period's report `runs` times: {days: (timings, the first report)}."""
    out: dict[int, tuple[list[float], dict[str, Any]]] = {}
    for days_ in PERIODS:
        period = [
            time_report(sessions, catalogue, until - timedelta(days=days_), until)
            for _ in range(runs)
        ]
        out[days_] = ([t for t, _ in period], period[0][1])
        print(f"{label}: {days_} days, all services, {runs} runs: {_best_median(out[days_][0])}")
    return out


def fill_days(engine: Engine, sessions: sessionmaker[Session], catalogue: Catalogue) -> None:
    """Time the first fill of the stored days (`bot.reports.days.fill`) and of the hop
    days (`bot.reports.hop_days.fill`), and a second one with nothing missing."""
    keys = [k for k, _, _ in SERVICES]
    for what in ("first fill", "second fill (nothing missing)"):
        started = time.perf_counter()
        rows = days.fill(sessions, keys)
        print(f"{what}: {rows} rows in {time.perf_counter() - started:.3f} s")
        started = time.perf_counter()
        pairs = hop_days.fill(sessions, catalogue, keys)
        print(
            f"hop days, {what}: {pairs} (service, day) pairs in {time.perf_counter() - started:.3f} s"
        )
    with engine.connect() as conn:
        pairs, days_size, hop_rows, hops_size = conn.execute(
            text(
                "SELECT (SELECT count(DISTINCT (service, day)) FROM report_days),"
                " pg_size_pretty(pg_total_relation_size('report_days')),"
                " (SELECT count(*) FROM report_hop_days),"
                " pg_size_pretty(pg_total_relation_size('report_hop_days'))"
            )
        ).one()
    print(f"stored: {pairs} (service, day) pairs, {days_size}")
    print(f"hop days stored: {hop_rows} rows, {hops_size}")


def run_reports(engine: Engine, runs: int, until: datetime, explain: bool) -> None:
    catalogue = parse_catalogue(CATALOGUE, "bench.toml")
    sessions = session_factory(engine)
    since = until - timedelta(days=365)
    quarter = until - timedelta(days=90)
    print(f"load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    pg = engine.dialect.name == "postgresql"
    if pg:
        with engine.begin() as conn:  # cold: no stored day, every report computed live
            conn.execute(text("DELETE FROM report_days"))
            conn.execute(text("DELETE FROM report_hop_days"))
    held = report_hops.time_holders(engine, sessions, catalogue, until, runs, "cold " if pg else "")
    cold = time_periods(sessions, catalogue, until, runs, "cold" if pg else "live")
    report, report_90 = cold[365][1], cold[90][1]
    if pg:
        fill_days(engine, sessions, catalogue)
        held_warm = report_hops.time_holders(engine, sessions, catalogue, until, runs, "warm ")
        same = all(repr(held_warm[d]) == repr(held[d]) for d in PERIODS)
        print(f"warm time held the same as cold, bit for bit: {same}")
        warm = time_periods(sessions, catalogue, until, runs, "warm")
        same = all(repr(warm[d][1]) == repr(cold[d][1]) for d in PERIODS)
        print(
            f"warm reports the same as cold, bit for bit: {same} ({', '.join(map(str, PERIODS))} days)"
        )
        for d in PERIODS:
            print(
                f"  {d:>3} days: cold best {min(cold[d][0]):.3f} s, warm best "
                f"{min(warm[d][0]):.3f} s"
            )
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for label, name, fn in _references(engine.dialect.name):
        # The same reports another way: timings and equality, bit for bit (JSON repr).
        saved = getattr(compute, name)
        setattr(compute, name, fn)
        try:
            other = [time_report(sessions, catalogue, since, until) for _ in range(runs)]
            other_90 = time_report(sessions, catalogue, quarter, until)[1]
        finally:
            setattr(compute, name, saved)
        same = all(repr(r) == repr(report) for _, r in other)
        same &= repr(other_90) == repr(report_90)
        print(
            f"365 days, {label}: best of {runs} {min(t for t, _ in other):.3f} s; "
            f"same report, bit for bit: {same} (365 and 90 days)"
        )
    print(f"period {report['since']} .. {report['until']}")
    for entry in report["services"]:
        print(
            f"  {entry['service']:<11} consults {entry['consults']:>7}  "
            f"open {entry['open_now']:>4} (overdue {entry['open_overdue']:>4})  "
            f"ack median {format_elapsed(entry['time_to_acknowledge']['median']):>7}  "
            f"answer median {format_elapsed(entry['time_to_answer']['median']):>7} "
            f"p90 {format_elapsed(entry['time_to_answer']['p90']):>7}  "
            f"in SLA {format_share(entry['within_sla']):>4}  "
            f"consultants {len(entry['by_consultant'])}"
        )
    if explain and engine.dialect.name == "postgresql":
        explain_plans(engine, sessions, until)


def explain_plans(engine: Engine, sessions: sessionmaker[Session], until: datetime) -> None:
    """EXPLAIN (ANALYZE, BUFFERS), with the report's settings, of: the year's period query
    on one connection, the reference's percentile query, and the first of the shares the
    report cuts 90 days into (`postgres._shares`: the blocks one connection reads)."""
    keys = [k for k, _, _ in SERVICES]
    since = until - timedelta(days=365)
    quarter = until - timedelta(days=90)
    with sessions() as session:
        estimate = postgres._estimated_rows(session, keys, quarter, until)
        share = postgres._shares(session, quarter, until, estimate, postgres.PARALLEL_QUERIES)[0]
    for title, stmt in (
        ("365 days, one query", postgres.period_sql(keys, since, until, until)),
        ("365 days, percentile_cont", pg_reference.percentile_sql(keys, since, until)),
        ("90 days, first share", postgres.period_sql(keys, quarter, until, until, share)),
    ):
        compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
        with engine.connect() as conn, conn.begin():
            postgres.tune(conn)  # the report's own settings (work_mem, jit)
            plan = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params
            ).all()
        print(f"-- plan: {title}")
        print("\n".join(line for (line,) in plan))


def _references(dialect: str) -> list[tuple[str, str, Any]]:
    """(label, `compute`'s function to replace, replacement): the period's groups computed
    another way, to time and to compare with."""
    if dialect == "postgresql":

        def one_query(*args: Any) -> Any:
            saved, postgres.PARALLEL_MIN_ROWS = postgres.PARALLEL_MIN_ROWS, 10**18
            try:
                return postgres.period_groups_sql(*args)
            finally:
                postgres.PARALLEL_MIN_ROWS = saved

        return [
            ("live, arrays in one query on one connection", "period_groups_cached", one_query),
            (
                "percentile_cont in PostgreSQL (pg_reference, the code before 2026-11-29)",
                "period_groups_cached",
                pg_reference.period_groups_reference,
            ),
        ]
    return [("row by row in Python (queries.period_groups_python)", "period_groups_sqlite",
             queries.period_groups_python)]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="consults to load")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="admin URL of the PG server")
    parser.add_argument("--explain", action="store_true", help="print the PG query plan")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10,000 rows, 1 run")
    parser.add_argument("--keep", metavar="NAME", help="PG: keep the loaded database as NAME")
    parser.add_argument("--reuse", metavar="NAME", help="PG: report on NAME (from --keep)")
    parser.add_argument(
        "--order",
        choices=ORDERS,
        default="creation",
        help="insertion order of the consults: by creation time (default, as a live table "
        "stores them) or random (every period spread over the whole table)",
    )
    return parser


def main() -> int:
    args = build_parser().parse_args()
    if args.quick:
        args.rows, args.runs = args.rows or 10_000, 1
    rows = args.rows or (100_000 if args.sqlite else 1_000_000)
    until = datetime.now(UTC).replace(microsecond=0)

    if args.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_db_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
            migrate(engine)
            print(f"SQLite: loading {rows:,} consults in {args.order} order…")
            print(f"loaded in {load_sqlite(engine, rows, until, args.order):.1f} s")
            run_reports(engine, args.runs, until, explain=False)
            engine.dispose()
        return 0

    name = args.reuse or args.keep or f"careloop_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not args.reuse:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        version = conn.execute(text("SHOW server_version")).scalar()
    url = args.pg_admin.rsplit("/", 1)[0] + f"/{name}"
    engine = create_db_engine(url)
    try:
        if args.reuse:
            with engine.connect() as conn:
                # The report's period ends at the latest creation, as when it was loaded.
                latest = conn.execute(text("SELECT max(created_at) FROM consults")).scalar()
            until = (latest + timedelta(seconds=1)).replace(microsecond=0)
            migrate(engine)  # e.g. report_days (0009) on a database loaded before it
            print(f"PostgreSQL {version}: reusing {name}")
            if not report_hops.has_hops(engine):  # kept before the bench seeded hops
                hops, seconds = report_hops.load_hops_postgres(engine)
                print(f"added {hops:,} hops (COPY + VACUUM ANALYZE) in {seconds:.1f} s")
        else:
            migrate(engine)
            print(
                f"PostgreSQL {version}: loading {rows:,} consults into {name}, {args.order} order…"
            )
            seconds = load_postgres(engine, rows, until, args.order)
            print(f"loaded (COPY + VACUUM ANALYZE) in {seconds:.1f} s")
        run_reports(engine, args.runs, until, explain=args.explain)
    finally:
        engine.dispose()
        if not (args.keep or args.reuse):
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            print(f"dropped {name}")
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
