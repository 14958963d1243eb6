"""A backlog in one channel never holds back another channel's messages or anyone's DMs:
the dispatcher leaves paced channels out of its query and takes due work per destination,
each destination's first message before anyone's second."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.domain.vocabulary import Template
from bot.flows.notify import Notify
from bot.slack.delivery.pacing import ChannelPacer
from storage import outbox_store
from tests.fake_slack import FakeSlack
from tests.harness import (
    CARD_CHANNEL,
    OTHER_REQUESTER,
    PATH_CHANNEL,
    REQUESTER,
    Bot,
    start_bot,
    wait_until,
)
from tests.statements import statements

BURST = 4


@pytest.fixture
def frozen_bot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    """A bot whose dispatcher runs only when the test says, with a pacer whose clock stands
    still: once a channel has used its burst, it stays held back for the whole test."""
    running = start_bot(db_url, slack, dispatcher=False)
    running.services.dispatcher.pacer = ChannelPacer(
        interval=1.0, burst=BURST, monotonic=lambda: 1000.0
    )
    yield running
    running.stop()


def _cards_in(bot: Bot, channel: str) -> list[dict]:
    return [m for m in bot.slack.messages(channel) if not m.get("thread_ts")]


def test_a_burst_in_one_channel_does_not_hold_back_another_services_card(frozen_bot: Bot):
    bot = frozen_bot
    for i in range(120):
        resp = bot.command(f"cards routine MRN {i}: echo please?", user=REQUESTER)
        assert resp.status == 200
    resp = bot.command("path stat S-1: frozen section margins?", user=OTHER_REQUESTER)
    assert resp.status == 200
    assert len(bot.consults()) == 121

    dispatcher = bot.services.dispatcher
    for _ in range(3):
        dispatcher.deliver_due()

    (path_card,) = _cards_in(bot, PATH_CHANNEL)
    assert "PATH-1" in path_card["text"]
    # The pathology requester's confirmation follows its card, behind no cardiology post.
    assert any("PATH-1" in (m.get("text") or "") for m in bot.slack.dms(OTHER_REQUESTER))
    # Cardiology got its burst (cards and their confirmations) and waits for its pace;
    # nothing of it was skipped or lost.
    assert len(_cards_in(bot, CARD_CHANNEL)) == BURST
    assert bot.pending() == 120 * 2 - 2 * BURST


def test_due_work_alternates_between_destinations(frozen_bot: Bot):
    """With no pacing in the way, every destination's first message comes before any
    destination's second: one channel's backlog fills no batch."""

    bot = frozen_bot
    for i in range(10):
        bot.command(f"cards routine MRN {i}: echo please?", user=REQUESTER)
    bot.command("path stat S-1: margins?", user=OTHER_REQUESTER)
    with bot.services.sessions() as s:
        rows = outbox_store.due_outbox(session=s, now=bot.clock.now(), limit=3, per_destination=4)
        skipped = outbox_store.due_outbox(
            session=s, now=bot.clock.now(), limit=50, skip=[CARD_CHANNEL], per_destination=4
        )
    channels = [channel for _, _, _, channel in rows]
    assert channels == [CARD_CHANNEL, PATH_CHANNEL, CARD_CHANNEL]
    assert [channel for _, _, _, channel in skipped] == [PATH_CHANNEL]


def test_a_new_message_is_not_held_behind_paced_work_for_a_poll_interval(
    db_url: str, slack: FakeSlack
):
    """While only paced work is left the dispatcher waits for its pace, but a message
    committed meanwhile for another channel wakes it at once."""
    bot = start_bot(db_url, slack, dispatcher=False)
    dispatcher = bot.services.dispatcher
    dispatcher.pacer = ChannelPacer(interval=60.0, burst=1, monotonic=lambda: 1000.0)
    dispatcher.poll_interval = 30.0
    try:
        for i in range(2):
            bot.command(f"cards routine MRN {i}: echo please?", user=REQUESTER)
        dispatcher.start()
        assert wait_until(lambda: len(_cards_in(bot, CARD_CHANNEL)) == 1)
        # The second cardiology card waits a minute for its pace; the loop is waiting.
        assert wait_until(lambda: dispatcher.paced_for is not None)
        started = time.monotonic()
        bot.command("path stat S-1: frozen section margins?", user=OTHER_REQUESTER)
        assert wait_until(lambda: len(_cards_in(bot, PATH_CHANNEL)) == 1, timeout=10)
        assert time.monotonic() - started < 10
        assert len(_cards_in(bot, CARD_CHANNEL)) == 1
    finally:
        bot.stop()


def test_an_older_direct_message_is_not_held_behind_newer_posts_in_many_channels(
    frozen_bot: Bot,
):
    """However many channels have a first message due, a direct message queued before them
    is in the next batch (channel posts first only among messages queued together)."""
    bot = frozen_bot
    outbox = bot.services.consults.ctx.outbox
    start = bot.clock.now()
    with bot.services.sessions() as s, s.begin():
        notify = Notify(outbox, s, start)
        notify.dm_user(REQUESTER, Template.TEXT, {"text": "your consult is overdue"})
        later = Notify(outbox, s, start + timedelta(seconds=1))
        for i in range(60):
            later.channel_message(f"CWIDE{i:03d}", Template.TEXT, {"text": f"post {i}"})
        together = Notify(outbox, s, start + timedelta(seconds=2))
        together.dm_user(OTHER_REQUESTER, Template.TEXT, {"text": "queued with a post"})
        together.channel_message("CLAST", Template.TEXT, {"text": "queued with a DM"})
    with bot.services.sessions() as s:
        rows = outbox_store.due_outbox(
            session=s, now=start + timedelta(seconds=3), limit=70, per_destination=BURST
        )
    kinds = [
        (kind, (payload.get("user") or payload.get("channel"))) for _, kind, payload, _ in rows
    ]
    assert kinds[0] == ("dm", REQUESTER)
    assert kinds[-2:] == [("channel", "CLAST"), ("dm", OTHER_REQUESTER)]


def _record_waits(monkeypatch: pytest.MonkeyPatch, bot: Bot) -> list[float | None]:
    """The dispatcher's waits for a wake-up, recorded instead of waited: each returns at
    once whether the alarm is set."""
    wakeup = bot.services.dispatcher.wakeup
    waits: list[float | None] = []

    def wait(timeout: float | None = None) -> bool:
        waits.append(timeout)
        return wakeup.is_set()

    monkeypatch.setattr(wakeup, "wait", wait)
    return waits


def _hold_the_cards_channel(bot: Bot) -> None:
    for i in range(BURST + 1):
        bot.command(f"cards routine MRN {i}: echo please?", user=REQUESTER)
    dispatcher = bot.services.dispatcher
    while dispatcher.deliver_due():
        pass
    assert len(_cards_in(bot, CARD_CHANNEL)) == BURST
    assert dispatcher.paced_for is not None
    dispatcher.wakeup.clear()


def test_a_new_consult_for_a_held_channel_starts_no_delivery_round(
    frozen_bot: Bot, monkeypatch: pytest.MonkeyPatch
):
    """A new consult's card and confirmation wait for its channel's pace: while pacing holds
    that channel back, its wake-up lets the dispatcher wait out the hold instead of running
    the due query for nothing; nothing is lost once the hold ends."""
    bot = frozen_bot
    _hold_the_cards_channel(bot)
    waits = _record_waits(monkeypatch, bot)
    bot.command("cards routine MRN 99: echo please?", user=REQUESTER)
    bot.services.dispatcher._idle()
    # The wake-up, then the rest of the hold (at most the poll interval) sat out.
    assert len(waits) == 2
    assert waits[1] == min(bot.services.dispatcher.pacer.held()[CARD_CHANNEL], 0.05)
    monkeypatch.undo()

    bot.services.dispatcher.pacer = ChannelPacer(interval=1.0, burst=100)
    while bot.services.dispatcher.deliver_due():
        pass
    assert len(_cards_in(bot, CARD_CHANNEL)) == BURST + 2
    assert bot.pending() == 0


def test_a_wake_up_for_work_that_may_go_now_starts_a_round_at_once(
    frozen_bot: Bot, monkeypatch: pytest.MonkeyPatch
):
    """With the cards channel held back, a new consult for another channel, or any other
    message, still starts a round right after the wake-up."""
    bot = frozen_bot
    _hold_the_cards_channel(bot)
    waits = _record_waits(monkeypatch, bot)
    bot.command("path stat S-1: frozen section margins?", user=OTHER_REQUESTER)
    bot.services.dispatcher._idle()
    assert len(waits) == 1
    bot.command("cards routine MRN 99: echo please?", user=REQUESTER)
    bot.services.consults.ctx.outbox.wake()
    bot.services.dispatcher._idle()
    assert len(waits) == 2


def test_a_delivery_round_with_nothing_due_is_one_round_trip(frozen_bot: Bot):
    """The due query runs on its own, in autocommit on PostgreSQL: no BEGIN and ROLLBACK
    around it, every round (under a paced burst, several a second)."""
    bot = frozen_bot
    bot.command("path stat S-1: frozen section margins?", user=OTHER_REQUESTER)
    bot.services.dispatcher.drain()
    with statements(bot.services.engine) as seen:
        assert bot.services.dispatcher.deliver_due() == 0
    if bot.services.engine.dialect.name == "postgresql":
        assert len(seen) == 1 and seen[0].startswith("select outbox.id"), seen
    else:
        assert [s for s in seen if s.startswith("select outbox.id")], seen
