"""One dispatcher delivers at a time: every bot process runs one, on PostgreSQL they share
the outbox through an advisory lock, so one pacer sees every post to a channel. When the
holder stops, crashes or loses its connection, another takes over; nothing is lost or sent
twice. (SQLite serves one process: its dispatcher always delivers.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from bot.app import DELIVERY_LOCK_ID
from bot.slack.ids import OUTBOX_EVENT_TYPE
from storage.db import SessionLock, create_db_engine
from tests.fake_slack import FakeSlack
from tests.harness import Bot, start_bot, use_postgres, wait_until


@pytest.fixture
def pair(db_url: str, slack: FakeSlack) -> Iterator[list[Bot]]:
    if not use_postgres():
        pytest.skip("several processes on one database need PostgreSQL (CARELOOP_TEST_DB)")
    bots = [start_bot(db_url, slack), start_bot(db_url, slack)]
    for bot in bots:
        bot.services.dispatcher.pacer.interval = 0
        assert bot.services.dispatcher.leadership is not None
        bot.services.dispatcher.leadership.check_every = 0.05
    yield bots
    for bot in bots:
        bot.stop()


def leaders(bots: list[Bot]) -> list[Bot]:
    return [b for b in bots if b.services.dispatcher.leading]


def posted_once(slack: FakeSlack) -> None:
    ids = [
        c.args["metadata"]["event_payload"]["outbox_id"]
        for c in slack.calls_to("chat.postMessage")
        if c.ok and (c.args.get("metadata") or {}).get("event_type") == OUTBOX_EVENT_TYPE
    ]
    assert ids and [i for i, n in Counter(ids).items() if n > 1] == []


def lock_holder_pid(db_url: str) -> int | None:
    engine = create_db_engine(db_url, pool_size=1)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = 0 AND objid = :id "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = "
                    "current_database())"
                ),
                {"id": DELIVERY_LOCK_ID},
            ).scalar()
    finally:
        engine.dispose()


def test_one_dispatcher_delivers_and_another_takes_over_when_it_stops(pair: list[Bot]):
    a, b = pair
    refs = [a.open(f"cards MRN {n}: q?") for n in range(3)] + [b.open("cards MRN 9: q?")]
    a.settle()
    assert wait_until(lambda: len(leaders(pair)) == 1)
    (leader,) = leaders(pair)
    (standby,) = [x for x in pair if x is not leader]
    assert all(leader.consult(r).channel_ts for r in refs)

    leader.stop()
    ref = standby.open("cards MRN 10: after the leader stopped?")  # waits for its card
    assert standby.services.dispatcher.leading
    assert standby.consult(ref).channel_ts
    standby.settle()
    posted_once(standby.slack)


def test_a_leader_that_lost_its_connection_stands_by_and_nothing_is_sent_twice(
    pair: list[Bot], db_url: str
):
    a, b = pair
    a.open("cards MRN 1: q?")
    assert wait_until(lambda: len(leaders(pair)) == 1)
    assert len(leaders(pair)) == 1
    pid = lock_holder_pid(db_url)
    assert pid is not None
    engine = create_db_engine(db_url, pool_size=1)
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    engine.dispose()
    # The lock went with the connection: the other dispatcher takes it, the old one notices
    # its connection is gone and stands by. Exactly one leads again.
    assert wait_until(lambda: lock_holder_pid(db_url) not in (None, pid), 10)
    assert wait_until(lambda: len(leaders(pair)) == 1, 10)
    refs = [b.open(f"cards MRN {n}: after the switch?") for n in range(2, 5)]
    b.settle()
    assert all(b.consult(r).channel_ts for r in refs)
    posted_once(b.slack)


def test_on_sqlite_the_dispatcher_always_delivers(db_url: str, slack: FakeSlack):
    if use_postgres():
        pytest.skip("SQLite only")
    engine = create_db_engine(db_url)
    try:
        assert SessionLock(engine, DELIVERY_LOCK_ID).held()
    finally:
        engine.dispose()
    bot = start_bot(db_url, slack)
    try:
        assert bot.services.dispatcher.leadership is None
        ref = bot.open("cards MRN 1: q?")
        assert bot.consult(ref).channel_ts
    finally:
        bot.stop()
