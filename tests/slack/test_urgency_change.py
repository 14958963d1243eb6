"""`/consult urgency` end to end over the Slack protocol: the deadlines re-computed from the
consult's creation in the new urgency's policy (need-info waiting added back), the next
nudge re-planned, the card redrawn, a thread note, the requester (or owner) told, audited;
and who may do it, and what is refused."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from bot.dev.fakeslack.requests import state_values
from bot.slack.ids import BlockId, CallbackId
from storage.models import AuditEvent
from tests.harness import REQUESTER, Bot

CARD_ON_CALL = "UCARDON"
CARD_BACKUP = "UCARDBK"
CARD_LEAD = "UCARDLEAD"


def text_of(resp) -> str:
    return str(resp.json.get("text", "")) if isinstance(resp.json, dict) else resp.body.decode()


def urgency_audits(bot: Bot) -> list[dict]:
    with bot.services.sessions() as s:
        stmt = select(AuditEvent.details).where(AuditEvent.action == "urgency")
        return list(s.execute(stmt).scalars())


def test_the_owner_makes_it_stat_and_the_deadlines_follow(bot: Bot):
    ref = bot.open("cards routine MRN 12345: palpitations, Holter review?")
    created = bot.consult(ref).created_at
    bot.clock.advance(timedelta(minutes=5))
    bot.command(f"ack {ref}", user=CARD_ON_CALL)
    bot.clock.advance(timedelta(minutes=25))
    resp = bot.command(f"urgency {ref} stat Now with syncope and VT runs", user=CARD_ON_CALL)
    assert "CARD-1 is now Stat" in text_of(resp)
    bot.settle()
    c = bot.consult(ref)
    assert c.urgency == "stat"
    # Stat from creation: acknowledge within 15 minutes, answer within the hour.
    assert c.acknowledge_due_at == created + timedelta(minutes=15)
    assert c.answer_due_at == created + timedelta(hours=1)
    # It is acknowledged: the next nudge is the answer's deadline.
    assert (c.nudge_phase, c.next_nudge_at) == ("answer", created + timedelta(hours=1))
    card = json.dumps(bot.card(ref)["blocks"])
    assert "*Stat* consult" in card and str(int(c.answer_due_at.timestamp())) in card
    notes = [t for t in bot.thread_texts(ref) if "changed the urgency" in t]
    assert len(notes) == 1 and "from *Routine* to *Stat*" in notes[0]
    assert "syncope and VT runs" in notes[0]
    told = [t for t in bot.dm_texts(REQUESTER) if "changed the urgency" in t]
    assert len(told) == 1 and "syncope and VT runs" in told[0] and ref in told[0]
    assert urgency_audits(bot) == [
        {"from": "acknowledged", "to": "acknowledged", "from_urgency": "routine",
         "to_urgency": "stat"}
    ]  # fmt: skip


def test_the_requester_lowers_it_and_the_old_deadline_no_longer_nudges(bot: Bot):
    ref = bot.open("cards stat MRN 12345: chest pain?")
    created = bot.consult(ref).created_at
    bot.clock.advance(timedelta(minutes=5))
    resp = bot.command(f"urgency {ref} routine Pain resolved, ECG normal", user=REQUESTER)
    assert "Routine" in text_of(resp)
    c = bot.consult(ref)
    assert c.acknowledge_due_at == created + timedelta(hours=4)
    assert c.answer_due_at == created + timedelta(hours=24)
    assert c.next_nudge_at == created + timedelta(hours=4)
    bot.clock.advance(timedelta(minutes=15))  # past stat's 15 minutes
    assert bot.sweep().nudged == []
    bot.settle()
    # The requester made the change: they get no message about it; the thread has it.
    assert not any("changed the urgency" in t for t in bot.dm_texts(REQUESTER))
    assert any("Pain resolved" in t for t in bot.thread_texts(ref))


def test_made_stat_when_already_overdue_it_is_nudged_at_the_next_sweep(bot: Bot):
    ref = bot.open("cards routine MRN 12345: dyspnoea?")
    bot.clock.advance(timedelta(hours=1))
    bot.command(f"urgency {ref} stat Saturation dropping", user=REQUESTER)
    assert bot.consult(ref).next_nudge_at == bot.clock.now()
    assert bot.sweep().nudged == [ref]


def test_time_waiting_on_the_requester_is_added_back_to_the_answer_deadline(bot: Bot):
    ref = bot.open("cards routine MRN 12345: murmur?")
    created = bot.consult(ref).created_at
    bot.command(f"ack {ref}", user=CARD_ON_CALL)
    bot.clock.advance(timedelta(minutes=10))
    bot.command(f"needinfo {ref} Any echo before?", user=CARD_ON_CALL)
    bot.clock.advance(timedelta(minutes=30))
    bot.reply(ref, "Echo 2024: mild MR.", user=REQUESTER)
    bot.settle()
    assert bot.consult(ref).waiting_seconds == 30 * 60
    bot.command(f"urgency {ref} urgent New breathlessness", user=CARD_ON_CALL)
    c = bot.consult(ref)
    assert c.answer_due_at == created + timedelta(hours=4, minutes=30)
    assert c.next_nudge_at == created + timedelta(hours=4, minutes=30)


def test_a_lead_may_change_it_but_not_another_consultant(bot: Bot):
    ref = bot.open("cards routine MRN 12345: murmur?")
    bot.command(f"ack {ref}", user=CARD_ON_CALL)
    refused = text_of(bot.command(f"urgency {ref} stat worse", user=CARD_BACKUP))
    assert (
        "Only the service's leads or the consultant who owns it or the requester can change "
        "the urgency of CARD-1." in refused
    )
    assert bot.consult(ref).urgency == "routine"
    bot.command(f"urgency {ref} urgent worse", user=CARD_LEAD)
    assert bot.consult(ref).urgency == "urgent"


def test_same_unknown_missing_and_finished_are_refused(bot: Bot):
    ref = bot.open("cards stat MRN 12345: chest pain?")
    same = text_of(bot.command(f"urgency {ref} stat still bad", user=REQUESTER))
    assert "CARD-1 is already stat." in same
    unknown = text_of(bot.command(f"urgency {ref} asap please", user=REQUESTER))
    assert "'asap' is not an urgency: choose stat, urgent, routine." in unknown
    missing = text_of(bot.command(f"urgency {ref} routine", user=REQUESTER))
    assert "say why" in missing and "/consult urgency" in missing
    bot.command(f"answer {ref} Not ACS.", user=CARD_ON_CALL)
    finished = text_of(bot.command(f"urgency {ref} routine fine now", user=REQUESTER))
    assert "CARD-1 is answered" in finished
    assert bot.consult(ref).urgency == "stat" and urgency_audits(bot) == []


def test_a_retried_urgency_command_changes_it_once(bot: Bot):
    ref = bot.open("cards routine MRN 12345: murmur?")
    first = bot.command(f"urgency {ref} stat worse", user=REQUESTER, trigger_id="TRIG-URG")
    again = bot.command(f"urgency {ref} stat worse", user=REQUESTER, trigger_id="TRIG-URG")
    assert text_of(first) == text_of(again) and "Stat" in text_of(again)
    bot.settle()
    assert len(urgency_audits(bot)) == 1
    assert sum("changed the urgency" in t for t in bot.thread_texts(ref)) == 1


def test_an_urgency_change_after_a_transfer_counts_from_the_arrival(bot: Bot):
    ref = bot.open("cards routine MRN 12345: anaemia?")
    bot.clock.advance(timedelta(hours=2))
    arrived = bot.clock.now()
    bot.command(f"transfer {ref} path Marrow question", user=CARD_ON_CALL)
    bot.clock.advance(timedelta(minutes=5))
    bot.command("urgency PATH-1 stat Blasts on the film", user=REQUESTER)
    c = bot.consult("PATH-1")
    assert c.acknowledge_due_at == arrived + timedelta(minutes=15)
    assert c.answer_due_at == arrived + timedelta(hours=1)
    # The Transfer form's submission with no service chosen is refused on the form.
    resp = bot.sender.view_submission(
        CallbackId.TRANSFER,
        state_values({BlockId.REASON: "why"}),
        user="UPATHON",
        private_metadata="PATH-1",
    )
    assert "Choose the service" in json.dumps(resp.json)
