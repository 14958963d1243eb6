"""Delivery through a database outage: a message whose composing hits a database error (the
database restarted, or its connections were terminated, while the dispatcher read the
consult to render it) is not a dead message; it waits and goes out once the database
answers again, once and in order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.dev.fakeslack import FakeSlack
from storage.models import OutboxMessage
from tests.harness import CARD_CHANNEL, REQUESTER, Bot, start_bot


@pytest.fixture
def idle_bot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    running = start_bot(db_url, slack, dispatcher=False)
    yield running
    running.stop()


def rows(bot: Bot) -> list[tuple[int, str, str, str | None]]:
    with bot.services.sessions() as s:
        found = s.execute(
            select(
                OutboxMessage.id, OutboxMessage.kind, OutboxMessage.status, OutboxMessage.last_error
            ).order_by(OutboxMessage.id)
        ).all()
    return [tuple(r) for r in found]  # type: ignore[misc]


def terminated() -> OperationalError:
    return OperationalError(
        "SELECT consults.id FROM consults WHERE consults.id = %(pk)s",
        {},
        Exception("terminating connection due to administrator command"),
    )


@pytest.mark.parametrize("failures", [1, 3])
def test_a_database_error_while_composing_leaves_the_message_to_try_again(
    idle_bot: Bot, failures: int
):
    bot = idle_bot
    dispatcher = bot.services.dispatcher
    dispatcher.clock = bot.clock  # its backoff passes when the test says so
    compose = dispatcher.compose
    left = [failures]

    def database_away(msg, link):  # type: ignore[no-untyped-def]
        if left[0]:
            left[0] -= 1
            raise terminated()
        return compose(msg, link)

    dispatcher.compose = database_away
    assert bot.command("cards stat MRN 1: chest pain?").status == 200
    for _ in range(failures):
        dispatcher.drain()
        card = rows(bot)[0]
        assert card[1:3] == ("post", "pending"), rows(bot)  # not given up as dead
        assert "database" in (card[3] or "")
        assert not bot.slack.messages(CARD_CHANNEL)
        bot.clock.advance(timedelta(minutes=2))  # past its backoff
    dispatcher.drain()

    assert [r[2] for r in rows(bot)] == ["sent", "sent"]
    cards = [m for m in bot.slack.messages(CARD_CHANNEL) if not m["thread_ts"]]
    assert len(cards) == 1 and "CARD-1" in str(cards[0]["blocks"])
    assert sum("CARD-1" in str(m["blocks"]) for m in bot.slack.dms(REQUESTER)) == 1


def test_a_post_that_may_have_landed_is_still_looked_for_after_a_database_error(idle_bot: Bot):
    bot = idle_bot
    dispatcher = bot.services.dispatcher
    dispatcher.clock = bot.clock
    compose = dispatcher.compose
    bot.slack.fail("chat.postMessage", status=500, times=1)  # may have landed: unclear
    assert bot.command("cards stat MRN 1: chest pain?").status == 200
    dispatcher.drain()
    assert (rows(bot)[0][3] or "").startswith("unclear")

    def database_away(msg, link):  # type: ignore[no-untyped-def]
        dispatcher.compose = compose
        raise terminated()

    dispatcher.compose = database_away
    bot.clock.advance(timedelta(minutes=2))
    dispatcher.drain()
    card = rows(bot)[0]
    assert card[2] == "pending" and (card[3] or "").startswith("unclear"), card

    bot.clock.advance(timedelta(minutes=2))
    looked = len(bot.slack.calls_to("conversations.history"))
    dispatcher.drain()
    assert len(bot.slack.calls_to("conversations.history")) > looked  # looked before posting
    assert [r[2] for r in rows(bot)] == ["sent", "sent"]
    assert len([m for m in bot.slack.messages(CARD_CHANNEL) if not m["thread_ts"]]) == 1


def test_a_message_sent_while_the_database_went_away_is_finished_by_the_next_round(
    idle_bot: Bot,
):
    """Slack took the card, then the database went before it was marked sent: the next
    round ends that lease at once (not after the lease's minute), finds the card in Slack
    instead of posting it again, and goes on with the requester's message."""
    bot = idle_bot
    dispatcher = bot.services.dispatcher
    dispatcher.clock = bot.clock  # the lease would run out only when the test says so
    finish = dispatcher._finish
    left = [1]

    def database_away(msg, outcome, **kw):  # type: ignore[no-untyped-def]
        if left[0]:
            left[0] -= 1
            raise terminated()
        return finish(msg, outcome, **kw)

    dispatcher._finish = database_away  # type: ignore[method-assign]
    assert bot.command("cards stat MRN 2: chest pain?").status == 200
    with pytest.raises(OperationalError):
        dispatcher.deliver_due()
    assert rows(bot)[0][2] == "sending" and len(bot.slack.messages(CARD_CHANNEL)) == 1
    dispatcher.drain()

    assert [r[2] for r in rows(bot)] == ["sent", "sent"]
    cards = [m for m in bot.slack.messages(CARD_CHANNEL) if not m["thread_ts"]]
    assert len(cards) == 1  # found in Slack, not posted twice
    assert sum("CARD-1" in str(m["blocks"]) for m in bot.slack.dms(REQUESTER)) == 1


def test_a_message_that_may_have_landed_keeps_that_mark_through_a_database_error(
    idle_bot: Bot,
):
    """Slack took the card, the database went before it was marked sent, and was still
    away when the next round composed it again: put back, the card must still be looked
    for in Slack before any new post, not posted a second time."""
    bot = idle_bot
    dispatcher = bot.services.dispatcher
    dispatcher.clock = bot.clock
    finish, compose = dispatcher._finish, dispatcher.compose
    left = {"finish": 1, "compose": 0}

    def finish_away(msg, outcome, **kw):  # type: ignore[no-untyped-def]
        if left["finish"]:
            left["finish"] -= 1
            left["compose"] = 1  # and still away when the next round composes
            raise terminated()
        return finish(msg, outcome, **kw)

    def compose_away(msg, link):  # type: ignore[no-untyped-def]
        if left["compose"]:
            left["compose"] -= 1
            raise terminated()
        return compose(msg, link)

    dispatcher._finish = finish_away  # type: ignore[method-assign]
    dispatcher.compose = compose_away
    assert bot.command("cards stat MRN 3: chest pain?").status == 200
    with pytest.raises(OperationalError):
        dispatcher.deliver_due()
    dispatcher.drain()  # the lease ended, composing fails: put back
    assert rows(bot)[0][2] == "pending" and (rows(bot)[0][3] or "").startswith("unclear")
    bot.clock.advance(timedelta(minutes=2))  # past its backoff
    dispatcher.drain()

    assert [r[2] for r in rows(bot)] == ["sent", "sent"]
    cards = [m for m in bot.slack.messages(CARD_CHANNEL) if not m["thread_ts"]]
    assert len(cards) == 1  # found in Slack, not posted twice
