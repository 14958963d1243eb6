"""Honest under backlog: when a channel is paced, its time-critical posts (cards, nudges)
go before informational thread notes, a nudge may overtake its own consult's informational
note but never its card, a nudge replaced while queued is sent once (in its place in line,
with the newer content) and never back to back, the acknowledged note is not posted at all
(the card shows it), and the requester's direct messages never wait behind the paced
channel."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.domain.clock import FakeClock
from bot.domain.vocabulary import INFORMATIONAL, Template
from bot.slack.delivery.pacing import ChannelPacer
from storage import outbox_store
from storage.models import OutboxMessage
from tests.fake_slack import FakeSlack
from tests.harness import CARD_CHANNEL, REQUESTER, Bot, start_bot

ON_CALL = "UCARDON"
BURST = 4


class Pace:
    """A pacer whose clock moves only when the test says: `tick()` gives every channel one
    more post."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.pacer = ChannelPacer(interval=1.0, burst=BURST, monotonic=lambda: self.t)

    def tick(self) -> None:
        self.t += 1.0

    def hold(self, channel: str) -> None:
        """Use up the channel's burst: it is paced until the next `tick()`."""
        while self.pacer.take(channel) == 0:
            pass


@pytest.fixture
def paced(db_url: str, slack: FakeSlack) -> Iterator[tuple[Bot, Pace]]:
    running = start_bot(db_url, slack, dispatcher=False)
    pace = Pace()
    running.services.dispatcher.pacer = pace.pacer
    yield running, pace
    running.stop()


def _open(bot: Bot, text: str) -> str:
    assert bot.command(text, user=REQUESTER).status == 200
    bot.services.dispatcher.drain()
    return bot.consults()[-1].ref


def _rows(bot: Bot, template: Template) -> list[OutboxMessage]:
    with bot.services.sessions() as s:
        rows = s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
        return [r for r in rows if (r.payload or {}).get("template") == template]


def _cards(bot: Bot) -> list[dict]:
    return [m for m in bot.slack.messages(CARD_CHANNEL) if not m.get("thread_ts")]


def test_a_new_card_goes_before_informational_notes_queued_earlier(paced):
    bot, pace = paced
    refs = [_open(bot, f"cards routine MRN {i}: echo?") for i in range(3)]
    pace.tick()
    pace.hold(CARD_CHANNEL)
    for ref in refs:
        assert bot.command(f"cancel {ref} no longer needed", user=REQUESTER).status == 200
    assert bot.command("cards stat MRN 9: chest pain?", user=REQUESTER).status == 200
    new_ref = bot.consults()[-1].ref

    pace.tick()  # one post allowed in the channel
    bot.services.dispatcher.deliver_due()

    assert new_ref in _cards(bot)[-1]["text"]
    assert all(r.status == "pending" for r in _rows(bot, Template.CANCELLED_THREAD))
    # The notes are late, not lost: each goes out as the pace allows.
    for _ in range(3):
        pace.tick()
        bot.services.dispatcher.deliver_due()
    assert all(r.status == "sent" for r in _rows(bot, Template.CANCELLED_THREAD))


def test_a_nudge_overtakes_its_consults_informational_note_but_never_its_card(paced):
    bot, pace = paced
    ref = _open(bot, "cards stat MRN 1: chest pain?")
    pace.tick()
    pace.hold(CARD_CHANNEL)
    assert bot.command(f"snooze {ref} 1m", user=ON_CALL).status == 200
    # A second consult whose card is itself still queued: its nudge must wait for it.
    assert bot.command("cards stat MRN 2: syncope?", user=REQUESTER).status == 200
    late = bot.consults()[-1]
    bot.clock.advance(timedelta(minutes=16))
    assert sorted(bot.sweep().nudged) == sorted([ref, late.ref])

    bot.services.dispatcher.drain()  # what is not paced (the snooze's card update) goes
    nudges = {r.consult_id: r.id for r in _rows(bot, Template.NUDGE)}
    with bot.services.sessions() as s:
        due = outbox_store.due_outbox(
            session=s, now=bot.clock.now(), limit=50, informational=INFORMATIONAL
        )
    due_ids = [i for i, *_ in due]
    assert nudges[bot.consult(ref).id] in due_ids  # past its snoozed note
    assert nudges[late.id] not in due_ids  # not past its card
    (snoozed,) = _rows(bot, Template.SNOOZED_THREAD)
    # Both are due, the informational note last: the nudge goes first.
    assert due_ids.index(nudges[bot.consult(ref).id]) < due_ids.index(snoozed.id)

    pace.tick()
    pace.tick()
    bot.services.dispatcher.deliver_due()
    thread = bot.thread_texts(ref)
    assert len(thread) == 1 and "not been acknowledged" in thread[0]
    assert _rows(bot, Template.SNOOZED_THREAD)[0].status == "pending"
    # The late consult's card went too (cards before notes); its nudge follows it.
    assert late.ref in _cards(bot)[-1]["text"]
    assert bot.thread_texts(late.ref) == []
    pace.tick()
    bot.services.dispatcher.deliver_due()
    assert any("not been acknowledged" in t for t in bot.thread_texts(late.ref))
    assert _rows(bot, Template.SNOOZED_THREAD)[0].status == "pending"


def test_a_nudge_superseded_while_queued_is_never_sent(paced):
    bot, pace = paced
    ref = _open(bot, "cards stat MRN 1: chest pain?")
    pace.tick()
    pace.hold(CARD_CHANNEL)
    bot.clock.advance(timedelta(minutes=16))
    assert bot.sweep().nudged == [ref]
    bot.clock.advance(timedelta(minutes=10))
    assert bot.sweep().nudged == [ref]

    # One of the two is sent: the first, in its place in line, saying what the second says.
    first, second = _rows(bot, Template.NUDGE)
    assert (first.status, second.status) == ("pending", "superseded")
    assert first.payload == second.payload
    for _ in range(3):
        pace.tick()
        bot.services.dispatcher.deliver_due()
    nudges = [t for t in bot.thread_texts(ref) if "not been acknowledged" in t]
    assert len(nudges) == 1
    assert [r.status for r in _rows(bot, Template.NUDGE)] == ["sent", "superseded"]
    assert bot.pending() == 0


def test_a_replaced_nudge_keeps_its_place_in_line(paced):
    """Under a backlog, a consult whose nudge is replaced every interval is not sent to the
    back each time (it would never be sent)."""
    bot, pace = paced
    ref = _open(bot, "cards stat MRN 1: chest pain?")
    pace.tick()
    pace.hold(CARD_CHANNEL)
    bot.clock.advance(timedelta(minutes=16))
    assert bot.sweep().nudged == [ref]
    others = [bot.command(f"cards routine MRN {i}: echo?", user=REQUESTER) for i in range(2)]
    assert all(r.status == 200 for r in others)
    bot.clock.advance(timedelta(minutes=10))
    assert bot.sweep().nudged == [ref]
    pace.tick()
    bot.services.dispatcher.deliver_due()
    # The nudge, queued before the two new cards, went before them.
    assert len([t for t in bot.thread_texts(ref) if "not been acknowledged" in t]) == 1
    assert len(_cards(bot)) == 1


def test_acknowledging_posts_no_thread_note_and_tells_the_requester_at_once(paced):
    bot, pace = paced
    ref = _open(bot, "cards stat MRN 1: chest pain?")
    pace.tick()
    pace.hold(CARD_CHANNEL)
    dms_before = len(bot.slack.dms(REQUESTER))
    assert bot.command(f"ack {ref}", user=ON_CALL).status == 200
    assert bot.command(f"needinfo {ref} Prior ECG?", user=ON_CALL).status == 200
    bot.services.dispatcher.drain()

    assert _rows(bot, Template.ACKNOWLEDGED_THREAD) == []
    fields = [f["text"] for b in bot.card(ref)["blocks"] for f in b.get("fields") or []]
    assert f"*Assigned to*\n<@{ON_CALL}>" in fields  # the card shows who took it
    # The requester's DMs (acknowledged, then the question) went out while the channel's
    # need-info note still waits for its pace.
    dms = bot.dm_texts(REQUESTER)[dms_before:]
    assert len(dms) == 2 and "Prior ECG?" in dms[1]
    (note,) = _rows(bot, Template.NEED_INFO_THREAD)
    assert note.status == "pending"
    pace.tick()
    bot.services.dispatcher.drain()
    assert any("Prior ECG?" in t for t in bot.thread_texts(ref))


def test_a_nudges_requester_message_does_not_wait_for_the_paced_nudge(paced):
    """The sweep's direct messages (the requester's "overdue") go while the channel's
    nudge waits for its pace."""
    bot, pace = paced
    ref = _open(bot, "cards stat MRN 1: chest pain?")
    pace.tick()
    pace.hold(CARD_CHANNEL)
    bot.clock.advance(timedelta(minutes=16))
    assert bot.sweep().nudged == [ref]
    bot.services.dispatcher.drain()

    assert any(f"{ref}" in t and "is overdue" in t for t in bot.dm_texts(REQUESTER))
    (nudge,) = _rows(bot, Template.NUDGE)
    assert nudge.status == "pending" and bot.thread_texts(ref) == []
    pace.tick()
    bot.services.dispatcher.drain()
    assert any("not been acknowledged" in t for t in bot.thread_texts(ref))


def test_a_429_holds_the_whole_channel_for_its_retry_after(paced):
    """Slack stricter than the pacer (a burst of 2, not 4): its first 429 holds the channel
    for Retry-After, so the channel's next card waits instead of being refused in turn."""
    bot, pace = paced
    bot.slack.limit_rate(1.0, burst=2, clock=lambda: pace.t)
    dispatcher = bot.services.dispatcher
    dispatcher.clock = outbox_clock = FakeClock()  # retries fall due as the test steps
    for i in range(4):
        assert bot.command(f"cards routine MRN {i}: echo?", user=f"UREQ{i}").status == 200
    dispatcher.drain()
    assert len(_cards(bot)) == 2
    assert bot.slack.rate_limited == 1  # the third card; the fourth was not tried
    for _ in range(3):
        pace.tick()
        outbox_clock.advance(timedelta(seconds=1))
        dispatcher.drain()
    assert len(_cards(bot)) == 4
    assert bot.slack.rate_limited == 1
    assert bot.pending() == 0


def test_in_a_paced_channel_a_nudge_goes_before_new_cards_queued_earlier(paced):
    """The consult is overdue; the new cards' clocks have only started."""
    bot, pace = paced
    ref = _open(bot, "cards stat MRN 1: chest pain?")
    pace.tick()
    pace.hold(CARD_CHANNEL)
    for i in range(2):
        assert bot.command(f"cards routine MRN {i}: echo?", user=REQUESTER).status == 200
    bot.clock.advance(timedelta(minutes=16))
    assert bot.sweep().nudged == [ref]

    pace.tick()  # one post allowed in the channel
    bot.services.dispatcher.drain()
    assert any("not been acknowledged" in t for t in bot.thread_texts(ref))
    assert len(_cards(bot)) == 1
    for _ in range(2):
        pace.tick()
        bot.services.dispatcher.drain()
    assert len(_cards(bot)) == 3
