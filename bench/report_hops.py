"""The bench's finished hops (`consult_hops`) for the consults `bench/report_bench.py`
loaded: who held each consult and when, consistent with the consult's own times, so the
report's time-held section (`bot.reports.holders`) reads as many hops as a hospital's.

Per consult (read back from the table, in id order, so a kept database gets the same
hops): its service's queue from creation to the acknowledgement (or to the cancellation
when nobody acknowledged it); then its consultant until the answer (or the cancellation),
cut by a requester hop of its waiting seconds when it waited on need-info, and by a
hand-off to another consultant of the service when it was handed off. Hops still running
(open consults) are not stored, as `bot.flows.hops.settle` would not have stored them.
About 2.3 hops per consult.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue import Catalogue
from bot.reports import holders
from storage.models import Consult
from storage.models_hops import ConsultHop

HOP_COLUMNS = ("consult_id", "service", "role", "user", "started_at", "ended_at")
_READ = (
    "SELECT id, ref, service, requester, assignee, created_at, acknowledged_at, answered_at,"
    " cancelled_at, waiting_seconds, handoff_count FROM consults ORDER BY id"
)
_READ_ORM = select(
    Consult.id, Consult.ref, Consult.service, Consult.requester, Consult.assignee, Consult.created_at,
    Consult.acknowledged_at, Consult.answered_at, Consult.cancelled_at,
    Consult.waiting_seconds, Consult.handoff_count,
).order_by(Consult.id)  # fmt: skip


def _consultant(
    hops: list[tuple], rng: random.Random, row: tuple, start: datetime, end: datetime
) -> None:
    """The consultant's time from `start` to `end`, cut by need-info waiting and hand-offs."""
    cid, _ref, service, requester, assignee, _c, _a, _ans, _x, waiting, handoffs = row
    holder = assignee or "UCONS00"
    if handoffs and end - start > timedelta(seconds=2):
        cut = start + (end - start) * rng.uniform(0.1, 0.6)
        other = f"UCONS{(int(holder[5:]) // 10) * 10 + rng.randrange(10):02d}"
        hops.append((cid, service, "consultant", other, start, cut))
        start = cut
    if waiting and end - start > timedelta(seconds=waiting):
        asked = start + (end - start - timedelta(seconds=waiting)) * rng.random()
        back = asked + timedelta(seconds=waiting)
        hops.append((cid, service, "consultant", holder, start, asked))
        hops.append((cid, service, "requester", requester, asked, back))
        start = back
    hops.append((cid, service, "consultant", holder, start, end))


def hops_of(row: tuple, rng: random.Random) -> list[tuple]:
    """The finished hops (HOP_COLUMNS order) of one consult row (`_READ`'s columns)."""
    cid, _ref, service, _req, _assignee, created, acked, answered, cancelled, _w, _h = row
    hops: list[tuple] = []
    ended = answered or cancelled
    if acked is None:
        if cancelled is not None:
            hops.append((cid, service, "queue", None, created, cancelled))
        return hops
    hops.append((cid, service, "queue", None, created, acked))
    if ended is not None and ended >= acked:
        _consultant(hops, rng, row, acked, ended)
    return hops


def hop_rows(consults: Iterable[tuple]) -> Iterator[tuple]:
    """Every consult's hops, in the consults' order; each consult's drawn from a generator
    seeded by its reference, so the same consults get the same hops whatever their order."""
    for row in consults:
        yield from hops_of(row, random.Random(row[1]))


def has_hops(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT EXISTS (SELECT 1 FROM consult_hops)")).scalar()


def load_hops_postgres(engine: Engine) -> tuple[int, float]:
    """COPY the hops of every consult in the table; (hops, seconds). The consults are
    read on one connection (a server-side cursor) while the hops are copied on another."""
    started = time.perf_counter()
    reader, writer = engine.raw_connection(), engine.raw_connection()
    written = 0
    try:
        conn = writer.driver_connection
        with reader.driver_connection.cursor(name="bench_consults") as read, conn.cursor() as cur:
            read.itersize = 20000
            read.execute(_READ)
            columns = ", ".join(f'"{c}"' for c in HOP_COLUMNS)
            with cur.copy(f"COPY consult_hops ({columns}) FROM STDIN") as copy:
                for hop in hop_rows(read):
                    copy.write_row(hop)
                    written += 1
        conn.commit()
        reader.driver_connection.rollback()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("VACUUM ANALYZE consult_hops")
        finally:
            conn.autocommit = False
    finally:
        reader.close()
        writer.close()
    return written, time.perf_counter() - started


def load_hops_sqlite(engine: Engine) -> tuple[int, float]:
    """Insert the hops of every consult in the table; (hops, seconds)."""
    started = time.perf_counter()
    table = ConsultHop.__table__
    with engine.connect() as conn:
        consults: list[Any] = [tuple(r) for r in conn.execute(_READ_ORM)]
    written = 0
    batch: list[dict] = []
    with engine.begin() as conn:
        for hop in hop_rows(consults):
            batch.append(dict(zip(HOP_COLUMNS, hop, strict=True)))
            if len(batch) >= 20000:
                conn.execute(insert(table), batch)
                written, batch = written + len(batch), []
        if batch:
            conn.execute(insert(table), batch)
            written += len(batch)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    return written, time.perf_counter() - started


def time_holders(
    engine: Engine,
    sessions: sessionmaker[Session],
    catalogue: Catalogue,
    until: datetime,
    runs: int,
    label: str = "",
    periods: tuple[int, ...] = (365, 90, 30, 7),
) -> dict[int, Any]:
    """The time-held section alone (`bot.reports.holders.holder_report`), each period
    `runs` times, printed: {days: the first result}."""
    with engine.connect() as conn:
        keys = [k for (k,) in conn.execute(text("SELECT DISTINCT service FROM consults"))]
        hops = conn.execute(text("SELECT count(*) FROM consult_hops")).scalar()
    keys = [s.key for s in catalogue.services if s.key in keys]
    print(f"hops stored: {hops:,}")
    out = {}
    for days in periods:
        timings = []
        for _ in range(runs):
            with sessions() as session:
                started = time.perf_counter()
                held = holders.holder_report(
                    session, catalogue=catalogue, services=keys,
                    since=until - timedelta(days=days), until=until,
                )  # fmt: skip
                timings.append(time.perf_counter() - started)
            out.setdefault(days, held)
        n = sum(q.hops for q in out[days].queues.values()) + sum(h.hops for h in out[days].holders)
        best, median = min(timings), sorted(timings)[len(timings) // 2]
        print(
            f"{label}holders alone: {days} days ({n:,} hops), {runs} runs: "
            f"best {best:.3f} s, median {median:.3f} s"
        )
    return out
