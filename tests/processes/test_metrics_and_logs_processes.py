"""A real `python -m bot serve` with two gunicorn workers: `/metrics` adds up both workers
(prometheus_client's multiprocess mode in a private directory, removed at exit), shows
nothing of what the requester typed, and gunicorn's own error and access lines are JSON
like CareLoop's."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.dev.fakeslack import FakeSlack
from bot.dev.fakeslack.requests import SlackSender
from tests.procs import SECRET, Procs, bot_env, wait_until, write_catalogue

COMMANDS = 4
MRN = "MRN 5550123"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as running:
        yield running


def fetch(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def samples(body: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
    ]


def commands_counted(body: str) -> float:
    return sum(
        v
        for name, labels, v in samples(body)
        if name == "careloop_request_duration_seconds_count"
        and labels == {"surface": "command", "outcome": "ok"}
    )


def test_two_workers_add_up_in_metrics_and_gunicorn_logs_json(
    db_url: str, slack: FakeSlack, procs: Procs, tmp_path: Path
):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = bot_env(
        db_url,
        slack.url,
        write_catalogue(tmp_path / "consult.toml"),
        WEB_CONCURRENCY="2",
        TMPDIR=str(scratch),  # where serve makes its private metrics directory
    )
    bot = procs.serve(env)
    bot.wait_healthy()
    sender = SlackSender(bot.events_url, SECRET, response_url_factory=slack.response_url)
    for n in range(COMMANDS):
        reply = sender.command(f"cards stat {MRN}-{n}: syncope on amiodarone?", user="UREQ1")
        assert reply.status == 200, bot.tail()
    assert len(list(scratch.glob("careloop-metrics-*"))) == 1

    # Any worker may answer a scrape; each answer adds up both workers' counts.
    def scraped_all() -> bool:
        return commands_counted(fetch(bot.port, "/metrics")[1]) == COMMANDS

    assert wait_until(scraped_all, 15), bot.tail()
    bodies = [fetch(bot.port, "/metrics")[1] for _ in range(6)]
    assert {commands_counted(b) for b in bodies} == {COMMANDS}
    holders = {
        labels["pid"]
        for name, labels, _ in samples(bodies[-1])
        if name == "careloop_delivery_lock_held"
    }
    assert len(holders) == 2  # one live value per worker process
    opened = [
        v
        for name, labels, v in samples(bodies[-1])
        if name == "careloop_consults_open" and labels["service"] == "cardiology"
    ]
    assert opened == [COMMANDS]
    for body in bodies:
        assert "5550123" not in body and "amiodarone" not in body
    assert fetch(bot.port, "/readyz") == (200, '{"status": "ready"}')

    def swept() -> bool:  # each worker sweeps once at start
        found = [
            v
            for name, _, v in samples(fetch(bot.port, "/metrics")[1])
            if name == "careloop_sweep_duration_seconds_count"
        ]
        return bool(found) and found[0] >= 1

    assert wait_until(swept, 15), bot.tail()

    assert bot.terminate() == 0
    assert list(scratch.glob("careloop-metrics-*")) == []  # cleaned up at exit
    lines = [line for line in bot.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON, gunicorn's too
    gunicorn = [r for r in records if r["logger"].startswith("gunicorn")]
    assert any(r["logger"] == "gunicorn.error" and "Listening at" in r["message"] for r in gunicorn)
    access = [r for r in gunicorn if r["logger"] == "gunicorn.access"]
    assert len(access) == COMMANDS  # probes and scrapes are not logged
    assert {(r["message"], r["path"], r["status"]) for r in access} == {
        ("POST /slack/events 200", "/slack/events", 200)
    }
    assert "5550123" not in bot.output()
