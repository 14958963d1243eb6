"""A button press's writes on PostgreSQL (`storage.press`): one statement for the row's
UPDATE, the audit event, the outbox messages and the hop, writing exactly what the ORM's
flush writes (which it falls back to when an action writes more than that, and which
SQLite keeps)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from bot.dev.fakeslack import FakeSlack
from bot.flows.followups import FollowUpDraft
from storage import press
from storage.models import AuditEvent, Consult, OutboxMessage
from storage.models_hops import ConsultHop
from tests.harness import Bot, start_bot, wait_until
from tests.statements import statements

ON_CALL, BACKUP = "UCARDON", "UCARDBK"
NOW = datetime(2026, 11, 2, 9, tzinfo=UTC)


@pytest.fixture
def quiet_bot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    """A bot without its dispatcher: the outbox rows stay as the press queued them."""
    running = start_bot(db_url, slack, dispatcher=False)
    yield running
    running.stop()


def _presses(bot: Bot, ref: str, n: int) -> None:
    """Acknowledge, hand off (the form), answer (the form): the presses of issue 15."""
    actions = bot.services.consults
    actions.acknowledge(ref, actor=ON_CALL, key=f"ack-{n}")
    actions.handoff(ref, actor=ON_CALL, to=BACKUP, note="echo pending", key=f"handoff-{n}")
    actions.answer(ref, actor=BACKUP, text="Start heparin.", key=f"answer-{n}")


def _last_outbox_id(bot: Bot) -> int:
    with bot.services.sessions() as s:
        last = s.execute(select(OutboxMessage.id).order_by(OutboxMessage.id.desc())).scalar()
    return int(last or 0)


def _opened(bot: Bot, patient: str) -> tuple[str, int]:
    """A consult opened by the quick form; (its reference, the last outbox id before any
    press)."""
    assert bot.command(f"cards urgent {patient}: chest pain?").status == 200
    return bot.consults()[-1].ref, _last_outbox_id(bot)


def _written(bot: Bot, ref: str, after: int, until: int) -> dict[str, Any]:
    """What the presses on `ref` stored: the row, its audit events, the outbox messages
    queued with ids in (`after`, `until`] and its hops, in id order, without ids."""
    skip = {"id", "ref", "seq", "patient", "patient_key", "origin_key", "channel_ts", "permalink"}
    with bot.services.sessions() as s:
        c = s.execute(select(Consult).where(Consult.ref == ref)).scalar_one()
        row = {k: v for k, v in vars(c).items() if not k.startswith("_") and k not in skip}
        audits = s.execute(
            select(AuditEvent.actor, AuditEvent.action, AuditEvent.at, AuditEvent.details)
            .where(AuditEvent.consult_id == c.id)
            .order_by(AuditEvent.id)
        ).all()
        box = s.execute(
            select(
                OutboxMessage.kind, OutboxMessage.payload, OutboxMessage.dedupe_key,
                OutboxMessage.status, OutboxMessage.attempts, OutboxMessage.created_at,
                OutboxMessage.next_attempt_at, OutboxMessage.lease_until,
            )
            .where(OutboxMessage.consult_id.is_(None) | (OutboxMessage.consult_id == c.id))
            .where(OutboxMessage.id > after, OutboxMessage.id <= until)
            .order_by(OutboxMessage.id)
        ).all()  # fmt: skip
        hop_rows = s.execute(
            select(
                ConsultHop.service, ConsultHop.role, ConsultHop.user, ConsultHop.started_at,
                ConsultHop.ended_at,
            )
            .where(ConsultHop.consult_id == c.id)
            .order_by(ConsultHop.id)
        ).all()  # fmt: skip
    box = [(kind, _own_id(payload, c.id), *rest) for kind, payload, *rest in box]
    return {"row": row, "audits": audits, "outbox": box, "hops": hop_rows}


def _own_id(payload: dict[str, Any], consult_id: int) -> dict[str, Any]:
    """The payload with the consult's own id (in a hand-off's list of ids) as "ID"."""
    params = payload.get("params") or {}
    if "ids" in params:
        ids = ["ID" if i == consult_id else i for i in params["ids"]]
        return payload | {"params": params | {"ids": ids}}
    return payload


def test_a_press_is_two_round_trips_on_postgresql(quiet_bot: Bot, postgres_only):
    """Acknowledge, hand off and answer: BEGIN with the locked read and key claim (and for
    the answer whether a follow-up waits on it), then every write (the row's UPDATE, the
    audit event, the outbox messages, the hop) as one statement with COMMIT."""
    ref, _ = _opened(quiet_bot, "MRN 1")
    actions = quiet_bot.services.consults
    engine = quiet_bot.services.engine
    writes = ("update consults", "insert into audit_events", "insert into outbox")
    for press_it, asks in (
        (lambda: actions.acknowledge(ref, actor=ON_CALL, key="ack-1"), 0),
        (lambda: actions.handoff(ref, actor=ON_CALL, to=BACKUP, note="n", key="ho-1"), 0),
        (lambda: actions.answer(ref, actor=BACKUP, text="Start heparin.", key="an-1"), 1),
    ):
        with statements(engine) as seen:
            press_it()
        assert len(seen) == 2, seen
        assert seen[0].startswith("begin; with claim as (insert into processed_keys"), seen[0]
        # The answer asks, once the row is locked, whether a follow-up waits on it.
        assert seen[0].count("; select exists (select 1 from followups") == asks, seen[0]
        assert seen[-1].endswith("; commit") and seen[-1].count(";") == 1, seen[-1]
        assert all(part in seen[-1] for part in (*writes, "insert into consult_hops"))


def test_the_one_statement_writes_what_the_orm_flush_writes(quiet_bot: Bot, monkeypatch):
    """The same presses on two consults opened alike, the first through the one statement
    (on PostgreSQL), the second through the ORM's flush: the same row, audit events,
    outbox messages (in order) and hops."""
    fast, fast_after = _opened(quiet_bot, "MRN 1")
    _presses(quiet_bot, fast, 1)
    fast_until = _last_outbox_id(quiet_bot)
    slow, slow_after = _opened(quiet_bot, "MRN 2")
    monkeypatch.setattr(press, "_expressible", lambda *_: False)
    _presses(quiet_bot, slow, 2)
    one = _written(quiet_bot, fast, fast_after, fast_until)
    flushed = _written(quiet_bot, slow, slow_after, _last_outbox_id(quiet_bot))
    assert one["row"]["status"] == "answered" and len(one["outbox"]) >= 6
    assert [a.action for a in one["audits"]][-3:] == ["acknowledge", "handoff", "answer"]
    assert one == flushed


def test_an_action_that_writes_more_falls_back_to_the_orm_in_order(quiet_bot: Bot):
    """An answer that settles a follow-up waiting on it writes more than the one statement
    can say: the ORM path, with the answer's audit event still before the follow-up's."""
    ref, _ = _opened(quiet_bot, "MRN 3")
    quiet_bot.services.consults.acknowledge(ref, actor=ON_CALL, key="ack")
    draft = FollowUpDraft(patient="", owed="call the family", consult=ref, owner=ON_CALL)
    quiet_bot.services.followups.create(draft, creator=ON_CALL, origin_key="fu-1")
    quiet_bot.services.consults.answer(ref, actor=ON_CALL, text="Start heparin.", key="ans")
    with quiet_bot.services.sessions() as s:
        actions = list(s.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())
    assert actions.index("answer") < len(actions) - 1
    assert actions[actions.index("answer") + 1] == "followup_answer_in"
    assert quiet_bot.consult(ref).status == "answered"


def test_the_driver_reads_load_a_consult_as_the_orm_does(quiet_bot: Bot):
    """`press.read` (a modal's button) and `press.lock_and_claim` (a press) give the consult
    the ORM would load: every column, the same values and types (aware UTC datetimes,
    JSON, booleans), by its reference in any case; None for an unknown one."""
    ref, _ = _opened(quiet_bot, "MRN 4")
    actions = quiet_bot.services.consults
    actions.acknowledge(ref, actor=ON_CALL, key="ack")
    sessions = quiet_bot.services.sessions
    with sessions() as s:
        loaded = s.execute(select(Consult).where(Consult.ref == ref)).scalar_one()
        orm = {k: v for k, v in vars(loaded).items() if not k.startswith("_")}
    read = press.read(sessions, ref.lower())
    assert read is not None
    assert {k: v for k, v in vars(read).items() if not k.startswith("_")} == orm
    assert all(type(getattr(read, k)) is type(v) for k, v in orm.items())
    assert read.acknowledged_at.utcoffset().total_seconds() == 0
    with press.unit(sessions) as s:
        locked, claimed = press.lock_and_claim(session=s, ref=ref, key=None, at=read.created_at)
        assert claimed and locked in s and not s.dirty
        assert {k: v for k, v in vars(locked).items() if not k.startswith("_")} == orm
    assert press.read(sessions, "CARD-99999") is None


def test_a_driver_error_comes_out_as_sqlalchemys_and_rolls_back(quiet_bot: Bot, postgres_only):
    """What the press sends straight to psycopg fails as SQLAlchemy's statements do (the
    app answers "the database did not answer, not saved"), without its parameters (free
    text), and the unit's transaction (its BEGIN went with it) is rolled back."""
    sessions = quiet_bot.services.sessions
    bad = "SELECT no_such_column FROM consults WHERE ref = %(ref)s"
    with pytest.raises(DBAPIError) as caught, press.unit(sessions) as s:
        press._send(s, bad, {"ref": "SECRET-TEXT"}, begin=True)
    assert "no_such_column" in str(caught.value) and "SECRET-TEXT" not in str(caught.value)
    with press.unit(sessions) as s:  # the pooled connection is usable again
        assert press.lock_and_claim(session=s, ref="CARD-99999", key=None, at=NOW) == (None, False)


def test_a_follow_up_linked_while_the_answer_waits_for_the_row_is_settled(
    quiet_bot: Bot, postgres_only
):
    """The follow-up form's transaction holds the consult's row (as `FollowUps.create`
    does) and stores a follow-up waiting on the answer; an answer pressed meanwhile waits
    for the row, then finds the follow-up (asked after the lock, not before) and settles
    it: its owner is told the answer is in."""
    ref, _ = _opened(quiet_bot, "MRN 5")
    quiet_bot.services.consults.acknowledge(ref, actor=ON_CALL, key="ack")
    engine = quiet_bot.services.engine
    with engine.connect() as form:
        cid = form.execute(
            text("SELECT id FROM consults WHERE ref = :ref FOR NO KEY UPDATE"), {"ref": ref}
        ).scalar_one()
        form.execute(
            text(
                "INSERT INTO followups (ref, creator, owner, patient, owed, consult_id, "
                "created_at, due_within, handovers, nudge_count) VALUES ('FU-LINKED', "
                ":owner, :owner, 'MRN 5', 'call the family', :cid, :at, 3600, 0, 0)"
            ),
            {"owner": ON_CALL, "cid": cid, "at": NOW},
        )
        answer = threading.Thread(
            target=quiet_bot.services.consults.answer,
            args=(ref,),
            kwargs={"actor": ON_CALL, "text": "Start heparin.", "key": "ans"},
        )
        answer.start()
        assert wait_until(lambda: _waiting_for_a_lock(engine), timeout=30)
        form.commit()
    answer.join(30)
    with engine.connect() as conn:
        settled = conn.execute(
            text("SELECT answer_at IS NOT NULL FROM followups WHERE ref = 'FU-LINKED'")
        ).scalar_one()
        told = conn.execute(
            text("SELECT count(*) FROM audit_events WHERE action = 'followup_answer_in'")
        ).scalar_one()
    assert quiet_bot.consult(ref).status == "answered"
    assert settled and told == 1


def _waiting_for_a_lock(engine: Any) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar_one()
        )
