"""bot.domain.durations: the compact and ISO 8601 spellings, and the messages for bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.domain.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d 2h", timedelta(days=1, hours=2)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("  15M  ", timedelta(minutes=15)),
        ("1 h 30 m", timedelta(hours=1, minutes=30)),
        ("PT15M", timedelta(minutes=15)),
        ("P1D", timedelta(days=1)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("PT45S", timedelta(seconds=45)),
        ("pt15m", timedelta(minutes=15)),
        ("P2W", timedelta(weeks=2)),
    ],
)
def test_parse_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["15x", "3y", "1.5h", "30m1h", "1h1h", "h", "PT", "P", "P1DT", "PT1D", "15 minutes", "+5m"],
)
def test_parse_rejects_unknown_forms_with_examples(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert message == f"{text.strip()!r} is not a duration; use e.g. 90s, 15m, 2h, 1d or PT15M"


def test_the_documented_message() -> None:
    with pytest.raises(ValueError, match=r"^'15x' is not a duration; use e\.g\. 90s, 15m"):
        parse_duration("15x")


@pytest.mark.parametrize("text", ["", "   "])
def test_parse_rejects_empty(text: str) -> None:
    with pytest.raises(ValueError, match="a duration is required"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0m", "0s", "PT0S", "0d 0h", "-15m", "-PT15M"])
def test_parse_rejects_zero_and_negative(text: str) -> None:
    with pytest.raises(ValueError, match="must be longer than zero"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["P1M", "P1Y", "P1Y2M3D"])
def test_parse_rejects_years_and_months(text: str) -> None:
    with pytest.raises(ValueError, match="years and months have no fixed length"):
        parse_duration(text)


def test_parse_rejects_absurd_lengths() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("99999999999999d")
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("9" * 500 + "s")


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=15), "15m"),
        (timedelta(hours=1, minutes=30), "1h 30m"),
        (timedelta(days=2, hours=4), "2d 4h"),
        (timedelta(days=1, seconds=5), "1d 5s"),
        (timedelta(0), "0s"),
        (timedelta(milliseconds=400), "0s"),
        (timedelta(seconds=59, milliseconds=600), "1m"),
        (-timedelta(minutes=15), "-15m"),
    ],
)
def test_format(td: timedelta, expected: str) -> None:
    assert format_duration(td) == expected


@pytest.mark.parametrize("text", ["90s", "1h30m", "2d 4h", "P1DT2H", "3w", "1d 23h 59m 59s"])
def test_format_parses_back(text: str) -> None:
    td = parse_duration(text)
    assert parse_duration(format_duration(td)) == td
