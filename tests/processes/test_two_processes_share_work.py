"""Exactly-once nudges across processes: two `python -m bot serve` processes (two gunicorn
workers each, so four sweepers and four dispatchers) share one PostgreSQL database and one
fake Slack, and a few hundred overdue consults must each get one nudge per nudge slot,
every outbox message delivered once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.dev.fakeslack import BOT_USER_ID, FakeSlack
from bot.domain.policy import Phase
from bot.slack.ids import OUTBOX_EVENT_TYPE
from storage.db import create_db_engine
from storage.models import AuditEvent, Consult, OutboxMessage
from tests.harness import use_postgres
from tests.procs import Procs, bot_env, wait_until, write_catalogue

CONSULTS = 300
NUDGE_EVERY = 3.0
SLOTS = 2  # nudge slots every consult must have had claimed before the processes stop


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as running:
        yield running


def seed(engine: Engine, slack: FakeSlack) -> list[tuple[int, str, str]]:
    """Overdue stat consults, each in its own channel (the dispatcher paces posts per
    channel) with its own requester, card already posted. A third are due now; the rest
    come due over the next four seconds, so every sweeper gets a share of the claims.
    Returns (id, channel, channel_ts) per consult."""
    now = datetime.now(UTC)
    rows = []
    for i in range(1, CONSULTS + 1):
        channel = f"CMP{i:04d}"
        card = slack.inject_message(channel, f"CARD-{i}", user=BOT_USER_ID)
        due = now - timedelta(minutes=10) if i % 3 == 0 else now + timedelta(seconds=(i % 20) * 0.2)
        rows.append(
            Consult(
                ref=f"CARD-{i}",
                service="cardiology",
                seq=i,
                urgency="stat",
                patient=f"MRN {i}",
                patient_key=f"mrn{i}",
                question="q?",
                intake={},
                requester=f"UREQ{i:04d}",
                on_call="UCARDON",
                status="open",
                channel=channel,
                channel_ts=card["ts"],
                created_at=now - timedelta(minutes=30),
                acknowledge_due_at=now - timedelta(minutes=15),
                answer_due_at=now + timedelta(hours=1),
                next_nudge_at=due,
                nudge_phase=Phase.ACKNOWLEDGE,
            )
        )
    with Session(engine, expire_on_commit=False) as s, s.begin():
        s.add_all(rows)
    return [(c.id, c.channel, str(c.channel_ts)) for c in rows]


def thread_nudges(slack: FakeSlack, channel: str, ts: str) -> list[int]:
    """Outbox ids of the nudges posted in one consult's thread."""
    return [
        int(m["metadata"]["event_payload"]["outbox_id"])
        for m in slack.messages(channel)
        if m["thread_ts"] == ts
        and m["metadata"]
        and "has not been acknowledged" in str(m["blocks"])
    ]


def swept(log: str) -> int:
    """Consults nudged according to one process's `sweep done` log lines."""
    total = 0
    for line in log.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("message") == "sweep done":
                total += int(record["count"])
    return total


def test_two_processes_never_send_the_same_nudge_twice(
    db_url: str, slack: FakeSlack, procs: Procs, tmp_path: Path
):
    if not use_postgres():
        pytest.skip("several processes on one database need PostgreSQL (CARELOOP_TEST_DB)")
    catalogue = write_catalogue(
        tmp_path / "consult.toml",
        sweep_interval="1s",
        acknowledge_within="1s",
        nudge_every=f"{int(NUDGE_EVERY)}s",
        escalate_after=5,
        storm_threshold=10_000,
    )
    env = bot_env(db_url, slack.url, catalogue, WEB_CONCURRENCY="2")
    bots = [procs.serve(env, name="a"), procs.serve(env, name="b")]
    for bot in bots:
        bot.wait_healthy()
    engine = create_db_engine(db_url, pool_size=2)
    try:
        consults = seed(engine, slack)

        def delivered_slots() -> int:
            return min(len(thread_nudges(slack, ch, ts)) for _, ch, ts in consults)

        def claimed_slots() -> int:
            with Session(engine) as s:
                return int(s.execute(select(func.min(Consult.nudge_count))).scalar_one() or 0)

        # Every consult claimed in SLOTS sweeps and nudged at least once in its thread. (A
        # nudge still queued when the next is claimed is folded into it, not sent again:
        # under a backlog a consult gets fewer nudges delivered than slots claimed.)
        assert wait_until(
            lambda: delivered_slots() >= 1 and claimed_slots() >= SLOTS, 90, interval=0.25
        ), f"only {delivered_slots()} nudge(s) delivered to every consult\n" + bots[0].tail()
        for bot in bots:
            assert bot.terminate() == 0, bot.tail()

        with Session(engine) as s:
            counts = dict(s.execute(select(Consult.id, Consult.nudge_count)).all())
            nudges = s.execute(
                select(OutboxMessage.consult_id, OutboxMessage.id, OutboxMessage.status).where(
                    OutboxMessage.dedupe_key.like("nudge:%")
                )
            ).all()
            audit = s.execute(
                select(AuditEvent.consult_id, AuditEvent.at)
                .where(AuditEvent.action.in_(("nudged", "escalated")))
                .order_by(AuditEvent.id)
            ).all()
    finally:
        engine.dispose()

    queued: dict[int, list[int]] = {}
    sent: dict[int, list[int]] = {}
    for consult_id, outbox_id, status in nudges:
        assert status in ("sent", "superseded", "pending", "sending"), status
        queued.setdefault(consult_id, []).append(outbox_id)
        if status == "sent":
            sent.setdefault(consult_id, []).append(outbox_id)
    when: dict[int, list[float]] = {}
    for consult_id, at in audit:
        when.setdefault(consult_id, []).append(at.timestamp())

    for consult_id, channel, ts in consults:
        n = counts[consult_id]
        assert n >= SLOTS
        # One nudge queued per slot, slots a full interval apart (never two claims of one).
        assert len(queued[consult_id]) == n == len(when[consult_id])
        gaps = [b - a for a, b in zip(when[consult_id], when[consult_id][1:], strict=False)]
        assert all(g >= NUDGE_EVERY - 0.01 for g in gaps), (consult_id, gaps)
        # What reached the thread is exactly the sent nudges, each once.
        assert sorted(thread_nudges(slack, channel, ts)) == sorted(sent[consult_id])

    posted = [
        int(c.args["metadata"]["event_payload"]["outbox_id"])
        for c in slack.calls_to("chat.postMessage")
        if c.ok and (c.args.get("metadata") or {}).get("event_type") == OUTBOX_EVENT_TYPE
    ]
    assert len(posted) >= CONSULTS * 2  # a nudge and a requester notice each, at least
    assert [i for i, times in Counter(posted).items() if times > 1] == []

    # Both processes took part, and between them they claimed each nudge once.
    shares = [swept(bot.output()) for bot in bots]
    assert all(share > 0 for share in shares), shares
    assert sum(shares) == sum(counts.values())
