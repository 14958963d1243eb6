"""Nothing goes stale silently: SLA clocks, nudges, the escalation ladder, on-call changes,
handoffs and need-info, driven over HTTP with an injected clock."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import update

from bot.slack.ids import ActionId, BlockId, CallbackId
from storage.models import Consult
from tests.harness import (
    OUTSIDER,
    RAD_LEAD,
    REQUESTER,
    Bot,
    wait_until,
)

ON_CALL, BACKUP, LEAD = "UCARDON", "UCARDBK", "UCARDLEAD"
MINUTE = 60


def mentions_in_thread(bot: Bot, ref: str) -> list[str]:
    return [t for t in bot.thread_texts(ref) if "overdue" in t.lower() or "not been" in t]


def test_unacknowledged_consult_climbs_the_ladder_step_by_step(bot: Bot):
    ref = bot.open("cards stat MRN 1: chest pain?")  # stat: ack 15m, nudge 10m, escalate after 2
    bot.clock.advance(14 * MINUTE)
    assert bot.sweep().nudged == []  # not yet due

    steps = []
    for _ in range(6):
        bot.clock.advance(10 * MINUTE if steps else 1 * MINUTE)
        result = bot.sweep()
        bot.settle()
        steps.append(result)
    nudges = [t for t in bot.thread_texts(ref) if "has not been acknowledged" in t]
    assert len(nudges) == 6
    # two nudges to the on-call, two to the backup, then the lead (top level) repeatedly
    assert f"<@{ON_CALL}>" in nudges[0] and f"<@{ON_CALL}>" in nudges[1]
    assert f"<@{BACKUP}>" in nudges[2] and f"<@{BACKUP}>" in nudges[3]
    assert f"<@{LEAD}>" in nudges[4] and f"<@{LEAD}>" in nudges[5]
    assert [bool(r.escalated) for r in steps] == [False, False, True, False, True, False]
    # backup and lead get a direct message with the reference and a link
    consult = bot.consult(ref)
    assert any(ref in t and consult.permalink in t for t in bot.dm_texts(BACKUP))
    assert any(ref in t for t in bot.dm_texts(LEAD))
    assert consult.escalation_count == 2
    assert bot.audit(ref).count("escalated") == 2


def test_requester_is_told_when_overdue_and_each_escalation(bot: Bot):
    ref = bot.open("cards stat MRN 1: chest pain?")
    bot.clock.advance(16 * MINUTE)
    bot.sweep()
    for _ in range(2):
        bot.clock.advance(10 * MINUTE)
        bot.sweep()
    bot.settle()
    texts = [t for t in bot.dm_texts(REQUESTER) if ref in t]
    assert any("overdue" in t for t in texts)
    escalations = [t for t in texts if "still waiting; escalated to" in t]
    assert len(escalations) == 1 and f"<@{BACKUP}>" in escalations[0]


def test_acknowledging_stops_acknowledgement_nudges_and_starts_the_answer_clock(bot: Bot):
    ref = bot.open("cards stat MRN 1: chest pain?")
    bot.clock.advance(16 * MINUTE)
    bot.sweep()
    bot.command(f"ack {ref}", user=ON_CALL)
    for _ in range(3):
        bot.clock.advance(10 * MINUTE)
        assert bot.sweep().nudged == []  # answer due 1h after creation: not yet
    bot.clock.advance(20 * MINUTE)  # now 1h16m: answer overdue
    result = bot.sweep()
    bot.settle()
    assert result.nudged == [ref]
    answer_nudges = [t for t in bot.thread_texts(ref) if "has not been answered" in t]
    assert len(answer_nudges) == 1 and f"<@{ON_CALL}>" in answer_nudges[0]


def test_answering_or_cancelling_stops_all_nudges(bot: Bot):
    answered = bot.open("cards stat MRN 1: a?")
    cancelled = bot.open("cards stat MRN 2: b?")
    bot.command(f"answer {answered} fine", user=ON_CALL)
    bot.command(f"cancel {cancelled}", user=REQUESTER)
    bot.clock.advance(timedelta(hours=5))
    assert bot.sweep().nudged == []


def test_at_most_one_nudge_after_downtime(bot: Bot):
    ref = bot.open("cards stat MRN 1: chest pain?")
    bot.clock.advance(timedelta(hours=3))  # 17 nudge intervals missed
    first = bot.sweep()
    second = bot.sweep()
    assert first.nudged == [ref] and second.nudged == []
    bot.settle()
    assert len([t for t in bot.thread_texts(ref) if "not been acknowledged" in t]) == 1
    bot.clock.advance(10 * MINUTE)
    assert bot.sweep().nudged == [ref]


def test_a_consult_of_a_service_missing_from_the_catalogue_does_not_silence_its_channel(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    orphan = bot.open("cards stat MRN 1: chest pain?")
    kept = bot.open("cards stat MRN 2: palpitations?")
    # The service was renamed in the catalogue while `orphan` was still open.
    with bot.services.sessions() as s, s.begin():
        s.execute(update(Consult).where(Consult.ref == orphan).values(service="gone"))
    bot.clock.advance(16 * MINUTE)  # both overdue, same channel

    with caplog.at_level(logging.ERROR, logger="careloop.escalation"):
        result = bot.sweep()
    bot.settle()
    assert result.nudged == [kept] and result.unknown_service == [orphan]
    assert len([t for t in bot.thread_texts(kept) if "not been acknowledged" in t]) == 1
    assert not [t for t in bot.thread_texts(orphan) if "not been acknowledged" in t]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert (errors[0].ref, errors[0].service) == (orphan, "gone")  # type: ignore[attr-defined]
    assert "MRN" not in errors[0].getMessage() and "chest" not in errors[0].getMessage()
    # Looked at again one nudge interval later (stat: 10m), not on every sweep.
    skipped = bot.consult(orphan)
    assert skipped.next_nudge_at == bot.clock.now() + timedelta(minutes=10)
    assert skipped.nudge_count == 0
    bot.clock.advance(1 * MINUTE)
    assert bot.sweep().unknown_service == []
    bot.clock.advance(10 * MINUTE)
    again = bot.sweep()
    assert again.nudged == [kept] and again.unknown_service == [orphan]


def test_storm_posts_one_summary_instead_of_many_nudges(bot: Bot):
    refs = [bot.open(f"cards stat MRN {i}: q{i}?") for i in range(5)]  # threshold is 3
    bot.clock.advance(16 * MINUTE)
    result = bot.sweep()
    bot.settle(timeout=20)
    assert sorted(result.nudged) == sorted(refs)
    assert result.storms == {"CCARD": 5}
    summaries = [
        m
        for m in bot.slack.messages("CCARD")
        if not m.get("thread_ts") and "consults are overdue" in str(m.get("blocks"))
    ]
    assert len(summaries) == 1
    for ref in refs:
        assert ref in str(summaries[0]["blocks"])
        assert not [t for t in bot.thread_texts(ref) if "not been acknowledged" in t]


def test_on_call_change_is_audited_and_named_on_new_consults(bot: Bot):
    resp = bot.command("oncall cards <@UNEWDOC|newdoc>", user=ON_CALL)
    assert "now on call" in resp.text
    listing = bot.command("oncall", user=OUTSIDER).text
    assert "<@UNEWDOC>" in listing
    ref = bot.open("cards MRN 1: q?")
    assert bot.consult(ref).on_call == "UNEWDOC"
    assert "<@UNEWDOC>" in str(bot.card(ref)["blocks"])


def test_on_call_change_refused_for_others(bot: Bot):
    resp = bot.command("oncall cards <@UNEWDOC>", user=OUTSIDER)
    assert "Only" in resp.text
    assert "<@UNEWDOC>" not in bot.command("oncall", user=OUTSIDER).text


def test_lead_may_change_on_call(bot: Bot):
    bot.command("oncall rad <@UNEW2>", user=RAD_LEAD)
    assert "<@UNEW2>" in bot.command("oncall", user=OUTSIDER).text


def test_handoff_command_gives_all_my_open_consults_with_context(bot: Bot):
    a = bot.open("cards MRN 1: q1?")
    b = bot.open("cards MRN 2: q2?")
    bot.command(f"ack {a}", user=ON_CALL)
    bot.command(f"ack {b}", user=ON_CALL)
    resp = bot.command("handoff <@UNIGHT|night> echo pending on CARD-1", user=ON_CALL)
    assert a in resp.text and b in resp.text
    bot.settle()
    for ref in (a, b):
        assert bot.consult(ref).assignee == "UNIGHT"
        assert any("Handed off from" in t and "echo pending" in t for t in bot.thread_texts(ref))
        assert "handoff" in bot.audit(ref)
    owned = [t for t in bot.dm_texts("UNIGHT") if "handed off" in t]
    assert owned and a in owned[0] and b in owned[0]


def test_handoff_button_modal(bot: Bot):
    ref = bot.open()
    bot.click(ActionId.HANDOFF, ref, user=ON_CALL, channel="CCARD")
    assert wait_until(lambda: bot.slack.calls_to("views.open"))
    bot.sender.view_submission(
        CallbackId.HANDOFF,
        {
            BlockId.HANDOFF_TO: {"value": {"type": "users_select", "selected_user": "UNIGHT"}},
            BlockId.NOTE: {"value": {"type": "plain_text_input", "value": "awaiting troponin"}},
        },
        user=ON_CALL,
        private_metadata=ref,
        view_id="VHO1",
    )
    bot.settle()
    assert bot.consult(ref).assignee == "UNIGHT"
    assert any("awaiting troponin" in t for t in bot.thread_texts(ref))


def test_need_info_pauses_the_answer_clock_and_nudges_the_requester(bot: Bot):
    ref = bot.open("cards stat MRN 1: chest pain?")  # answer due in 1h
    bot.command(f"ack {ref}", user=ON_CALL)
    bot.clock.advance(30 * MINUTE)
    resp = bot.command(f"needinfo {ref} Is the patient on anticoagulants?", user=ON_CALL)
    assert "paused" in resp.text
    bot.settle()
    assert any("anticoagulants" in t for t in bot.dm_texts(REQUESTER))
    due_before = bot.consult(ref).answer_due_at
    # While waiting: the requester is reminded every nudge_every; the consultant is not nudged.
    bot.clock.advance(10 * MINUTE)
    assert bot.sweep().reminded == [ref]
    bot.clock.advance(10 * MINUTE)
    assert bot.sweep().reminded == [ref]
    bot.settle()
    assert len([t for t in bot.dm_texts(REQUESTER) if "waiting for your reply" in t]) == 2
    # The requester answers in the thread: the clock resumes, pushed back by the wait.
    bot.reply(ref, "Yes, apixaban.", user=REQUESTER)
    bot.settle()
    consult = bot.consult(ref)
    assert consult.status == "acknowledged"
    assert consult.waiting_seconds == 20 * MINUTE
    assert consult.answer_due_at - due_before == timedelta(minutes=20)
    assert "info_given" in bot.audit(ref)
    assert any("replied" in t for t in bot.dm_texts(ON_CALL))


def test_need_info_button_opens_a_modal(bot: Bot):
    ref = bot.open()
    bot.click(ActionId.NEED_INFO, ref, user=ON_CALL, channel="CCARD")
    assert wait_until(lambda: bot.slack.calls_to("views.open"))
    bot.sender.view_submission(
        CallbackId.NEED_INFO,
        {BlockId.QUESTION: {"value": {"type": "plain_text_input", "value": "Latest creatinine?"}}},
        user=ON_CALL,
        private_metadata=ref,
        view_id="VNI1",
    )
    assert bot.consult(ref).status == "waiting"


def test_card_shows_due_times(bot: Bot):
    ref = bot.open("cards stat MRN 1: q?")
    consult = bot.consult(ref)
    blocks = str(bot.card(ref)["blocks"])
    assert f"<!date^{int(consult.acknowledge_due_at.timestamp())}^" in blocks
    assert f"<!date^{int(consult.answer_due_at.timestamp())}^" in blocks


def test_consult_handed_off_before_acknowledgement_nudges_its_new_owner(bot: Bot):
    ref = bot.open("cards stat MRN 1: q?")
    bot.click(ActionId.HANDOFF, ref, user=ON_CALL, channel="CCARD")
    bot.sender.view_submission(
        CallbackId.HANDOFF,
        {BlockId.HANDOFF_TO: {"value": {"type": "users_select", "selected_user": "UNIGHT"}}},
        user=ON_CALL,
        private_metadata=ref,
        view_id="VHO2",
    )
    bot.clock.advance(16 * MINUTE)
    bot.sweep()
    bot.settle()
    nudges = [t for t in bot.thread_texts(ref) if "not been acknowledged" in t]
    assert nudges and "<@UNIGHT>" in nudges[0] and f"<@{ON_CALL}>" not in nudges[0]


def test_snooze_holds_reminders_for_a_while(bot: Bot):
    ref = bot.open("cards stat MRN 1: q?")
    bot.clock.advance(16 * MINUTE)
    assert bot.sweep().nudged == [ref]
    resp = bot.command(f"snooze {ref} 1h", user=ON_CALL)
    assert "snoozed until" in resp.text
    bot.clock.advance(30 * MINUTE)
    assert bot.sweep().nudged == []
    bot.clock.advance(31 * MINUTE)
    assert bot.sweep().nudged == [ref]
    bot.settle()
    assert any("snoozed reminders" in t for t in bot.thread_texts(ref))
    assert "snooze" in bot.audit(ref)


def test_snooze_is_for_consultants_and_limited(bot: Bot):
    ref = bot.open("cards stat MRN 1: q?")
    assert "cannot snooze" in bot.command(f"snooze {ref} 1h", user=REQUESTER).text
    assert "at most 24h" in bot.command(f"snooze {ref} 2d", user=ON_CALL).text
    assert "not a duration" in bot.command(f"snooze {ref} soon", user=ON_CALL).text
    assert bot.consult(ref).snoozed_until is None
