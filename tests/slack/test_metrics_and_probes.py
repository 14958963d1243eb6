"""Observability over HTTP, end to end: `/metrics` counts Slack requests, outbox outcomes,
Slack API calls (429s and their Retry-After included) and reads the consults and outbox
backlog from the database, without a trace of patient data; `/healthz` is liveness (no
database) and `/readyz` readiness (database, schema, outbox not stuck) as one JSON line."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from bot.slack.ids import ActionId
from storage.models import OutboxMessage
from tests.fake_slack import FakeSlack
from tests.harness import CARD_CHANNEL, REQUESTER, Bot, start_bot, use_postgres
from tests.statements import refusing

CARD_ON_CALL = "UCARDON"

MRN = "MRN 8675309"
QUESTION = "syncope after new amiodarone"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(bot: Bot, path: str) -> tuple[int, str, str]:
    """Status, content type and body of GET `path` on the bot's HTTP port."""
    url = bot.url.replace("/slack/events", path)
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def scrape(bot: Bot) -> tuple[str, Samples]:
    """The `/metrics` text and its samples, parsed as Prometheus parses them."""
    status, ctype, body = get(bot, "/metrics")
    assert status == 200 and ctype.startswith("text/plain"), (status, ctype)
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return body, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_rise_with_traffic_and_never_show_patient_data(bot: Bot):
    _, before = scrape(bot)
    ref = bot.open(f"cards stat {MRN}: {QUESTION}?")
    bot.click(
        ActionId.ACKNOWLEDGE,
        ref,
        user=CARD_ON_CALL,
        channel=CARD_CHANNEL,
        message_ts=bot.consult(ref).channel_ts,
    )
    bot.settle()
    body, after = scrape(bot)

    def rose(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "careloop_request_duration_seconds_count"
    assert rose(requests, surface="command", outcome="ok") >= 1
    assert rose(requests, surface="action", outcome="ok") >= 1
    assert rose("careloop_outbox_delivered_total", kind="post") >= 1
    assert rose("careloop_outbox_delivered_total", kind="update") >= 1
    assert rose("careloop_slack_api_calls_total", method="chat.postMessage", outcome="ok") >= 1
    assert value(after, "careloop_consults_open", service="cardiology", urgency="stat") == 1
    assert value(after, "careloop_consults_overdue", service="cardiology", urgency="stat") == 0
    assert value(after, "careloop_outbox_pending", kind="post") == 0
    assert value(after, "careloop_database_up") == 1
    assert value(after, "careloop_delivery_lock_held") == 1
    # Labels come from closed sets; nothing the requester typed shows anywhere.
    for typed in ("8675309", "syncope", "amiodarone", REQUESTER):
        assert typed not in body


def test_an_overdue_consult_and_a_stuck_outbox_show_in_metrics_and_readiness(
    db_url: str, slack: FakeSlack
):
    bot = start_bot(db_url, slack, dispatcher=False)  # nothing is delivered
    try:
        assert get(bot, "/readyz")[0] == 200
        resp = bot.command(f"cards stat {MRN}: {QUESTION}?")
        assert resp.status == 200
        bot.clock.advance(timedelta(minutes=16))  # stat: acknowledge within 15 minutes
        _, samples = scrape(bot)
        assert (
            value(samples, "careloop_consults_overdue", service="cardiology", urgency="stat") == 1
        )
        assert value(samples, "careloop_outbox_pending", kind="post") == 1
        age = value(samples, "careloop_outbox_oldest_pending_age_seconds", kind="post")
        assert age >= 16 * 60
        status, ctype, body = get(bot, "/readyz")
        assert (status, ctype) == (503, "application/json")
        assert json.loads(body)["reason"].startswith("outbox stuck: oldest undelivered message")
        assert "\n" not in body.strip()
        assert get(bot, "/healthz")[:1] == (200,)  # alive all the same
    finally:
        bot.stop()


def test_a_rate_limited_slack_is_counted_with_the_retry_after_it_asked_for(bot: Bot):
    _, before = scrape(bot)
    bot.slack.fail("chat.postMessage", status=429, retry_after=1)
    bot.open()
    bot.settle()
    _, after = scrape(bot)
    key = ("careloop_slack_api_calls_total", "chat.postMessage", "ratelimited")
    limited = value(after, key[0], method=key[1], outcome=key[2]) - value(
        before, key[0], method=key[1], outcome=key[2]
    )
    assert limited == 1
    waited = value(after, "careloop_slack_retry_after_seconds_total", method="chat.postMessage")
    assert waited - value(
        before, "careloop_slack_retry_after_seconds_total", method="chat.postMessage"
    ) == pytest.approx(1.0)
    assert value(after, "careloop_outbox_retried_total", kind="post") > value(
        before, "careloop_outbox_retried_total", kind="post"
    )


def test_a_refused_message_counts_as_failed(bot: Bot):
    _, before = scrape(bot)
    bot.slack.fail("chat.postMessage", error="channel_not_found")
    bot.command("cards stat MRN 1: ECG changes?")
    bot.settle()
    _, after = scrape(bot)
    failed = "careloop_outbox_failed_total"
    assert value(after, failed, kind="post") - value(before, failed, kind="post") == 1
    calls = "careloop_slack_api_calls_total"
    assert value(after, calls, method="chat.postMessage", outcome="error") > value(
        before, calls, method="chat.postMessage", outcome="error"
    )


def test_readyz_says_when_the_schema_is_not_the_newest(bot: Bot):
    assert get(bot, "/readyz")[:2] == (200, "application/json")
    with bot.services.engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        status, _, body = get(bot, "/readyz")
    finally:  # PostgreSQL's test database is shared by the run (truncated, not re-made)
        with bot.services.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert status == 503
    assert json.loads(body) == {
        "status": "not ready",
        "reason": "database schema not current (at older); run python -m bot migrate",
    }


@pytest.fixture
def unreachable(slack: FakeSlack) -> Iterator[Bot]:
    """A bot whose database cannot be reached (nothing listens there / no such directory)."""
    url = (
        "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
        if use_postgres()
        else "sqlite:////nonexistent-careloop-dir/consults.db"
    )
    running = start_bot(url, slack, dispatcher=False)
    yield running
    running.stop()


def test_without_a_database_healthz_is_alive_readyz_is_not_and_metrics_say_so(
    unreachable: Bot,
):
    assert get(unreachable, "/healthz") == (200, "text/plain; charset=utf-8", "ok")
    status, _, body = get(unreachable, "/readyz")
    assert (status, json.loads(body)) == (
        503,
        {"status": "not ready", "reason": "database unreachable"},
    )
    _, samples = scrape(unreachable)
    assert value(samples, "careloop_database_up") == 0


def test_ready_outbox_max_age_zero_leaves_the_outbox_out_of_readiness(
    db_url: str, slack: FakeSlack
):
    bot = start_bot(db_url, slack, dispatcher=False, READY_OUTBOX_MAX_AGE=0)
    try:
        with bot.services.sessions() as s, s.begin():
            old = bot.clock.now() - timedelta(hours=1)
            s.add(OutboxMessage(kind="dm", payload={}, created_at=old, next_attempt_at=old))
        assert get(bot, "/readyz")[0] == 200
    finally:
        bot.stop()


def test_a_handler_that_fails_counts_as_an_error(bot: Bot):
    _, before = scrape(bot)

    def explode(sql: str, params: Any) -> OperationalError:
        return OperationalError(sql, params, RuntimeError("boom"))

    with refusing(bot.services.engine, "insert into consults", explode) as refused:
        assert "not saved" in bot.command(f"cards stat {MRN}: {QUESTION}?").text
    assert refused  # the fault was injected
    body, after = scrape(bot)
    count = "careloop_request_duration_seconds_count"
    errors = value(after, count, surface="command", outcome="error")
    assert errors - value(before, count, surface="command", outcome="error") == 1
    assert value(after, count, surface="command", outcome="ok") == value(
        before, count, surface="command", outcome="ok"
    )
    assert "8675309" not in body


def test_requests_turned_away_before_bolt_are_counted_by_status(bot: Bot):
    _, before = scrape(bot)
    forged = urllib.request.Request(
        bot.url,
        data=b"command=%2Fconsult&text=MRN+8675309",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=" + "0" * 64,
        },
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=10)
    assert refused.value.code == 401
    body, after = scrape(bot)
    name = "careloop_requests_refused_total"
    assert value(after, name, status="401") - value(before, name, status="401") == 1
    count = "careloop_request_duration_seconds_count"
    assert value(after, count, surface="command", outcome="ok") == value(
        before, count, surface="command", outcome="ok"
    )
    assert "8675309" not in body
