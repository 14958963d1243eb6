"""Storage: SQLite pragmas, idempotent migrations, reference numbers under concurrency."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect, text

from bot.domain.lifecycle import OPEN_STATES
from storage import creation, db, press, repo
from storage.db import create_db_engine, migrate, session_factory
from storage.models import Consult, ServiceCounter
from tests.harness import use_postgres


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_migrate_on_empty_database_creates_every_table_and_is_idempotent(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    migrate(engine)
    migrate(engine)
    tables = set(inspect(engine).get_table_names())
    assert {
        "consults",
        "audit_events",
        "outbox",
        "replies",
        "processed_keys",
        "on_call",
        "service_counters",
        "consult_hops",
        "alembic_version",
    } <= tables
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar()
    engine.dispose()


def test_reference_numbers_are_unique_under_concurrency(db_url):
    engine = create_db_engine(db_url)
    sessions = session_factory(engine)
    got: list[int] = []
    lock = threading.Lock()

    def take(n: int) -> None:
        for _ in range(n):
            with sessions() as s, s.begin():
                value = creation.next_seq(session=s, service="radiology")
            with lock:
                got.append(value)

    threads = [threading.Thread(target=take, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 101))
    assert all(re.fullmatch(r"[A-Z]{1,6}-\d+", f"RAD-{n}") for n in got)
    engine.dispose()


def test_database_kind_matches_the_run(db_url):
    assert db_url.startswith("postgresql") == use_postgres()


def test_reference_numbers_continue_after_those_already_handed_out(db_url):
    """A database numbered before (by `service_counters`, or with stored consults) goes on
    after the highest number; on PostgreSQL the per-service sequence starts there."""
    service = f"legacy-{uuid.uuid4().hex[:6]}"  # new to this database, and needs quoting
    engine = create_db_engine(db_url)
    sessions = session_factory(engine)
    with sessions() as s, s.begin():
        s.add(ServiceCounter(service=service, last=41))
    with sessions() as s, s.begin():
        assert creation.next_seq(session=s, service=service) == 42
    with sessions() as s, s.begin():
        assert creation.next_seq(session=s, service=service) == 43
    engine.dispose()


def test_a_pooled_connection_the_database_dropped_is_replaced_before_use(
    db_url, postgres_only, monkeypatch
):
    """A connection idle in the pool whose server side went away (a restart, a fail-over) is
    pinged and replaced at checkout, so the next request does not fail on it."""
    engine = create_db_engine(db_url, pool_size=1)
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with create_db_engine(db_url).connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    engine.dispose()


def test_a_connection_reused_at_once_is_not_pinged(db_url, postgres_only, monkeypatch):
    """Under load a connection goes back to work within milliseconds: no ping round trip
    per request. One idle past PING_AFTER_IDLE_SECONDS is pinged once."""
    engine = create_db_engine(db_url, pool_size=1)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping

    def counting_ping(dbapi_conn: object) -> bool:
        pings.append(dbapi_conn)
        return real_ping(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_ping", counting_ping)
    for _ in range(20):
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    assert pings == []
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert len(pings) == 1
    engine.dispose()


def test_a_sequence_dropped_behind_the_process_is_made_again(bot, postgres_only):
    """The process remembers which service sequences exist; if one disappears (restored
    backup, manual clean-up), one create fails and the next makes it again, continuing after
    the highest stored number."""
    first = bot.open("cards MRN 1: q?")
    assert first == "CARD-1"
    with bot.services.engine.begin() as conn:
        conn.execute(text(f"DROP SEQUENCE {creation.sequence_name('cardiology')}"))
    resp = bot.command("cards MRN 2: q?")
    assert "not saved" in resp.text
    assert bot.open("cards MRN 3: q?") == "CARD-2"


def test_the_sweeps_claim_has_an_index_over_open_consults_in_nudge_order(db_url):
    """Migration 0004_sweep_index: the claim of due nudges reads at most its limit, however
    many consults are stored (timings and plans at 10k–1M: bench/sweep_bench.py)."""
    assert set(repo.OPEN_STATUSES) == {s.value for s in OPEN_STATES}
    engine = create_db_engine(db_url)
    migrate(engine)
    indexes = {i["name"]: i for i in inspect(engine).get_indexes("consults")}
    assert indexes["ix_consults_open_next_nudge"]["column_names"] == ["next_nudge_at"]
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    base = {"service": "cardiology", "urgency": "stat", "requester": "U1", "channel": "C1"}
    sessions = session_factory(engine)
    with sessions() as s, s.begin():
        for n, (status, due) in enumerate(
            [("open", 5), ("acknowledged", 1), ("waiting", 3), ("closed", 9), ("open", -5)]
        ):
            s.add(
                Consult(
                    ref=f"CARD-{n + 1}",
                    seq=n + 1,
                    status=status,
                    created_at=now,
                    next_nudge_at=now - timedelta(minutes=due),
                    **base,
                )
            )
    with sessions() as s, s.begin():
        claimed = repo.claim_due_nudges(session=s, now=now, limit=2)
        assert [c.ref for c in claimed] == ["CARD-1", "CARD-3"]  # oldest due first
    engine.dispose()


def _one_consult(engine, ref: str = "CARD-1") -> None:
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    with session_factory(engine)() as s, s.begin():
        s.add(
            Consult(
                ref=ref, seq=1, status="open", created_at=now, service="cardiology",
                urgency="stat", requester="U1", channel="C1",
            )
        )  # fmt: skip


def test_the_locking_read_claims_the_key_once_and_a_rollback_gives_it_back(db_url):
    """`press.lock_and_claim` (the press path: one statement on PostgreSQL): the consult
    locked and the key claimed; a repeat finds it claimed; a missing consult is None; a
    transaction rolled back (a refused action, a missing consult) leaves the key unclaimed."""
    engine = create_db_engine(db_url)
    migrate(engine)
    _one_consult(engine)
    sessions = session_factory(engine)
    at = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)

    def attempt(ref: str, key: str | None, *, commit: bool = True) -> tuple[str | None, bool]:
        with sessions() as s:
            s.begin()
            consult, claimed = press.lock_and_claim(session=s, ref=ref, key=key, at=at)
            (s.commit if commit else s.rollback)()
            return (consult.ref if consult else None), claimed

    assert attempt("card-1", "k-refused", commit=False) == ("CARD-1", True)
    assert attempt("CARD-1", "k-refused") == ("CARD-1", True)  # the rollback gave it back
    assert attempt("CARD-1", "k-refused") == ("CARD-1", False)
    assert attempt("CARD-1", None) == ("CARD-1", True)  # no key: nothing to claim
    assert attempt("CARD-9", "k-missing", commit=False) == (None, False)  # Refused: rollback
    with sessions() as s:
        keys = set(s.execute(text("SELECT key FROM processed_keys")).scalars())
    assert keys == {"k-refused"}
    engine.dispose()


def test_a_one_statement_read_runs_outside_a_transaction_on_postgresql(db_url, postgres_only):
    """`db.read_once`: each statement is its own transaction (no BEGIN/COMMIT round trips),
    so its transaction started with it; in a `unit_of_work` a later statement's did not."""
    engine = create_db_engine(db_url)
    migrate(engine)
    _one_consult(engine)
    sessions = session_factory(engine)
    own = text("SELECT pg_sleep(0.01), statement_timestamp() = transaction_timestamp()")
    with db.read_once(sessions) as s:
        assert repo.get_by_ref(session=s, ref="CARD-1").ref == "CARD-1"
        assert s.execute(own).one()[1] is True
    with db.unit_of_work(sessions) as s:
        s.execute(own)
        assert s.execute(own).one()[1] is False
    engine.dispose()


def test_the_hops_migration_gives_stored_consults_their_running_hop(tmp_path):
    from alembic import command  # noqa: PLC0415

    engine = create_db_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = db.alembic_config(str(engine.url))
    t = datetime(2026, 11, 2, 9, 0)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004_sweep_index")
        for n, (status, assignee) in enumerate(
            [("open", None), ("acknowledged", "UA"), ("waiting", "UA"), ("answered", "UA")]
        ):
            conn.execute(
                text(
                    "INSERT INTO consults (ref, service, seq, urgency, intake, requester, "
                    "assignee, status, channel, created_at, acknowledged_at, waiting_since, "
                    "answered_at, waiting_seconds, nudge_level, nudges_at_level, nudge_count, "
                    "escalation_count, reopened_count, handoff_count, version) VALUES (:ref, "
                    "'radiology', :n, 'urgent', '{}', 'UREQ', :assignee, :status, 'CRAD', :t, "
                    ":acked, :waiting, :answered, 0, 0, 0, 0, 0, 0, 0, 1)"
                ),
                {
                    "ref": f"RAD-{n}", "n": n, "assignee": assignee, "status": status,
                    "t": t, "acked": t + timedelta(minutes=10) if assignee else None,
                    "waiting": t + timedelta(minutes=20) if status == "waiting" else None,
                    "answered": t + timedelta(hours=1) if status == "answered" else None,
                },
            )  # fmt: skip
        conn.commit()
        command.upgrade(cfg, "0007_hops")
        conn.commit()
        rows = conn.execute(
            text(
                "SELECT ref, hop_role, hop_user, hop_service, hop_since FROM consults ORDER BY seq"
            )
        ).all()
    engine.dispose()
    got = [(*r[:4], r[4] and datetime.fromisoformat(r[4])) for r in rows]
    assert got == [
        ("RAD-0", None, None, None, None),  # the queue since it was created
        ("RAD-1", "consultant", "UA", "radiology", t + timedelta(minutes=10)),
        ("RAD-2", "requester", "UREQ", "radiology", t + timedelta(minutes=20)),
        ("RAD-3", "none", None, None, t + timedelta(hours=1)),
    ]


def test_autocommit_commits_each_statement_and_pools_the_connection_without_it(
    db_url, postgres_only
):
    """`db.autocommit` (the create's one statement, one-read sessions): each statement is
    committed when it returns, and the connection goes back to the pool as it came, so the
    next user of it gets a real transaction (a rolled-back write leaves nothing)."""
    engine = create_db_engine(db_url, pool_size=1)
    other = create_db_engine(db_url, pool_size=1)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE autocommit_probe (n int)")
    with db.autocommit(engine) as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        conn.exec_driver_sql("INSERT INTO autocommit_probe VALUES (1)")
        with other.connect() as seen:  # committed already, inside the block
            assert seen.exec_driver_sql("SELECT count(*) FROM autocommit_probe").scalar() == 1
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() == pid
        assert conn.connection.driver_connection.autocommit is False
        conn.exec_driver_sql("INSERT INTO autocommit_probe VALUES (2)")
        conn.rollback()
    with other.connect() as seen:
        assert seen.exec_driver_sql("SELECT count(*) FROM autocommit_probe").scalar() == 1
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE autocommit_probe")
    engine.dispose()
    other.dispose()


def test_autocommit_drops_a_connection_it_cannot_switch_back(db_url, postgres_only):
    """A connection left inside a transaction (or broken) cannot leave autocommit: it is
    invalidated rather than pooled in autocommit; the next checkout is a new connection."""
    engine = create_db_engine(db_url, pool_size=1)
    with db.autocommit(engine) as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        conn.exec_driver_sql("BEGIN")  # the server opens a transaction the block leaves open
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != pid
        assert conn.connection.driver_connection.autocommit is False
    engine.dispose()


def test_a_consult_from_new_consult_is_stored_with_every_value_it_holds(db_url):
    """`creation.new_consult` puts the values in the object's dict (no ORM events); the
    create stores each of them, and the object comes back with id and reference, as one
    built with `Consult(**values)` does."""
    engine = create_db_engine(db_url)
    sessions = session_factory(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    values = {
        "service": "cards",
        "urgency": "stat",
        "patient": "MRN 77",
        "patient_key": "MRN 77",
        "question": "Chest pain?",
        "intake": {"hr": "110"},
        "requester": "UREQ",
        "on_call": "UONCALL",
        "status": "open",
        "origin_key": f"cmd:{uuid.uuid4().hex}",
        "channel": "CCARD",
        "created_at": now,
        "acknowledge_due_at": now + timedelta(minutes=5),
        "answer_due_at": now + timedelta(minutes=30),
        "next_nudge_at": now + timedelta(minutes=5),
        "nudge_phase": "acknowledge",
    }
    audit = {"actor": "UREQ", "action": "created", "at": now, "details": {}}
    made = creation.create_consult(
        sessions=sessions,
        consult=creation.new_consult(**values),
        prefix="CARD",
        audit=audit,
        messages=[
            {"kind": "dm", "payload": {"user": "UREQ"}, "created_at": now, "next_attempt_at": now}
        ],
    )
    assert made is not None and made.consult.id and made.consult.ref.startswith("CARD-")
    with sessions() as s:
        stored = s.get(Consult, made.consult.id)
        assert stored is not None
        assert {k: getattr(stored, k) for k in values} == values
    engine.dispose()
