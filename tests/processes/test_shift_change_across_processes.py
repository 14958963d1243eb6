"""A real seconds-long schedule across two real `python -m bot serve` processes on one
PostgreSQL database: at the change of shift a few seconds after start, the consult still
waiting for acknowledgement moves to the incoming on-call, who gets exactly one message,
however many schedule jobs ran."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.dev.fakeslack import BOT_USER_ID, FakeSlack
from bot.domain.policy import Phase
from storage.db import create_db_engine
from storage.models import Consult, OutboxMessage, ProcessedKey
from tests.harness import use_postgres
from tests.procs import Procs, bot_env, wait_until, write_catalogue

OUTGOING, INCOMING = "U0OUTGOIN1", "U0INCOMIN1"
AHEAD = timedelta(seconds=8)


def ics(boundary: datetime) -> str:
    def stamp(when: datetime) -> str:
        return when.strftime("%Y%m%dT%H%M%SZ")

    hour = timedelta(hours=1)
    return (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\n"
        f"BEGIN:VEVENT\nUID:a@test\nDTSTAMP:{stamp(boundary)}\nDTSTART:{stamp(boundary - hour)}\n"
        f"DTEND:{stamp(boundary)}\nSUMMARY:Cardiology <@{OUTGOING}>\nEND:VEVENT\n"
        f"BEGIN:VEVENT\nUID:b@test\nDTSTAMP:{stamp(boundary)}\nDTSTART:{stamp(boundary)}\n"
        f"DTEND:{stamp(boundary + hour)}\nSUMMARY:Cardiology <@{INCOMING}>\nEND:VEVENT\n"
        "END:VCALENDAR\n"
    )


def shift_changes_since(output: str, since: datetime) -> int:
    """How many "shift change" lines a process's JSON log has at or after `since`."""
    count = 0
    for line in output.splitlines():
        if '"message": "shift change"' not in line:
            continue
        record = json.loads(line[line.index("{") :])
        if datetime.fromisoformat(record["time"]) >= since:
            count += 1
    return count


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as running:
        yield running


def test_two_processes_change_the_shift_once(
    db_url: str, slack: FakeSlack, procs: Procs, tmp_path: Path
) -> None:
    if not use_postgres():
        pytest.skip("several processes on one database need PostgreSQL (CARELOOP_TEST_DB)")
    now = datetime.now(UTC).replace(microsecond=0)
    boundary = now + AHEAD
    (tmp_path / "cardiology.ics").write_text(ics(boundary))
    catalogue = write_catalogue(tmp_path / "consult.toml", sweep_interval="1s")
    text = catalogue.read_text().replace(
        'backup = "UCARDBK"', 'backup = "UCARDBK"\nschedule = "cardiology.ics"'
    )
    catalogue.write_text(text)
    engine = create_db_engine(db_url, pool_size=2)
    card = slack.inject_message("CCARD", "CARD-1", user=BOT_USER_ID)
    with Session(engine) as s, s.begin():
        s.add(
            Consult(
                ref="CARD-1", service="cardiology", seq=1, urgency="stat", patient="MRN 1",
                patient_key="mrn1", question="q?", intake={}, requester="UREQ0001",
                on_call=OUTGOING, status="open", channel="CCARD", channel_ts=card["ts"],
                created_at=now, acknowledge_due_at=now + timedelta(hours=1),
                answer_due_at=now + timedelta(hours=2), next_nudge_at=now + timedelta(hours=1),
                nudge_phase=Phase.ACKNOWLEDGE,
            )
        )  # fmt: skip
    env = bot_env(db_url, slack.url, catalogue, WEB_CONCURRENCY="1")
    bots = [procs.serve(env, name="a"), procs.serve(env, name="b")]
    try:
        for bot in bots:
            bot.wait_healthy()

        def moved() -> bool:
            with Session(engine) as s:
                consult = s.execute(select(Consult)).scalar_one()
                return consult.on_call == INCOMING

        assert wait_until(moved, 30, interval=0.2), bots[0].tail()
        assert wait_until(lambda: slack.dms(INCOMING), 15, interval=0.2), bots[0].tail()

        # Each process logs that it saw the boundary's change (made it, or found it made).
        # Whether it also saw the outgoing shift start depends on whether it came up
        # before the boundary, so only the lines logged at or after it count.
        def seen_by_both() -> bool:
            return all(shift_changes_since(b.output(), boundary) >= 1 for b in bots)

        assert wait_until(seen_by_both, 15, interval=0.2), bots[0].tail() + bots[1].tail()
        for bot in bots:
            assert bot.terminate() == 0, bot.tail()
        started = [m for m in slack.dms(INCOMING) if "You are on call" in str(m["blocks"])]
        assert len(started) == 1 and "CARD-1" in str(started[0]["blocks"])
        with Session(engine) as s:
            keys = s.execute(
                select(ProcessedKey.key).where(ProcessedKey.key.like("shift:cardiology:%"))
            ).scalars()
            rows = s.execute(
                select(OutboxMessage.id).where(OutboxMessage.dedupe_key.like(f"shift:%:{INCOMING}"))
            ).all()
        assert f"shift:cardiology:{boundary.isoformat()}" in set(keys)
        assert len(rows) == 1
    finally:
        engine.dispose()
