"""Follow-ups, what is owed to the patient, over signed requests against the fake Slack: from a
consult (the command, and the answer message's Follow-up button with its form), from a
patient alone; the owner told when the linked consult's answer arrives (due = answered +
`due_within`); Done with an outcome; Hand over; overdue nudges and escalation with a fake
clock; exactly once under replays; `/consult followups`; App Home; bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.dev.fakeslack.requests import state_values, static_select, users_select
from bot.domain.catalogue_load import parse_catalogue
from bot.flows.followup_sweep import FollowUpSweepResult, followup_sweep
from bot.slack.ids import ActionId, BlockId, CallbackId
from storage.models import AuditEvent
from storage.models_followups import FollowUp
from tests.fake_slack import FakeSlack
from tests.harness import OUTSIDER, REQUESTER, TEST_CATALOGUE, Bot, start_bot, wait_until
from tests.slack.test_need_info_reply import opened_views

CARD_ON_CALL = "UCARDON"
NURSE_MANAGER = "UNURSEMGR"
COLLEAGUE = "UCOLL"
FOLLOWUPS = f"""
[followups]
due_within = "1d"
nudge_every = "4h"
escalate_after = 2
escalate_to = ["{NURSE_MANAGER}"]
"""
OWED = "call her with the echo result"


@pytest.fixture
def bot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    text = TEST_CATALOGUE.replace("[urgency.stat]", FOLLOWUPS + "\n[urgency.stat]", 1)
    running = start_bot(db_url, slack, catalogue=parse_catalogue(text, "test.toml"))
    running.services.dispatcher.pacer.interval = 0
    yield running
    running.stop()


def rows(bot: Bot) -> list[FollowUp]:
    with bot.services.sessions() as s:
        found = list(s.execute(select(FollowUp).order_by(FollowUp.id)).scalars())
        for f in found:
            s.expunge(f)
        return found


def row(bot: Bot, ref: str) -> FollowUp:
    (found,) = [f for f in rows(bot) if f.ref == ref]
    return found


def steps(bot: Bot, ref: str) -> list[str]:
    with bot.services.sessions() as s:
        events = s.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()
        return [a.action for a in events if (a.details or {}).get("ref") == ref]


def owed_dms(bot: Bot, user: str) -> list[dict[str, Any]]:
    return [m for m in bot.slack.dms(user) if "what is owed to a patient" in m.get("text", "")]


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (e["text"]["text"], e["action_id"])
        for b in message.get("blocks") or []
        if b.get("type") == "actions"
        for e in b["elements"]
    ]


def sweep(bot: Bot) -> FollowUpSweepResult:
    done = followup_sweep(bot.services.consults.ctx)
    bot.settle()
    return done


def followup(bot: Bot, text: str, *, user: str = REQUESTER) -> str:
    resp = bot.command(f"followup {text}", user=user)
    assert resp.status == 200, resp.body
    bot.settle()
    return resp.text


def submit_done(bot: Bot, ref: str, outcome: str, note: str = "", **kw: Any) -> Any:
    values = state_values({BlockId.OUTCOME: static_select(outcome), BlockId.NOTE: note})
    return bot.sender.view_submission(
        CallbackId.FOLLOWUP_DONE,
        values,
        user=kw.pop("user", REQUESTER),
        private_metadata=ref,
        **kw,
    )


def submit_new(bot: Bot, *, user: str = REQUESTER, view_id: str = "VFU1", **fields: str) -> Any:
    values = {
        BlockId.PATIENT: fields.get("patient", ""),
        BlockId.OWED: fields.get("owed", OWED),
        BlockId.OWNER: users_select(fields.get("owner", user)),
        BlockId.DUE: fields.get("due", ""),
        BlockId.CONSULT: fields.get("consult", ""),
    }
    return bot.sender.view_submission(
        CallbackId.FOLLOWUP_NEW, state_values(values), user=user, view_id=view_id
    )


def test_from_a_consult_the_owner_is_told_when_the_answer_arrives_then_done(bot: Bot):
    ref = bot.open("cards stat MRN 12345: chest pain, troponin rising?")
    reply = followup(bot, f"{ref}: {OWED}")
    assert f"FU-1 saved. You own it; due 1d after the answer to {ref} arrives" in reply
    f = row(bot, "FU-1")
    assert (f.owner, f.creator, f.patient, f.owed) == (REQUESTER, REQUESTER, "MRN 12345", OWED)
    assert f.due_at is None and f.next_nudge_at is None  # waits for the answer
    (dm,) = owed_dms(bot, REQUESTER)
    shown = json.dumps(dm["blocks"])
    assert all(w in shown for w in ("FU-1", "MRN 12345", OWED, f"1d after the answer to {ref}"))
    assert "MRN" not in dm["text"]  # no patient data in the fallback text
    assert buttons(dm) == [
        ("Done", ActionId.FOLLOWUP_DONE),
        ("Hand over", ActionId.FOLLOWUP_HANDOVER),
    ]
    # Nothing is overdue while the answer is awaited, whatever the time.
    bot.clock.advance(timedelta(days=3))
    assert sweep(bot).nudged == []

    bot.command(f"answer {ref} Echo is normal, no follow-up needed", user=CARD_ON_CALL)
    bot.settle()
    answered = bot.consult(ref).answered_at
    f = row(bot, "FU-1")
    assert f.answer_at == answered and f.due_at == answered + timedelta(days=1)
    assert f.next_nudge_at == f.due_at
    told = owed_dms(bot, REQUESTER)
    assert len(told) == 2 and f"The answer to {ref} is in" in json.dumps(told[-1]["blocks"])
    assert OWED in json.dumps(told[-1]["blocks"])
    assert steps(bot, "FU-1") == ["followup_opened", "followup_answer_in"]

    # Done: the button opens the outcome form; the form records it once.
    bot.click(ActionId.FOLLOWUP_DONE, "FU-1", user=REQUESTER)
    assert wait_until(lambda: opened_views(bot))
    (view,) = opened_views(bot)
    assert view["callback_id"] == CallbackId.FOLLOWUP_DONE and view["private_metadata"] == "FU-1"
    options = [b for b in view["blocks"] if b.get("block_id") == BlockId.OUTCOME][0]
    labels = [o["text"]["text"] for o in options["element"]["options"]]
    assert labels == ["Reached the patient", "Left a message", "Other"]
    resp = submit_done(bot, "FU-1", "reached", "she is relieved", view_id="VDONE1")
    assert resp.status == 200 and not (resp.json or {}).get("response_action"), resp.text
    submit_done(bot, "FU-1", "reached", "she is relieved", view_id="VDONE1")  # Slack's retry
    submit_done(bot, "FU-1", "left_message", view_id="VDONE2")  # a second form: harmless
    bot.settle()
    f = row(bot, "FU-1")
    assert (f.outcome, f.done_by, f.note, f.next_nudge_at) == (
        "reached",
        REQUESTER,
        "she is relieved",
        None,
    )
    assert steps(bot, "FU-1").count("followup_done") == 1
    bot.clock.advance(timedelta(days=5))
    assert sweep(bot).nudged == []  # done: never overdue


def test_follow_up_button_on_the_answer_message_opens_the_form(bot: Bot):
    ref = bot.open("cards stat MRN 555: palpitations?")
    bot.command(f"answer {ref} Holter monitor, results in a week", user=CARD_ON_CALL)
    bot.settle()
    (answer,) = [m for m in bot.slack.dms(REQUESTER) if m.get("text") == f"{ref} was answered"]
    assert ("Follow-up", ActionId.FOLLOWUP_FROM_ANSWER) in buttons(answer)
    bot.click(ActionId.FOLLOWUP_FROM_ANSWER, ref, user=REQUESTER)
    assert wait_until(lambda: opened_views(bot))
    (view,) = opened_views(bot)
    assert view["callback_id"] == CallbackId.FOLLOWUP_NEW
    inputs = {b["block_id"]: b for b in view["blocks"] if b.get("type") == "input"}
    assert [b["label"]["text"] for b in inputs.values()] == [
        "Patient", "What is owed", "Owner", "Due", "Consult",
    ]  # fmt: skip
    assert inputs[BlockId.OWNER]["element"]["initial_user"] == REQUESTER
    assert inputs[BlockId.CONSULT]["element"]["initial_value"] == ref

    # Submitted for a colleague, due in 2h (the consult is answered already).
    bot.clock.advance(timedelta(minutes=5))
    resp = submit_new(bot, owner=COLLEAGUE, due="2h", consult=ref, owed="Holter result call")
    assert resp.status == 200 and not (resp.json or {}).get("response_action"), resp.text
    submit_new(bot, owner=COLLEAGUE, due="2h", consult=ref, owed="Holter result call")  # retry
    bot.settle()
    (f,) = rows(bot)
    assert (f.owner, f.creator, f.patient) == (COLLEAGUE, REQUESTER, "MRN 555")
    assert f.due_at == bot.clock.now() + timedelta(hours=2)
    assert len(owed_dms(bot, COLLEAGUE)) == 1 and owed_dms(bot, REQUESTER) == []
    assert f"opened by <@{REQUESTER}>" in json.dumps(owed_dms(bot, COLLEAGUE)[0]["blocks"])
    assert any(
        "FU-1 saved" in t and f"<@{COLLEAGUE}> owns it" in t for t in bot.dm_texts(REQUESTER)
    )


def test_from_a_patient_hand_over_then_nudges_and_escalation(bot: Bot):
    start = bot.clock.now()
    followup(bot, f"MRN 777: {OWED}")
    f = row(bot, "FU-1")
    assert f.consult_id is None and f.patient == "MRN 777"
    assert f.due_at == start + timedelta(days=1)  # no consult: due_within from now

    # Hand over to a colleague, with a note: they are the owner and get the message.
    bot.click(ActionId.FOLLOWUP_HANDOVER, "FU-1", user=REQUESTER)
    assert wait_until(lambda: opened_views(bot))
    assert opened_views(bot)[0]["callback_id"] == CallbackId.FOLLOWUP_HANDOVER
    values = state_values(
        {BlockId.HANDOFF_TO: users_select(COLLEAGUE), BlockId.NOTE: "off tonight"}
    )
    for _ in range(2):  # Slack's retry of the same view
        resp = bot.sender.view_submission(
            CallbackId.FOLLOWUP_HANDOVER,
            values,
            user=REQUESTER,
            private_metadata="FU-1",
            view_id="VHO1",
        )
        assert resp.status == 200 and not (resp.json or {}).get("response_action"), resp.text
    bot.settle()
    assert row(bot, "FU-1").owner == COLLEAGUE and row(bot, "FU-1").handovers == 1
    (handed,) = owed_dms(bot, COLLEAGUE)
    assert "handed *FU-1* over to you: off tonight" in json.dumps(handed["blocks"])

    # Overdue: nudges every 4h to the owner; after 2 nudges the third escalates.
    bot.clock.set(start + timedelta(days=1, seconds=1))
    for n in (1, 2, 3, 4):
        done = sweep(bot)
        assert done.nudged == ["FU-1"] and done.escalated == (["FU-1"] if n == 3 else [])
        assert sweep(bot).nudged == []  # not again within the period
        assert len(owed_dms(bot, COLLEAGUE)) == 1 + n
        bot.clock.advance(timedelta(hours=4))
    assert "FU-1 is overdue* — reminder 4" in bot.dm_texts(COLLEAGUE)[-1]
    (escalated,) = bot.slack.dms(NURSE_MANAGER)
    assert "is overdue after 2 reminders" in json.dumps(escalated["blocks"])
    assert "MRN" not in escalated["text"]
    assert len(owed_dms(bot, REQUESTER)) == 1  # the old owner is not nudged
    assert steps(bot, "FU-1").count("followup_nudged") == 4
    assert steps(bot, "FU-1").count("followup_escalated") == 1

    # The nurse manager may close it; whoever opened it and the owner are told.
    resp = submit_done(bot, "FU-1", "left_message", user=NURSE_MANAGER, view_id="VD9")
    assert not (resp.json or {}).get("response_action"), resp.text
    bot.settle()
    assert row(bot, "FU-1").outcome == "left_message"
    assert any("done by" in t and "Left a message" in t for t in bot.dm_texts(REQUESTER))
    assert any("Left a message" in t for t in bot.dm_texts(COLLEAGUE))


def test_exactly_once_under_command_replays(bot: Bot):
    trigger = "T-followup-1"
    for _ in range(3):
        resp = bot.command(f"followup MRN 1: {OWED}", trigger_id=trigger)
        assert resp.status == 200
    bot.settle()
    assert [f.ref for f in rows(bot)] == ["FU-1"]
    assert len(owed_dms(bot, REQUESTER)) == 1
    # References are one sequence, whatever the patient or consult.
    followup(bot, f"MRN 2: {OWED}")
    assert [f.ref for f in rows(bot)] == ["FU-1", "FU-2"]


def test_my_list_and_app_home(bot: Bot):
    ref = bot.open("cards stat MRN 4242: chest pain?")
    followup(bot, f"{ref}: {OWED}")
    followup(bot, "MRN 9999: phone the daughter about the discharge plan")
    bot.clock.advance(timedelta(days=2))  # FU-2 is overdue now
    text = bot.command("followups").text
    assert "FU-1" in text and "FU-2" in text and "MRN 9999" in text and ref in text
    assert text.count("overdue") == 1
    assert "no follow-ups" in bot.command("followups", user=OUTSIDER).text
    bot.sender.event({"type": "app_home_opened", "user": REQUESTER, "tab": "home"})
    bot.settle()
    home = json.dumps(bot.slack.home(REQUESTER))
    assert "Owed to patients" in home and "FU-1" in home and "FU-2" in home
    assert "overdue" in home and "after the consult" in home
    for phi in ("MRN 4242", "MRN 9999", "echo result", "daughter"):
        assert phi not in home


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("followup MRN 1", "Name the patient (or the consult) and what is owed"),
        ("followup : call her", "Name the patient (or the consult) and what is owed"),
        ("followup CARD-99: call her", "CARD-99 is not a consult I know"),
    ],
)
def test_bad_commands_get_a_clear_ephemeral_answer(bot: Bot, text: str, expected: str):
    resp = bot.command(text)
    assert resp.status == 200 and expected in resp.text, resp.text
    assert rows(bot) == []


def test_bad_forms_and_buttons_are_refused_clearly(bot: Bot):
    def errors(resp: Any) -> dict[str, str]:
        assert (resp.json or {}).get("response_action") == "errors", resp.text
        return resp.json["errors"]

    assert "what is owed" in errors(submit_new(bot, patient="MRN 1", owed=" "))[BlockId.OWED]
    assert "Name the patient" in errors(submit_new(bot, view_id="V2"))[BlockId.PATIENT]
    bad_due = errors(submit_new(bot, patient="MRN 1", due="next week", view_id="V3"))
    assert "'next week' is not a due time" in bad_due[BlockId.DUE]
    past = errors(submit_new(bot, patient="MRN 1", due="2001-01-01 10:00", view_id="V4"))
    assert "in the past" in past[BlockId.DUE]
    unknown = errors(submit_new(bot, consult="RAD-404", view_id="V5"))
    assert "RAD-404 is not a consult I know" in unknown[BlockId.CONSULT]
    ref = bot.open("cards stat MRN 31: syncope?")
    outsider = errors(submit_new(bot, user=OUTSIDER, consult=ref, view_id="V6"))
    assert "Only the consult's requester" in outsider[BlockId.CONSULT]
    assert rows(bot) == []
    # Someone else's follow-up, and one that does not exist.
    followup(bot, f"MRN 1: {OWED}")
    bot.click(ActionId.FOLLOWUP_DONE, "FU-1", user=OUTSIDER)
    bot.click(ActionId.FOLLOWUP_DONE, "FU-77", user=REQUESTER)
    bot.settle()
    notices = [e["text"] for e in bot.slack.ephemerals()] + bot.dm_texts(OUTSIDER)
    assert any("FU-1 is not yours" in t for t in notices), notices
    assert any("FU-77 is not a follow-up I know" in t for t in bot.dm_texts(REQUESTER))
    other = errors(submit_done(bot, "FU-1", "other", view_id="V7"))
    assert "Say what happened" in other[BlockId.OUTCOME]
    assert row(bot, "FU-1").done_at is None


def test_retention_clears_done_follow_ups_only(bot: Bot):
    from bot.flows.retention import purge  # noqa: PLC0415

    followup(bot, f"MRN 1: {OWED}")
    followup(bot, "MRN 2: still owed")
    submit_done(bot, "FU-1", "reached", "spoke to her")
    bot.clock.advance(timedelta(days=40))
    purge(sessions=bot.services.sessions, clock=bot.clock, older_than=timedelta(days=30))
    done, still = rows(bot)
    assert (done.patient, done.owed, done.note, done.outcome) == (None, None, None, "reached")
    assert (still.patient, still.owed) == ("MRN 2", "still owed")


def test_a_cancelled_consult_does_not_leave_its_follow_up_waiting(bot: Bot):
    ref = bot.open("cards stat MRN 88: dyspnoea?")
    followup(bot, f"{ref}: call the GP with the plan")
    bot.clock.advance(timedelta(hours=1))
    bot.command(f"cancel {ref} transferred to another hospital")
    bot.settle()
    f = row(bot, "FU-1")
    assert f.due_at == bot.clock.now() + timedelta(days=1) and f.next_nudge_at == f.due_at
    assert f"{ref} was cancelled" in json.dumps(owed_dms(bot, REQUESTER)[-1]["blocks"])
    bot.clock.advance(timedelta(days=1))
    assert sweep(bot).nudged == ["FU-1"]


def test_overdue_nudges_reach_whoever_covers_for_the_owner_who_may_close_it(bot: Bot):
    cover = "UCOVER1"
    followup(bot, f"MRN 31: {OWED}")
    assert f"<@{cover}> covers for you now" in bot.command(f"cover <@{cover}>").text
    bot.clock.advance(timedelta(days=1, seconds=1))
    assert sweep(bot).nudged == ["FU-1"]
    (nudged,) = owed_dms(bot, cover)
    assert f"You receive this for <@{REQUESTER}>" in json.dumps(nudged["blocks"])
    assert len(owed_dms(bot, REQUESTER)) == 2  # the owner is nudged too
    resp = submit_done(bot, "FU-1", "reached", "spoke to her", user=cover, view_id="VC1")
    assert not (resp.json or {}).get("response_action"), resp.text
    bot.settle()
    assert row(bot, "FU-1").outcome == "reached"

    # Cover off: the next follow-up's nudges reach the owner alone.
    bot.command("cover off")
    followup(bot, "MRN 32: phone the daughter")
    bot.clock.advance(timedelta(days=1, seconds=1))
    assert sweep(bot).nudged == ["FU-2"]
    assert len(owed_dms(bot, cover)) == 1
