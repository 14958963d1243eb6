"""Critical results' figures and log, against a small day computed by hand: the report's
`critical` list (JSON and table), `python -m bot critical-log` (CSV and JSON), and the
re-notification claim that two concurrent sweeps on PostgreSQL never double."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.__main__ import main
from bot.reports.compute import compute_report
from bot.reports.critical import critical_log
from bot.reports.export import report_csv, report_json, report_table
from bot.reports.model import Report
from storage import critical
from tests.harness import RAD_ON_CALL, REQUESTER, TEST_CATALOGUE, Bot
from tests.slack.test_critical_results import (
    COLLEAGUE,
    CRITICAL,
    SUPERVISOR,
    bot,  # noqa: F401 - the fixture, with seconds-long [critical] settings
    forward,
    read_back,
    result,
    send,
    sweep,
)

S = timedelta(seconds=1)


def play_day(bot: Bot) -> None:  # noqa: F811
    """A: acknowledged after 12 s; B: forwarded, acknowledged after 40 s (target 30 s);
    C: never acknowledged, escalated; D (pathology): acknowledged after 20 s. Channel pacing
    (tested in tests/slack) would only hold the many DMs to one person back a second each."""
    bot.services.dispatcher.pacer.interval = 0
    a = send(bot, "rad <@UREQ1> MRN 1: massive PE")
    bot.clock.advance(12 * S)
    read_back(bot, a, "PE, heparin", view_id="VA")
    b = send(bot, "rad <@UREQ1> MRN 2: free air")
    bot.clock.advance(3 * S)
    forward(bot, b, COLLEAGUE, view_id="VB")
    bot.clock.advance(37 * S)
    read_back(bot, b, "Free air, surgery called", user=COLLEAGUE, view_id="VB2")
    send(bot, "rad <@UREQ1> MRN 3: pneumothorax")
    d = send(bot, "path <@UREQ1> MRN 4: malignancy", user="UPATHON")
    bot.clock.advance(20 * S)
    read_back(bot, d, "Malignancy, oncology referral", view_id="VD")
    for _ in range(3):  # C: re-notified twice, then escalated
        bot.clock.advance(5 * S)
        sweep(bot)
    bot.settle()


def test_report_figures_match_the_day(bot: Bot):  # noqa: F811
    start = bot.clock.now()
    play_day(bot)
    with bot.services.sessions() as s:
        report = compute_report(
            s, catalogue=bot.services.catalogue, since=start, until=bot.clock.now(),
            now=bot.clock.now(),
        )  # fmt: skip
    data = json.loads(report_json(report))
    by_service = {c["service"]: c for c in data["critical"]}
    assert by_service["radiology"] == {
        "service": "radiology", "sent": 3, "acknowledged": 2, "within_target": 1,
        "forwarded": 1, "escalated": 1,
        "time_to_acknowledge": {"median": 26.0, "p90": pytest.approx(37.2)},
    }  # fmt: skip
    assert by_service["pathology"] == {
        "service": "pathology", "sent": 1, "acknowledged": 1, "within_target": 1,
        "forwarded": 0, "escalated": 0, "time_to_acknowledge": {"median": 20.0, "p90": 20.0},
    }  # fmt: skip
    assert by_service["cardiology"]["sent"] == 0
    assert by_service["cardiology"]["time_to_acknowledge"] == {"median": None, "p90": None}
    table = report_table(report)
    assert "radiology: 1/2/3, forwarded 1, escalated 1" in table
    check_csv(report)
    # No patient data in the report.
    assert not any(f"MRN {n}" in table + json.dumps(data) for n in range(1, 5))


def check_csv(report: Report) -> None:
    """The CSV: the consult table unchanged, a blank line, then the critical table."""
    out = report_csv(report)
    consults, critical_part = out.split("\n\n")
    assert consults + "\n" == report_csv(dataclasses.replace(report, critical=[]))
    rows = list(csv.DictReader(io.StringIO(critical_part)))
    assert [r["service"] for r in rows] == ["radiology", "pathology", "cardiology"]
    rad, path, card = rows
    assert rad == {
        "service": "radiology", "critical_sent": "3", "critical_acknowledged": "2",
        "critical_within_target": "1", "critical_forwarded": "1", "critical_escalated": "1",
        "critical_tta_median": "26.0", "critical_tta_p90": rad["critical_tta_p90"],
    }  # fmt: skip
    assert float(rad["critical_tta_p90"]) == pytest.approx(37.2)
    assert (path["critical_sent"], path["critical_within_target"]) == ("1", "1")
    assert (path["critical_tta_median"], path["critical_tta_p90"]) == ("20.0", "20.0")
    assert (card["critical_sent"], card["critical_tta_median"]) == ("0", "")
    assert "MRN" not in out


def test_log_rows_match_the_day(bot: Bot):  # noqa: F811
    start = bot.clock.now()
    play_day(bot)
    with bot.services.sessions() as s:
        rows = critical_log(s, since=start, until=bot.clock.now() + S, services=None)
    assert [r["reference"] for r in rows] == ["CRIT-1", "CRIT-2", "CRIT-3", "CRIT-4"]
    a, b, c, d = rows
    assert (a["minutes_to_acknowledge"], a["within_target"], a["acknowledged_by"]) == (
        0.2,
        True,
        REQUESTER,
    )
    assert a["sender"] == RAD_ON_CALL and a["read_back"] == "PE, heparin"
    assert set(a["delivered"]) == {REQUESTER}
    assert (b["recipients"], b["forwarded_to"]) == ([REQUESTER, COLLEAGUE], [COLLEAGUE])
    assert (b["minutes_to_acknowledge"], b["within_target"]) == (0.67, False)
    assert set(b["delivered"]) == {REQUESTER, COLLEAGUE}
    assert (c["acknowledged"], c["escalated_to"], c["within_target"]) == (None, [SUPERVISOR], False)
    assert c["recipients"] == [REQUESTER, SUPERVISOR]
    assert (d["service"], d["minutes_to_acknowledge"]) == ("pathology", 0.33)
    assert result(bot, "CRIT-3").renotify_count == 3


@pytest.fixture
def cli_env(monkeypatch, tmp_path, db_url):
    config = tmp_path / "consult.toml"
    config.write_text(TEST_CATALOGUE.replace("[urgency.stat]", CRITICAL + "\n[urgency.stat]", 1))
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CONSULT_CONFIG", str(config))
    monkeypatch.setenv("LOG_FORMAT", "text")
    monkeypatch.chdir(tmp_path)


def test_cli_exports_csv_and_json_and_says_who_may_use_it(bot: Bot, cli_env, capsys):  # noqa: F811
    bot.clock.set(datetime.now(UTC) - timedelta(hours=2))
    play_day(bot)
    assert main(["critical-log", "--since", "1d", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["reference"] for r in rows] == ["CRIT-1", "CRIT-2", "CRIT-3", "CRIT-4"]
    assert main(["critical-log", "--since", "1d", "--service", "path"]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["reference"] == "CRIT-4" and row["read_back"] == "Malignancy, oncology referral"
    assert row["within_target"] == "True" and row["delivered"].startswith(f"{REQUESTER}=")
    assert main(["critical-log", "--since", "1d", "--service", "nope"]) == 2
    assert "unknown service" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["critical-log", "--help"])
    assert "PATIENT REFERENCES" in capsys.readouterr().out


def test_two_concurrent_sweeps_renotify_once(bot: Bot, postgres_only):  # noqa: F811
    ref = send(bot)
    bot.clock.advance(5 * S)
    # A sweep holding the row: the other one skips it instead of waiting or doubling.
    with bot.services.sessions() as s, s.begin():
        assert [r.ref for r in critical.claim_due(session=s, now=bot.clock.now(), limit=10)] == [
            ref
        ]
        assert sweep(bot).renotified == []
    done: list[list[str]] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        done.append(sweep(bot).renotified)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(done) == [[], [], [], [ref]]
    assert result(bot, ref).renotify_count == 1
