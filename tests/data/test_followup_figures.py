"""Follow-ups' figures against a small day computed by hand: the report's `followups` list
(JSON, CSV and table), per service of the linked consult and "none", the same on SQLite and
PostgreSQL; a report narrowed to some services leaves "none" out."""

from __future__ import annotations

import json
from datetime import timedelta

from bot.reports.compute import compute_report
from bot.reports.export import FOLLOWUP_CSV_COLUMNS, report_csv, report_json, report_table
from tests.harness import Bot
from tests.slack.test_followups import (
    CARD_ON_CALL,
    bot,  # noqa: F401 - the fixture, with a [followups] table
    followup,
    submit_done,
    submit_new,
)

M = timedelta(minutes=1)


def play_day(bot: Bot) -> tuple:  # noqa: F811
    """Before the period, patients only: FU-1 (due in 1d: not overdue 6h later) and FU-2
    (due in 1h, never done: overdue now). In the period, all at one moment: FU-3 and FU-4
    (CARD-1, waiting on its answer, done after 2h and 6h), FU-5 (CARD-1, due in 1h, never
    done), FU-6 (patient only, done after 30m), FU-7 (PATH-1, never answered: not overdue
    however late). The report is read 6h in."""
    followup(bot, "MRN 6: call back about the MRI slot")
    submit_new(bot, patient="MRN 6b", due="1h", view_id="VPRE", owed="call about MRI")
    bot.clock.advance(M)
    since = bot.clock.now()
    card = bot.open("cards stat MRN 1: chest pain?")
    path = bot.open("path stat MRN 5: margins?")
    bot.clock.set(since)
    followup(bot, f"{card}: call with the echo result")
    followup(bot, f"{card}: book the stress test")
    submit_new(bot, consult=card, due="1h", view_id="VFU4", owed="send the letter")
    followup(bot, "MRN 5: phone the daughter")
    followup(bot, f"{path}: call with the margins")
    bot.clock.advance(10 * M)
    bot.command(f"answer {card} Echo normal", user=CARD_ON_CALL)
    bot.settle()
    for minutes, ref in ((30, "FU-6"), (120, "FU-3"), (360, "FU-4")):
        bot.clock.set(since + minutes * M)
        resp = submit_done(bot, ref, "reached", view_id=f"VD-{ref}")
        assert not (resp.json or {}).get("response_action"), resp.text
    bot.settle()
    return since, bot.clock.now()


def test_followup_figures_match_the_day(bot: Bot):  # noqa: F811
    since, now = play_day(bot)
    with bot.services.sessions() as s:
        report = compute_report(
            s, catalogue=bot.services.catalogue, since=since, until=now + M, now=now
        )
        narrowed = compute_report(
            s, catalogue=bot.services.catalogue, since=since, until=now + M, now=now,
            services=["cardiology"],
        )  # fmt: skip
    data = json.loads(report_json(report))
    by_service = {f["service"]: f for f in data["followups"]}
    assert list(by_service) == ["radiology", "pathology", "cardiology", "none"]
    # Hand computation: cardiology done after 2h and 6h → median 4h, p90 2h + 0.9 × 4h.
    assert by_service["cardiology"] == {
        "service": "cardiology", "opened": 3, "done": 2, "overdue_now": 1,
        "time_to_done": {"median": 14400.0, "p90": 20160.0},
    }  # fmt: skip
    assert by_service["pathology"] == {
        "service": "pathology", "opened": 1, "done": 0, "overdue_now": 0,
        "time_to_done": {"median": None, "p90": None},
    }  # fmt: skip
    assert by_service["none"] == {
        "service": "none", "opened": 1, "done": 1, "overdue_now": 1,
        "time_to_done": {"median": 1800.0, "p90": 1800.0},
    }  # fmt: skip
    assert by_service["radiology"]["opened"] == 0
    assert [f.service for f in narrowed.followups] == ["cardiology"]
    # No patient data in any export.
    for text in (report_json(report), report_csv(report), report_table(report)):
        for phi in ("MRN", "echo", "daughter", "margins", "letter"):
            assert phi not in text
    header = ",".join(FOLLOWUP_CSV_COLUMNS)
    tables = [t.splitlines() for t in report_csv(report).split("\n\n")]
    (csv_rows,) = [rows for rows in tables if rows[0] == header]
    assert "cardiology,3,2,1,14400.0,20160.0" in csv_rows
    assert "none,1,1,1,1800.0,1800.0" in csv_rows
    assert "cardiology: 2/3, overdue now 1" in report_table(report)


def test_no_followups_gives_zeros_and_no_extra_tables(bot: Bot):  # noqa: F811
    now = bot.clock.now()
    with bot.services.sessions() as s:
        report = compute_report(
            s, catalogue=bot.services.catalogue, since=now - M, until=now, now=now
        )
    assert [(f.service, f.opened, f.done, f.overdue_now) for f in report.followups] == [
        ("radiology", 0, 0, 0), ("pathology", 0, 0, 0), ("cardiology", 0, 0, 0), ("none", 0, 0, 0),
    ]  # fmt: skip
    assert "followups_opened" not in report_csv(report)
    assert "Follow-ups" not in report_table(report)
