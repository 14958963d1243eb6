"""The building blocks of the catalogue's schema: validated field types (durations, Slack
ids, time zones), `AtKey` for a problem found below the field that detected it, and the
urgency policies with their built-in defaults and per-service overrides."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

from bot.domain.durations import format_duration, parse_duration
from bot.domain.hours import WorkingHours, parse_timezone
from bot.domain.vocabulary import URGENCIES, Urgency

_CHANNEL_RE = re.compile(r"[CG][A-Z0-9]+")
_USER_RE = re.compile(r"[UW][A-Z0-9]+")
_STAT_HOURS = "stat clocks always run; remove hours"
_ALWAYS = "always"


class AtKey(ValueError):
    """A validation problem located below the field or model that detected it."""

    def __init__(self, where: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.where = where


# ---------------------------------------------------------------------- field types
def _to_duration(value: object) -> object:
    # bool is an int subclass; `true` is never a sensible number of seconds.
    if isinstance(value, bool):
        raise ValueError("must be a duration such as '15m' or a number of seconds")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{value} seconds is not a duration; it must be longer than zero")
        return timedelta(seconds=value)
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError("a duration must be longer than zero")
        return value
    raise ValueError("must be a duration such as '15m' or a number of seconds")


def pattern(regex: re.Pattern[str], what: str) -> BeforeValidator:
    """A validator refusing a string that does not fully match `regex` ("... is not <what>")."""

    def check(value: object) -> object:
        if isinstance(value, str) and not regex.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value  # non-strings fall through to pydantic's own type error

    return BeforeValidator(check)


def _timezone_name(value: object) -> object:
    if isinstance(value, str):
        parse_timezone(value)
        return value.strip()
    return value


Duration = Annotated[timedelta, BeforeValidator(_to_duration)]
ChannelId = Annotated[str, pattern(_CHANNEL_RE, "a Slack channel id (like C0123ABC)")]
UserId = Annotated[str, pattern(_USER_RE, "a Slack user id (like U0123ABC)")]
TimeZoneName = Annotated[str, BeforeValidator(_timezone_name)]
NonEmpty = Annotated[str, Field(min_length=1)]


# ---------------------------------------------------------------------- urgency
class UrgencyPolicy(BaseModel):
    """The clocks for one urgency: when to acknowledge and answer, how to nudge.

    `hours` None means the clock always runs; otherwise only working time counts.
    `timezone` is the zone `hours` is read in (it matters only with hours).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    acknowledge_within: Duration
    answer_within: Duration
    nudge_every: Duration
    escalate_after: Annotated[StrictInt, Field(ge=1)]
    hours: WorkingHours | None = None
    timezone: TimeZoneName = "UTC"

    @model_validator(mode="before")
    @classmethod
    def _read_hours(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        hours, zone = data.get("hours"), data.get("timezone")
        if isinstance(hours, WorkingHours):
            if zone is None:
                data["timezone"] = hours.timezone
            elif zone != hours.timezone:
                raise AtKey(("timezone",), f"does not match the hours' zone {hours.timezone!r}")
        elif isinstance(hours, str):
            zone_name = zone if isinstance(zone, str) else "UTC"
            try:
                parse_timezone(zone_name)
            except ValueError as exc:
                raise AtKey(("timezone",), str(exc)) from None
            try:
                data["hours"] = _read_working_hours(hours, zone_name)
            except ValueError as exc:
                raise AtKey(("hours",), str(exc)) from None
        return data


class UrgencyOverride(BaseModel):
    """A service's changes to one global urgency policy; unset keys keep the global value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    acknowledge_within: Duration | None = None
    answer_within: Duration | None = None
    nudge_every: Duration | None = None
    escalate_after: Annotated[StrictInt, Field(ge=1)] | None = None
    hours: str | None = None
    timezone: TimeZoneName | None = None

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, value: str | None) -> str | None:
        if value is not None:
            _read_working_hours(value, "UTC")  # syntax only; the zone is known at merge
        return value


def _read_working_hours(spec: str, zone: str) -> WorkingHours | None:
    if spec.strip().lower() == _ALWAYS:
        return None
    return WorkingHours.parse(spec, zone)


def merge_override(base: UrgencyPolicy, override: UrgencyOverride) -> UrgencyPolicy:
    """The global policy with a service's override applied (hours re-read in its zone)."""
    given = override.model_fields_set
    update: dict[str, Any] = {
        name: getattr(override, name)
        for name in ("acknowledge_within", "answer_within", "nudge_every", "escalate_after")
        if name in given and getattr(override, name) is not None
    }
    if "hours" in given or "timezone" in given:
        zone = override.timezone or base.timezone
        spec = override.hours if override.hours is not None else base.hours
        if isinstance(spec, WorkingHours):
            spec = str(spec)  # same weekly pattern, read in the service's zone
        update["hours"] = None if spec is None else _read_working_hours(spec, zone)
        update["timezone"] = zone
    return base.model_copy(update=update) if update else base


def check_clocks(policy: UrgencyPolicy) -> None:
    """Refuse a policy whose acknowledgement comes later than its answer."""
    if policy.acknowledge_within > policy.answer_within:
        # An answer implies an acknowledgement, so this is always a typo (1m for 1h...).
        # Reported on the whole table: either key may be the one that is wrong.
        raise AtKey(
            (),
            f"acknowledge_within ({format_duration(policy.acknowledge_within)}) is longer than "
            f"answer_within ({format_duration(policy.answer_within)})",
        )


_DEFAULT_POLICIES: dict[str, dict[str, Any]] = {
    Urgency.STAT: {
        "acknowledge_within": timedelta(minutes=15),
        "answer_within": timedelta(hours=1),
        "nudge_every": timedelta(minutes=10),
        "escalate_after": 2,
    },
    Urgency.URGENT: {
        "acknowledge_within": timedelta(hours=1),
        "answer_within": timedelta(hours=4),
        "nudge_every": timedelta(minutes=30),
        "escalate_after": 2,
    },
    Urgency.ROUTINE: {
        "acknowledge_within": timedelta(hours=4),
        "answer_within": timedelta(hours=24),
        "nudge_every": timedelta(hours=2),
        "escalate_after": 2,
    },
}


def default_urgency() -> dict[str, UrgencyPolicy]:
    """The built-in policy of every urgency."""
    return {name: UrgencyPolicy(**values) for name, values in _DEFAULT_POLICIES.items()}


def check_urgency_table(value: object, *, fill_defaults: bool) -> object:
    """Refuse unknown urgencies and hours on stat; with `fill_defaults`, complete every
    urgency from the built-in defaults."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        return value  # pydantic reports "must be a table"
    for name, table in value.items():
        if name not in URGENCIES:
            raise AtKey((name,), f"unknown urgency; use {', '.join(URGENCIES)}")
        if name == Urgency.STAT and isinstance(table, Mapping) and "hours" in table:
            raise AtKey((name, "hours"), _STAT_HOURS)
    if not fill_defaults:
        return value
    merged: dict[str, Any] = {}
    for name in URGENCIES:
        table = value.get(name, {})
        # A partial table keeps the defaults for the keys it leaves out.
        merged[name] = {**_DEFAULT_POLICIES[name], **table} if isinstance(table, Mapping) else table
    return merged


# ---------------------------------------------------------------------- critical results
class CriticalSettings(BaseModel):
    """The closed loop of critical results (`[critical]`): how fast a result must be
    acknowledged (the target reports measure), how often the recipients are re-notified,
    after how many re-notifications `escalate_to` is reached too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    acknowledge_within: Duration = timedelta(minutes=30)
    renotify_every: Duration = timedelta(minutes=5)
    escalate_after: Annotated[StrictInt, Field(ge=1)] = 2
    escalate_to: list[UserId] = []


class CriticalOverride(BaseModel):
    """A service's changes to `[critical]` (`[services.critical]`); unset keys keep it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    acknowledge_within: Duration | None = None
    renotify_every: Duration | None = None
    escalate_after: Annotated[StrictInt, Field(ge=1)] | None = None
    escalate_to: list[UserId] | None = None


def merge_critical(base: CriticalSettings, override: CriticalOverride | None) -> CriticalSettings:
    """The global `[critical]` settings with a service's override applied."""
    if override is None:
        return base
    update = {
        name: getattr(override, name)
        for name in override.model_fields_set
        if getattr(override, name) is not None
    }
    return base.model_copy(update=update) if update else base


# ---------------------------------------------------------------------- follow-ups
class FollowupSettings(BaseModel):
    """What is owed to patients (`[followups]`): how long after a linked consult's answer a
    follow-up is due when no time was given, how often an overdue one nudges its owner, and
    after how many nudges `escalate_to` is told too (empty: the owner alone keeps being
    nudged)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    due_within: Duration = timedelta(days=1)
    nudge_every: Duration = timedelta(hours=4)
    escalate_after: Annotated[StrictInt, Field(ge=1)] = 2
    escalate_to: list[UserId] = []
