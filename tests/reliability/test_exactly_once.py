"""Point 2, exactly once: Slack's event retries, double and triple clicks and doubled form
submissions, sent at the same moment, have one effect - also across two processes sharing
one PostgreSQL database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from bot.dev.fakeslack import FakeSlack
from bot.dev.fakeslack.requests import Response, state_values, static_select
from bot.slack.ids import ActionId, BlockId, CallbackId
from storage.models import OutboxMessage, Reply
from tests.harness import CARD_CHANNEL, REQUESTER, Bot, start_bot
from tests.reliability.figures import Tally

ON_CALL = "UCARDON"
MEMBER = "UCARDMEM"


def race(*calls: Callable[[], Response]) -> list[Response]:
    """Run the calls at the same moment (a barrier releases them together)."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Response]) -> Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def form_values(patient: str = "MRN 600", question: str = "Chest pain, troponin?") -> dict:
    return state_values(
        {
            (BlockId.SERVICE, ActionId.SERVICE_SELECT): static_select("cardiology"),
            BlockId.URGENCY: static_select("stat"),
            BlockId.PATIENT: patient,
            BlockId.QUESTION: question,
        }
    )


def replies(bot: Bot) -> int:
    with bot.services.sessions() as s:
        return int(s.execute(select(func.count()).select_from(Reply)).scalar_one())


def thread_event(bot: Bot, ref: str, *, text: str, ts: str, user: str = ON_CALL) -> dict:
    return bot.thread_event(ref, text, user=user, ts=ts)


def test_event_retries_while_the_first_is_still_handled_have_one_effect(bot: Bot, figures: Tally):
    ref = bot.open()
    event = thread_event(bot, ref, text="Looking at the ECG now", ts="1800000000.000001")
    sends = [lambda: bot.sender.event(event, event_id="EvRACE1")]
    sends += [
        (
            lambda n=n: bot.sender.event(
                event, event_id="EvRACE1", retry_num=n, retry_reason="http_timeout"
            )
        )
        for n in (1, 2, 3)
    ]
    assert [r.status for r in race(*sends)] == [200] * 4
    bot.settle()
    assert replies(bot) == 1
    assert bot.audit(ref).count("reply") == 1
    assert sum("Looking at the ECG now" in t for t in bot.dm_texts(REQUESTER)) == 1
    figures.add("retries", 3)


def test_requester_reply_retried_concurrently_resumes_a_waiting_consult_once(
    bot: Bot, figures: Tally
):
    ref = bot.open()
    bot.command(f"needinfo {ref} Which leads show ST changes?", user=ON_CALL)
    bot.settle()
    event = thread_event(bot, ref, text="V2 to V4", ts="1800000000.000002", user=REQUESTER)
    sends = [
        (lambda n=n: bot.sender.event(event, event_id="EvRACE2", retry_num=n or None))
        for n in range(3)
    ]
    race(*sends)
    bot.settle()
    assert bot.consult(ref).status == "acknowledged"
    assert bot.audit(ref).count("info_given") == 1
    assert sum("V2 to V4" in t for t in bot.thread_texts(ref)) == 0  # stays where it was
    assert sum(ref in t for t in bot.dm_texts(ON_CALL)) >= 1
    figures.add("retries", 2)


@pytest.mark.parametrize("clicks", [2, 3])
def test_acknowledge_clicked_concurrently_has_one_effect(bot: Bot, figures: Tally, clicks: int):
    ref = bot.open()
    ts = bot.consult(ref).channel_ts
    responses = race(
        *[
            (
                lambda: bot.click(
                    ActionId.ACKNOWLEDGE, ref, user=ON_CALL, channel=CARD_CHANNEL, message_ts=ts
                )
            )
        ]
        * clicks
    )
    assert all(r.status == 200 for r in responses)
    bot.settle()
    assert bot.audit(ref).count("acknowledge") == 1
    assert "refused" not in bot.audit(ref)
    assert sum("owns it now" in t for t in bot.dm_texts(REQUESTER)) == 1
    assert bot.consult(ref).version == 2
    figures.add("retries", clicks - 1)


def test_two_consultants_racing_to_acknowledge_one_wins_the_other_is_told(bot: Bot, figures: Tally):
    bot.slack.set_members(CARD_CHANNEL, [MEMBER])
    ref = bot.open()
    race(
        lambda: bot.click(ActionId.ACKNOWLEDGE, ref, user=ON_CALL, channel=CARD_CHANNEL),
        lambda: bot.click(ActionId.ACKNOWLEDGE, ref, user=MEMBER, channel=CARD_CHANNEL),
    )
    bot.settle()
    consult = bot.consult(ref)
    assert consult.assignee in (ON_CALL, MEMBER)
    loser = MEMBER if consult.assignee == ON_CALL else ON_CALL
    assert bot.audit(ref).count("acknowledge") == 1
    told = [e["text"] for e in bot.slack.ephemerals(loser)]
    assert any("already acknowledged" in t for t in told), told
    figures.add("retries")


def test_cancel_and_close_buttons_triple_clicked_have_one_effect(bot: Bot, figures: Tally):
    first = bot.open()
    race(*[lambda: bot.click(ActionId.CANCEL, first, user=REQUESTER)] * 3)
    second = bot.open("cards MRN 2: q2?")
    bot.command(f"answer {second} Fine.", user=ON_CALL)
    race(*[lambda: bot.click(ActionId.CLOSE, second, user=REQUESTER)] * 3)
    bot.settle()
    assert bot.audit(first).count("cancel") == 1
    assert bot.audit(second).count("close") == 1
    assert "refused" not in bot.audit(first) + bot.audit(second)
    closed_posts = [t for t in bot.thread_texts(second) if "closed" in t.lower()]
    assert len(closed_posts) == 1, closed_posts
    figures.add("retries", 4)


def test_rating_clicked_twice_is_recorded_once(bot: Bot, figures: Tally):
    ref = bot.open()
    bot.command(f"answer {ref} Fine.", user=ON_CALL)
    race(*[lambda: bot.click(ActionId.HELPFUL, ref, user=REQUESTER)] * 2)
    bot.settle()
    assert bot.audit(ref).count("feedback") == 1
    assert bot.consult(ref).feedback_helpful is True
    figures.add("retries")


def test_new_consult_form_submitted_concurrently_creates_one_consult(bot: Bot, figures: Tally):
    values = form_values()
    responses = race(
        *[
            lambda: bot.sender.view_submission(
                CallbackId.NEW_CONSULT, values, user=REQUESTER, view_id="VRACE1"
            )
        ]
        * 3
    )
    assert all(r.status == 200 for r in responses)
    assert all("errors" not in (r.json or {}) for r in responses)
    bot.settle()
    (consult,) = bot.consults()
    assert bot.audit(consult.ref) == ["created"]
    assert len(bot.slack.messages(CARD_CHANNEL)) == 1
    assert sum(consult.ref in t for t in bot.dm_texts(REQUESTER)) == 1
    figures.add("retries", 2)


def test_quick_form_retried_concurrently_creates_one_consult(bot: Bot, figures: Tally):
    trigger = "trig-race-quick"
    responses = race(*[lambda: bot.command("cards stat MRN 61: syncope?", trigger_id=trigger)] * 3)
    assert all(r.status == 200 for r in responses)
    texts = [(r.json or {}).get("text", r.text) for r in responses]
    bot.settle()
    (consult,) = bot.consults()
    # Every answer names the one consult (losers of the race may have used up a number:
    # references can have gaps, never duplicates).
    assert all(f"*{consult.ref}*" in t for t in texts), texts
    assert sum("nothing new was created" in t for t in texts) == 2, texts
    assert len(bot.slack.messages(CARD_CHANNEL)) == 1
    figures.add("retries", 2)


def test_answer_modal_submitted_concurrently_answers_once(bot: Bot, figures: Tally):
    ref = bot.open()
    values = {BlockId.ANSWER: {"value": {"type": "plain_text_input", "value": "Cath lab now."}}}
    race(
        *[
            lambda: bot.sender.view_submission(
                CallbackId.ANSWER, values, user=ON_CALL, private_metadata=ref, view_id="VANSR"
            )
        ]
        * 3
    )
    bot.settle()
    assert bot.audit(ref).count("answer") == 1
    assert sum("Cath lab now." in t for t in bot.thread_texts(ref)) == 1
    assert sum("Cath lab now." in t for t in bot.dm_texts(REQUESTER)) == 1
    figures.add("retries", 2)


# ---------------------------------------------------------------------------- two processes
@pytest.fixture
def twin(db_url: str, bot: Bot) -> Iterator[Bot]:
    """A second, independent bot (own engine, dispatcher, caches) on the same database and
    the same fake Slack: what a second gunicorn worker or host is."""
    other = start_bot(db_url, bot.slack, clock=bot.clock)
    yield other
    other.stop()


def test_two_processes_racing_on_one_database_have_one_effect(bot: Bot, twin: Bot, figures: Tally):
    values = form_values()
    race(
        lambda: bot.sender.view_submission(
            CallbackId.NEW_CONSULT, values, user=REQUESTER, view_id="VTWIN"
        ),
        lambda: twin.sender.view_submission(
            CallbackId.NEW_CONSULT, values, user=REQUESTER, view_id="VTWIN"
        ),
    )
    race(
        lambda: bot.command("cards MRN 62: q?", trigger_id="trig-twin"),
        lambda: twin.command("cards MRN 62: q?", trigger_id="trig-twin"),
    )
    bot.settle()
    twin.settle()
    consults = bot.consults()
    assert len(consults) == 2
    ref = consults[0].ref
    race(
        lambda: bot.click(ActionId.ACKNOWLEDGE, ref, user=ON_CALL, channel=CARD_CHANNEL),
        lambda: twin.click(ActionId.ACKNOWLEDGE, ref, user=ON_CALL, channel=CARD_CHANNEL),
    )
    event = thread_event(bot, ref, text="On my way", ts="1800000000.000009")
    race(
        lambda: bot.sender.event(event, event_id="EvTWIN"),
        lambda: twin.sender.event(event, event_id="EvTWIN", retry_num=1),
    )
    values = {BlockId.ANSWER: {"value": {"type": "plain_text_input", "value": "Heparin."}}}
    race(
        *[
            (
                lambda b=b: b.sender.view_submission(
                    CallbackId.ANSWER, values, user=ON_CALL, private_metadata=ref, view_id="VTA"
                )
            )
            for b in (bot, twin, bot, twin)
        ]
    )
    bot.settle()
    twin.settle()
    assert bot.audit(ref) == ["created", "acknowledge", "reply", "answer"]
    # Both dispatchers ran against one outbox: every message went out once.
    card_posts = [m for m in bot.slack.messages(CARD_CHANNEL) if not m["thread_ts"]]
    assert len(card_posts) == 2
    assert sum("On my way" in t for t in bot.dm_texts(REQUESTER)) == 1
    assert sum("Heparin." in t for t in bot.dm_texts(REQUESTER)) == 1
    posts = [c for c in bot.slack.calls_to("chat.postMessage") if c.ok]
    outbox_ids = [
        (c.args.get("metadata") or {}).get("event_payload", {}).get("outbox_id") for c in posts
    ]
    assert len(outbox_ids) == len(set(outbox_ids))
    with bot.services.sessions() as s:
        statuses = set(s.execute(select(OutboxMessage.status)).scalars())
    assert statuses == {"sent"}
    figures.add("retries", 7)


def test_two_dispatchers_deliver_a_backlog_once_and_in_order(
    db_url: str, slack: FakeSlack, figures: Tally
):
    first = start_bot(db_url, slack, dispatcher=False)
    second = start_bot(db_url, slack, clock=first.clock, dispatcher=False)
    try:
        refs = []
        for n in range(4):
            resp = first.command(f"cards MRN {70 + n}: question {n}?", trigger_id=f"trig-bl-{n}")
            assert resp.status == 200
            refs.append(first.consults()[-1].ref)
            second.command(f"ack {refs[-1]}", user=ON_CALL)
            second.command(f"answer {refs[-1]} Done {n}.", user=ON_CALL)
        backlog = first.pending()
        # card + confirmation, then per step a card update and a DM, and for the answer a
        # thread post (acknowledging posts no thread note: the card shows it)
        assert backlog == 4 * (2 + 2 + 3)
        first.services.dispatcher.start()
        second.services.dispatcher.start()
        first.settle(timeout=30)
        posts = [c for c in slack.calls_to("chat.postMessage") if c.ok]
        ids = [c.args["metadata"]["event_payload"]["outbox_id"] for c in posts]
        assert len(ids) == len(set(ids))
        for n, ref in enumerate(refs):
            consult = first.consult(ref)
            thread = slack.thread(CARD_CHANNEL, consult.channel_ts)
            # the card, then the answer: in that order, once each
            assert len(thread) == 2, [m["text"] for m in thread]
            assert f"Done {n}." in str(thread[1]["blocks"])
            dms = [t for t in first.dm_texts(REQUESTER) if ref in t]
            assert len(dms) == 3, dms  # confirmation, acknowledged, answered
        figures.add("retries", len(ids))
    finally:
        first.stop()
        second.stop()
