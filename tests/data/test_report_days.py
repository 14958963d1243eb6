"""The report's per-day partial results (`bot.reports.days`, table `report_days`): on
PostgreSQL, reports read from the stored days are bit for bit the live computation's and
`percentile_cont`'s, on periods with partial days at both ends; every kind of write that
could change a stored day deletes it (the triggers of migration 0009) and the next report
equals the live one; a day is not used before its last due time; the fill against a
concurrent reopen, ordered both ways by the locks, on two real connections; the fill is
idempotent and two fills at once neither fail nor double. On SQLite nothing is stored."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.reports import days, pg_reference, postgres
from storage.db import session_factory
from tests.harness import use_postgres
from tests.report_bench_loader import report_bench

KEYS = ["radiology", "pathology", "cardiology", "neurology"]
ROWS = 6000
US = timedelta(microseconds=1)


@pytest.fixture
def loaded(engine: Engine, postgres_only: None) -> tuple[sessionmaker[Session], datetime]:
    """A year of the bench's consults (4 services, 3 urgencies, 40 consultants, open,
    answered, closed and cancelled ones) ending now, and the report's `until`/`now`."""
    until = datetime.now(UTC).replace(microsecond=0)
    report_bench().load_postgres(engine, ROWS, until)
    return session_factory(engine), until


def exact(groups: dict[Any, Any]) -> str:
    return repr(sorted(groups.items()))


def live(sessions: sessionmaker[Session], since: datetime, until: datetime, now: datetime) -> str:
    with sessions() as s:
        return exact(postgres.period_groups_sql(s, KEYS, since, until, now))


def cached(sessions: sessionmaker[Session], since: datetime, until: datetime, now: datetime) -> str:
    """The report's groups through the stored days; fails if none was used."""
    with sessions() as s:
        postgres.tune(s)
        assert days.cached_parts(s, KEYS, since, until, now) is not None
        return exact(days.period_groups_cached(s, KEYS, since, until, now))


def stored(sessions: sessionmaker[Session]) -> set[tuple[str, Any]]:
    with sessions() as s:
        return {
            (r[0], r[1]) for r in s.execute(text("SELECT DISTINCT service, day FROM report_days"))
        }


def a_consult(sessions: sessionmaker[Session], where: str) -> tuple[int, str, Any]:
    """(id, service, UTC day) of the oldest consult matching `where` in a stored day."""
    with sessions() as s:
        row = s.execute(
            text(
                "SELECT c.id, c.service, (c.created_at AT TIME ZONE 'UTC')::date FROM consults c"
                " JOIN report_days r ON r.service = c.service"
                "  AND r.day = (c.created_at AT TIME ZONE 'UTC')::date"
                f" WHERE {where} ORDER BY c.created_at LIMIT 1"
            )
        ).one()
    return row[0], row[1], row[2]


def test_stored_days_bit_for_bit_with_live_and_percentile_cont(loaded):
    sessions, until = loaded
    assert days.fill(sessions, KEYS) > 0
    assert len(stored(sessions)) > 4 * 300  # most of the year's days, every service
    periods = [
        (until - timedelta(days=365), until),
        # Partial days at both ends, and an end inside the stored days.
        (until - timedelta(days=200, hours=5, minutes=37), until - timedelta(days=3, hours=-7)),
        (until - timedelta(days=90, microseconds=1), until - timedelta(days=30, seconds=1)),
    ]
    for since, end in periods:
        expected = live(sessions, since, end, until)
        assert cached(sessions, since, end, until) == expected
        with sessions() as s:
            assert (
                exact(pg_reference.period_groups_reference(s, KEYS, since, end, until)) == expected
            )


def test_fill_idempotent(loaded):
    sessions, _until = loaded
    first = days.fill(sessions, KEYS)
    with sessions() as s:
        count = s.execute(text("SELECT count(*) FROM report_days")).scalar_one()
    assert first == count > 0
    assert days.fill(sessions, KEYS) == 0
    with sessions() as s:
        assert s.execute(text("SELECT count(*) FROM report_days")).scalar_one() == count


WRITES: dict[str, tuple[str, str]] = {
    # name: (which consult, the write)
    "reopen": ("c.status = 'answered'", "UPDATE consults SET status = 'acknowledged',"
               " answered_at = NULL, reopened_count = reopened_count + 1 WHERE id = :id"),
    "close": ("c.status = 'answered'", "UPDATE consults SET status = 'closed' WHERE id = :id"),
    "late feedback": ("c.status = 'closed' AND c.feedback_helpful IS NULL",
                      "UPDATE consults SET feedback_helpful = false WHERE id = :id"),
    "retention scrub": ("c.status = 'closed'",
                        "UPDATE consults SET patient = NULL, question = NULL WHERE id = :id"),
    "delete": ("c.status = 'cancelled'", "WITH hops AS (DELETE FROM consult_hops"
               " WHERE consult_id = :id) DELETE FROM consults WHERE id = :id"),
    "backdated insert": ("true", "INSERT INTO consults (ref, service, seq, urgency, intake,"
                         " requester, on_call, status, channel, created_at, acknowledge_due_at,"
                         " answer_due_at, waiting_seconds, nudge_level, nudges_at_level,"
                         " nudge_count, escalation_count, reopened_count, handoff_count, version)"
                         " SELECT 'X-1', service, 999999, 'stat', '{}', 'UREQ', 'UON', 'open',"
                         " channel, created_at + interval '1 second', created_at, created_at,"
                         " 0, 0, 0, 0, 0, 0, 0, 1 FROM consults WHERE id = :id"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(WRITES))
def test_a_write_deletes_its_day_and_the_next_report_is_live(loaded, name):
    sessions, until = loaded
    since = until - timedelta(days=365)
    days.fill(sessions, KEYS)
    where, write = WRITES[name]
    consult, service, day = a_consult(sessions, where)
    before = stored(sessions)
    with sessions() as s, s.begin():
        s.execute(text(write), {"id": consult})
    assert stored(sessions) == before - {(service, day)}
    assert cached(sessions, since, until, until) == live(sessions, since, until, until)
    days.fill(sessions, KEYS)  # filled again unless the day now has an open consult
    assert cached(sessions, since, until, until) == live(sessions, since, until, until)


def test_transfer_of_an_open_consult_into_a_stored_day(loaded):
    """An open consult of an unstored day moved to another service whose same day is
    stored: the service change fires the trigger, which deletes that day."""
    sessions, until = loaded
    days.fill(sessions, KEYS)
    consult, service, day = a_consult(sessions, "c.status = 'answered'")
    with sessions() as s, s.begin():  # reopened: its day is deleted and not filled again
        s.execute(text(REOPEN), {"id": consult})
    days.fill(sessions, KEYS)
    other = next(k for k in KEYS if k != service and (k, day) in stored(sessions))
    assert (service, day) not in stored(sessions)
    with sessions() as s, s.begin():
        s.execute(
            text("UPDATE consults SET service = :to, seq = 999997 WHERE id = :id"),
            {"to": other, "id": consult},
        )
    assert (other, day) not in stored(sessions)
    since = until - timedelta(days=365)
    assert cached(sessions, since, until, until) == live(sessions, since, until, until)


def test_truncate_clears_the_days(loaded):
    sessions, _until = loaded
    days.fill(sessions, KEYS)
    assert stored(sessions)
    with sessions() as s, s.begin():
        s.execute(text("TRUNCATE consults CASCADE"))
    assert not stored(sessions)


def test_creates_and_presses_on_open_consults_do_not_call_the_trigger(loaded):
    """The WHEN clauses: an ordinary create and a press on an open consult never run
    `report_days_forget`; a backdated insert does (track_functions counts calls)."""
    sessions, _until = loaded

    def calls(s: Session) -> int:
        return s.execute(
            text("SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
                 " WHERE funcname = 'report_days_forget'")
        ).scalar_one()  # fmt: skip

    with sessions() as s, s.begin():
        s.execute(text("SET LOCAL track_functions = 'pl'"))
        s.execute(text(WRITES["backdated insert"][1].replace("created_at + interval '1 second'",
                       "now()").replace("'X-1'", "'X-2'").replace("999999", "999998")), {"id": 1})  # fmt: skip
        s.execute(text("UPDATE consults SET nudge_count = nudge_count + 1 WHERE status = 'open'"))
        assert calls(s) == 0
        s.execute(text(WRITES["backdated insert"][1]), {"id": 1})
        assert calls(s) == 1


def test_a_day_is_not_used_before_its_last_due_time(loaded):
    sessions, until = loaded
    days.fill(sessions, KEYS)
    with sessions() as s:
        service, day, valid_after = s.execute(
            text("SELECT service, day, max(valid_after) FROM report_days GROUP BY service, day"
                 " ORDER BY day DESC, service LIMIT 1")
        ).one()  # fmt: skip
    first, end = day, day + timedelta(days=1)
    with sessions() as s:
        assert days.stored_runs(s, [service], first, end, valid_after) == {}
        assert days.stored_runs(s, [service], first, end, valid_after + US) == {
            service: [(first, end)]
        }
    # A report whose now is at the due time computes that day live, and matches.
    since = days.midnight(first) - timedelta(days=days.MIN_DAYS + 5)
    with sessions() as s:
        got = exact(days.period_groups_cached(s, KEYS, since, days.midnight(end), valid_after))
    assert got == live(sessions, since, days.midnight(end), valid_after)


def _waiting_on_lock(sessions: sessionmaker[Session], n: int = 1) -> None:
    """Return once `n` backends wait for a lock on report_days (a condition polled, not a
    sleep: the lock queue orders the two connections)."""
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while datetime.now(UTC) < deadline:
        with sessions() as s:
            waiting = s.execute(
                text("SELECT count(*) FROM pg_locks WHERE NOT granted"
                     " AND relation = CAST('report_days' AS regclass)")
            ).scalar_one()  # fmt: skip
        if waiting >= n:
            return
    raise AssertionError("nobody waited for the lock")


def _in_thread(run: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, errors


def _one_closed(sessions: sessionmaker[Session]) -> tuple[int, str, Any]:
    """A closed consult of a stored day; the stored days then emptied."""
    days.fill(sessions, KEYS)
    found = a_consult(sessions, "c.status = 'closed'")
    with sessions() as s, s.begin():
        s.execute(text("DELETE FROM report_days"))
    return found


REOPEN = "UPDATE consults SET status = 'acknowledged', answered_at = NULL WHERE id = :id"


def test_reopen_before_the_fill_commits_is_seen_by_the_fill(loaded):
    """The writer's trigger holds ROW EXCLUSIVE: the fill waits for its commit, then reads
    the consult open and stores nothing for that day."""
    sessions, until = loaded
    consult, service, day = _one_closed(sessions)
    with sessions() as writer:
        writer.begin()
        writer.execute(text(REOPEN), {"id": consult})
        thread, errors = _in_thread(lambda: days.fill(sessions, KEYS))
        _waiting_on_lock(sessions)
        writer.commit()
    thread.join()
    assert not errors
    assert (service, day) not in stored(sessions) and len(stored(sessions)) > 100
    since = until - timedelta(days=365)
    assert cached(sessions, since, until, until) == live(sessions, since, until, until)


def test_reopen_after_the_fill_read_deletes_what_it_stored(loaded):
    """The fill holds SHARE ROW EXCLUSIVE: the writer's trigger waits for the fill's
    commit, then its DELETE sees the fill's rows and deletes the stale day."""
    sessions, until = loaded
    consult, service, day = _one_closed(sessions)
    with sessions() as filler:
        filler.begin()
        filler.execute(text("LOCK TABLE report_days IN SHARE ROW EXCLUSIVE MODE"))
        ranges = [(k, days.midnight(day), days.midnight(day) + timedelta(days=1)) for k in KEYS]
        assert filler.execute(days.fill_sql(ranges)).scalar_one() > 0

        def reopen() -> None:
            with sessions() as writer, writer.begin():
                writer.execute(text(REOPEN), {"id": consult})

        thread, errors = _in_thread(reopen)
        _waiting_on_lock(sessions)
        filler.commit()
    thread.join()
    assert not errors
    assert (service, day) not in stored(sessions)
    since = days.midnight(day) - timedelta(days=days.MIN_DAYS + 3)
    end = days.midnight(day) + timedelta(days=2)
    assert live(sessions, since, end, until) == _report(sessions, since, end, until)


def _report(
    sessions: sessionmaker[Session], since: datetime, until: datetime, now: datetime
) -> str:
    with sessions() as s:
        return exact(days.period_groups_cached(s, KEYS, since, until, now))


def test_two_fills_at_once_neither_fail_nor_double(loaded):
    sessions, _until = loaded
    with sessions() as holder:
        holder.begin()
        holder.execute(text("LOCK TABLE report_days IN SHARE ROW EXCLUSIVE MODE"))
        results: list[int] = []
        runs = [_in_thread(lambda: results.append(days.fill(sessions, KEYS))) for _ in range(2)]
        _waiting_on_lock(sessions, 2)
        holder.rollback()
    for thread, _ in runs:
        thread.join()
    assert not [e for _, errors in runs for e in errors]
    with sessions() as s:
        count = s.execute(text("SELECT count(*) FROM report_days")).scalar_one()
    assert count > 0 and sum(results) == count


def test_sqlite_stores_nothing(engine):
    if use_postgres():
        pytest.skip("SQLite only")
    sessions = session_factory(engine)
    report_bench().load_sqlite(engine, 500, datetime.now(UTC).replace(microsecond=0))
    assert days.fill(sessions, KEYS) == 0
    with sessions() as s:
        assert s.execute(text("SELECT count(*) FROM report_days")).scalar_one() == 0


def test_a_repeatable_read_writer_older_than_a_fill_must_retry(loaded):
    """A REPEATABLE READ writer cannot see a fill committed after its snapshot, so its
    DELETE would miss the rows the fill stored: its trigger locks the gate row the fill
    updated, and PostgreSQL refuses the write (serialization failure, to retry) instead of
    leaving a stale day stored."""
    sessions, until = loaded
    consult, service, day = _one_closed(sessions)
    with sessions() as writer:
        writer.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        writer.execute(text("SELECT count(*) FROM consults"))  # the snapshot is taken
        assert days.fill(sessions, KEYS) > 0
        assert (service, day) in stored(sessions)
        with pytest.raises(OperationalError) as refused:
            writer.execute(text(REOPEN), {"id": consult})
        assert getattr(refused.value.orig, "sqlstate", None) == "40001"
        writer.rollback()
    # Retried with a new snapshot, the write goes through and forgets the day.
    with sessions() as writer, writer.begin():
        writer.execute(text(REOPEN), {"id": consult})
    assert (service, day) not in stored(sessions)
    since = until - timedelta(days=365)
    assert _report(sessions, since, until, until) == live(sessions, since, until, until)
