"""Point 3: a new consult is committed before Slack gets the ack. A failing database gives
the user an error they can act on and stores nothing; an OK ack means the row exists."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from bot.dev.fakeslack.requests import state_values, static_select
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.harness import REQUESTER, Bot
from tests.reliability.conftest import effects
from tests.reliability.invariants import assert_consistent
from tests.statements import refusing


class DatabaseDown(Exception):
    pass


@contextmanager
def failing(bot: Bot, *, statement: str | None = None, on_commit: bool = False) -> Iterator[None]:
    """Make the database fail: any statement containing `statement` (at the driver on
    PostgreSQL, where a create goes straight to psycopg), or every COMMIT. A statement
    fault that was never injected fails the test."""
    engine = bot.services.engine

    def on_commit_event(conn: Any) -> None:
        raise OperationalError("COMMIT", {}, DatabaseDown("connection reset"))

    def down(sql: str, _params: Any) -> OperationalError:
        return OperationalError(sql[:40], {}, DatabaseDown("connection reset"))

    with ExitStack() as stack:
        if statement:
            refused = stack.enter_context(refusing(engine, statement, down))
        if on_commit:
            event.listen(engine, "commit", on_commit_event)
            stack.callback(event.remove, engine, "commit", on_commit_event)
        yield
    if statement:
        assert refused, f"no statement with {statement!r} was sent: the fault was not injected"


def ack_text(resp: Any) -> str:
    return str((resp.json or {}).get("text", "")) if isinstance(resp.json, dict) else resp.text


FAULTS = {
    "consult insert": {"statement": "insert into consults"},
    "audit insert": {"statement": "insert into audit_events"},
    "outbox insert": {"statement": "insert into outbox"},
    "reference counter": {"statement": "service_counters"},
    "commit": {"on_commit": True},
}


def test_quick_form_database_failure_gives_an_error_ack_and_stores_nothing(bot: Bot):
    bot.settle()
    faults = dict(FAULTS)
    if bot.services.engine.dialect.name == "postgresql":
        # There a create is one autocommitted statement: no COMMIT of its own to fail.
        del faults["commit"]
    for name, fault in faults.items():
        before = effects(bot)
        with failing(bot, **fault):
            resp = bot.command("cards stat MRN 31: chest pain?", user=REQUESTER)
        assert resp.status == 200, name
        text = ack_text(resp).lower()
        assert "not saved" in text and "try again" in text, (name, text)
        assert "received" not in text
        assert bot.consults() == [], name
        assert effects(bot).audit == before.audit and effects(bot).outbox == before.outbox
    # The database is back: the same command works (a failed create may leave a gap in
    # the reference numbers, never a duplicate or a half-written consult).
    resp = bot.command("cards stat MRN 31: chest pain?", user=REQUESTER)
    (consult,) = bot.consults()
    assert f"*{consult.ref}* received" in ack_text(resp)
    assert_consistent(bot)


@contextmanager
def refusing_inserts(bot: Bot, table: str) -> Iterator[None]:
    """Make the database itself refuse every INSERT into `table` (a trigger), so a create
    fails inside the database after its earlier writes ran."""
    engine = bot.services.engine
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if postgres:
            conn.execute(
                text(
                    "CREATE FUNCTION careloop_test_refuse() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$"
                )
            )
            conn.execute(
                text(
                    f"CREATE TRIGGER careloop_test_refuse BEFORE INSERT ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION careloop_test_refuse()"
                )
            )
        else:
            conn.execute(
                text(
                    f"CREATE TRIGGER careloop_test_refuse BEFORE INSERT ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(
                text(f"DROP TRIGGER careloop_test_refuse{' ON ' + table if postgres else ''}")
            )
            if postgres:
                conn.execute(text("DROP FUNCTION careloop_test_refuse()"))


def test_a_create_refused_midway_by_the_database_stores_nothing(bot: Bot):
    """The consult row is written before its audit event and outbox messages: when the
    database refuses one of those, the consult is not stored either, and the number it took
    is never reused."""
    bot.settle()
    for table in ("audit_events", "outbox"):
        before = effects(bot)
        with refusing_inserts(bot, table):
            resp = bot.command("cards stat MRN 33: chest pain?", user=REQUESTER)
        assert resp.status == 200, table
        assert "not saved" in ack_text(resp).lower(), table
        assert bot.consults() == [], table
        assert effects(bot) == before, table
    resp = bot.command("cards stat MRN 33: chest pain?", user=REQUESTER)
    (consult,) = bot.consults()
    assert f"*{consult.ref}* received" in ack_text(resp)
    assert_consistent(bot)


def test_form_database_failure_keeps_the_modal_open_with_an_error(bot: Bot):
    values = state_values(
        {
            (BlockId.SERVICE, ActionId.SERVICE_SELECT): static_select("cardiology"),
            BlockId.URGENCY: static_select("stat"),
            BlockId.PATIENT: "MRN 32",
            BlockId.QUESTION: "Syncope?",
        }
    )
    view = {"blocks": [{"type": "input", "block_id": b} for b in values]}
    with failing(bot, statement="insert into consults"):
        resp = bot.sender.view_submission(
            CallbackId.NEW_CONSULT, values, user=REQUESTER, view_id="VDOWN", view=view
        )
    assert resp.status == 200
    assert resp.json["response_action"] == "errors"
    (message,) = resp.json["errors"].values()
    assert "not saved" in message
    assert bot.consults() == []
    # Submitting the same form again once the database is back creates it (same view id).
    resp = bot.sender.view_submission(
        CallbackId.NEW_CONSULT, values, user=REQUESTER, view_id="VDOWN", view=view
    )
    assert resp.status == 200 and not resp.body
    assert len(bot.consults()) == 1


def test_after_an_ok_ack_the_consult_is_already_committed(bot: Bot):
    """The commit is slowed down: if the ack could overtake it, a reader on another
    connection would not see the row when the ack arrives."""
    gate = threading.Event()

    def slow_commit(conn: Any) -> None:
        gate.wait(0.3)

    event.listen(bot.services.engine, "commit", slow_commit)
    try:
        for n in range(3):
            resp = bot.command(f"cards urgent MRN 4{n}: palpitations {n}?", user=REQUESTER)
            assert resp.status == 200
            ref = bot.consults()[-1].ref
            assert f"*{ref}* received" in ack_text(resp)
            # Straight after the ack, on a connection of its own: the row is there.
            assert bot.consult(ref).question == f"palpitations {n}?"
    finally:
        event.remove(bot.services.engine, "commit", slow_commit)
    # Slack down does not matter: the ack depended on the database only.
    bot.slack.fail("*", status=500, times=None)
    resp = bot.command("cards urgent MRN 49: q?", user=REQUESTER)
    latest = bot.consults()[-1]
    assert f"*{latest.ref}* received" in ack_text(resp)
    assert latest.channel_ts is None
    bot.slack.clear_failures()
