"""The service catalogue: which services take consults, who answers, and the SLA clocks.

The catalogue is a TOML file (start from ``consult.example.toml``) validated with pydantic.
Every problem is reported as one `CatalogueError` line naming the file, the dotted key path
and what is wrong, e.g. ``consult.toml: services[1].channel: field required``, so an
operator can fix the file without reading a traceback.

Rules worth knowing when writing a catalogue:

* Unknown keys are refused everywhere (typos such as ``anwser_within`` are caught).
* Durations are strings understood by `bot.durations.parse_duration` ("15m", "1h30m",
  "PT15M") or a whole number of seconds; all must be longer than zero.
* ``[urgency.<name>]`` exists for stat, urgent and routine only. A missing urgency takes
  the built-in defaults below, and a partial table takes its missing keys from them:

  ========  ===========  ========  =====  ==============  =====
  urgency   acknowledge  answer    nudge  escalate_after  hours
  ========  ===========  ========  =====  ==============  =====
  stat      15m          1h        10m    2               none
  urgent    1h           4h        30m    2               none
  routine   4h           24h       2h     2               none
  ========  ===========  ========  =====  ==============  =====

  "none" means the clock runs around the clock; set ``hours`` (grammar in `bot.hours`)
  and ``timezone`` to count working time only. Stat clocks always run: ``hours`` on stat
  is an error.
* A service may override any urgency key under ``[services.urgency.<name>]``. An
  override of ``timezone`` alone re-reads the global hours in that zone, and
  ``hours = "always"`` turns working hours off for that service.
* Service keys, aliases and prefixes are all names `Catalogue.service` accepts, so they
  must be unique across services (case-insensitive) and must not be /consult command
  words or urgency names.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
from collections.abc import Mapping
from datetime import time as dtime
from datetime import timedelta
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.domain.durations import format_duration, parse_duration
from bot.domain.hours import WorkingHours, parse_timezone
from bot.domain.vocabulary import URGENCIES

__all__ = [
    "RESERVED_WORDS",
    "Catalogue",
    "CatalogueError",
    "DigestSettings",
    "IntakeField",
    "Service",
    "UrgencyOverride",
    "UrgencyPolicy",
    "load_catalogue",
    "parse_catalogue",
]


# Names a service cannot take: `/consult <word>` must keep meaning the command, and the
# quick form `<service> [urgency] ...` would be confusing with a service called "stat".
RESERVED_WORDS = frozenset(
    {
        "help", "list", "ack", "answer", "close", "reopen", "cancel", "patient", "oncall",
        "handoff", "needinfo", "stats", "snooze", *URGENCIES,
    }
)  # fmt: skip

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CHANNEL_RE = re.compile(r"[CG][A-Z0-9]+")
_USER_RE = re.compile(r"[UW][A-Z0-9]+")
_SERVICE_KEY_RE = re.compile(r"[a-z][a-z0-9_-]*")
_FIELD_KEY_RE = re.compile(r"[a-z][a-z0-9_]*")
_PREFIX_RE = re.compile(r"[A-Z]{1,6}")
_ALIAS_RE = re.compile(r"[a-z0-9][a-z0-9_-]*", re.IGNORECASE)
_HHMM_RE = re.compile(r"(\d{1,2}):(\d{2})")
_STAT_HOURS = "stat clocks always run; remove hours"
_ALWAYS = "always"


class CatalogueError(Exception):
    """A catalogue problem; ``str()`` is one line: ``<file>: <key path>: <problem>``.

    `problems` lists every (key, problem) pydantic found; the message shows the first.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        key: str | None,
        problem: str,
        problems: list[tuple[str | None, str]] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.key = key.replace("\n", "\\n") if key else key
        # Keep the message on one line whatever the source (tomllib, pydantic, regex errors).
        self.problem = " ".join(str(problem).split())
        self.problems = problems or [(key, self.problem)]
        super().__init__(self.path, key, self.problem)

    def __str__(self) -> str:
        parts = [self.path, self.key, self.problem] if self.key else [self.path, self.problem]
        return ": ".join(parts)


class _At(ValueError):
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


def _pattern(regex: re.Pattern[str], what: str) -> BeforeValidator:
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
ChannelId = Annotated[str, _pattern(_CHANNEL_RE, "a Slack channel id (like C0123ABC)")]
UserId = Annotated[str, _pattern(_USER_RE, "a Slack user id (like U0123ABC)")]
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
                raise _At(("timezone",), f"does not match the hours' zone {hours.timezone!r}")
        elif isinstance(hours, str):
            zone_name = zone if isinstance(zone, str) else "UTC"
            try:
                parse_timezone(zone_name)
            except ValueError as exc:
                raise _At(("timezone",), str(exc)) from None
            try:
                data["hours"] = _read_working_hours(hours, zone_name)
            except ValueError as exc:
                raise _At(("hours",), str(exc)) from None
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


def _merge(base: UrgencyPolicy, override: UrgencyOverride) -> UrgencyPolicy:
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


def _check_clocks(policy: UrgencyPolicy) -> None:
    if policy.acknowledge_within > policy.answer_within:
        # An answer implies an acknowledgement, so this is always a typo (1m for 1h...).
        # Reported on the whole table: either key may be the one that is wrong.
        raise _At(
            (),
            f"acknowledge_within ({format_duration(policy.acknowledge_within)}) is longer than "
            f"answer_within ({format_duration(policy.answer_within)})",
        )


_DEFAULT_POLICIES: dict[str, dict[str, Any]] = {
    "stat": {
        "acknowledge_within": timedelta(minutes=15),
        "answer_within": timedelta(hours=1),
        "nudge_every": timedelta(minutes=10),
        "escalate_after": 2,
    },
    "urgent": {
        "acknowledge_within": timedelta(hours=1),
        "answer_within": timedelta(hours=4),
        "nudge_every": timedelta(minutes=30),
        "escalate_after": 2,
    },
    "routine": {
        "acknowledge_within": timedelta(hours=4),
        "answer_within": timedelta(hours=24),
        "nudge_every": timedelta(hours=2),
        "escalate_after": 2,
    },
}


def _default_urgency() -> dict[str, UrgencyPolicy]:
    return {name: UrgencyPolicy(**values) for name, values in _DEFAULT_POLICIES.items()}


def _check_urgency_table(value: object, *, fill_defaults: bool) -> object:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        return value  # pydantic reports "must be a table"
    for name, table in value.items():
        if name not in URGENCIES:
            raise _At((name,), f"unknown urgency; use {', '.join(URGENCIES)}")
        if name == "stat" and isinstance(table, Mapping) and "hours" in table:
            raise _At((name, "hours"), _STAT_HOURS)
    if not fill_defaults:
        return value
    merged: dict[str, Any] = {}
    for name in URGENCIES:
        table = value.get(name, {})
        # A partial table keeps the defaults for the keys it leaves out.
        merged[name] = {**_DEFAULT_POLICIES[name], **table} if isinstance(table, Mapping) else table
    return merged


# ---------------------------------------------------------------------- services
class IntakeField(BaseModel):
    """One extra question a service asks on the consult form (e.g. accession number)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[str, _pattern(_FIELD_KEY_RE, "a field key (lower-case letters, digits, _)")]
    label: NonEmpty
    required: StrictBool = False
    hint: str | None = None
    # Slack's plain-text input refuses a max_length above 3000.
    max_length: Annotated[StrictInt, Field(ge=1, le=3000)] = 200


class Service(BaseModel):
    """A consult-taking service: where its consults go and whom the ladder nudges."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[
        str, _pattern(_SERVICE_KEY_RE, "a service key (lower-case letters, digits, - or _)")
    ]
    name: NonEmpty
    prefix: Annotated[str, _pattern(_PREFIX_RE, "a prefix (1 to 6 capital letters, e.g. RAD)")]
    aliases: list[Annotated[str, _pattern(_ALIAS_RE, "an alias (one word: letters, digits)")]] = []
    channel: ChannelId
    on_call: UserId
    backup: UserId | None = None
    leads: list[UserId] = []
    intake: list[IntakeField] = []
    patient_pattern: str | None = None
    patient_hint: str | None = None
    urgency: dict[str, UrgencyOverride] = {}

    @model_validator(mode="before")
    @classmethod
    def _default_prefix(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "prefix" not in data and isinstance(data.get("key"), str):
            # Consult references read "RAD-42": the key's first letters make a fine default.
            letters = "".join(ch for ch in data["key"] if ch.isalpha())[:3].upper()
            if letters:
                data = {**data, "prefix": letters}
        return data

    @field_validator("patient_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("urgency", mode="before")
    @classmethod
    def _known_urgencies(cls, value: object) -> object:
        return _check_urgency_table(value, fill_defaults=False)

    @model_validator(mode="after")
    def _unique_intake(self) -> Service:
        seen: set[str] = set()
        for index, field in enumerate(self.intake):
            if field.key in seen:
                raise _At(("intake", index, "key"), f"duplicate intake key {field.key!r}")
            seen.add(field.key)
        return self

    def names(self) -> list[str]:
        """Every lower-case name that finds this service: key, aliases, prefix."""
        found: list[str] = []
        for name in (self.key, *self.aliases, self.prefix):
            if name.lower() not in found:
                found.append(name.lower())
        return found


# ---------------------------------------------------------------------- catalogue
class DigestSettings(BaseModel):
    """When the weekly digest goes to service leads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    day: str = "mon"
    time: str = "08:00"
    timezone: TimeZoneName = "UTC"
    enabled: StrictBool = True

    @field_validator("day", mode="before")
    @classmethod
    def _day(cls, value: object) -> object:
        if isinstance(value, str):
            day = value.strip().lower()[:3]
            if day not in _DAYS or value.strip().lower() not in (day, _full_day(day)):
                raise ValueError(f"{value!r} is not a day; use mon, tue, wed, thu, fri, sat, sun")
            return day
        return value

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: object) -> object:
        if isinstance(value, dtime):  # TOML local time: time = 08:00:00
            return f"{value.hour:02d}:{value.minute:02d}"
        if isinstance(value, str):
            match = _HHMM_RE.fullmatch(value.strip())
            if not match or int(match[1]) > 23 or int(match[2]) > 59:
                raise ValueError(f"{value!r} is not a time; use HH:MM, e.g. '08:00'")
            return f"{int(match[1]):02d}:{match[2]}"
        return value


def _full_day(day: str) -> str:
    return {
        "mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday",
        "fri": "friday", "sat": "saturday", "sun": "sunday",
    }[day]  # fmt: skip


class Catalogue(BaseModel):
    """The validated catalogue. Build with `load_catalogue` or `parse_catalogue`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sweep_interval: Duration = timedelta(minutes=1)
    urgency: dict[str, UrgencyPolicy] = Field(default_factory=_default_urgency)
    services: Annotated[list[Service], Field(min_length=1)]
    admins: list[UserId] = []
    storm_threshold: Annotated[StrictInt, Field(ge=1)] = 5
    post_interval: Duration = timedelta(seconds=1)
    retention: Duration | None = None
    digest: DigestSettings = DigestSettings()

    @field_validator("urgency", mode="before")
    @classmethod
    def _fill_urgency(cls, value: object) -> object:
        return _check_urgency_table(value, fill_defaults=True)

    @field_validator("retention")
    @classmethod
    def _sane_retention(cls, value: timedelta | None) -> timedelta | None:
        # Purging deletes data: "90m" for "90d" would wipe recent consults, so demand days.
        if value is not None and value < timedelta(days=1):
            raise ValueError("must be at least 1d (retention deletes closed consults)")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Catalogue:
        for name, policy in self.urgency.items():
            try:
                _check_clocks(policy)
            except _At as exc:
                raise _At(("urgency", name, *exc.where), str(exc)) from None
        owners: dict[str, tuple[int, str]] = {}  # lower-case name -> (index, service key)
        for index, service in enumerate(self.services):
            where: tuple[str | int, ...] = ("services", index)
            for loc, name in _service_names(service):
                lowered = name.lower()
                if lowered in RESERVED_WORDS:
                    raise _At((*where, *loc), f"{name!r} is a reserved /consult word")
                owner = owners.setdefault(lowered, (index, service.key))
                if owner[0] != index:
                    problem = (
                        f"duplicate service key {name!r} (also services[{owner[0]}])"
                        if name == owner[1] and loc == ("key",)
                        else f"{name!r} is already used by service {owner[1]!r}"
                    )
                    raise _At((*where, *loc), problem)
            for urgency, override in service.urgency.items():
                try:
                    _check_clocks(_merge(self.urgency[urgency], override))
                except _At as exc:
                    raise _At((*where, "urgency", urgency, *exc.where), str(exc)) from None
        return self

    # ------------------------------------------------------------------ lookups
    def service(self, key_or_alias: str) -> Service | None:
        """The service whose key, alias or prefix is `key_or_alias` (any case), or None."""
        wanted = (key_or_alias or "").strip().lower()
        if not wanted:
            return None
        for service in self.services:
            if wanted in service.names():
                return service
        return None

    def service_by_key(self, key: str) -> Service:
        """The service with exactly this key (as stored on consults); KeyError if unknown."""
        for service in self.services:
            if service.key == key:
                return service
        raise KeyError(key)

    def policy(self, service: Service | str, urgency: str) -> UrgencyPolicy:
        """The clocks for `urgency` at `service`: the global policy with its overrides.

        `service` may be a Service or any name `service()` accepts. KeyError for an
        unknown service or urgency.
        """
        found = service if isinstance(service, Service) else self.service(service)
        if found is None:
            raise KeyError(service)
        name = urgency.strip().lower()
        if name not in self.urgency:
            raise KeyError(urgency)
        override = found.urgency.get(name)
        base = self.urgency[name]
        return base if override is None else _merge(base, override)

    def all_aliases(self) -> dict[str, str]:
        """Every lower-case name `service()` accepts (keys, aliases, prefixes) → service key."""
        return {name: s.key for s in self.services for name in s.names()}


def _service_names(service: Service) -> list[tuple[tuple[str | int, ...], str]]:
    names: list[tuple[tuple[str | int, ...], str]] = [(("key",), service.key)]
    names += [(("aliases", i), alias) for i, alias in enumerate(service.aliases)]
    names.append((("prefix",), service.prefix))
    return names


# ---------------------------------------------------------------------- loading
def load_catalogue(path: str | os.PathLike[str]) -> Catalogue:
    """Read and validate the catalogue file at `path`; any problem → CatalogueError."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise CatalogueError(path, None, "file not found") from None
    except OSError as exc:
        raise CatalogueError(path, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogueError(path, None, f"not UTF-8 text (byte {exc.start})") from None
    return parse_catalogue(text, os.fspath(path))


def parse_catalogue(text: str, source: str = "<string>") -> Catalogue:
    """Validate catalogue TOML given as a string; `source` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        key, problem = _toml_location(str(exc), text)
        raise CatalogueError(source, key, problem) from None
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors(include_url=False)]
        key, problem = problems[0]
        raise CatalogueError(source, key, problem, problems) from None


_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def _toml_location(message: str, text: str) -> tuple[str | None, str]:
    """tomllib's "Invalid value (at line 2, column 5)" → ("line 2", "Invalid value …")."""
    match = _TOML_AT.search(message)
    if match:
        return f"line {match[1]}", f"{message[: match.start()]} (column {match[2]})"
    match = _TOML_END.search(message)
    if match:
        return (
            f"line {max(text.count(chr(10)) + 1, 1)}",
            f"{message[: match.start()]} at end of file",
        )
    return None, message


def _describe(error: Mapping[str, Any]) -> tuple[str | None, str]:
    loc = tuple(error.get("loc") or ())
    ctx = error.get("ctx") or {}
    kind = error.get("type", "")
    cause = ctx.get("error")
    if isinstance(cause, _At):
        loc = loc + cause.where
    key = _key_path(loc) or None
    if kind == "too_short" and loc == ("services",):
        return key, "at least one [[services]] table is required"
    if kind == "missing":
        return key, "field required"
    if kind == "extra_forbidden":
        return key, _unknown_key(loc)
    if kind in ("value_error", "assertion_error") and cause is not None:
        return key, str(cause)
    try:
        problem = _MESSAGES.get(kind, "").format(**ctx)
    except (KeyError, IndexError):
        problem = ""
    return key, problem or _lower_first(str(error.get("msg", "")))


_MESSAGES = {
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "bool_type": "must be true or false",
    "list_type": 'must be a list, e.g. ["a", "b"]',
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
}


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _unknown_key(loc: tuple[Any, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None or not loc:
        return "unknown key"
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class validating the table at `loc`, to suggest the key a typo meant."""
    current: Any = Catalogue
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is list and isinstance(part, int):
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(tp) if a is not type(None)]
            if len(options) != 1:
                return tp
            tp = options[0]
        else:
            return tp
