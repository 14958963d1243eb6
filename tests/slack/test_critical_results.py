"""Critical results, closed loop, over signed requests against the fake Slack: sending
(typed and by form), acknowledging with a read-back (button and `/consult ack CRIT-n`),
"not my patient", re-notification and escalation with seconds-long settings, refusals,
and exactly once under replays and double clicks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.domain.catalogue_load import parse_catalogue
from bot.domain.clock import FakeClock
from bot.flows.critical_sweep import CriticalSweepResult, critical_sweep
from bot.slack.ids import ActionId, BlockId, CallbackId
from storage.models import AuditEvent
from storage.models_critical import CriticalResult
from tests.fake_slack import FakeSlack
from tests.harness import (
    OUTSIDER,
    RAD_LEAD,
    RAD_MEMBER,
    RAD_ON_CALL,
    REQUESTER,
    TEST_CATALOGUE,
    Bot,
    start_bot,
    wait_until,
)
from tests.slack.test_need_info_reply import opened_views

SUPERVISOR = "USUPER"
COLLEAGUE = "UCOLL"
CRITICAL = f"""
[critical]
acknowledge_within = "30s"
renotify_every = "5s"
escalate_after = 2
escalate_to = ["{SUPERVISOR}"]
"""


@pytest.fixture
def bot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    text = TEST_CATALOGUE.replace("[urgency.stat]", CRITICAL + "\n[urgency.stat]", 1)
    catalogue = parse_catalogue(text, "test.toml")
    running = start_bot(db_url, slack, catalogue=catalogue, clock=FakeClock())
    yield running
    running.stop()


def results(bot: Bot) -> list[CriticalResult]:
    with bot.services.sessions() as s:
        rows = list(s.execute(select(CriticalResult).order_by(CriticalResult.id)).scalars())
        for r in rows:
            s.expunge(r)
        return rows


def result(bot: Bot, ref: str) -> CriticalResult:
    (found,) = [r for r in results(bot) if r.ref == ref]
    return found


def steps(bot: Bot, ref: str) -> list[str]:
    with bot.services.sessions() as s:
        rows = s.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()
        return [a.action for a in rows if (a.details or {}).get("ref") == ref]


def sweep(bot: Bot) -> CriticalSweepResult:
    done = critical_sweep(bot.services.consults.ctx)
    bot.settle()
    return done


def critical_dms(bot: Bot, user: str) -> list[dict[str, Any]]:
    return [m for m in bot.slack.dms(user) if "Critical result" in json.dumps(m.get("blocks"))]


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (e["text"]["text"], e["action_id"])
        for b in message.get("blocks") or []
        if b.get("type") == "actions"
        for e in b["elements"]
    ]


def send(bot: Bot, text: str = "rad <@UREQ1> MRN 12345: massive PE", **kw: Any) -> str:
    resp = bot.command(f"critical {text}", user=kw.pop("user", RAD_ON_CALL), **kw)
    assert resp.status == 200, resp.body
    bot.settle()
    return results(bot)[-1].ref or ""


def read_back(bot: Bot, ref: str, text: str, *, user: str = REQUESTER, view_id: str = "VRB1"):
    values = {BlockId.READ_BACK: {"value": {"type": "plain_text_input", "value": text}}}
    return bot.sender.view_submission(
        CallbackId.CRITICAL_ACK, values, user=user, private_metadata=ref, view_id=view_id
    )


def forward(bot: Bot, ref: str, to: str, *, user: str = REQUESTER, view_id: str = "VFW1"):
    values = {
        BlockId.FORWARD_TO: {"value": {"type": "users_select", "selected_user": to}},
        BlockId.REASON: {"value": {"type": "plain_text_input", "value": "I am off service"}},
    }
    return bot.sender.view_submission(
        CallbackId.CRITICAL_FORWARD, values, user=user, private_metadata=ref, view_id=view_id
    )


def test_send_then_acknowledge_with_read_back(bot: Bot):
    ref = send(bot)
    assert ref == "CRIT-1"
    r = result(bot, ref)
    assert (r.service, r.sender, r.recipient, r.patient) == (
        "radiology",
        RAD_ON_CALL,
        REQUESTER,
        "MRN 12345",
    )
    (dm,) = critical_dms(bot, REQUESTER)
    shown = json.dumps(dm["blocks"])
    assert all(w in shown for w in ("CRIT-1", f"<@{RAD_ON_CALL}>", "MRN 12345", "massive PE"))
    assert "<!date^" in shown  # when it was sent
    assert "MRN" not in dm["text"]  # no patient data in the fallback text
    assert buttons(dm) == [
        ("Acknowledge receipt", ActionId.CRITICAL_ACK),
        ("Not my patient", ActionId.CRITICAL_NOT_MINE),
    ]
    assert wait_until(lambda: REQUESTER in (result(bot, ref).delivered or {}))

    bot.clock.advance(timedelta(seconds=12))
    bot.click(
        ActionId.CRITICAL_ACK, ref, user=REQUESTER, channel=dm["channel"], message_ts=dm["ts"]
    )
    assert wait_until(lambda: opened_views(bot))
    (view,) = opened_views(bot)
    assert view["callback_id"] == CallbackId.CRITICAL_ACK and view["private_metadata"] == ref
    inputs = [b for b in view["blocks"] if b.get("type") == "input"]
    assert [(b["label"]["text"], b["optional"]) for b in inputs] == [("Read back", False)]

    resp = read_back(bot, ref, "Massive PE; starting heparin, calling ICU")
    assert resp.status == 200 and not (resp.json or {}).get("response_action"), resp.text
    bot.settle()
    r = result(bot, ref)
    assert r.acknowledged_by == REQUESTER and r.read_back.startswith("Massive PE")
    assert r.acknowledged_at - r.sent_at == timedelta(seconds=12)
    assert r.next_renotify_at is None
    told = [t for t in bot.dm_texts(RAD_ON_CALL) if "acknowledged by" in t]
    assert len(told) == 1 and f"CRIT-1 acknowledged by <@{REQUESTER}> at" in told[0]
    assert "starting heparin" in told[0]
    assert steps(bot, ref) == ["critical_sent", "critical_delivered", "critical_acknowledged"]

    # Replayed form and a second submission do nothing more; sweeps stay quiet.
    read_back(bot, ref, "Massive PE; starting heparin, calling ICU")
    read_back(bot, ref, "again", view_id="VRB2")
    bot.clock.advance(timedelta(minutes=5))
    assert sweep(bot).renotified == []
    assert steps(bot, ref).count("critical_acknowledged") == 1
    assert result(bot, ref).read_back.startswith("Massive PE")
    assert len([t for t in bot.dm_texts(RAD_ON_CALL) if "acknowledged by" in t]) == 1


def test_ack_command_opens_the_read_back_form_and_consult_ack_is_unchanged(bot: Bot):
    ref = send(bot)
    resp = bot.command(f"ack {ref}", user=REQUESTER)
    assert resp.status == 200 and "read-back form" in resp.text
    assert wait_until(lambda: opened_views(bot))
    assert opened_views(bot)[0]["callback_id"] == CallbackId.CRITICAL_ACK
    # Someone it never reached may not acknowledge it.
    resp = bot.command(f"ack {ref}", user=OUTSIDER)
    assert "was not sent to you" in resp.text
    assert read_back(bot, ref, "x", user=OUTSIDER).json["response_action"] == "errors"
    assert result(bot, ref).acknowledged_at is None
    # A consult reference still acknowledges the consult.
    consult = bot.open("cards stat MRN 1: chest pain?")
    resp = bot.command(f"ack {consult}", user="UCARDON")
    assert "You acknowledged" in resp.text
    assert bot.consult(consult).status == "acknowledged"


def test_sender_may_omit_the_service_only_when_they_belong_to_one(bot: Bot):
    ref = send(bot, "<@UREQ1> MRN 7: new malignancy", user=RAD_ON_CALL)
    assert result(bot, ref).service == "radiology"
    # A member of the radiology channel only: radiology too (asked of Slack).
    ref = send(bot, "<@UREQ1> MRN 8: pneumothorax", user=RAD_MEMBER)
    assert result(bot, ref).service == "radiology"


def test_others_are_refused_and_told_who_may(bot: Bot):
    for text in ("rad <@UREQ1> MRN 1: x", "<@UREQ1> MRN 1: x", ""):
        resp = bot.command(f"critical {text}".strip(), user=OUTSIDER)
        assert resp.status == 200
        assert "on-call, backup, a lead, or a member of its channel" in resp.text, resp.body
    assert results(bot) == []
    assert opened_views(bot) == []
    # A consultant of pathology is not one of radiology.
    resp = bot.command("critical rad <@UREQ1> MRN 1: x", user="UPATHON")
    assert "not a consultant of Radiology" in resp.text
    assert results(bot) == []


def test_replayed_command_creates_one_result_and_one_message(bot: Bot):
    trigger = "13345224609.738474920.8088930838d88f008e0"
    for _ in range(3):
        resp = bot.command(
            "critical rad <@UREQ1> MRN 1: free air", user=RAD_ON_CALL, trigger_id=trigger
        )
        assert resp.status == 200
    bot.settle()
    assert len(results(bot)) == 1
    assert "already sent" in resp.text
    assert len(critical_dms(bot, REQUESTER)) == 1


def test_not_my_patient_forwards_and_the_clock_keeps_running(bot: Bot):
    ref = send(bot)
    sent_at = result(bot, ref).sent_at
    bot.clock.advance(timedelta(seconds=3))
    (dm,) = critical_dms(bot, REQUESTER)
    bot.click(ActionId.CRITICAL_NOT_MINE, ref, user=REQUESTER, channel=dm["channel"])
    assert wait_until(lambda: opened_views(bot))
    assert opened_views(bot)[0]["callback_id"] == CallbackId.CRITICAL_FORWARD
    for _ in range(2):  # a replayed form forwards once
        assert forward(bot, ref, COLLEAGUE).status == 200
    bot.settle()
    r = result(bot, ref)
    assert (r.recipient, r.forwarded_count, r.sent_at) == (COLLEAGUE, 1, sent_at)
    assert [x["via"] for x in r.recipients] == ["sent", "forwarded"]
    (fwd,) = critical_dms(bot, COLLEAGUE)
    assert "Forwarded to you by" in json.dumps(fwd["blocks"]) and buttons(fwd)
    assert len([t for t in bot.dm_texts(RAD_ON_CALL) if "not their patient" in t]) == 1
    # The colleague acknowledges; the time counts from the first send.
    bot.clock.advance(timedelta(seconds=4))
    read_back(bot, ref, "PE, anticoagulating", user=COLLEAGUE)
    bot.settle()
    r = result(bot, ref)
    assert r.acknowledged_by == COLLEAGUE and r.acknowledged_at - r.sent_at == timedelta(seconds=7)


def test_renotify_then_escalate_then_acknowledge(bot: Bot):
    ref = send(bot)  # renotify every 5 s, escalate after 2 re-notifications
    bot.clock.advance(timedelta(seconds=4))
    assert sweep(bot).renotified == []
    bot.clock.advance(timedelta(seconds=1))
    assert sweep(bot).renotified == [ref]
    assert sweep(bot).renotified == []  # at most one per period
    bot.clock.advance(timedelta(seconds=5))
    assert sweep(bot).escalated == []
    assert len(critical_dms(bot, REQUESTER)) == 3
    assert critical_dms(bot, SUPERVISOR) == []
    # Downtime: one re-notification after a long gap, not a burst.
    bot.clock.advance(timedelta(minutes=10))
    done = sweep(bot)
    assert (done.renotified, done.escalated) == ([ref], [ref])
    assert sweep(bot).renotified == []
    (esc,) = critical_dms(bot, SUPERVISOR)
    assert "Escalated to you" in json.dumps(esc["blocks"]) and buttons(esc)
    warned = [t for t in bot.dm_texts(RAD_ON_CALL) if "has not been received" in t]
    assert len(warned) == 1 and "Phone the clinician" in warned[0]
    assert len(critical_dms(bot, REQUESTER)) == 4
    # Everyone reached keeps being re-notified until someone acknowledges.
    bot.clock.advance(timedelta(seconds=5))
    sweep(bot)
    assert len(critical_dms(bot, REQUESTER)) == 5 and len(critical_dms(bot, SUPERVISOR)) == 2
    read_back(bot, ref, "Seen, calling the team", user=SUPERVISOR)
    bot.settle()
    bot.clock.advance(timedelta(seconds=5))
    assert sweep(bot).renotified == []
    assert steps(bot, ref).count("critical_renotified") == 4
    assert steps(bot, ref).count("critical_escalated") == 1
    assert result(bot, ref).acknowledged_by == SUPERVISOR


def test_critical_result_from_the_consult_card_goes_to_the_requester(bot: Bot):
    consult = bot.open("cards stat MRN 4: chest pain")
    card = bot.card(consult)
    assert ("Critical result", ActionId.CRITICAL_FROM_CARD) in buttons(card)
    bot.click(ActionId.CRITICAL_FROM_CARD, consult, user="UCARDON", channel=card["channel"])
    assert wait_until(lambda: opened_views(bot))
    view = opened_views(bot)[-1]
    assert view["callback_id"] == CallbackId.CRITICAL_NEW and view["private_metadata"] == consult
    to = next(b for b in view["blocks"] if b.get("block_id") == BlockId.TO)
    assert to["element"]["initial_user"] == REQUESTER
    values = {
        BlockId.SERVICE: {
            "value": {"type": "static_select", "selected_option": {"value": "cardiology"}}
        },
        BlockId.TO: {"value": {"type": "users_select", "selected_user": REQUESTER}},
        BlockId.PATIENT: {"value": {"type": "plain_text_input", "value": "MRN 4"}},
        BlockId.FINDING: {"value": {"type": "plain_text_input", "value": "subdural"}},
        BlockId.CALLBACK: {"value": {"type": "plain_text_input", "value": "ext 4321"}},
    }
    for _ in range(2):  # a replayed form sends once
        resp = bot.sender.view_submission(
            CallbackId.CRITICAL_NEW,
            values,
            user="UCARDON",
            private_metadata=consult,
            view_id="VNEW1",
        )
        assert resp.status == 200 and not (resp.json or {}).get("response_action"), resp.text
    bot.settle()
    (r,) = results(bot)
    assert (r.recipient, r.callback, r.consult_id) == (
        REQUESTER,
        "ext 4321",
        bot.consult(consult).id,
    )
    # Someone who is not a consultant of the card's service gets no form.
    bot.click(ActionId.CRITICAL_FROM_CARD, consult, user=RAD_LEAD, channel=card["channel"])
    bot.settle()
    assert len(opened_views(bot)) == 1
    assert wait_until(lambda: any(":no_entry:" in str(m) for m in bot.slack.ephemerals(RAD_LEAD)))


def home_of(bot: Bot, user: str) -> str:
    before = len(bot.slack.calls_to("views.publish"))
    bot.sender.event({"type": "app_home_opened", "user": user, "tab": "home", "channel": "DX"})
    assert wait_until(lambda: len(bot.slack.calls_to("views.publish")) > before)
    view = bot.slack.calls_to("views.publish")[-1].args["view"]
    return view if isinstance(view, str) else json.dumps(view)


def test_app_home_lists_unacknowledged_results_first_without_patient_data(bot: Bot):
    ref = send(bot)
    sender_home = home_of(bot, RAD_ON_CALL)
    assert "Critical results I sent, not yet acknowledged" in sender_home and ref in sender_home
    assert sender_home.index(ref) < sender_home.index("Waiting on me")
    recipient_home = home_of(bot, REQUESTER)
    assert "waiting for my acknowledgement" in recipient_home and ref in recipient_home
    assert "MRN" not in sender_home + recipient_home
    assert "massive" not in sender_home + recipient_home
    read_back(bot, ref, "PE, heparin")
    bot.settle()
    assert ref not in home_of(bot, RAD_ON_CALL) and ref not in home_of(bot, REQUESTER)


def test_a_slack_outage_delays_the_message_and_the_log_shows_when_it_arrived(bot: Bot):
    bot.slack.fail("chat.postMessage", status=500, times=None)
    resp = bot.command("critical rad <@UREQ1> MRN 9: tension pneumothorax", user=RAD_ON_CALL)
    assert resp.status == 200 and "CRIT-1 sent" in resp.text  # stored first
    assert bot.slack.wait_for(lambda: bot.slack.calls_to("chat.postMessage"), timeout=10)
    assert result(bot, "CRIT-1").delivered == {}
    assert critical_dms(bot, REQUESTER) == []
    bot.slack.clear_failures()
    bot.settle(timeout=40)
    assert len(critical_dms(bot, REQUESTER)) == 1
    delivered = result(bot, "CRIT-1").delivered
    assert list(delivered) == [REQUESTER]
    assert steps(bot, "CRIT-1").count("critical_delivered") == 1


def test_stats_and_weekly_digest_show_the_critical_line_without_patient_data(bot: Bot):
    from bot.reports.digest import send_weekly_digests  # noqa: PLC0415

    ref = send(bot, "rad <@UREQ1> MRN 31337: SECRET-FINDING")
    bot.clock.advance(timedelta(seconds=20))
    read_back(bot, ref, "SECRET-READBACK")
    send(bot, "rad <@UREQ1> MRN 31338: SECRET-FINDING-2")
    bot.clock.advance(timedelta(seconds=1))  # the period ends now, exclusive
    body = json.dumps(bot.command("stats rad 7d", user=RAD_LEAD).json)
    assert "Critical results: *2* sent, 1 acknowledged (1 within target)" in body
    assert "median 20s" in body
    bot.clock.advance(timedelta(days=7))
    svc = bot.services
    send_weekly_digests(
        catalogue=svc.catalogue, sessions=svc.sessions, clock=svc.clock, outbox=svc.outbox
    )
    bot.settle(timeout=30)
    (digest,) = [t for t in bot.dm_texts(RAD_LEAD) if "Weekly digest" in t]
    assert "Critical results: *2* sent, 1 acknowledged" in digest
    for secret in ("31337", "SECRET"):
        assert secret not in body and secret not in digest


def test_retention_clears_patient_data_of_old_acknowledged_results(bot: Bot):
    from bot.flows.retention import purge  # noqa: PLC0415

    old = send(bot, "rad <@UREQ1> MRN 4242: old finding")
    forward(bot, old, COLLEAGUE)
    read_back(bot, old, "old read-back", user=COLLEAGUE)
    waiting = send(bot, "rad <@UREQ1> MRN 4343: still waiting")
    bot.settle()
    bot.clock.advance(timedelta(days=400))
    svc = bot.services
    purge(sessions=svc.sessions, clock=svc.clock, older_than=timedelta(days=365))
    r = result(bot, old)
    assert (r.patient, r.finding, r.callback, r.read_back) == (None, None, None, None)
    assert all("reason" not in x for x in r.recipients)
    assert (r.acknowledged_by, r.reached()) == (COLLEAGUE, [REQUESTER, COLLEAGUE])
    assert result(bot, waiting).patient == "MRN 4343"  # not acknowledged: kept
