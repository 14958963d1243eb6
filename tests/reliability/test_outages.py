"""Point 4, Slack outages: the outbox holds every message through a Web API outage, rate
limits and timeouts, delivers each exactly once and in order per consult, and a message
whose post landed before a crash or a timeout is found again instead of posted twice."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import select

from bot.dev.fakeslack import FakeSlack
from bot.slack.delivery.dispatcher import Dispatcher
from bot.slack.delivery.transport import send
from storage import outbox_store
from storage.models import OutboxMessage
from tests.harness import CARD_CHANNEL, PATH_CHANNEL, REQUESTER, TOKEN, Bot, start_bot, wait_until
from tests.reliability.figures import Tally

ON_CALL = "UCARDON"


def outbox_id(call: Any) -> int | None:
    meta = call.args.get("metadata") or {}
    value = (meta.get("event_payload") or {}).get("outbox_id")
    return int(value) if value is not None else None


def outbox_rows(bot: Bot) -> list[OutboxMessage]:
    with bot.services.sessions() as s:
        rows = list(s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())
        for r in rows:
            s.expunge(r)
        return rows


def failed_calls(slack: FakeSlack) -> int:
    return sum(1 for c in slack.calls if c.status >= 500 or c.status == 429)


def assert_each_delivered_once_in_order(bot: Bot) -> None:
    rows = outbox_rows(bot)
    assert rows and {r.status for r in rows} == {"sent"}, {r.id: r.status for r in rows}
    landed = [c for c in bot.slack.calls_to("chat.postMessage") if c.status == 200 and c.ok]
    ids = [outbox_id(c) for c in landed]
    assert len(ids) == len(set(ids)), "a message was posted twice"
    posts = {r.id for r in rows if r.kind in ("post", "thread", "dm", "channel")}
    assert set(ids) == posts
    # In order per consult and place: its card first, then its channel messages in order,
    # and each person's direct messages in order (a DM never waits behind the channel).
    row_of = {r.id: r for r in rows}
    per_lane: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i in ids:
        row = row_of[i]
        if row.consult_id is not None:
            lane = "dm:" + row.payload.get("user", "") if row.kind == "dm" else "channel"
            per_lane[(row.consult_id, lane)].append(i)
    for lane, sequence in per_lane.items():
        assert sequence == sorted(sequence), (lane, sequence)
        sent = [row_of[i].sent_at for i in sequence]
        assert sent == sorted(sent), lane
    for row in rows:
        if row.kind == "post":
            later = [r.sent_at for r in rows if r.consult_id == row.consult_id and r.id > row.id]
            assert all(row.sent_at <= at for at in later), row.consult_id


def test_messages_survive_a_web_api_outage_and_go_out_once_in_order(bot: Bot, figures: Tally):
    ref = bot.open("cards stat MRN 1: chest pain?")
    started = time.monotonic()
    bot.slack.fail("*", status=500, times=None)
    # Work goes on while Slack is down: new consults and every kind of step.
    assert bot.command("path stat MRN 2: margins?").status == 200
    assert bot.command(f"ack {ref}", user=ON_CALL).status == 200
    assert bot.command(f"needinfo {ref} Prior ECG?", user=ON_CALL).status == 200
    bot.reply(ref, "Yes, attached to the chart", user=REQUESTER)
    assert bot.command(f"answer {ref} Start heparin.", user=ON_CALL).status == 200
    assert bot.command("cards urgent MRN 3: palpitations?").status == 200
    # Several rounds of failures, with backoff, before Slack recovers.
    assert bot.slack.wait_for(lambda: failed_calls(bot.slack) >= 6, timeout=15)
    assert bot.pending() > 0
    bot.slack.clear_failures()
    outage = time.monotonic() - started
    bot.settle(timeout=40)
    assert_each_delivered_once_in_order(bot)
    thread = bot.thread_texts(ref)
    # No "acknowledged" note: the card shows it; the thread starts with the question.
    assert ["Prior ECG?" in t for t in thread][:1] == [True]
    assert any("Start heparin." in t for t in thread)
    assert len([m for m in bot.slack.messages(CARD_CHANNEL) if not m["thread_ts"]]) == 2
    assert len(bot.slack.messages(PATH_CHANNEL)) == 1
    figures.add("outage_s", outage)
    figures.add("retries", failed_calls(bot.slack))


def test_rate_limit_waits_at_least_retry_after(bot: Bot, figures: Tally):
    bot.slack.fail("chat.postMessage", status=429, retry_after=2, times=1)
    resp = bot.command("cards stat MRN 5: syncope?")
    assert resp.status == 200
    bot.settle(timeout=20)
    calls = bot.slack.calls_to("chat.postMessage")
    limited = [c for c in calls if c.status == 429]
    assert len(limited) == 1
    retried = next(c for c in calls if c.status == 200 and outbox_id(c) == outbox_id(limited[0]))
    assert retried.at - limited[0].at >= 2.0, retried.at - limited[0].at
    assert_each_delivered_once_in_order(bot)
    figures.add("retries")
    figures.add("outage_s", retried.at - limited[0].at)


def test_rate_limit_on_every_method_is_respected(bot: Bot, figures: Tally):
    ref = bot.open()
    bot.slack.fail("*", status=429, retry_after=1, times=4)
    bot.command(f"ack {ref}", user=ON_CALL)
    bot.settle(timeout=20)
    limited = [c for c in bot.slack.calls if c.status == 429]
    assert len(limited) == 4
    assert_each_delivered_once_in_order(bot)
    figures.add("retries", len(limited))


@pytest.fixture
def fast_timeout(bot: Bot) -> Bot:
    bot.services.dispatcher.client.timeout = 1
    return bot


def test_post_that_landed_but_timed_out_is_not_posted_twice(fast_timeout: Bot, figures: Tally):
    bot = fast_timeout
    # The card post lands in Slack but the answer comes after the client gave up.
    bot.slack.fail("chat.postMessage", hang=2.5, times=1)
    bot.command("cards stat MRN 6: chest pain?")
    bot.settle(timeout=20)
    card_posts = [m for m in bot.slack.messages(CARD_CHANNEL) if not m["thread_ts"]]
    assert len(card_posts) == 1
    assert bot.slack.calls_to("conversations.history"), "the dispatcher did not look first"
    consult = bot.consults()[0]
    assert consult.channel_ts == card_posts[0]["ts"] and consult.permalink
    assert_each_delivered_once_in_order(bot)
    figures.add("retries")
    figures.add("outage_s", 2.5)


def test_dm_and_thread_posts_that_timed_out_are_not_posted_twice(fast_timeout: Bot, figures: Tally):
    bot = fast_timeout
    ref = bot.open()
    # The question's thread post and DM each land, and each answer is lost.
    bot.slack.fail("chat.postMessage", hang=2.5, times=2)
    bot.command(f"needinfo {ref} Prior ECG?", user=ON_CALL)
    bot.settle(timeout=30)
    assert bot.slack.calls_to("conversations.replies"), "thread post not looked for"
    assert sum("Prior ECG?" in t for t in bot.dm_texts(REQUESTER)) == 1
    assert len(bot.thread_texts(ref)) == 1
    assert_each_delivered_once_in_order(bot)
    figures.add("retries", 2)
    figures.add("outage_s", 5.0)


def test_slash_command_is_acked_quickly_while_slack_is_down_or_hanging(bot: Bot, figures: Tally):
    bot.slack.set_members(CARD_CHANNEL, ["UCARDMEM"])
    ref = bot.open()
    bot.services.members.forget()
    for scripted in ({"status": 500}, {"hang": 8.0}):
        bot.slack.fail("*", times=None, **scripted)
        started = time.monotonic()
        for text, user in (
            ("cards stat MRN 7: chest pain?", REQUESTER),
            ("", REQUESTER),  # the form: views.open fails or hangs
            (f"ack {ref}", "UCARDMEM"),  # needs the channel's members
            ("list", REQUESTER),
            ("help", REQUESTER),
        ):
            resp = bot.command(text, user=user)
            assert resp.status == 200, (text, scripted)
            assert resp.elapsed < 3.0, (text, scripted, resp.elapsed)
            assert resp.body, (text, scripted)
        figures.add("outage_s", time.monotonic() - started)
        bot.slack.clear_failures()
    assert len(bot.consults()) == 3  # the first consult and one quick form per outage
    bot.settle(timeout=40)
    assert_each_delivered_once_in_order(bot)


def test_requester_is_told_when_the_consult_reaches_the_channel(bot: Bot, figures: Tally):
    bot.slack.fail("chat.postMessage", status=503, times=2)
    resp = bot.command("cards stat MRN 9: chest pain?")
    assert "will send you a link" in resp.text
    bot.settle(timeout=20)
    consult = bot.consults()[0]
    assert consult.permalink
    card_call = next(
        c
        for c in bot.slack.calls_to("chat.postMessage")
        if c.ok and c.args.get("channel") == CARD_CHANNEL
    )
    dm_call = next(
        c for c in bot.slack.calls_to("chat.postMessage") if c.ok and c.args["channel"] == REQUESTER
    )
    assert dm_call.at >= card_call.at
    assert consult.permalink in str(dm_call.args["blocks"])
    figures.add("retries", 2)


def test_confirmation_carries_the_link_even_if_the_first_permalink_call_failed(bot: Bot):
    bot.slack.fail("chat.getPermalink", status=500, times=1)
    bot.command("cards stat MRN 13: chest pain?")
    bot.settle(timeout=20)
    consult = bot.consults()[0]
    assert consult.permalink
    assert any(consult.permalink in t for t in bot.dm_texts(REQUESTER))


def test_requester_is_told_when_the_consult_cannot_be_posted(bot: Bot):
    bot.slack.fail("chat.postMessage", error="channel_not_found", times=1)
    bot.command("cards stat MRN 10: chest pain?")
    bot.settle(timeout=20)
    dms = bot.dm_texts(REQUESTER)
    assert any("CARD-1" in t and "could not" in t.lower() for t in dms), dms
    assert not any("is in the" in t or "is in <#" in t for t in dms), dms


# ---------------------------------------------------------------------------- kill -9
@pytest.fixture
def idle_bot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    running = start_bot(db_url, slack, dispatcher=False)
    yield running
    running.stop()


def crashed_dispatcher(bot: Bot) -> Dispatcher:
    """A second dispatcher that will die holding a lease (a short one, to expire soon)."""
    running = bot.services.dispatcher
    return Dispatcher(
        sessions=bot.services.sessions,
        client=WebClient(token=TOKEN, base_url=bot.slack.url, retry_handlers=[]),
        compose=running.compose,
        on_result=running.on_result,
        wakeup=bot.services.outbox.wakeup,
        lease=timedelta(seconds=1),
    )


def next_due_of_kind(bot: Bot, kind: str) -> int:
    """Deliver (in order) until a message of `kind` is next in line; return its id."""
    dispatcher = bot.services.dispatcher
    for _ in range(10):
        with bot.services.sessions() as s:
            due = outbox_store.due_outbox_ids(session=s, now=dispatcher.clock.now(), limit=100)
            kinds = {
                i: s.get(OutboxMessage, i).kind  # type: ignore[union-attr]
                for i in due
            }
        found = [i for i in due if kinds[i] == kind]
        if found:
            return found[0]
        assert dispatcher.deliver_due(), f"no {kind} message ever became due"
    raise AssertionError(f"no {kind} message became due")


def post_then_die(bot: Bot, kind: str) -> int:
    """Lease the next message of `kind`, post it, and die before marking it sent."""
    crashed = crashed_dispatcher(bot)
    message_id = next_due_of_kind(bot, kind)
    msg = crashed._lease(message_id)
    assert msg is not None
    call = crashed._prepare(msg)
    assert call is not None
    send(crashed.client, call)  # Slack has it now; the process is killed here
    return message_id


def lease_expired(bot: Bot, message_id: int) -> bool:
    now = bot.services.dispatcher.clock.now()
    with bot.services.sessions() as s:
        return message_id in outbox_store.due_outbox_ids(session=s, now=now, limit=1000)


@pytest.mark.parametrize("kind", ["post", "dm", "thread"])
def test_kill_during_delivery_the_next_dispatcher_finds_the_post(
    idle_bot: Bot, figures: Tally, kind: str
):
    bot = idle_bot
    bot.command("cards stat MRN 11: chest pain?")
    dispatcher = bot.services.dispatcher
    if kind == "thread":
        bot.command("needinfo CARD-1 Prior ECG?", user=ON_CALL)
    started = time.monotonic()
    message_id = post_then_die(bot, kind)
    landed = [c for c in bot.slack.calls_to("chat.postMessage") if outbox_id(c) == message_id]
    assert len(landed) == 1
    assert wait_until(lambda: lease_expired(bot, message_id), timeout=5)
    dispatcher.start()
    bot.settle(timeout=20)
    again = [c for c in bot.slack.calls_to("chat.postMessage") if outbox_id(c) == message_id]
    assert len(again) == 1, "posted twice after the crash"
    row = next(r for r in outbox_rows(bot) if r.id == message_id)
    assert row.status == "sent" and row.result_ts == landed[0].args.get("ts", row.result_ts)
    consult = bot.consult("CARD-1")
    if kind == "post":
        assert consult.channel_ts == row.result_ts and consult.permalink
    assert_each_delivered_once_in_order(bot)
    figures.add("outage_s", time.monotonic() - started)
    figures.add("retries")


def test_a_failing_history_lookup_does_not_lead_to_a_blind_second_post(
    fast_timeout: Bot, figures: Tally
):
    bot = fast_timeout
    bot.slack.fail("chat.postMessage", hang=2.5, times=1)
    bot.slack.fail("conversations.history", status=500, times=1)
    bot.command("cards stat MRN 12: chest pain?")
    bot.settle(timeout=30)
    card_posts = [m for m in bot.slack.messages(CARD_CHANNEL) if not m["thread_ts"]]
    assert len(card_posts) == 1
    assert_each_delivered_once_in_order(bot)
    figures.add("retries", 2)
