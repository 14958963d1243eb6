"""Follow-ups' pure parts: the `[followups]` settings (defaults when absent, one-line errors
naming the key, the FU prefix kept), the `/consult followup` reader, due times as people
type them, and the runtime's schedule of the follow-up sweep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest.mock import MagicMock

import pytest

from bot.domain.catalogue_load import CatalogueError, parse_catalogue
from bot.domain.commands import RESERVED_WORDS, Verb
from bot.domain.durations import parse_due
from bot.domain.parsing import parse
from bot.runtime import build_scheduler

SERVICE = """
[[services]]
key = "radiology"
name = "Radiology"
channel = "C0123RAD"
on_call = "U0123ABC"
"""
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def error(text: str) -> str:
    with pytest.raises(CatalogueError) as info:
        parse_catalogue(text, "consult.toml")
    return str(info.value)


def test_defaults_when_the_table_is_absent_and_values_when_given():
    plain = parse_catalogue(SERVICE).followups
    assert (plain.due_within, plain.nudge_every) == (timedelta(days=1), timedelta(hours=4))
    assert (plain.escalate_after, plain.escalate_to) == (2, [])
    given = parse_catalogue(
        '[followups]\ndue_within = "2h"\nnudge_every = "30m"\nescalate_after = 3\n'
        'escalate_to = ["U0NURSE"]\n' + SERVICE
    ).followups
    assert (given.due_within, given.nudge_every) == (timedelta(hours=2), timedelta(minutes=30))
    assert (given.escalate_after, given.escalate_to) == (3, ["U0NURSE"])


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('due_within = "soon"', "followups.due_within: 'soon' is not a duration"),
        ('nudge_every = "0m"', "followups.nudge_every: '0m' is not a duration"),
        ("escalate_after = 0", "followups.escalate_after: must be at least 1"),
        ('escalate_to = ["nurse"]', "followups.escalate_to[0]: 'nurse' is not a Slack user id"),
        ("due_witin = '1d'", "followups.due_witin: unknown key; did you mean 'due_within'?"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(table: str, message: str):
    text = error(f"[followups]\n{table}\n" + SERVICE)
    assert text.startswith("consult.toml: ") and message in text and "\n" not in text


def test_no_service_may_take_the_followup_prefix_or_words():
    text = SERVICE.replace('name = "Radiology"', 'name = "Radiology"\nprefix = "FU"')
    assert "services[0].prefix: 'FU' is kept for follow-ups" in error(text)
    assert {"followup", "followups"} <= RESERVED_WORDS


def test_followup_command_reader():
    assert parse("followup").verb == Verb.FOLLOWUP and not parse("followup").question
    typed = parse("followup MRN 1: call her: biopsy result")
    assert (typed.ref, typed.patient, typed.question) == (None, "MRN 1", "call her: biopsy result")
    linked = parse("followup rad-42: call when the letter arrives")
    assert (linked.ref, linked.patient) == ("RAD-42", "rad-42")
    for wrong in ("followup MRN 1", "followup : x", "followup MRN 1:  "):
        assert "Name the patient (or the consult) and what is owed" in (parse(wrong).error or "")
    assert parse("followups").verb == Verb.FOLLOWUPS


def test_due_times_as_people_type_them():
    assert parse_due("4h", NOW) == NOW + timedelta(hours=4)
    assert parse_due(" 2d ", NOW) == NOW + timedelta(days=2)
    assert parse_due("2026-11-30 14:00", NOW) == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    assert parse_due("2026-11-30T14:00-05:00", NOW) == datetime(2026, 11, 30, 19, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="'tomorrow' is not a due time"):
        parse_due("tomorrow", NOW)
    with pytest.raises(ValueError, match="is in the past"):
        parse_due("2026-11-28 08:00", NOW)


def test_the_runtime_schedules_the_followup_sweep():
    services = MagicMock()
    services.catalogue = parse_catalogue('sweep_interval = "1m"\n' + SERVICE)
    services.catalogue = services.catalogue.model_copy(
        update={"digest": services.catalogue.digest.model_copy(update={"enabled": False})}
    )
    services.clock.now.return_value = None
    job = build_scheduler(services).get_job("followup-sweep")
    assert job is not None and job.trigger.interval == timedelta(minutes=1)
