"""bot.domain.catalogue: loading, defaults, policy merging, and one-line errors that point at the key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain.catalogue import Catalogue, Service
from bot.domain.catalogue_load import CatalogueError, load_catalogue, parse_catalogue
from bot.domain.catalogue_schema import UrgencyPolicy
from bot.domain.hours import WorkingHours
from bot.domain.vocabulary import URGENCIES

EXAMPLE = Path(__file__).resolve().parents[2] / "consult.example.toml"

RADIOLOGY = """
[[services]]
key = "radiology"
name = "Radiology"
aliases = ["rad", "imaging"]
channel = "C0123RAD"
on_call = "U0123ABC"
backup = "U0456DEF"
leads = ["U0789GHI"]
"""

PATHOLOGY = """
[[services]]
key = "pathology"
name = "Pathology"
aliases = ["path"]
channel = "C0123PATH"
on_call = "U0123PATH"
"""


def error_for(text: str, source: str = "consult.toml") -> CatalogueError:
    with pytest.raises(CatalogueError) as info:
        parse_catalogue(text, source)
    assert "\n" not in str(info.value)
    return info.value


# ---------------------------------------------------------------------- happy paths
def test_example_file_loads() -> None:
    catalogue = load_catalogue(EXAMPLE)
    keys = [s.key for s in catalogue.services]
    assert keys[:2] == ["radiology", "pathology"] and len(keys) == 4
    radiology = catalogue.service_by_key("radiology")
    assert [f.key for f in radiology.intake] == ["accession", "study"]
    assert radiology.intake[0].required and not radiology.intake[1].required
    assert catalogue.service_by_key("pathology").intake[0].required
    assert any(s.patient_pattern for s in catalogue.services)
    routine = catalogue.urgency["routine"]
    assert str(routine.hours) == "Mon-Fri 08:00-18:00"
    assert routine.hours is not None and routine.hours.timezone == routine.timezone
    assert catalogue.urgency["stat"].hours is None


def test_example_values_match_the_documented_defaults() -> None:
    catalogue = load_catalogue(EXAMPLE)
    defaults = parse_catalogue(RADIOLOGY)
    for name in URGENCIES:
        ours, builtin = catalogue.urgency[name], defaults.urgency[name]
        assert ours.acknowledge_within == builtin.acknowledge_within
        assert ours.answer_within == builtin.answer_within
        assert ours.nudge_every == builtin.nudge_every
        assert ours.escalate_after == builtin.escalate_after


def test_minimal_file_gets_defaults() -> None:
    catalogue = parse_catalogue(RADIOLOGY)
    assert catalogue.sweep_interval == timedelta(minutes=1)
    assert catalogue.post_interval == timedelta(seconds=1)
    assert catalogue.storm_threshold == 5
    assert catalogue.retention is None
    assert catalogue.admins == []
    assert (catalogue.digest.day, catalogue.digest.time) == ("mon", "08:00")
    assert catalogue.digest.enabled and catalogue.digest.timezone == "UTC"
    stat, urgent, routine = (catalogue.urgency[u] for u in URGENCIES)
    assert (stat.acknowledge_within, stat.answer_within) == (
        timedelta(minutes=15),
        timedelta(hours=1),
    )
    assert (stat.nudge_every, stat.escalate_after) == (timedelta(minutes=10), 2)
    assert (urgent.acknowledge_within, urgent.answer_within) == (
        timedelta(hours=1),
        timedelta(hours=4),
    )
    assert urgent.nudge_every == timedelta(minutes=30)
    assert (routine.acknowledge_within, routine.answer_within) == (
        timedelta(hours=4),
        timedelta(hours=24),
    )
    assert routine.nudge_every == timedelta(hours=2)
    assert routine.hours is None  # routine counts around the clock unless configured


def test_partial_urgency_table_takes_the_rest_from_defaults() -> None:
    catalogue = parse_catalogue('[urgency.urgent]\nanswer_within = "6h"\n' + RADIOLOGY)
    assert catalogue.urgency["urgent"].answer_within == timedelta(hours=6)
    assert catalogue.urgency["urgent"].acknowledge_within == timedelta(hours=1)
    assert catalogue.urgency["stat"].answer_within == timedelta(hours=1)


def test_durations_accept_iso_and_seconds() -> None:
    catalogue = parse_catalogue(
        'sweep_interval = 30\npost_interval = "PT2S"\nretention = "P90D"\n' + RADIOLOGY
    )
    assert catalogue.sweep_interval == timedelta(seconds=30)
    assert catalogue.post_interval == timedelta(seconds=2)
    assert catalogue.retention == timedelta(days=90)


def test_prefix_defaults_to_first_three_letters_and_can_be_set() -> None:
    catalogue = parse_catalogue(RADIOLOGY + PATHOLOGY + 'prefix = "PATH"\n')
    assert catalogue.service_by_key("radiology").prefix == "RAD"
    assert catalogue.service_by_key("pathology").prefix == "PATH"
    assert parse_catalogue(PATHOLOGY).services[0].prefix == "PAT"


def test_service_lookup_by_key_alias_or_prefix_any_case() -> None:
    catalogue = parse_catalogue(RADIOLOGY + PATHOLOGY + 'prefix = "PATH"\n')
    assert catalogue.service("Radiology") is catalogue.services[0]
    assert catalogue.service("IMAGING") is catalogue.services[0]
    assert catalogue.service(" rad ") is catalogue.services[0]
    assert catalogue.service("path") is catalogue.services[1]
    assert catalogue.service("Path") is catalogue.services[1]
    assert catalogue.service("cardiology") is None
    assert catalogue.service("") is None
    assert catalogue.service_by_key("pathology").name == "Pathology"
    with pytest.raises(KeyError):
        catalogue.service_by_key("rad")  # aliases are not keys
    assert catalogue.all_aliases() == {
        "radiology": "radiology",
        "rad": "radiology",
        "imaging": "radiology",
        "path": "pathology",
        "pathology": "pathology",
    }


def test_intake_fields_and_patient_pattern() -> None:
    text = (
        RADIOLOGY
        + 'patient_pattern = "E[0-9]{7}"\npatient_hint = "encounter number like E1234567"\n'
        + '[[services.intake]]\nkey = "accession"\nlabel = "Accession"\nrequired = true\n'
        + "max_length = 40\n"
    )
    service = parse_catalogue(text).services[0]
    assert service.patient_pattern == "E[0-9]{7}"
    assert service.patient_hint == "encounter number like E1234567"
    (field,) = service.intake
    assert (field.key, field.label, field.required, field.max_length) == (
        "accession",
        "Accession",
        True,
        40,
    )
    assert field.hint is None


def test_models_are_frozen() -> None:
    catalogue = parse_catalogue(RADIOLOGY)
    with pytest.raises(ValueError):
        catalogue.urgency["stat"].escalate_after = 5  # type: ignore[misc]
    with pytest.raises(ValueError):
        catalogue.services[0].channel = "C999"  # type: ignore[misc]


# ---------------------------------------------------------------------- policy merging
MERGE = (
    """
[urgency.routine]
answer_within = "24h"
hours = "Mon-Fri 08:00-18:00"
timezone = "Europe/London"
"""
    + RADIOLOGY
    + """
[services.urgency.routine]
answer_within = "2d"
[services.urgency.urgent]
nudge_every = "15m"
escalate_after = 3
"""
    + PATHOLOGY
    + """
[services.urgency.routine]
timezone = "America/Toronto"
"""
    + """
[[services]]
key = "cardiology"
name = "Cardiology"
channel = "C0123CARD"
on_call = "U0123CARD"
[services.urgency.routine]
hours = "always"
"""
)


def test_policy_merges_service_overrides() -> None:
    catalogue = parse_catalogue(MERGE)
    routine = catalogue.policy("radiology", "routine")
    assert routine.answer_within == timedelta(days=2)  # overridden
    assert routine.acknowledge_within == timedelta(hours=4)  # global default
    assert str(routine.hours) == "Mon-Fri 08:00-18:00" and routine.timezone == "Europe/London"
    urgent = catalogue.policy(catalogue.services[0], "urgent")
    assert (urgent.nudge_every, urgent.escalate_after) == (timedelta(minutes=15), 3)
    assert urgent.answer_within == timedelta(hours=4)
    # The global policies themselves are untouched.
    assert catalogue.urgency["routine"].answer_within == timedelta(hours=24)
    assert catalogue.urgency["urgent"].escalate_after == 2


def test_policy_without_override_is_the_global_policy() -> None:
    catalogue = parse_catalogue(MERGE)
    assert catalogue.policy("radiology", "stat") is catalogue.urgency["stat"]
    assert catalogue.policy("rad", "STAT") is catalogue.urgency["stat"]


def test_policy_timezone_override_rereads_global_hours() -> None:
    catalogue = parse_catalogue(MERGE)
    routine = catalogue.policy("pathology", "routine")
    assert routine.timezone == "America/Toronto"
    assert routine.hours == WorkingHours.parse("Mon-Fri 08:00-18:00", "America/Toronto")
    # Monday 08:00 Toronto (EST) is 13:00 UTC; London hours would be open at 08:00 UTC.
    monday = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert routine.hours.next_open(monday) == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


def test_policy_hours_always_turns_working_hours_off() -> None:
    catalogue = parse_catalogue(MERGE)
    assert catalogue.policy("cardiology", "routine").hours is None
    assert catalogue.policy("radiology", "routine").hours is not None


def test_policy_unknown_names() -> None:
    catalogue = parse_catalogue(MERGE)
    with pytest.raises(KeyError):
        catalogue.policy("dermatology", "routine")
    with pytest.raises(KeyError):
        catalogue.policy("radiology", "whenever")


def test_urgency_policy_takes_the_zone_of_given_hours() -> None:
    hours = WorkingHours.parse("Mon-Fri 09:00-17:00", "Europe/London")
    policy = UrgencyPolicy(
        acknowledge_within=timedelta(hours=1),
        answer_within=timedelta(hours=2),
        nudge_every=timedelta(minutes=30),
        escalate_after=1,
        hours=hours,
    )
    assert policy.timezone == "Europe/London" and policy.hours is hours


def test_models_validate_directly() -> None:
    catalogue = Catalogue.model_validate(
        {"services": [{"key": "ent", "name": "ENT", "channel": "C1", "on_call": "U1"}]}
    )
    assert isinstance(catalogue.services[0], Service)
    assert catalogue.services[0].prefix == "ENT"
    assert set(catalogue.urgency) == set(URGENCIES)


# ---------------------------------------------------------------------- errors
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "consult.toml"
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    assert str(info.value) == f"{path}: file not found"


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "consult.toml"
    path.write_text(RADIOLOGY.replace('channel = "C0123RAD"\n', ""), encoding="utf-8")
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    assert str(info.value) == f"{path}: services[0].channel: field required"


def test_missing_required_key() -> None:
    text = RADIOLOGY + PATHOLOGY.replace('channel = "C0123PATH"\n', "")
    error = error_for(text)
    assert str(error) == "consult.toml: services[1].channel: field required"
    assert (error.path, error.key, error.problem) == (
        "consult.toml",
        "services[1].channel",
        "field required",
    )


def test_no_services() -> None:
    assert str(error_for("storm_threshold = 3\n")) == "consult.toml: services: field required"
    assert "at least one [[services]]" in str(error_for("services = []\n"))


def test_bad_duration() -> None:
    error = error_for('[urgency.stat]\nanswer_within = "1x"\n' + RADIOLOGY)
    assert str(error) == (
        "consult.toml: urgency.stat.answer_within: "
        "'1x' is not a duration; use e.g. 90s, 15m, 2h, 1d or PT15M"
    )


@pytest.mark.parametrize(
    ("line", "key", "problem"),
    [
        ("sweep_interval = 0", "sweep_interval", "must be longer than zero"),
        ("sweep_interval = true", "sweep_interval", "must be a duration"),
        ("post_interval = 1.5", "post_interval", "must be a duration"),
        ('retention = "90m"', "retention", "must be at least 1d"),
        ("storm_threshold = 0", "storm_threshold", "must be at least 1"),
        ('storm_threshold = "5"', "storm_threshold", "must be a whole number"),
        ('admins = "U1"', "admins", "must be a list"),
        ('admins = ["bob"]', "admins[0]", "'bob' is not a Slack user id"),
    ],
)
def test_bad_top_level_values(line: str, key: str, problem: str) -> None:
    error = error_for(line + "\n" + RADIOLOGY)
    assert error.key == key
    assert problem in error.problem
    assert str(error).startswith(f"consult.toml: {key}: ")


def test_bad_channel_id() -> None:
    error = error_for(RADIOLOGY.replace("C0123RAD", "#radiology"))
    assert str(error) == (
        "consult.toml: services[0].channel: '#radiology' is not a Slack channel id (like C0123ABC)"
    )


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ('on_call = "U0123ABC"', 'on_call = "someone"', "services[0].on_call", "Slack user id"),
        ('leads = ["U0789GHI"]', 'leads = ["U1", "x"]', "services[0].leads[1]", "Slack user id"),
        ('key = "radiology"', 'key = "Radiology"', "services[0].key", "not a service key"),
        ('name = "Radiology"', 'name = ""', "services[0].name", "must not be empty"),
        ('aliases = ["rad", "imaging"]', 'aliases = ["x ray"]', "services[0].aliases[0]", "alias"),
        ("[[services]]", '[[services]]\nprefix = "rad"', "services[0].prefix", "prefix"),
        ("[[services]]", '[[services]]\npatient_pattern = "E[0-"', "services[0].patient_pattern",
         "not a valid regular expression"),
    ],
)  # fmt: skip
def test_bad_service_values(old: str, new: str, key: str, problem: str) -> None:
    error = error_for(RADIOLOGY.replace(old, new))
    assert (error.key, problem in error.problem) == (key, True), str(error)


def test_duplicate_alias() -> None:
    error = error_for(RADIOLOGY + PATHOLOGY.replace('["path"]', '["path", "RAD"]'))
    assert str(error) == (
        "consult.toml: services[1].aliases[1]: 'RAD' is already used by service 'radiology'"
    )


def test_duplicate_service_key() -> None:
    error = error_for(RADIOLOGY + RADIOLOGY.replace('["rad", "imaging"]', "[]"))
    assert str(error) == (
        "consult.toml: services[1].key: duplicate service key 'radiology' (also services[0])"
    )


def test_duplicate_derived_prefix_asks_for_a_prefix() -> None:
    radar = RADIOLOGY.replace('"radiology"', '"radar"').replace('["rad", "imaging"]', "[]")
    error = error_for(RADIOLOGY + radar)
    assert error.key == "services[1].prefix"
    assert error.problem == "'RAD' is already used by service 'radiology'"


@pytest.mark.parametrize("word", ["help", "list", "ack", "stats", "snooze", "oncall", "stat"])
def test_alias_colliding_with_a_command_word(word: str) -> None:
    error = error_for(RADIOLOGY.replace('"imaging"', f'"{word.upper()}"'))
    assert error.key == "services[0].aliases[1]"
    assert error.problem == f"{word.upper()!r} is a reserved /consult word"


def test_unknown_top_level_key_suggests_the_spelling() -> None:
    error = error_for('sweep_intervall = "1m"\n' + RADIOLOGY)
    assert (
        str(error) == "consult.toml: sweep_intervall: unknown key; did you mean 'sweep_interval'?"
    )


@pytest.mark.parametrize(
    ("text", "key", "suggestion"),
    [
        (RADIOLOGY + 'on_cal = "U1"\n', "services[0].on_cal", "on_call"),
        ('[urgency.stat]\nanwser_within = "1h"\n' + RADIOLOGY, "urgency.stat.anwser_within",
         "answer_within"),
        (RADIOLOGY + '[services.urgency.routine]\nnudge_evry = "1h"\n',
         "services[0].urgency.routine.nudge_evry", "nudge_every"),
        (RADIOLOGY + '[[services.intake]]\nkey = "a"\nlabel = "A"\nrequird = true\n',
         "services[0].intake[0].requird", "required"),
        ('[digest]\ntimezon = "UTC"\n' + RADIOLOGY, "digest.timezon", "timezone"),
    ],
)  # fmt: skip
def test_unknown_nested_keys(text: str, key: str, suggestion: str) -> None:
    error = error_for(text)
    assert error.key == key
    assert error.problem == f"unknown key; did you mean {suggestion!r}?"


def test_unknown_key_without_a_close_match() -> None:
    error = error_for('colour = "blue"\n' + RADIOLOGY)
    assert str(error) == "consult.toml: colour: unknown key"


def test_toml_syntax_error_names_the_line() -> None:
    text = RADIOLOGY + 'backup = \nleads = ["U1"]\n'
    line = text.splitlines().index("backup = ") + 1
    error = error_for(text)
    assert error.key == f"line {line}"
    assert str(error).startswith(f"consult.toml: line {line}: Invalid value")


def test_toml_syntax_error_at_end_of_file() -> None:
    error = error_for(RADIOLOGY + 'aliases = ["x"')
    assert error.key is not None and error.key.startswith("line ")
    assert "Unclosed array" in error.problem


def test_unknown_urgency_name() -> None:
    error = error_for('[urgency.emergent]\nanswer_within = "1h"\n' + RADIOLOGY)
    assert (
        str(error) == "consult.toml: urgency.emergent: unknown urgency; use stat, urgent, routine"
    )
    error = error_for(RADIOLOGY + '[services.urgency.asap]\nanswer_within = "1h"\n')
    assert error.key == "services[0].urgency.asap"


def test_stat_cannot_have_hours() -> None:
    error = error_for('[urgency.stat]\nhours = "Mon-Fri 08:00-18:00"\n' + RADIOLOGY)
    assert str(error) == "consult.toml: urgency.stat.hours: stat clocks always run; remove hours"
    error = error_for(RADIOLOGY + '[services.urgency.stat]\nhours = "Mon-Fri 08:00-18:00"\n')
    assert error.key == "services[0].urgency.stat.hours"


def test_bad_working_hours_and_timezone() -> None:
    error = error_for('[urgency.routine]\nhours = "Mon-Fry 08:00-18:00"\n' + RADIOLOGY)
    assert error.key == "urgency.routine.hours"
    assert "unknown day 'Fry'" in error.problem
    error = error_for(
        '[urgency.routine]\nhours = "Mon-Fri 08:00-18:00"\ntimezone = "Europe/Lundon"\n' + RADIOLOGY
    )
    assert error.key == "urgency.routine.timezone"
    assert "unknown time zone 'Europe/Lundon'" in error.problem
    error = error_for(RADIOLOGY + '[services.urgency.routine]\nhours = "Mon 18:00-08:00"\n')
    assert error.key == "services[0].urgency.routine.hours"


def test_acknowledge_longer_than_answer_is_refused() -> None:
    error = error_for('[urgency.urgent]\nacknowledge_within = "5h"\n' + RADIOLOGY)
    assert str(error) == (
        "consult.toml: urgency.urgent: acknowledge_within (5h) is longer than answer_within (4h)"
    )
    error = error_for(RADIOLOGY + '[services.urgency.urgent]\nanswer_within = "30m"\n')
    assert error.key == "services[0].urgency.urgent"


def test_duplicate_intake_key() -> None:
    intake = '[[services.intake]]\nkey = "a"\nlabel = "A"\n'
    error = error_for(RADIOLOGY + intake + intake)
    assert str(error) == "consult.toml: services[0].intake[1].key: duplicate intake key 'a'"


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ('day = "funday"', "digest.day", "is not a day"),
        ('time = "8am"', "digest.time", "is not a time"),
        ('time = "24:00"', "digest.time", "is not a time"),
        ('timezone = "Moon/Base"', "digest.timezone", "unknown time zone"),
        ('enabled = "yes"', "digest.enabled", "must be true or false"),
    ],
)
def test_bad_digest_settings(table: str, key: str, problem: str) -> None:
    error = error_for(f"[digest]\n{table}\n" + RADIOLOGY)
    assert error.key == key and problem in error.problem, str(error)


def test_digest_accepts_full_day_names_and_toml_times() -> None:
    digest = parse_catalogue('[digest]\nday = "Friday"\ntime = 07:30:00\n' + RADIOLOGY).digest
    assert (digest.day, digest.time) == ("fri", "07:30")


def test_every_problem_is_kept() -> None:
    error = error_for(RADIOLOGY.replace("C0123RAD", "bad").replace("U0123ABC", "bad"))
    keys = [key for key, _problem in error.problems]
    assert keys == ["services[0].channel", "services[0].on_call"]
    assert str(error).count(":") == 2  # still one line, first problem only
