"""App Home under a backlog: an on-call whose service has far more unacknowledged consults
than the tab shows gets the first rows and a count of the rest, and building the tab loads
only the rows it shows (a surge of thousands of open consults is counted in the database,
not loaded into the process)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event

from bot.slack.render.home import MAX_ROWS
from storage.models import Consult
from tests.harness import Bot, wait_until

ON_CALL = "UCARDON"
OPEN = MAX_ROWS + 25


@pytest.fixture
def loaded() -> Iterator[list[int]]:
    """Ids of every consult row loaded from the database while the test runs."""
    ids: list[int] = []

    def on_load(target: Consult, _context: object) -> None:
        ids.append(target.id)

    event.listen(Consult, "load", on_load)
    yield ids
    event.remove(Consult, "load", on_load)


def store_open(bot: Bot, count: int) -> list[str]:
    """`count` open cardiology consults nobody acknowledged yet, stored as a surge leaves
    them (cards already posted); their references, oldest first."""
    now = bot.clock.now()
    rows = [
        Consult(
            ref=f"CARD-{n}",
            service="cardiology",
            seq=n,
            urgency="routine",
            patient=f"MRN {n}",
            patient_key=f"mrn{n}",
            question="q?",
            intake={},
            requester="UREQ",
            on_call=ON_CALL,
            status="open",
            channel="CCARD",
            channel_ts=f"1.{n}",
            permalink=f"https://slack.example/CARD-{n}",
            created_at=now - timedelta(minutes=count - n),
            acknowledge_due_at=now + timedelta(hours=1),
            answer_due_at=now + timedelta(hours=2),
            next_nudge_at=now + timedelta(hours=1),
            nudge_phase="acknowledge",
        )
        for n in range(1, count + 1)
    ]
    with bot.services.sessions() as s, s.begin():
        s.add_all(rows)
    return [f"CARD-{n}" for n in range(1, count + 1)]


def test_home_of_an_on_call_with_a_backlog_loads_only_the_rows_it_shows(
    bot: Bot, loaded: list[int]
):
    refs = store_open(bot, OPEN)
    loaded.clear()

    before = len(bot.slack.calls_to("views.publish"))
    bot.sender.event({"type": "app_home_opened", "user": ON_CALL, "tab": "home", "channel": "D1"})
    assert wait_until(lambda: len(bot.slack.calls_to("views.publish")) > before, 10)
    home = str(bot.slack.calls_to("views.publish")[-1].args["view"])

    # The oldest MAX_ROWS are shown (each reference is a link: `|CARD-7>`), then a count.
    shown = [ref for ref in refs if f"|{ref}>" in home]
    assert shown == refs[:MAX_ROWS]
    assert f"…and {OPEN - MAX_ROWS} more" in home
    assert len(set(loaded)) <= MAX_ROWS, f"{len(set(loaded))} consults loaded to show {MAX_ROWS}"
