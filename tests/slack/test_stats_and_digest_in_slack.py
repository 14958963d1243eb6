"""Reports through Slack, end to end: `/consult stats`, the leads' App Home, and the weekly
digest DM with its chart delivered by the dispatcher. No patient detail in any of them."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import partial

from bot.reports.digest import send_weekly_digests
from tests.harness import OUTSIDER, RAD_LEAD, REQUESTER, Bot, wait_until

PATIENT = "MRN 8675309"
QUESTION = "SECRET-QUESTION-lesion?"
ANSWER = "SECRET-ANSWER-benign"
SECRETS = ("8675309", "SECRET-QUESTION", "SECRET-ANSWER")
LEAD = "UCARDLEAD"
ON_CALL = "UCARDON"


def seed(bot: Bot) -> list[str]:
    """Two cardiology consults: one answered 20 minutes after opening, one still open."""
    refs = []
    for _ in range(2):
        ref = bot.open(f"cards urgent {PATIENT}: {QUESTION}")
        refs.append(ref)
    bot.clock.advance(timedelta(minutes=5))
    bot.command(f"ack {refs[0]}", user=ON_CALL)
    bot.clock.advance(timedelta(minutes=15))
    bot.command(f"answer {refs[0]} {ANSWER}", user=ON_CALL)
    bot.settle()
    return refs


def test_stats_command_for_a_lead(bot: Bot):
    seed(bot)
    resp = bot.command("stats cards 7d", user=LEAD)
    assert resp.status == 200
    body = resp.json
    assert isinstance(body, dict) and body.get("blocks"), resp.text
    assert "Cardiology" in body["text"]
    everything = json.dumps(body)
    assert "*2* consults" in everything and "*1* answered" in everything
    assert "median *20m*" in everything  # time to answer
    assert "last 7 days" in everything
    assert len(body["blocks"]) <= 50
    assert not any(s in everything for s in SECRETS)


def test_stats_command_refused_for_others(bot: Bot):
    seed(bot)
    for user, text in (
        (OUTSIDER, "stats cards"),
        (REQUESTER, "stats cardiology 30d"),
        (RAD_LEAD, "stats cards"),
    ):
        resp = bot.command(text, user=user)
        assert resp.status == 200
        assert "Only the leads" in resp.text
        assert "consults" not in resp.text and "blocks" not in resp.text
    resp = bot.command("stats", user=OUTSIDER)
    assert "don't lead" in resp.text


def test_lead_home_shows_the_week(bot: Bot):
    refs = seed(bot)
    bot.clock.advance(timedelta(hours=2))  # the open consult is now overdue
    before = len(bot.slack.calls_to("views.publish"))
    bot.sender.event({"type": "app_home_opened", "user": LEAD, "tab": "home", "channel": "D1"})
    assert wait_until(lambda: len(bot.slack.calls_to("views.publish")) > before)
    view = json.dumps(bot.slack.calls_to("views.publish")[-1].args["view"])
    assert "last 7 days" in view and "Cardiology" in view
    assert refs[1] in view  # overdue, by reference
    assert not any(s in view for s in SECRETS)


def test_weekly_digest_is_delivered_once_with_its_chart(bot: Bot):
    seed(bot)
    bot.clock.advance(timedelta(days=7))
    svc = bot.services
    send = partial(send_weekly_digests, catalogue=svc.catalogue, sessions=svc.sessions,
                   clock=svc.clock, outbox=svc.outbox)  # fmt: skip
    assert send() == 3  # one lead per test service
    assert send() == 0
    bot.settle(timeout=30)
    texts = bot.dm_texts(LEAD)
    digest = [t for t in texts if "Weekly digest" in t]
    assert len(digest) == 1
    assert "Consults: *2*" in digest[0] and "Overdue now: 1" in digest[0]
    assert not any(s in "\n".join(texts[-2:]) for s in SECRETS)
    uploads = [u for u in bot.slack.uploads if "cardiology" in (u.get("filename") or "")]
    assert len(uploads) == 1
    assert not any(s in json.dumps({k: v for k, v in uploads[0].items() if k != "bytes"})
                   for s in SECRETS)  # fmt: skip
