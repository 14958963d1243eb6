"""The service catalogue: which services take consults, who answers, and the SLA clocks.

The catalogue is a TOML file (start from ``consult.example.toml``) validated with pydantic.
Every problem is reported as one `CatalogueError` line naming the file, the dotted key path
and what is wrong, e.g. ``consult.toml: services[1].channel: field required``, so an
operator can fix the file without reading a traceback.

Rules worth knowing when writing a catalogue:

* Unknown keys are refused everywhere (typos such as ``anwser_within`` are caught).
* Durations are strings understood by `bot.domain.durations.parse_duration` ("15m", "1h30m",
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

  "none" means the clock runs around the clock; set ``hours`` (grammar in `bot.domain.hours`)
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

import re
from collections.abc import Mapping
from datetime import time as dtime
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from bot.domain.catalogue_schema import (
    AtKey,
    ChannelId,
    CriticalOverride,
    CriticalSettings,
    Duration,
    FollowupSettings,
    NonEmpty,
    TimeZoneName,
    UrgencyOverride,
    UrgencyPolicy,
    UserId,
    check_clocks,
    check_urgency_table,
    default_urgency,
    merge_critical,
    merge_override,
    pattern,
)
from bot.domain.commands import RESERVED_WORDS
from bot.domain.vocabulary import CRITICAL_PREFIX, FOLLOWUP_PREFIX

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SERVICE_KEY_RE = re.compile(r"[a-z][a-z0-9_-]*")
_FIELD_KEY_RE = re.compile(r"[a-z][a-z0-9_]*")
_PREFIX_RE = re.compile(r"[A-Z]{1,6}")
_ALIAS_RE = re.compile(r"[a-z0-9][a-z0-9_-]*", re.IGNORECASE)
_HHMM_RE = re.compile(r"(\d{1,2}):(\d{2})")


# ---------------------------------------------------------------------- services
class IntakeField(BaseModel):
    """One extra question a service asks on the consult form (e.g. accession number)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[str, pattern(_FIELD_KEY_RE, "a field key (lower-case letters, digits, _)")]
    label: NonEmpty
    required: StrictBool = False
    hint: str | None = None
    # Slack's plain-text input refuses a max_length above 3000.
    max_length: Annotated[StrictInt, Field(ge=1, le=3000)] = 200


class Service(BaseModel):
    """A consult-taking service: where its consults go and whom the ladder nudges."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[
        str, pattern(_SERVICE_KEY_RE, "a service key (lower-case letters, digits, - or _)")
    ]
    name: NonEmpty
    prefix: Annotated[str, pattern(_PREFIX_RE, "a prefix (1 to 6 capital letters, e.g. RAD)")]
    aliases: list[Annotated[str, pattern(_ALIAS_RE, "an alias (one word: letters, digits)")]] = []
    channel: ChannelId
    # A schedule (ICS file relative to the catalogue, or an https:// URL) names who is on
    # call when; the fixed `on_call` is then the fallback for its gaps (and may be left out).
    on_call: UserId | None = None
    schedule: NonEmpty | None = None
    backup_schedule: NonEmpty | None = None
    backup: UserId | None = None
    leads: list[UserId] = []
    intake: list[IntakeField] = []
    patient_pattern: str | None = None
    patient_hint: str | None = None
    urgency: dict[str, UrgencyOverride] = {}
    critical: CriticalOverride | None = None

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
        return check_urgency_table(value, fill_defaults=False)

    @model_validator(mode="after")
    def _someone_on_call(self) -> Service:
        if self.on_call is None and self.schedule is None:
            raise AtKey(("on_call",), "field required (or a schedule)")
        if self.on_call is None and not (self.backup or self.backup_schedule or self.leads):
            # During a gap in the schedule consults must go to someone.
            raise AtKey(("schedule",), "without on_call, name a backup, backup_schedule or leads")
        return self

    @model_validator(mode="after")
    def _unique_intake(self) -> Service:
        seen: set[str] = set()
        for index, field in enumerate(self.intake):
            if field.key in seen:
                raise AtKey(("intake", index, "key"), f"duplicate intake key {field.key!r}")
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
    urgency: dict[str, UrgencyPolicy] = Field(default_factory=default_urgency)
    services: Annotated[list[Service], Field(min_length=1)]
    admins: list[UserId] = []
    storm_threshold: Annotated[StrictInt, Field(ge=1)] = 5
    post_interval: Duration = timedelta(seconds=1)
    retention: Duration | None = None
    digest: DigestSettings = DigestSettings()
    critical: CriticalSettings = CriticalSettings()
    followups: FollowupSettings = FollowupSettings()
    # Schedules: names in calendar events → Slack ids, and the schedule jobs' timings.
    people: dict[str, UserId] = {}
    schedule_refresh: Duration = timedelta(minutes=15)
    handoff_reminder: Duration = timedelta(minutes=15)
    coverage_warning: Duration = timedelta(hours=12)

    @field_validator("urgency", mode="before")
    @classmethod
    def _fill_urgency(cls, value: object) -> object:
        return check_urgency_table(value, fill_defaults=True)

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
                check_clocks(policy)
            except AtKey as exc:
                raise AtKey(("urgency", name, *exc.where), str(exc)) from None
        owners: dict[str, tuple[int, str]] = {}  # lower-case name -> (index, service key)
        for index, service in enumerate(self.services):
            where: tuple[str | int, ...] = ("services", index)
            if service.prefix == CRITICAL_PREFIX:
                raise AtKey((*where, "prefix"), f"{CRITICAL_PREFIX!r} is kept for critical results")
            if service.prefix == FOLLOWUP_PREFIX:
                raise AtKey((*where, "prefix"), f"{FOLLOWUP_PREFIX!r} is kept for follow-ups")
            for loc, name in _service_names(service):
                lowered = name.lower()
                if lowered in RESERVED_WORDS:
                    raise AtKey((*where, *loc), f"{name!r} is a reserved /consult word")
                owner = owners.setdefault(lowered, (index, service.key))
                if owner[0] != index:
                    problem = (
                        f"duplicate service key {name!r} (also services[{owner[0]}])"
                        if name == owner[1] and loc == ("key",)
                        else f"{name!r} is already used by service {owner[1]!r}"
                    )
                    raise AtKey((*where, *loc), problem)
            for urgency, override in service.urgency.items():
                try:
                    check_clocks(merge_override(self.urgency[urgency], override))
                except AtKey as exc:
                    raise AtKey((*where, "urgency", urgency, *exc.where), str(exc)) from None
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
        return base if override is None else merge_override(base, override)

    def critical_for(self, service: Service | str) -> CriticalSettings:
        """The critical-result settings of `service` (`[critical]` with its override)."""
        found = service if isinstance(service, Service) else self.service_by_key(service)
        return merge_critical(self.critical, found.critical)

    def scheduled(self) -> list[Service]:
        """The services whose on-call comes from a schedule."""
        return [s for s in self.services if s.schedule]

    def all_aliases(self) -> dict[str, str]:
        """Every lower-case name `service()` accepts (keys, aliases, prefixes) → service key."""
        return {name: s.key for s in self.services for name in s.names()}


def _service_names(service: Service) -> list[tuple[tuple[str | int, ...], str]]:
    names: list[tuple[tuple[str | int, ...], str]] = [(("key",), service.key)]
    names += [(("aliases", i), alias) for i, alias in enumerate(service.aliases)]
    names.append((("prefix",), service.prefix))
    return names
