"""The time held on a realistic dataset (the bench's year of consults and their hops, with
working hours in Toronto and London, so DST changes fall inside hops): `holder_report`,
vectorised on both databases (PostgreSQL's stored hop days: `test_hop_days.py`), gives
bit for bit the figures of each hop computed alone (`WorkingHours.elapsed` or clock time),
totals by `math.fsum` and percentiles as ``percentile_cont``, for a year, a quarter and a
week."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue_load import parse_catalogue
from bot.reports import holders
from bot.reports.percentiles import epoch_seconds, median_and_p90
from storage import hops as store
from storage.db import session_factory
from tests.harness import use_postgres
from tests.report_bench_loader import report_bench

KEYS = ["radiology", "pathology", "cardiology", "neurology"]
ROWS = 4000


def by_hand(s: Session, catalogue: Any, since: datetime, until: datetime) -> dict[str, Any]:
    """Each hop's seconds computed alone, pooled per holder and per queue."""
    pooled: dict[Any, list[float]] = {}
    for service, role, user, urgency, started, ended in store.ended_between(
        session=s, services=KEYS, since=since, until=until
    ):
        hours = catalogue.policy(catalogue.service_by_key(service), urgency).hours
        if hours is not None:
            seconds = hours.elapsed(started, ended).total_seconds()
        else:
            seconds = max(epoch_seconds(ended, started), 0.0)
        key = (service, "queue", "") if role == "queue" else (service, role, user)
        pooled.setdefault(key, []).append(seconds)
    return {
        k: (len(v), math.fsum(v), *median_and_p90(v)) for k, v in pooled.items()
    }  # fmt: skip


def reported(report: holders.HolderReport) -> dict[str, Any]:
    out = {
        (h.service, h.role, h.user): (
            h.hops, h.held_seconds.total, h.held_seconds.median, h.held_seconds.p90,
        )
        for h in report.holders
    }  # fmt: skip
    for key, q in report.queues.items():
        if q.hops:
            out[(key, "queue", "")] = (q.hops, *q.held_seconds.as_dict().values())
    return out


def test_time_held_is_each_hop_computed_alone_bit_for_bit(engine: Engine) -> None:
    bench = report_bench()
    until = datetime.now(UTC).replace(microsecond=0)
    (bench.load_postgres if use_postgres() else bench.load_sqlite)(engine, ROWS, until)
    catalogue = parse_catalogue(bench.CATALOGUE, "bench.toml")
    sessions: sessionmaker[Session] = session_factory(engine)
    for days in (365, 90, 7):
        since = until - timedelta(days=days)
        with sessions() as s:
            got = reported(
                holders.holder_report(
                    s, catalogue=catalogue, services=KEYS, since=since, until=until
                )
            )
            want = by_hand(s, catalogue, since, until)
        assert repr(sorted(got.items())) == repr(sorted(want.items()))
    # The dataset exercises both clocks and both zones' DST changes.
    assert {k[0] for k in want} == set(KEYS) and len(want) > 40
