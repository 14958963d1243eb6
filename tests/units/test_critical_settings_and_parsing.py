"""Critical results' pure parts: the `[critical]` settings (defaults, per-service override,
one-line errors), the `/consult critical` reader, and the runtime's schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.domain.catalogue_load import CatalogueError, parse_catalogue
from bot.domain.commands import Verb
from bot.domain.parsing import parse

SERVICE = """
[[services]]
key = "radiology"
name = "Radiology"
channel = "C0123RAD"
on_call = "U0123ABC"
"""


def error(text: str) -> str:
    with pytest.raises(CatalogueError) as info:
        parse_catalogue(text, "consult.toml")
    return str(info.value)


def test_defaults_and_service_override():
    plain = parse_catalogue(SERVICE)
    settings = plain.critical_for("radiology")
    assert settings.acknowledge_within == timedelta(minutes=30)
    assert settings.renotify_every == timedelta(minutes=5)
    assert (settings.escalate_after, settings.escalate_to) == (2, [])
    custom = parse_catalogue(
        '[critical]\nescalate_to = ["U0SUP"]\nacknowledge_within = "1h"\n'
        + SERVICE
        + '[services.critical]\nrenotify_every = "2m"\n'
    )
    merged = custom.critical_for("radiology")
    assert merged.renotify_every == timedelta(minutes=2)
    assert merged.acknowledge_within == timedelta(hours=1)  # kept from [critical]
    assert merged.escalate_to == ["U0SUP"]


@pytest.mark.parametrize(
    ("top", "service", "message"),
    [
        (
            '[critical]\nrenotify_every = "0m"\n',
            "",
            "critical.renotify_every: '0m' is not a duration",
        ),
        ("[critical]\nescalate_after = 0\n", "", "critical.escalate_after: must be at least 1"),
        (
            '[critical]\nescalate_to = ["bob"]\n',
            "",
            "critical.escalate_to[0]: 'bob' is not a Slack user id",
        ),
        ("[critical]\nfoo = 1\n", "", "critical.foo: unknown key"),
        (
            "",
            '[services.critical]\nescalate_to = ["x"]\n',
            "services[0].critical.escalate_to[0]: 'x'",
        ),
        ("", "[services.critical]\nbar = 1\n", "services[0].critical.bar: unknown key"),
    ],
)
def test_bad_settings_are_one_line_errors(top: str, service: str, message: str):
    text = error(top + SERVICE + service)
    assert text.startswith("consult.toml: ") and message in text and "\n" not in text


def test_no_service_may_take_the_critical_prefix():
    text = SERVICE.replace('name = "Radiology"', 'name = "Radiology"\nprefix = "CRIT"')
    assert "services[0].prefix: 'CRIT' is kept for critical results" in error(text)


def test_critical_command_reader():
    assert parse("critical").verb == Verb.CRITICAL and parse("critical").user is None
    typed = parse("critical rad <@U1|ann> MRN 1: PE: large, saddle")
    assert (typed.service, typed.user, typed.patient, typed.question) == (
        "rad",
        "U1",
        "MRN 1",
        "PE: large, saddle",
    )
    bare = parse("critical <@U1> MRN 1: PE")
    assert (bare.service, bare.user) == (None, "U1")
    for wrong in (
        "critical rad U1 MRN 1: PE",
        "critical <@U1> MRN 1 PE",
        "critical <@U1> : PE",
        "critical <@U1> MRN:",
    ):
        assert "Name the clinician, the patient and the finding" in (parse(wrong).error or "")
    assert parse("ack CRIT-12").ref == "CRIT-12"


def test_the_runtime_schedules_the_critical_sweep_at_the_shortest_period():
    from unittest.mock import MagicMock

    from bot.runtime import build_scheduler

    services = MagicMock()
    services.catalogue = parse_catalogue(
        'sweep_interval = "1m"\n' + SERVICE + '[services.critical]\nrenotify_every = "20s"\n'
    )
    services.catalogue = services.catalogue.model_copy(
        update={"digest": services.catalogue.digest.model_copy(update={"enabled": False})}
    )
    services.clock.now.return_value = None
    scheduler = build_scheduler(services)
    job = scheduler.get_job("critical-sweep")
    assert job is not None and job.trigger.interval == timedelta(seconds=20)


def test_who_is_still_reminded_after_forwarding():
    from bot.flows.critical import active_recipients  # noqa: PLC0415
    from storage.models_critical import CriticalResult  # noqa: PLC0415

    def reached(*steps: tuple[str, str, str | None]) -> list[str]:
        entries = [{"user": u, "via": via, "by": by} for u, via, by in steps]
        return active_recipients(CriticalResult(recipients=entries))

    assert reached(("UA", "sent", None)) == ["UA"]
    assert reached(("UA", "sent", None), ("UB", "forwarded", "UA")) == ["UB"]
    back = reached(("UA", "sent", None), ("UB", "forwarded", "UA"), ("UA", "forwarded", "UB"))
    assert back == ["UA"]
    assert reached(("UA", "sent", None), ("US", "escalated", None)) == ["UA", "US"]
