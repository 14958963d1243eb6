"""Transfers in the report: per service, transfers out and in and the time at the service
until the transfer, made over the Slack protocol and checked against figures computed by
hand (identical on SQLite and PostgreSQL), in the JSON, CSV and table, with no reference,
reason or patient in any of them."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from bot.reports.compute import compute_report
from bot.reports.export import TRANSFER_CSV_COLUMNS, report_csv, report_json, report_table
from tests.harness import PATH_ON_CALL, Bot

CARD_ON_CALL = "UCARDON"
REASON = "SECRET-REASON-marrow"
PATIENT = "MRN 7777777"
M = timedelta(minutes=1)


def seed(bot: Bot):
    """Three transfers, times by hand (T = the clock's start):

    * CARD-1, created at T, to pathology at T+10m (PATH-1): 600 s at cardiology;
    * CARD-2, created at T+60m, to pathology at T+90m (PATH-2): 1800 s at cardiology;
    * PATH-1, arrived at T+10m, to radiology at T+120m (RAD-1): 6600 s at pathology.
    """
    t = bot.clock.now()
    first = bot.open(f"cards stat {PATIENT}: anaemia?")
    bot.clock.set(t + 10 * M)
    bot.command(f"transfer {first} path {REASON}", user=CARD_ON_CALL)
    bot.clock.set(t + 60 * M)
    second = bot.open(f"cards urgent {PATIENT}: pancytopenia?")
    bot.clock.set(t + 90 * M)
    bot.command(f"transfer {second} pathology {REASON}", user=CARD_ON_CALL)
    bot.clock.set(t + 120 * M)
    bot.command(f"transfer PATH-1 rad {REASON}", user=PATH_ON_CALL)
    assert [c.ref for c in bot.consults()] == ["RAD-1", "PATH-2"]
    return t


def figures(bot: Bot, since, until):
    with bot.services.sessions() as s:
        report = compute_report(
            s, catalogue=bot.services.catalogue, since=since, until=until, now=until
        )
    return {t["service"]: t for t in report.as_dict()["transfers"]}, report


def test_transfers_out_and_in_and_the_time_until_them_match_a_hand_count(bot: Bot):
    t = seed(bot)
    by_service, _ = figures(bot, t, t + timedelta(days=1))
    assert by_service == {
        "radiology": {"service": "radiology", "transferred_out": 0, "transferred_in": 1,
                      "time_to_transfer": {"median": None, "p90": None}},
        "pathology": {"service": "pathology", "transferred_out": 1, "transferred_in": 2,
                      "time_to_transfer": {"median": 6600.0, "p90": 6600.0}},
        # 600 and 1800: median 1200; p90 = 600 + 0.9 * (1800 - 600) = 1680.
        "cardiology": {"service": "cardiology", "transferred_out": 2, "transferred_in": 0,
                       "time_to_transfer": {"median": 1200.0, "p90": 1680.0}},
    }  # fmt: skip


def test_the_period_is_of_the_transfer_time(bot: Bot):
    t = seed(bot)
    by_service, _ = figures(bot, t + 15 * M, t + 100 * M)  # only CARD-2's transfer
    assert [(s, f["transferred_out"], f["transferred_in"]) for s, f in by_service.items()] == [
        ("radiology", 0, 0),
        ("pathology", 0, 1),
        ("cardiology", 1, 0),
    ]
    assert by_service["cardiology"]["time_to_transfer"] == {"median": 1800.0, "p90": 1800.0}


def test_transfers_in_the_csv_and_the_table_without_patient_data(bot: Bot):
    t = seed(bot)
    _, report = figures(bot, t, t + timedelta(days=1))
    out = report_csv(report)
    (tail,) = [t for t in out.split("\n\n") if t.startswith(",".join(TRANSFER_CSV_COLUMNS))]
    rows = list(csv.DictReader(io.StringIO(tail)))
    assert tuple(rows[0]) == TRANSFER_CSV_COLUMNS
    card = next(r for r in rows if r["service"] == "cardiology")
    assert (card["transferred_out"], card["transferred_in"]) == ("2", "0")
    assert (float(card["time_to_transfer_median"]), float(card["time_to_transfer_p90"])) == (
        1200.0,
        1680.0,
    )
    table = report_table(report)
    assert "cardiology: 2 out / 0 in, time until transfer median 20m, p90 28m" in table
    for text in (out, table, report_json(report)):
        assert REASON not in text and PATIENT not in text
        assert "CARD-1" not in text and "PATH-1" not in text
    assert json.loads(report_json(report))["transfers"][1]["transferred_in"] == 2
