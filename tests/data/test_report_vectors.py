"""The report's numpy aggregation (`bot.reports.vectors`) against the Python twins of
PostgreSQL's arithmetic and, on PostgreSQL, against ``percentile_cont`` itself
(`bot.reports.pg_reference`): edge cases identical bit for bit on every path (one query,
split over connections, in another time zone) and the split's one snapshot."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.reports import pg_reference, postgres, queries, sqlite, vectors
from bot.reports.model import COUNT_FIELDS
from bot.reports.percentiles import epoch_seconds, median_and_p90
from tests.data.test_report_figures import NOW, T0, UNTIL, Factory, sessions  # noqa: F401
from tests.harness import use_postgres

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # what PostgreSQL's timestamptz counts from
US = timedelta(microseconds=1)
D = timedelta(days=1)
SERVICES = ["radiology", "pathology", "cardiology"]


def us(when: datetime) -> int:
    return (when - PG_EPOCH) // US


def exact(groups: dict[Any, Any]) -> str:
    """The groups in key order, every float by repr: equal only when identical bit for bit."""
    return repr(sorted(groups.items()))


def bits(pair: tuple[float | None, ...]) -> list[str]:
    """repr of each value: tells 0.0 from -0.0 and shows every bit that == would round."""
    return [repr(v) for v in pair]


# ------------------------------------------------------------------------ arithmetic
def test_epoch_seconds_vectorised_bit_for_bit():
    rng = random.Random(17)
    earlier = [rng.randrange(-(10**15), 10**15) for _ in range(3000)]
    later = [e + rng.randrange(-(10**12), 10**12) for e in earlier]
    # Whole days either way, a microsecond either side of them, zero, the smallest steps.
    edges = [0, 1, -1, 86_400_000_000, -86_400_000_000, 86_400_000_001, -86_400_000_001,
             86_399_999_999, -86_399_999_999, 3 * 86_400_000_000 + 500_000,
             -(3 * 86_400_000_000 + 500_000), 10**14 + 7, -(10**14 + 7)]  # fmt: skip
    earlier += [10**9] * len(edges)
    later += [10**9 + d for d in edges]
    got = vectors.epoch_seconds(np.array(later, np.int64), np.array(earlier, np.int64))
    expected = [
        epoch_seconds(PG_EPOCH + a * US, PG_EPOCH + b * US)
        for a, b in zip(later, earlier, strict=True)
    ]
    assert [repr(v) for v in got.tolist()] == [repr(v) for v in expected]


@pytest.mark.parametrize("n", [*range(1, 25), 99, 100, 101, 1000, 4097])
def test_percentiles_vectorised_bit_for_bit(n):
    rng = random.Random(n)
    for values in (
        [rng.uniform(-1e6, 1e6) for _ in range(n)],
        [float(rng.randrange(5)) for _ in range(n)],  # many ties
        [rng.choice([-0.5, 0.0, 1e-9, 123456.789012]) for _ in range(n)],
    ):
        got = vectors.percentiles(np.array(values, np.float64))
        assert bits(got) == bits(median_and_p90(values)), values[:10]


def test_percentiles_of_nothing():
    assert vectors.percentiles(np.array([], np.float64)) == (None, None)


def test_array_send_parsed(sessions, postgres_only):  # noqa: F811
    times = [T0, T0 + 123_456 * US, PG_EPOCH - 5 * US, datetime(2039, 3, 1, 1, 2, 3, 4, UTC)]
    with sessions() as s:
        sent, ints, with_null = s.execute(
            text(
                "SELECT array_send(CAST(:t AS timestamptz[])), "
                "array_send(CAST(:i AS int4[])), array_send(ARRAY[1, NULL]::int4[])"
            ),
            {"t": times, "i": [0, -7, 2**31 - 1]},
        ).one()
    assert vectors.from_array_send(sent, 8).tolist() == [us(t) for t in times]
    assert vectors.from_array_send(ints, 4).tolist() == [0, -7, 2**31 - 1]
    with pytest.raises(ValueError):
        vectors.from_array_send(with_null, 4)


# ------------------------------------------------------------------------ edge cases
def seed_edges(f: Factory) -> None:
    """Consults whose times test every rounding and every grouping corner."""
    at = T0 + timedelta(hours=1, microseconds=654_321)
    # Cardiology: one consult alone (median = p90 = its value), acknowledged before it was
    # created (a negative interval of days and microseconds).
    f.add("cardiology", "stat", created=at, status="acknowledged", assignee="UC1",
          ack=-(2 * D + 3 * US))  # fmt: skip
    # Pathology: two consults of one consultant (p90 interpolates between them).
    f.add("pathology", "routine", created=at, status="closed", assignee="UP1", ack=1 * US,
          first_reply=D - US, answered=D + US, helpful=True)  # fmt: skip
    f.add("pathology", "routine", created=at + 5 * US, status="closed", assignee="UP1",
          ack=D, first_reply=D, answered=3 * D + timedelta(seconds=0.5), waiting=86_400)  # fmt: skip
    # Radiology: NULL times, unassigned, need-info, zero and negative waiting, whole days,
    # across the EU (25 Oct) and US (1 Nov) daylight-saving ends, microseconds.
    f.add(created=at, status="open")
    f.add(created=at, status="cancelled", assignee=None, ack=timedelta(0))
    f.add("radiology", "stat", created=at + 7 * US, status="waiting", assignee="UR1",
          ack=timedelta(minutes=3), first_reply=timedelta(minutes=4), waiting=1800)  # fmt: skip
    f.add(created=T0 + timedelta(hours=23, minutes=59, microseconds=1), status="closed",
          assignee="UR1", ack=timedelta(hours=2), first_reply=2 * D, answered=8 * D + US,
          waiting=0)  # fmt: skip
    f.add(created=T0 + D + 999_999 * US, status="answered", assignee="UR2", ack=US,
          first_reply=US, answered=timedelta(seconds=40), waiting=-30)  # fmt: skip
    f.add("radiology", "routine", created=T0 + 6 * D, status="answered", assignee="UR2",
          ack=timedelta(hours=30), first_reply=timedelta(hours=30), answered=-D,
          waiting=5)  # fmt: skip
    rng = random.Random(23)
    for _ in range(150):
        answered = rng.random() < 0.7
        f.add(
            rng.choice(["radiology", "pathology"]),
            rng.choice(["stat", "urgent", "routine"]),
            created=T0 + timedelta(microseconds=rng.randrange(7 * 86_400_000_000)),
            status="closed" if answered else rng.choice(["open", "acknowledged", "waiting"]),
            assignee=rng.choice(["UR1", "UR2", "UX", None]),
            ack=timedelta(microseconds=rng.randrange(-(10**9), 10**11)),
            first_reply=rng.choice([None, timedelta(microseconds=rng.randrange(10**11))]),
            answered=timedelta(microseconds=rng.randrange(10**12)) if answered else None,
            waiting=rng.choice([0, 0, -1, rng.randrange(1, 10**6)]),
            helpful=rng.choice([None, True, False]),
        )


@pytest.fixture
def edges(sessions: Any) -> Any:  # noqa: F811
    with sessions() as s, s.begin():
        seed_edges(Factory(s))
    return sessions


ARGS = (SERVICES, T0, UNTIL, NOW)


def test_edge_groups_by_hand(edges):
    with edges() as s:
        groups = queries.period_groups_python(s, *ARGS)
    alone = groups[("cardiology", "", "")]
    value = epoch_seconds(T0, T0 + 2 * D + 3 * US)
    assert alone.tta == (value, value) and value == -(2 * 86400 + 3e-6)
    assert alone.ttans == (None, None)
    pair = groups[("pathology", "c", "UP1")]
    low, high = 1e-06, 86400.0
    assert pair.tta == (low + 0.5 * (high - low), low + 0.9 * (high - low))
    assert not any(k[1] == "c" and not k[2] for k in groups)  # no unassigned consultant


def test_edge_groups_identical_on_every_path(edges, monkeypatch):
    """Each path's groups equal the row-by-row Python aggregation, bit for bit: on SQLite
    the group_concat lists; on PostgreSQL percentile_cont's and the binary arrays', in one
    query, split two and three ways."""
    with edges() as s:
        expected = queries.period_groups_python(s, *ARGS)
    if not use_postgres():
        with edges() as s:
            assert exact(sqlite.period_groups_sqlite(s, *ARGS)) == exact(expected)
        return
    with edges() as s:
        assert exact(pg_reference.period_groups_reference(s, *ARGS)) == exact(expected)
    with edges() as s:
        assert exact(postgres.period_groups_sql(s, *ARGS)) == exact(expected)
    calls: list[int] = []
    elsewhere = postgres._elsewhere
    monkeypatch.setattr(postgres, "_elsewhere", lambda *a: calls.append(1) or elsewhere(*a))
    shared: list[list[str]] = []
    share_out = postgres._shares
    monkeypatch.setattr(postgres, "_shares", lambda *a: shared.append(share_out(*a)) or shared[-1])
    monkeypatch.setattr(postgres, "PARALLEL_MIN_ROWS", 1)
    monkeypatch.setattr(postgres, "SCATTERED", 0.0)  # test_scattered_period_shared_by_blocks
    # Before ANALYZE: even time cuts; after: the histogram's (WHOLE_TABLE out of reach) or
    # the table's block ranges.
    for analyzed, whole in ((False, 2.0), (True, 2.0), (True, 0.0)):
        if analyzed:
            with edges() as s, s.begin():
                s.execute(text("ANALYZE consults"))
        monkeypatch.setattr(postgres, "WHOLE_TABLE", whole)
        for n in (2, 3):
            monkeypatch.setattr(postgres, "PARALLEL_QUERIES", n)
            with edges() as s:
                assert exact(postgres.period_groups_sql(s, *ARGS)) == exact(expected)
            assert len(shared[-1]) == n
    assert len(calls) == 15  # READ COMMITTED: every share on its own connection
    kinds = [" ".join(str(p) for p in parts) for parts in shared]
    assert all("ctid" not in k for k in kinds[:4]) and all("ctid" in k for k in kinds[4:])


def test_scattered_period_shared_by_blocks(edges, monkeypatch, postgres_only):
    """A period spread over the whole table (creation times out of storage order, as the
    edge consults, inserted in no order) is shared out by block ranges, not time cuts
    that would each read every block; identical groups."""
    with edges() as s:
        expected = postgres.period_groups_sql(s, *ARGS)
        s.execute(text("ANALYZE consults"))
        s.commit()
    monkeypatch.setattr(postgres, "PARALLEL_MIN_ROWS", 1)
    monkeypatch.setattr(postgres, "SCATTERED_PER_BLOCK", 0.0)  # a few rows, few blocks
    monkeypatch.setattr(postgres, "WHOLE_TABLE", 2.0)  # not for being most of the table
    shared: list[list[Any]] = []
    share_out = postgres._shares
    monkeypatch.setattr(postgres, "_shares", lambda *a: shared.append(share_out(*a)) or shared[-1])
    with edges() as s:
        assert exact(postgres.period_groups_sql(s, *ARGS)) == exact(expected)
    assert "ctid" in " ".join(str(p) for p in shared[-1])
    monkeypatch.setattr(postgres, "SCATTERED", 0.0)  # or the table is in creation order
    with edges() as s:
        assert exact(postgres.period_groups_sql(s, *ARGS)) == exact(expected)
    assert "ctid" not in " ".join(str(p) for p in shared[-1])


def test_session_time_zone_changes_nothing(edges, postgres_only):
    with edges() as s:
        expected = postgres.period_groups_sql(s, *ARGS)
    with edges() as s:
        s.execute(text("SET TIME ZONE 'America/New_York'"))
        assert exact(postgres.period_groups_sql(s, *ARGS)) == exact(expected)


def test_split_shares_read_one_snapshot(edges, monkeypatch, postgres_only):
    """Consults committed after the snapshot was exported are in no share: under READ
    COMMITTED every share imports it; under REPEATABLE READ the session runs one itself."""
    export = postgres._export_snapshot
    seq = {"radiology": 1000}

    def export_then_commit(session):
        snapshot = export(session)
        with edges() as other, other.begin():
            f = Factory(other)
            f.seq = seq  # carried on: RAD-1001 onwards
            for _ in range(4):  # consecutive ids: some in every share
                f.add(created=T0 + D, status="acknowledged", assignee="UR9", ack=D)
        return snapshot

    monkeypatch.setattr(postgres, "PARALLEL_MIN_ROWS", 1)
    for isolation in ("READ COMMITTED", "REPEATABLE READ"):
        with edges() as s:
            before = postgres.period_groups_sql(s, *ARGS)
        monkeypatch.setattr(postgres, "_export_snapshot", export_then_commit)
        with edges() as s:
            s.connection(execution_options={"isolation_level": isolation})
            assert exact(postgres.period_groups_sql(s, *ARGS)) == exact(before), isolation
        monkeypatch.setattr(postgres, "_export_snapshot", export)
        with edges() as s:
            after = postgres.period_groups_sql(s, *ARGS)
        rad = ("radiology", "", "")
        assert after[rad].consults == before[rad].consults + 4, isolation


def test_session_that_wrote_counts_its_own_writes(edges, monkeypatch, postgres_only):
    """Writes not yet committed are invisible to other connections: one query."""
    with edges() as s:
        before = postgres.period_groups_sql(s, *ARGS)[("cardiology", "", "")].consults
    monkeypatch.setattr(postgres, "PARALLEL_MIN_ROWS", 1)
    monkeypatch.setattr(postgres, "_elsewhere", lambda *a: pytest.fail("ran elsewhere"))
    with edges() as s, s.begin():
        f = Factory(s)
        f.seq = {"cardiology": 500}
        f.add("cardiology", created=T0 + D, status="open")
        groups = postgres.period_groups_sql(s, *ARGS)
        assert groups[("cardiology", "", "")].consults == before + 1
        s.rollback()


def test_share_that_cannot_import_the_snapshot_falls_back_to_one_query(
    edges, monkeypatch, postgres_only
):
    with edges() as s:
        expected = postgres.period_groups_sql(s, *ARGS)

    def refused(*args):
        raise DBAPIError("SET TRANSACTION SNAPSHOT", None, Exception("invalid snapshot"))

    monkeypatch.setattr(postgres, "PARALLEL_MIN_ROWS", 1)
    monkeypatch.setattr(postgres, "_elsewhere", refused)
    with edges() as s:
        assert exact(postgres.period_groups_sql(s, *ARGS)) == exact(expected)


# ------------------------------------------------------------- counts from the arrays
def test_part_counts_what_the_times_tell():
    """consults, acknowledged, answered and waiting come from the arrays (as the SQL
    counted them: waiting only when positive); the SQL's other counts keep their fields."""
    none = vectors.NONE
    created = np.array([10, 20, 30, 40], np.int64)
    acked = np.array([11, none, 35, 40], np.int64)
    answered = np.array([none, none, 90, 100], np.int64)
    waiting = np.array([0, 7, -3, 5], np.int64)
    sql = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]  # closed .. fb_helpful
    key, counts, times = vectors.part(("s", "stat", "U1"), sql, created, acked, acked,
                                      answered, waiting)  # fmt: skip
    assert key == ("s", "stat", "U1")
    assert (counts.consults, counts.acknowledged, counts.answered) == (4, 3, 2)
    assert (counts.waiting_total, counts.waiting_n) == (12, 2)
    others = [f for f in COUNT_FIELDS if f not in queries.ARRAY_COUNTS]
    assert [getattr(counts, f) for f in others] == sql
    assert times["waiting"].tolist() == [7.0, 5.0]


def test_period_queries_leave_out_the_counts_the_arrays_give():
    lean = queries.count_columns(NOW, from_arrays=True)
    assert list(lean) == [f for f in COUNT_FIELDS if f not in queries.ARRAY_COUNTS]
    for stmt in (
        postgres.period_sql(SERVICES, T0, UNTIL, NOW),
        sqlite.period_sql_sqlite(SERVICES, T0, UNTIL, NOW),
    ):
        assert len(stmt.selected_columns) == 3 + len(lean) + 5


@pytest.fixture
def slas(sessions: Any) -> Any:  # noqa: F811
    """Consults at every corner of the SLA counts: cancelled ones answered and acknowledged
    in time, answers and acknowledgements exactly at, before and after their due times,
    none yet with the due time past or still ahead."""
    with sessions() as s, s.begin():
        f = Factory(s)
        for status in ("cancelled", "closed", "answered", "acknowledged", "open"):
            for ack, answered in (
                (timedelta(0), timedelta(minutes=1)),
                (timedelta(hours=1), timedelta(hours=4)),  # urgent: exactly at both
                (timedelta(hours=1, microseconds=1), timedelta(hours=4, microseconds=1)),
                (None, None),
                (timedelta(minutes=5), None),
            ):
                for created in (T0 + D, UNTIL - timedelta(minutes=1)):
                    f.add(created=created, status=status, assignee="UR1", ack=ack,
                          answered=answered)  # fmt: skip
    return sessions


def test_sla_counts_identical_on_every_path(slas, monkeypatch):
    now = UNTIL + timedelta(minutes=30)  # the last consults' answers are not yet due
    args = (SERVICES, T0, UNTIL, now)
    with slas() as s:
        expected = queries.period_groups_python(s, *args)
    got = expected[("radiology", "", "")]
    assert (got.sla_n, got.sla_ok, got.ack_n, got.ack_ok) == (
        32,
        16,
        36,
        24,
    )  # 4 statuses x (8, 4, 9, 6)
    monkeypatch.setattr(vectors, "ROLL_UP_ALONE", 0)  # the threads, even for a few
    with slas() as s:
        if use_postgres():
            assert exact(pg_reference.period_groups_reference(s, *args)) == exact(expected)
            assert exact(postgres.period_groups_sql(s, *args)) == exact(expected)
        else:
            assert exact(sqlite.period_groups_sqlite(s, *args)) == exact(expected)


def test_roll_up_on_threads_identical(edges, monkeypatch):
    """Services rolled up on several threads give the groups of one thread, bit for bit."""
    reader = postgres.period_groups_sql if use_postgres() else sqlite.period_groups_sqlite
    monkeypatch.setattr(vectors, "ROLL_UP_THREADS", 1)
    with edges() as s:
        alone = reader(s, *ARGS)
    pools: list[int] = []
    pool = vectors.ThreadPoolExecutor
    monkeypatch.setattr(vectors, "ThreadPoolExecutor", lambda **k: pools.append(1) or pool(**k))
    monkeypatch.setattr(vectors, "ROLL_UP_THREADS", 2)
    monkeypatch.setattr(vectors, "ROLL_UP_ALONE", 0)
    with edges() as s:
        assert exact(reader(s, *ARGS)) == exact(alone)
    assert pools == [1]
