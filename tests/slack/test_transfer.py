"""Transfer to another service end to end over the Slack protocol: by the card's button and
its form and by `/consult transfer`; the new card in the new service's channel, the old card
updated without buttons, the requester told, the new service's clocks and nudges, the old
reference still working, refusals, and one effect under retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.dev.fakeslack import FakeSlack
from bot.dev.fakeslack.requests import state_values, static_select
from bot.domain.catalogue_load import parse_catalogue
from bot.domain.clock import FakeClock
from bot.slack.ids import ActionId, BlockId, CallbackId
from storage.models import AuditEvent, OutboxMessage
from storage.models_transfers import ConsultTransfer
from tests.harness import (
    CARD_CHANNEL,
    PATH_CHANNEL,
    PATH_ON_CALL,
    REQUESTER,
    TEST_CATALOGUE,
    Bot,
    start_bot,
    wait_until,
)
from tests.reliability.test_exactly_once import race

CARD_ON_CALL = "UCARDON"
TORONTO = ZoneInfo("America/Toronto")
# Pathology has its own clocks: stat acknowledged within 30 minutes (not the global 15), and
# routine clocks that run only in its working hours.
PATH_CLOCKS = """
[services.urgency.stat]
acknowledge_within = "30m"

[services.urgency.routine]
hours = "Mon-Fri 08:00-18:00"
timezone = "America/Toronto"

"""
CATALOGUE = TEST_CATALOGUE.replace(
    '\n[[services]]\nkey = "cardiology"', PATH_CLOCKS + '[[services]]\nkey = "cardiology"'
)
assert CATALOGUE != TEST_CATALOGUE


@pytest.fixture
def tbot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    clock = FakeClock(datetime(2026, 11, 20, 15, 0, tzinfo=TORONTO))  # a Friday afternoon
    running = start_bot(
        db_url, slack, catalogue=parse_catalogue(CATALOGUE, "transfer.toml"), clock=clock
    )
    yield running
    running.stop()


def text_of(resp) -> str:
    return str(resp.json.get("text", "")) if isinstance(resp.json, dict) else resp.body.decode()


def buttons(message: dict) -> list[str]:
    return [
        e["text"]["text"]
        for b in message.get("blocks") or []
        if b.get("type") == "actions"
        for e in b["elements"]
    ]


def transfers(bot: Bot) -> list[ConsultTransfer]:
    with bot.services.sessions() as s:
        rows = list(s.execute(select(ConsultTransfer).order_by(ConsultTransfer.id)).scalars())
        for r in rows:
            s.expunge(r)
        return rows


def transfer_audits(bot: Bot) -> list[dict]:
    with bot.services.sessions() as s:
        stmt = select(AuditEvent.details).where(AuditEvent.action == "transfer")
        return list(s.execute(stmt).scalars())


def by_command(bot: Bot, ref: str = "CARD-1", **kw) -> str:
    resp = bot.command(f"transfer {ref} path Bone marrow question, not cardiac", **kw)
    assert resp.status == 200
    return text_of(resp)


# ---------------------------------------------------------------------------- by command
def test_transfer_by_command_moves_the_consult_with_a_new_card_and_a_new_reference(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia, query marrow?")
    old_ts = tbot.consult(ref).channel_ts
    tbot.clock.advance(timedelta(minutes=10))
    reply = by_command(tbot, ref, user=CARD_ON_CALL)
    assert "PATH-1" in reply and "Pathology" in reply
    tbot.settle()
    moved = tbot.consult("PATH-1")
    assert (moved.service, moved.channel, moved.status) == ("pathology", PATH_CHANNEL, "open")
    assert moved.assignee is None and moved.on_call == PATH_ON_CALL
    assert (moved.former_ref, moved.transferred_from, moved.transferred_by) == (
        ref,
        "cardiology",
        CARD_ON_CALL,
    )
    # The new card, in the new service's channel, recorded as the consult's card.
    new_card = tbot.card("PATH-1")
    assert moved.channel_ts != old_ts
    card_text = json.dumps(new_card["blocks"])
    assert "Transferred from *Cardiology*" in card_text and "not cardiac" in card_text
    assert "Acknowledge" in buttons(new_card) and "Transfer" in buttons(new_card)
    assert f"<@{PATH_ON_CALL}>" in card_text
    # The old card says where it went and has no buttons any more.
    old_card = tbot.slack.message(CARD_CHANNEL, old_ts)
    old_text = json.dumps(old_card["blocks"])
    assert "*Transferred* to *Pathology*" in old_text and "PATH-1" in old_text
    assert moved.permalink and moved.permalink in old_text  # a link to the new card
    assert buttons(old_card) == []
    # The requester is told, with the reason and the new reference.
    told = [t for t in tbot.dm_texts(REQUESTER) if "transferred your consult" in t]
    assert len(told) == 1 and "PATH-1" in told[0] and "not cardiac" in told[0]
    assert moved.permalink in told[0]
    # Audited without free text.
    (audit,) = transfer_audits(tbot)
    assert audit == {
        "from": "open",
        "to": "open",
        "from_service": "cardiology",
        "to_service": "pathology",
    }


def test_the_new_services_clock_starts_at_the_transfer_from_its_own_policy(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    tbot.clock.advance(timedelta(minutes=10))
    at = tbot.clock.now()
    by_command(tbot, ref, user=CARD_ON_CALL)
    moved = tbot.consult("PATH-1")
    # Pathology's stat: acknowledge within 30 minutes (its own), answer within the hour.
    assert moved.acknowledge_due_at == at + timedelta(minutes=30)
    assert moved.answer_due_at == at + timedelta(hours=1)
    assert moved.next_nudge_at == at + timedelta(minutes=30)
    assert (moved.nudge_phase, moved.nudge_level, moved.nudges_at_level) == ("acknowledge", 0, 0)


def test_a_routine_transfer_counts_in_the_new_services_working_hours(tbot: Bot):
    ref = tbot.open("cards routine MRN 12345: anaemia work-up?")
    tbot.clock.set(datetime(2026, 11, 20, 17, 30, tzinfo=TORONTO))  # Friday, 17:30
    by_command(tbot, ref, user=CARD_ON_CALL)
    moved = tbot.consult("PATH-1")
    # Four working hours: the half hour to 18:00 on Friday, then 08:00-11:30 on Monday.
    assert moved.acknowledge_due_at.astimezone(TORONTO) == datetime(
        2026, 11, 23, 11, 30, tzinfo=TORONTO
    )


def test_the_sweep_nudges_the_new_service_not_the_old(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    old_ts = tbot.consult(ref).channel_ts
    tbot.clock.advance(timedelta(minutes=10))
    by_command(tbot, ref, user=CARD_ON_CALL)
    tbot.settle()
    # Cardiology's deadline (15 minutes from creation) has passed: no nudge any more.
    tbot.clock.advance(timedelta(minutes=10))
    assert tbot.sweep().nudged == []
    # Pathology's (30 minutes from the transfer) passes: its on-call is nudged in its thread.
    tbot.clock.advance(timedelta(minutes=21))
    assert tbot.sweep().nudged == ["PATH-1"]
    tbot.settle()
    nudges = [t for t in tbot.thread_texts("PATH-1") if "has not been acknowledged" in t]
    assert len(nudges) == 1 and f"<@{PATH_ON_CALL}>" in nudges[0]
    assert CARD_ON_CALL not in nudges[0]
    old_thread = tbot.slack.thread(CARD_CHANNEL, old_ts)
    assert all("has not been" not in json.dumps(m) for m in old_thread)


def test_the_old_reference_still_finds_the_consult(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    by_command(tbot, ref, user=CARD_ON_CALL)
    resp = tbot.command(f"ack {ref}", user=PATH_ON_CALL)
    assert "PATH-1" in text_of(resp)
    moved = tbot.consult("PATH-1")
    assert moved.status == "acknowledged" and moved.assignee == PATH_ON_CALL
    # The next pathology consult takes the next pathology number.
    assert tbot.open("path stat MRN 7: frozen section?") == "PATH-2"


def test_a_consult_acknowledged_and_waiting_goes_back_to_open_without_owner(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    tbot.command(f"ack {ref}", user=CARD_ON_CALL)
    tbot.command(f"needinfo {ref} Any recent transfusion?", user=CARD_ON_CALL)
    tbot.clock.advance(timedelta(minutes=20))
    by_command(tbot, ref, user=CARD_ON_CALL)
    moved = tbot.consult("PATH-1")
    assert (moved.status, moved.assignee, moved.acknowledged_at) == ("open", None, None)
    assert moved.waiting_since is None and moved.waiting_seconds == 20 * 60


# ---------------------------------------------------------------------------- button and form
def test_transfer_by_button_and_form(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    old_ts = tbot.consult(ref).channel_ts
    tbot.click(ActionId.TRANSFER, ref, user=CARD_ON_CALL, channel=CARD_CHANNEL, message_ts=old_ts)
    assert wait_until(lambda: tbot.slack.calls_to("views.open"))
    view = tbot.slack.calls_to("views.open")[-1].args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == CallbackId.TRANSFER and view["private_metadata"] == ref
    select_block = next(b for b in view["blocks"] if b.get("block_id") == BlockId.TRANSFER_TO)
    offered = [o["value"] for o in select_block["element"]["options"]]
    assert offered == ["radiology", "pathology"]  # not its own service
    assert "MRN" not in view["title"]["text"]
    resp = tbot.sender.view_submission(
        CallbackId.TRANSFER,
        state_values(
            {BlockId.TRANSFER_TO: static_select("pathology"), BlockId.REASON: "Marrow, not heart"}
        ),
        user=CARD_ON_CALL,
        private_metadata=ref,
        view_id="VTRANSFER1",
    )
    assert resp.status == 200 and not resp.body
    tbot.settle()
    assert tbot.consult("PATH-1").transfer_reason == "Marrow, not heart"
    assert "Transferred from *Cardiology*" in json.dumps(tbot.card("PATH-1")["blocks"])
    assert buttons(tbot.slack.message(CARD_CHANNEL, old_ts)) == []


# ---------------------------------------------------------------------------- refusals
def test_the_requester_cannot_transfer(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    reply = by_command(tbot, ref, user=REQUESTER)
    assert "You requested CARD-1, so you cannot transfer it." in reply
    assert tbot.consult(ref).service == "cardiology" and transfers(tbot) == []
    tbot.click(ActionId.TRANSFER, ref, user=REQUESTER, channel=CARD_CHANNEL)
    tbot.settle()
    assert any("cannot transfer" in str(e) for e in tbot.slack.ephemerals(REQUESTER))
    assert tbot.slack.calls_to("views.open") == []


def test_unknown_and_same_service_are_refused_with_a_clear_message(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    unknown = text_of(tbot.command(f"transfer {ref} dermatology rash", user=CARD_ON_CALL))
    assert "Unknown service 'dermatology'" in unknown and "pathology" in unknown
    same = text_of(tbot.command(f"transfer {ref} cards still cardiac", user=CARD_ON_CALL))
    assert "CARD-1 is already with Cardiology." in same
    no_reason = text_of(tbot.command(f"transfer {ref} path", user=CARD_ON_CALL))
    assert "say why" in no_reason and "/consult transfer" in no_reason
    assert tbot.consult(ref).service == "cardiology" and transfers(tbot) == []
    assert tbot.audit(ref).count("refused") == 2  # the usage error never reached a consult


def test_an_answered_consult_is_not_transferred(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    tbot.command(f"answer {ref} Not cardiac; ask haematology.", user=CARD_ON_CALL)
    reply = by_command(tbot, ref, user=CARD_ON_CALL)
    assert "CARD-1 is answered, so it cannot be transferred." in reply
    assert transfers(tbot) == []


# ---------------------------------------------------------------------------- exactly once
def test_a_retried_command_and_a_doubled_form_transfer_once(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    first = by_command(tbot, ref, user=CARD_ON_CALL, trigger_id="TRIG-TRANSFER")
    again = by_command(tbot, ref, user=CARD_ON_CALL, trigger_id="TRIG-TRANSFER")
    assert "PATH-1" in first and again == first
    other = tbot.open("cards stat MRN 999: syncope?")
    values = state_values({BlockId.TRANSFER_TO: static_select("path"), BlockId.REASON: "why"})
    for _ in range(2):
        resp = tbot.sender.view_submission(
            CallbackId.TRANSFER,
            values,
            user=CARD_ON_CALL,
            private_metadata=other,
            view_id="VTWICE",
        )
        assert resp.status == 200 and not resp.body
    tbot.settle()
    assert [(t.from_ref, t.to_ref) for t in transfers(tbot)] == [
        ("CARD-1", "PATH-1"),
        ("CARD-2", "PATH-2"),
    ]
    assert len(transfer_audits(tbot)) == 2
    assert sum("transferred your consult" in t for t in tbot.dm_texts(REQUESTER)) == 2
    assert len(tbot.slack.messages(PATH_CHANNEL)) == 2  # one new card each


def test_the_same_form_submitted_twice_at_the_same_moment_transfers_once(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    values = state_values({BlockId.TRANSFER_TO: static_select("pathology"), BlockId.REASON: "x"})

    def submit():
        return tbot.sender.view_submission(
            CallbackId.TRANSFER,
            values,
            user=CARD_ON_CALL,
            private_metadata=ref,
            view_id="VRACE",
        )

    responses = race(submit, submit)
    assert [(r.status, r.body) for r in responses] == [(200, b""), (200, b"")]
    tbot.settle()
    assert [(t.from_ref, t.to_ref) for t in transfers(tbot)] == [("CARD-1", "PATH-1")]
    assert len(tbot.slack.messages(PATH_CHANNEL)) == 1


def test_a_card_not_yet_posted_is_posted_only_in_the_new_channel(db_url: str, slack: FakeSlack):
    idle = start_bot(
        db_url, slack, catalogue=parse_catalogue(CATALOGUE, "transfer.toml"), dispatcher=False
    )
    try:
        idle.command("cards stat MRN 12345: anaemia?")
        assert "PATH-1" in by_command(idle, "CARD-1", user=CARD_ON_CALL)
        idle.services.dispatcher.drain()
        assert idle.pending() == 0
        assert slack.messages(CARD_CHANNEL) == []
        (card,) = [m for m in slack.messages(PATH_CHANNEL) if not m.get("thread_ts")]
        assert card["ts"] == idle.consult("PATH-1").channel_ts
        assert any("transferred your consult" in t for t in idle.dm_texts(REQUESTER))
    finally:
        idle.stop()


def test_a_new_card_whose_post_timed_out_is_found_not_posted_twice(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    old_ts = tbot.consult(ref).channel_ts
    tbot.services.dispatcher.client.timeout = 1
    # The new card lands in Slack but the answer comes after the client gave up.
    tbot.slack.fail("chat.postMessage", hang=2.5, times=1)
    by_command(tbot, ref, user=CARD_ON_CALL)
    tbot.settle(timeout=20)
    assert tbot.slack.calls_to("conversations.history"), "the dispatcher did not look first"
    (card,) = [m for m in tbot.slack.messages(PATH_CHANNEL) if not m.get("thread_ts")]
    assert tbot.consult("PATH-1").channel_ts == card["ts"] != old_ts
    assert [m["ts"] for m in tbot.slack.messages(CARD_CHANNEL) if not m.get("thread_ts")] == [
        old_ts
    ]
    assert buttons(tbot.slack.message(CARD_CHANNEL, old_ts)) == []


def test_a_new_card_slack_refuses_is_reported_and_the_old_card_still_updated(tbot: Bot):
    ref = tbot.open("cards stat MRN 12345: anaemia?")
    old_ts = tbot.consult(ref).channel_ts
    tbot.slack.fail("chat.postMessage", error="not_in_channel", times=1)
    by_command(tbot, ref, user=CARD_ON_CALL)
    tbot.settle()
    assert tbot.consult("PATH-1").channel_ts is None
    assert any("could not post *PATH-1*" in t for t in tbot.dm_texts(REQUESTER))
    assert "*Transferred* to *Pathology*" in json.dumps(
        tbot.slack.message(CARD_CHANNEL, old_ts)["blocks"]
    )


def test_what_was_queued_for_the_old_card_goes_to_its_thread_but_its_nudge_not_at_all(
    db_url: str, slack: FakeSlack
):
    idle = start_bot(
        db_url, slack, catalogue=parse_catalogue(CATALOGUE, "transfer.toml"), dispatcher=False
    )
    try:
        idle.command("cards stat MRN 12345: anaemia?")
        idle.services.dispatcher.drain()
        old_ts = idle.consult("CARD-1").channel_ts
        idle.clock.advance(timedelta(minutes=16))
        assert idle.sweep().nudged == ["CARD-1"]  # queued, not yet delivered
        idle.command("needinfo CARD-1 Any recent transfusion?", user=CARD_ON_CALL)  # queued
        by_command(idle, "CARD-1", user=CARD_ON_CALL)
        idle.services.dispatcher.drain()
        assert idle.pending() == 0
        with idle.services.sessions() as s:
            rows = s.execute(select(OutboxMessage)).scalars().all()
            dropped = sorted((m.kind, m.payload["template"]) for m in rows if m.status != "sent")
        # Only the nudge and the old card's redraw (its last update replaces it) are dropped.
        assert dropped == [("thread", "nudge"), ("update", "card")]
        everything = json.dumps(slack.messages(CARD_CHANNEL) + slack.messages(PATH_CHANNEL))
        assert "has not been acknowledged" not in everything
        old_thread = json.dumps(slack.thread(CARD_CHANNEL, old_ts))
        assert "Any recent transfusion?" in old_thread
        assert "Transferred from *Cardiology*" in json.dumps(slack.messages(PATH_CHANNEL))
    finally:
        idle.stop()
