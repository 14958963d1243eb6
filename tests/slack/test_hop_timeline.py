"""Per-hop clocks end to end over signed HTTP: a hand-off charged hop by hop in the report's
`holders` and in `/consult show`, need-info time charged to the requester, each service's
queue time, the timeline's nudges and answer, and who may see it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.reports.compute import compute_report
from bot.reports.export import report_csv, report_json, report_table
from storage.models import AuditEvent, Consult
from storage.models_hops import ConsultHop
from tests.harness import OUTSIDER, REQUESTER, Bot
from tests.statements import statements

ON_CALL, BACKUP, LEAD = "UCARDON", "UCARDBK", "UCARDLEAD"
PATIENT = "MRN 4455667"
QUESTION = "SECRET-Q new murmur, echo?"
ANSWER = "SECRET-A echo tomorrow, no change"
MIN = timedelta(minutes=1)


def report(bot: Bot, days: int = 1) -> dict[str, Any]:
    """The report's JSON for the last `days` days, as `python -m bot report` writes it, a
    minute after the last step (the period ends before `now`)."""
    bot.clock.advance(MIN)
    now = bot.clock.now()
    with bot.services.sessions() as s:
        found = compute_report(
            s, catalogue=bot.services.catalogue, since=now - timedelta(days=days), until=now,
            now=now,
        )  # fmt: skip
    return json.loads(report_json(found))


def holders(data: dict[str, Any], service: str = "cardiology") -> dict[tuple[str, str], Any]:
    return {(h["user"], h["role"]): h for h in data["holders"] if h["service"] == service}


def service_entry(data: dict[str, Any], service: str) -> dict[str, Any]:
    return next(s for s in data["services"] if s["service"] == service)


def hops(bot: Bot, ref: str) -> list[tuple[str, str | None, float]]:
    with bot.services.sessions() as s:
        cid = s.execute(select(Consult.id).where(Consult.ref == ref)).scalar_one()
        rows = s.execute(
            select(ConsultHop).where(ConsultHop.consult_id == cid).order_by(ConsultHop.id)
        ).scalars()
        return [(h.role, h.user, (h.ended_at - h.started_at).total_seconds()) for h in rows]


def handed_off(bot: Bot) -> str:
    """Queued 10 minutes, held 50 by the on-call, handed off, answered 5 minutes later."""
    ref = bot.open(f"cards urgent {PATIENT}: {QUESTION}")
    bot.clock.advance(10 * MIN)
    assert "acknowledged" in bot.command(f"ack {ref}", user=ON_CALL).text
    bot.clock.advance(50 * MIN)
    resp = bot.command(f"handoff <@{BACKUP}|bk> echo pending", user=ON_CALL)
    assert "Handed off" in resp.text, resp.text
    bot.clock.advance(5 * MIN)
    assert "answered" in bot.command(f"answer {ref} {ANSWER}", user=BACKUP).text
    bot.settle()
    return ref


def test_a_hand_off_is_charged_hop_by_hop_in_the_report(bot: Bot):
    ref = handed_off(bot)
    assert hops(bot, ref) == [
        ("queue", None, 600.0),
        ("consultant", ON_CALL, 3000.0),
        ("consultant", BACKUP, 300.0),
    ]
    data = report(bot)
    held = holders(data)
    assert set(held) == {(ON_CALL, "consultant"), (BACKUP, "consultant")}
    assert held[(ON_CALL, "consultant")]["hops"] == 1
    assert held[(ON_CALL, "consultant")]["held_seconds"] == {
        "total": 3000.0, "median": 3000.0, "p90": 3000.0,
    }  # fmt: skip
    assert held[(BACKUP, "consultant")]["held_seconds"]["total"] == 300.0  # not 55 minutes
    assert service_entry(data, "cardiology")["queue_seconds"] == {"median": 600.0, "p90": 600.0}
    assert service_entry(data, "radiology")["queue_seconds"] == {"median": None, "p90": None}
    # The existing figures keep their meaning: the consult is the last owner's, 65 minutes.
    cards = service_entry(data, "cardiology")
    assert cards["by_consultant"][BACKUP]["time_to_answer"]["median"] == 3900.0
    # CSV and table carry the same hops.
    with bot.services.sessions() as s:
        now = bot.clock.now()
        found = compute_report(
            s, catalogue=bot.services.catalogue, since=now - timedelta(days=1), until=now, now=now
        )
    csv_text = report_csv(found)
    assert f"cardiology,{ON_CALL},consultant,1,3000.0,3000.0,3000.0" in csv_text
    assert "cardiology,,queue,1,600.0,600.0,600.0" in csv_text
    table = report_table(found)
    assert f"{BACKUP} (consultant): 1 hop(s), 5m" in table


def test_show_gives_the_timeline_hop_by_hop(bot: Bot):
    ref = handed_off(bot)
    resp = bot.command(f"show {ref}", user=REQUESTER)
    assert resp.status == 200
    body = resp.json
    assert isinstance(body, dict) and body.get("blocks"), resp.text
    text = json.dumps(body)
    assert ref in body["text"]
    assert "Cardiology queue (nobody owned it): *10m*" in text
    assert f"<@{ON_CALL}>, Cardiology consultant: *50m*" in text
    assert f"<@{BACKUP}>, Cardiology consultant: *5m*" in text
    assert f"Answered by <@{BACKUP}>" in text and ANSWER in text
    assert "4455667" in text  # the card: the asker may see the patient
    assert not any(b.get("type") == "actions" for b in body["blocks"])  # no buttons
    assert len(body["blocks"]) <= 50
    # Audited, without patient data.
    with bot.services.sessions() as s:
        shows = s.execute(select(AuditEvent).where(AuditEvent.action == "show")).scalars().all()
        assert [(a.actor, a.details) for a in shows] == [(REQUESTER, {})]


def test_show_lists_the_running_hop_nudges_and_escalations(bot: Bot):
    ref = bot.open(f"cards stat {PATIENT}: {QUESTION}")
    for _ in range(4):  # acknowledge due after 15 minutes: nudged, then escalated
        bot.clock.advance(10 * MIN)
        bot.sweep()
    bot.settle()
    body = json.dumps(bot.command(f"show {ref}", user=ON_CALL).json)
    assert "Cardiology queue (nobody owned it): *40m* so far" in body
    assert ":bell: Nudged" in body and ":rotating_light: Escalated to" in body


def test_need_info_time_is_charged_to_the_requester(bot: Bot):
    ref = bot.open(f"cards urgent {PATIENT}: {QUESTION}")
    bot.clock.advance(5 * MIN)
    bot.command(f"ack {ref}", user=ON_CALL)
    bot.clock.advance(15 * MIN)
    bot.command(f"needinfo {ref} which valve?", user=ON_CALL)
    bot.settle()
    bot.clock.advance(25 * MIN)
    bot.reply(ref, "the mitral", user=REQUESTER)
    bot.clock.advance(10 * MIN)
    bot.command(f"answer {ref} {ANSWER}", user=ON_CALL)
    bot.settle()
    assert hops(bot, ref) == [
        ("queue", None, 300.0),
        ("consultant", ON_CALL, 900.0),
        ("requester", REQUESTER, 1500.0),
        ("consultant", ON_CALL, 600.0),
    ]
    held = holders(report(bot))
    assert held[(REQUESTER, "requester")]["hops"] == 1
    assert held[(REQUESTER, "requester")]["held_seconds"]["total"] == 1500.0
    mine = held[(ON_CALL, "consultant")]
    assert mine["hops"] == 2
    assert mine["held_seconds"] == {"total": 1500.0, "median": 750.0, "p90": 870.0}
    body = json.dumps(bot.command(f"show {ref}", user=LEAD).json)
    assert f"<@{REQUESTER}>, requester (waiting on them for information): *25m*" in body


def test_queue_time_per_service_and_reopening(bot: Bot):
    cards = bot.open(f"cards urgent {PATIENT}: {QUESTION}")
    path = bot.open(f"path urgent {PATIENT}: {QUESTION}")
    bot.clock.advance(20 * MIN)
    bot.command(f"ack {cards}", user=ON_CALL)
    bot.clock.advance(20 * MIN)
    bot.command(f"answer {path} {ANSWER}", user="UPATHON")  # answering from the queue
    bot.command(f"answer {cards} {ANSWER}", user=ON_CALL)
    bot.clock.advance(60 * MIN)
    bot.command(f"reopen {cards} one more thing")  # back to whoever answered
    bot.clock.advance(5 * MIN)
    bot.command(f"answer {cards} {ANSWER}", user=ON_CALL)
    bot.settle()
    data = report(bot)
    assert service_entry(data, "cardiology")["queue_seconds"]["median"] == 1200.0
    assert service_entry(data, "pathology")["queue_seconds"]["median"] == 2400.0
    assert holders(data)[(ON_CALL, "consultant")]["held_seconds"]["total"] == 1500.0
    assert holders(data, "pathology") == {}  # answered straight from the queue


def test_show_is_refused_to_an_outsider_and_unknown_references(bot: Bot):
    ref = handed_off(bot)
    resp = bot.command(f"show {ref}", user=OUTSIDER)
    assert resp.status == 200
    assert "Only the requester" in resp.text and "can see its timeline" in resp.text
    assert "4455667" not in resp.text and "SECRET" not in resp.text
    assert "blocks" not in resp.text
    assert "There is no consult CARD-99" in bot.command("show CARD-99", user=REQUESTER).text
    assert "Usage: `/consult show RAD-42`" in bot.command("show", user=REQUESTER).text
    # The service's lead and its consultants may look; the refusal is audited.
    for user in (LEAD, BACKUP):
        assert "Timeline" in json.dumps(bot.command(f"show {ref}", user=user).json)
    with bot.services.sessions() as s:
        rows = s.execute(select(AuditEvent.actor, AuditEvent.action, AuditEvent.details)).all()
    events = [(a, b) for a, b, _ in rows]
    refused = [d for a, b, d in rows if (a, b) == (OUTSIDER, "refused")]
    assert [d["attempted"] for d in refused] == ["show"]
    assert sorted(a for a, b in events if b == "show") == sorted([LEAD, BACKUP])


def test_stats_shows_each_consultants_time_held(bot: Bot):
    handed_off(bot)
    bot.clock.advance(MIN)  # the period ends before now
    resp = bot.command("stats cards 7d", user=LEAD)
    text = json.dumps(resp.json)
    assert "*Time held*" in text
    assert f"<@{ON_CALL}>: *50m* over 1 hop(s)" in text
    assert f"<@{BACKUP}>: *5m* over 1 hop(s)" in text
    assert "In the queue (nobody owned it): median 10m" in text
    assert "4455667" not in text and "SECRET" not in text


def test_the_acknowledge_press_costs_one_insert_and_no_read_of_hops(bot: Bot):
    ref = bot.open(f"cards urgent {PATIENT}: {QUESTION}")
    with statements(bot.services.engine) as seen:
        assert "acknowledged" in bot.command(f"ack {ref}", user=ON_CALL).text
    # One INSERT of the hop (on PostgreSQL inside the press's one statement), no read.
    hop_statements = [s for s in seen if "consult_hops" in s]
    assert len(hop_statements) == 1 and "insert into consult_hops" in hop_statements[0]
    assert "from consult_hops" not in hop_statements[0]
    # The new holder goes out in the row's one UPDATE.
    updates = [s for s in seen if "update consults" in s]
    assert len(updates) == 1 and "hop_role" in updates[0]
    assert hops(bot, ref) == [("queue", None, 0.0)]


def test_a_transfer_charges_each_service_its_own_queue_and_owner_time(bot: Bot):
    ref = bot.open(f"cards urgent {PATIENT}: {QUESTION}")
    bot.clock.advance(20 * MIN)  # nobody picked it up at cardiology
    resp = bot.command(f"transfer {ref} path marrow question, not cardiac", user=ON_CALL)
    assert "PATH-1" in resp.text, resp.text
    bot.clock.advance(7 * MIN)
    assert "acknowledged" in bot.command("ack PATH-1", user="UPATHON").text
    bot.clock.advance(30 * MIN)
    assert "answered" in bot.command(f"answer PATH-1 {ANSWER}", user="UPATHON").text
    bot.settle()
    data = report(bot)
    assert service_entry(data, "cardiology")["queue_seconds"] == {"median": 1200.0, "p90": 1200.0}
    assert service_entry(data, "pathology")["queue_seconds"] == {"median": 420.0, "p90": 420.0}
    (held,) = holders(data, "pathology").values()
    assert (held["user"], held["hops"], held["held_seconds"]["total"]) == ("UPATHON", 1, 1800.0)
    with bot.services.sessions() as s:
        rows = s.execute(select(ConsultHop).order_by(ConsultHop.id)).scalars().all()
        got = [(h.service, h.role, (h.ended_at - h.started_at).total_seconds()) for h in rows]
    assert got == [
        ("cardiology", "queue", 1200.0),
        ("pathology", "queue", 420.0),
        ("pathology", "consultant", 1800.0),
    ]
