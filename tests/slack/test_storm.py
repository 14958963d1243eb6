"""A storm: 500 consults falling due in the same minute across five channels. With the fake
Slack enforcing Slack's per-channel posting limit, every consult is listed in a storm
summary within a few paced seconds, no post is refused with 429, and every requester is
told. Time here is stepped, not waited for: one step is one second of Slack's pace (the
dispatcher's pacer and the fake Slack's limit read the same stepped clock)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.slack.delivery.pacing import ChannelPacer
from tests.fake_slack import FakeSlack
from tests.harness import Bot, start_bot
from tests.storm import (
    CHANNELS,
    REF,
    nudge_times,
    open_storm,
    requesters,
    storm_catalogue,
    told_times,
)

PER_CHANNEL = 100
BURST = 4
# The target: every consult nudged or listed in a storm summary within 15 s.
WITHIN_STEPS = 15


class Steps:
    """The stepped clock of Slack's pace, shared by the pacer and the fake Slack's limit."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def storm_bot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    running = start_bot(db_url, slack, catalogue=storm_catalogue(), dispatcher=False)
    yield running
    running.stop()


def _summaries(bot: Bot, channel: str) -> list[dict]:
    return [
        m
        for m in bot.slack.messages(channel)
        if not m.get("thread_ts") and "consults are overdue" in str(m.get("blocks"))
    ]


def test_a_storm_of_500_is_listed_within_15_paced_seconds_without_a_429(storm_bot: Bot):
    bot = storm_bot
    people = requesters(100)  # five consults each
    refs = open_storm(bot, PER_CHANNEL * len(CHANNELS), people, over=timedelta(seconds=50))
    assert bot.pending() == 0
    steps = Steps()
    dispatcher = bot.services.dispatcher
    dispatcher.pacer = ChannelPacer(interval=1.0, burst=BURST, monotonic=steps)
    bot.slack.limit_rate(1.0, burst=BURST, clock=steps)
    since = len(bot.slack.calls)

    bot.clock.advance(timedelta(minutes=15))  # every one fell due within the last minute
    result = bot.sweep()
    assert sorted(result.nudged) == sorted(refs)
    assert result.storms == {channel: PER_CHANNEL for channel in CHANNELS.values()}

    listed_by = told_by = None
    for step in range(120):
        dispatcher.drain(timeout=60)
        if listed_by is None and set(nudge_times(bot.slack, since)) == set(refs):
            listed_by = step
        if told_by is None and set(told_times(bot.slack, since)) == set(refs):
            told_by = step
        if bot.pending() == 0:
            break
        steps.t += 1.0

    assert bot.slack.rate_limited == 0
    # The channels' summaries went first, before the 500 requesters' messages.
    first = [c.args["channel"] for c in bot.slack.calls[since:]][: len(CHANNELS)]
    assert sorted(first) == sorted(CHANNELS.values())
    assert not [c for c in bot.slack.calls[since:] if c.status == 429]
    assert listed_by is not None and listed_by <= WITHIN_STEPS, listed_by
    assert told_by is not None, sorted(set(refs) - set(told_times(bot.slack, since)))[:10]
    assert bot.pending() == 0
    for channel in CHANNELS.values():
        # Every consult of the channel in its one summary (a long list goes on over
        # several sections, never cut at Slack's 3,000 characters); no thread nudges.
        (summary,) = _summaries(bot, channel)
        assert 1 < len(summary["blocks"]) <= 50
        assert all(len(b["text"]["text"]) <= 3000 for b in summary["blocks"])
        assert "shortened" not in str(summary["blocks"])
        assert not [m for m in bot.slack.messages(channel) if m.get("thread_ts")]
    for user in people:  # each requester told once, of their five consults together
        (told,) = [t for t in bot.dm_texts(user) if "overdue" in t]
        assert "5 of your consults are overdue" in told
        assert len(set(REF.findall(told))) == 5


def test_in_an_escalation_storm_each_person_gets_one_message_not_one_per_consult(
    storm_bot: Bot,
):
    """25 consults of one channel escalated together: the backup gets one message listing
    them (25 paced one a second would take 21 s), each requester one."""
    bot = storm_bot
    people = requesters(5)
    refs = open_storm(bot, 25, people, over=timedelta(seconds=10), aliases=["cards"])
    steps = Steps()
    dispatcher = bot.services.dispatcher
    dispatcher.pacer = ChannelPacer(interval=1.0, burst=BURST, monotonic=steps)
    bot.slack.limit_rate(1.0, burst=BURST, clock=steps)
    for sweep in range(3):  # nudged, nudged again, then escalated to the backup
        bot.clock.advance(timedelta(minutes=10 if sweep else 15))
        since = len(bot.slack.calls)
        result = bot.sweep()
        for _ in range(3):  # three paced seconds
            dispatcher.drain(timeout=60)
            steps.t += 1.0
        assert bot.pending() == 0, sweep
    assert sorted(result.escalated) == sorted(refs)
    assert bot.slack.rate_limited == 0
    (escalated,) = [t for t in bot.dm_texts("UCARDBK") if "escalated to you" in t]
    assert set(REF.findall(escalated)) == set(refs)
    for user in people:
        new = [c for c in bot.slack.calls[since:] if c.args.get("channel") == user]
        (told,) = [str(c.args.get("blocks")) for c in new]
        assert "still waiting; escalated to" in told
        assert len(set(REF.findall(told))) == 5


def test_a_storms_message_to_a_covered_requester_goes_to_the_cover(storm_bot: Bot):
    bot = storm_bot
    people = requesters(2)
    assert bot.command("cover <@UCOVER1>", user=people[0]).status == 200
    bot.services.dispatcher.drain()
    refs = open_storm(bot, 8, people, over=timedelta(seconds=8), aliases=["cards"])
    bot.clock.advance(timedelta(minutes=15))
    assert bot.sweep().storms == {"CCARD": 8}
    bot.services.dispatcher.drain()
    (covered,) = [t for t in bot.dm_texts("UCOVER1") if "of your consults are overdue" in t]
    assert f"Covering for <@{people[0]}>" in covered
    assert set(REF.findall(covered)) == set(refs[0::2])
    assert not [t for t in bot.dm_texts(people[0]) if "overdue" in t]
    (own,) = [t for t in bot.dm_texts(people[1]) if "of your consults are overdue" in t]
    assert set(REF.findall(own)) == set(refs[1::2])
