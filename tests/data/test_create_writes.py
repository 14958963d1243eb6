"""A create on PostgreSQL goes straight to psycopg (`storage.db.send_autocommitted`): one
round trip, the same rows SQLAlchemy's execution of the same statement wrote, and its
errors as SQLAlchemy's (parameters hidden, a lost connection invalidated)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from storage import creation
from storage.creation import OTHERS, Created
from storage.db import autocommit, create_db_engine, send_autocommitted, session_factory
from tests.statements import statements

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def _create(
    engine: Engine, patient: str, question: str = "Chest pain?", *, queue: bool = True
) -> Created | None:
    values = {
        "service": "cards",
        "urgency": "stat",
        "patient": patient,
        "patient_key": patient,
        "question": question,
        "intake": {"hr": "110"},
        "requester": "UREQ",
        "on_call": "UONCALL",
        "status": "open",
        "origin_key": f"cmd:{uuid.uuid4().hex}",
        "channel": "CCARD",
        "created_at": NOW,
        "acknowledge_due_at": NOW + timedelta(minutes=5),
        "answer_due_at": NOW + timedelta(minutes=30),
        "next_nudge_at": NOW + timedelta(minutes=5),
        "nudge_phase": "acknowledge",
    }
    at = {"created_at": NOW, "next_attempt_at": NOW}
    return creation.create_consult(
        sessions=session_factory(engine),
        consult=creation.new_consult(**values),
        prefix="CARD",
        audit={"actor": "UREQ", "action": "created", "at": NOW, "details": {"via": "cmd"}},
        messages=[
            {"kind": "card", "payload": {"channel": "CCARD", "params": {"q": 1}}, **at},
            {"kind": "dm", "payload": {"user": "UREQ", "params": {"others": OTHERS}}, **at},
        ]
        if queue
        else [],
    )


def _written(engine: Engine, consult_id: int) -> dict[str, Any]:
    """What a create wrote for the consult, ids and keys that differ per create left out."""
    differ = {"id", "seq", "ref", "origin_key", "patient", "patient_key", "consult_id"}

    def rows(sql: str) -> list[dict[str, Any]]:
        with engine.connect() as conn:
            found = conn.execute(text(sql), {"id": consult_id}).mappings()
            return [{k: v for k, v in r.items() if k not in differ} for r in found]

    return {
        "consult": rows("SELECT * FROM consults WHERE id = :id"),
        "audit": rows("SELECT * FROM audit_events WHERE consult_id = :id ORDER BY id"),
        "outbox": rows("SELECT * FROM outbox WHERE consult_id = :id ORDER BY id"),
    }


def _through_sqlalchemy(engine: Engine, sql: str, params: dict[str, Any]) -> Any:
    """How the create's statement was sent before: SQLAlchemy's driver-SQL execution."""
    with autocommit(engine) as conn:
        return conn.exec_driver_sql(sql, params).first()


def test_a_create_is_one_round_trip_at_the_driver(db_url, postgres_only):
    engine = create_db_engine(db_url)
    _create(engine, "MRN 1")  # the service's sequence exists from now on
    with statements(engine) as seen:
        made = _create(engine, "MRN 2")
    assert made is not None
    assert len(seen) == 1, seen
    (sql,) = seen
    assert sql.startswith("with earlier as"), sql
    assert all(w in sql for w in ("insert into consults", "audit_events", "insert into outbox"))
    engine.dispose()


def test_the_driver_writes_what_sqlalchemy_wrote(db_url, postgres_only, monkeypatch):
    """Two patients, each with an open consult and a second one created alike (so the
    second's message lists the first as the patient's other open consult): the first pair
    through psycopg directly, the second through SQLAlchemy as before. Same rows, same
    returned consult and others."""
    engine = create_db_engine(db_url)
    first, made = _create(engine, "MRN 1"), _create(engine, "MRN 1", "Again?")
    monkeypatch.setattr(creation, "send_autocommitted", _through_sqlalchemy)
    first_before, made_before = _create(engine, "MRN 2"), _create(engine, "MRN 2", "Again?")
    assert first and made and first_before and made_before
    assert _written(engine, first.consult.id) == _written(engine, first_before.consult.id)
    driver, before = _written(engine, made.consult.id), _written(engine, made_before.consult.id)
    (dm,) = [m for m in driver["outbox"] if m["kind"] == "dm"]
    (dm_before,) = [m for m in before["outbox"] if m["kind"] == "dm"]
    assert dm["payload"]["params"]["others"] == [first.consult.id]
    assert dm_before["payload"]["params"]["others"] == [first_before.consult.id]
    dm["payload"]["params"]["others"] = dm_before["payload"]["params"]["others"] = "X"
    assert driver == before
    assert len(driver["outbox"]) == 2 and driver["audit"][0]["details"] == {"via": "cmd"}

    def loaded(c: Any) -> dict[str, Any]:
        return {k: v for k, v in vars(c).items() if not k.startswith("_") and k != "id"}

    assert [o.id for o in made.others] == [first.consult.id]
    assert [o.id for o in made_before.others] == [first_before.consult.id]
    ignore = {"seq", "ref", "origin_key", "patient", "patient_key"}
    assert {k: v for k, v in loaded(made.consult).items() if k not in ignore} == {
        k: v for k, v in loaded(made_before.consult).items() if k not in ignore
    }
    assert [{k: v for k, v in loaded(o).items() if k != "ref"} for o in made.others] == [
        {k: v for k, v in loaded(o).items() if k != "ref"} for o in made_before.others
    ]
    engine.dispose()


def test_a_driver_error_comes_out_as_sqlalchemys_without_the_patient(db_url, postgres_only):
    """The database refuses the create (a trigger): SQLAlchemy's error, no parameters in
    it, nothing stored, and the pooled connection goes back out of autocommit."""
    engine = create_db_engine(db_url, pool_size=1)
    _create(engine, "MRN 1")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION careloop_test_refuse() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER careloop_test_refuse BEFORE INSERT ON outbox "
            "FOR EACH ROW EXECUTE FUNCTION careloop_test_refuse()"
        )
    with pytest.raises(DBAPIError) as caught:
        _create(engine, "MRN SECRET-PATIENT", "SECRET-QUESTION")
    assert "refused by test" in str(caught.value)
    assert "SECRET" not in str(caught.value) and not caught.value.connection_invalidated
    with engine.begin() as conn:
        assert conn.connection.driver_connection.autocommit is False
        conn.exec_driver_sql("DROP TRIGGER careloop_test_refuse ON outbox")
        conn.exec_driver_sql("DROP FUNCTION careloop_test_refuse()")
        assert conn.exec_driver_sql("SELECT count(*) FROM consults").scalar_one() == 1
    engine.dispose()


def test_a_lost_connection_is_invalidated_and_the_next_create_works(db_url, postgres_only):
    engine = create_db_engine(db_url, pool_size=1)
    _create(engine, "MRN 1")
    with engine.connect() as conn:  # the one pooled connection
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    other = create_db_engine(db_url)
    with other.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(OperationalError) as caught:
        _create(engine, "MRN 2")
    assert caught.value.connection_invalidated
    assert _create(engine, "MRN 2") is not None
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != pid
        assert conn.exec_driver_sql("SELECT count(*) FROM consults").scalar_one() == 2
    other.dispose()
    engine.dispose()


def test_a_lost_connection_has_the_pool_check_its_others_before_reusing_them(db_url, postgres_only):
    # A restarted database drops every pooled connection at once: after one statement sent
    # straight to the driver finds its connection lost, the others, however recently used,
    # are pinged before their next use instead of each failing one more request.
    engine = create_db_engine(db_url, pool_size=3)
    with engine.connect() as a, engine.connect() as b, engine.connect() as c:
        pids = [x.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for x in (a, b, c)]
    other = create_db_engine(db_url)
    with other.connect() as conn:
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(OperationalError) as caught:
        send_autocommitted(engine, "SELECT pg_backend_pid()", {})
    assert caught.value.connection_invalidated
    for _ in range(3):
        (pid,) = send_autocommitted(engine, "SELECT pg_backend_pid()", {})
        assert pid not in pids
    assert _create(engine, "MRN 2") is not None
    other.dispose()
    engine.dispose()


def test_a_create_that_queues_no_message_stores_the_consult_and_its_audit(db_url, postgres_only):
    # The statement once kept an outbox insert of zero rows: VALUES with nothing in it.
    engine = create_db_engine(db_url)
    created = _create(engine, "MRN 1", queue=False)
    assert created is not None and created.consult.ref == "CARD-1"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM consults").scalar_one() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_events").scalar_one() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM outbox").scalar_one() == 0
    engine.dispose()


def test_a_database_that_refuses_connections_gives_sqlalchemys_error(postgres_only):
    # The pool's connect fails inside `raw_connection()`, which (unlike `engine.connect()`)
    # lets psycopg's error through: the person must still be told "not saved, try again".
    engine = create_db_engine("postgresql+psycopg://careloop@127.0.0.1:9/none")
    with pytest.raises(OperationalError):
        send_autocommitted(engine, "SELECT 1", {})
    engine.dispose()
