"""The services' on-call schedules as this process knows them: each calendar loaded from
its file or URL (the reader is injected), the last good one kept when a refresh fails,
attendee e-mails looked up in Slack once (the look-up is injected) and cached, and the
expanded shifts memoised around the moment asked about.

At start-up `load_all` turns a broken schedule into one `CatalogueError` line; later,
`refresh` keeps the last good calendar and returns what failed, for the leads."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from bot.domain.catalogue import Catalogue, Service
from bot.domain.catalogue_load import CatalogueError
from bot.domain.schedule import Calendar, ScheduleError, Shift, parse_calendar, shifts

ReadText = Callable[[str], str]
LookupEmail = Callable[[str], str | None]

# Shifts are expanded for [at - BEHIND, at + AHEAD] and reused while `at` stays well inside.
BEHIND = timedelta(days=2)
AHEAD = timedelta(days=16)
MARGIN = timedelta(days=1)
KINDS = ("schedule", "backup_schedule")


@dataclass(frozen=True)
class Problem:
    """A schedule that failed to load: which service, which source, why; `digest` tells
    one failure from another (so the leads hear of each once)."""

    service: Service
    source: str
    reason: str
    digest: str


def read_source(path_or_url: str) -> str:
    """The text of a schedule: an https:// URL (10 s timeout) or a file."""
    if path_or_url.startswith("https://"):
        from urllib.request import urlopen

        with urlopen(path_or_url, timeout=10) as answer:  # noqa: S310 (https only)
            return answer.read().decode("utf-8")
    with open(path_or_url, encoding="utf-8") as handle:
        return handle.read()


class ScheduleBook:
    """Every scheduled service's calendars, and the shifts asked of them."""

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        base_dir: str,
        clock_now: Callable[[], datetime],
        read: ReadText = read_source,
        lookup_email: LookupEmail | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.base_dir = base_dir
        self.now = clock_now
        self.read = read
        self.lookup_email = lookup_email
        self._calendars: dict[tuple[str, str], Calendar] = {}
        self._emails: dict[str, str | None] = {}
        self._memo: dict[tuple[str, str], tuple[datetime, datetime, list[Shift]]] = {}
        self._lock = threading.Lock()
        # Shift changes this process has acted on or found done (`bot.flows.shifts`).
        self.seen: set[str] = set()

    def source(self, service: Service, kind: str) -> str | None:
        """Where `service`'s schedule of `kind` is read from (a path or URL), or None."""
        given = getattr(service, kind)
        if not given or given.startswith("https://"):
            return given
        return os.path.join(self.base_dir, given)

    def sources(self) -> Iterator[tuple[int, Service, str, str]]:
        """(index in the catalogue, service, kind, path or URL) of every schedule."""
        for index, service in enumerate(self.catalogue.services):
            for kind in KINDS:
                source = self.source(service, kind)
                if source is not None:
                    yield index, service, kind, source

    def load_all(self, config_path: str) -> None:
        """Load every schedule; the first that fails → CatalogueError naming it."""
        for index, service, kind, source in self.sources():
            try:
                self._load(service, kind, source)
            except (OSError, ValueError) as exc:
                key = f"services[{index}].{kind}"
                raise CatalogueError(config_path, key, f"{shown(source)}: {_reason(exc)}") from None

    def refresh(self, *, forget_emails: bool = False) -> list[Problem]:
        """Reload every schedule; one that fails keeps its last good calendar."""
        if forget_emails:
            self._emails = {k: v for k, v in self._emails.items() if v is not None}
        problems = []
        for _, service, kind, source in self.sources():
            try:
                self._load(service, kind, source)
            except (OSError, ValueError) as exc:
                reason = _reason(exc)
                digest = hashlib.sha256(f"{source}\n{reason}".encode()).hexdigest()[:16]
                problems.append(Problem(service, shown(source), reason, digest))
        return problems

    def zone(self, service: Service) -> object:
        """The zone `service`'s calendar reads clock times in (UTC without a calendar)."""
        calendar = self._calendars.get((service.key, "schedule"))
        return calendar.zone if calendar else "UTC"

    def has(self, service: Service, kind: str = "schedule") -> bool:
        """Whether a calendar of `kind` is loaded for `service`."""
        return (service.key, kind) in self._calendars

    def shifts(self, service: Service, at: datetime, kind: str = "schedule") -> list[Shift]:
        """`service`'s shifts of `kind` from about two days before `at` to 16 days after."""
        calendar = self._calendars.get((service.key, kind))
        if calendar is None:
            return []
        memo = self._memo.get((service.key, kind))
        if memo and memo[0] <= at - MARGIN and at + AHEAD - MARGIN <= memo[1]:
            return memo[2]
        start, end = at - BEHIND, at + AHEAD
        found = shifts(
            calendar, start=start, end=end, people=self.catalogue.people, emails=self._known()
        )
        self._memo[(service.key, kind)] = (start, end, found)
        return found

    def _load(self, service: Service, kind: str, source: str) -> None:
        calendar = parse_calendar(self.read(source), now=self.now())
        self._resolve(calendar)
        with self._lock:
            self._calendars[(service.key, kind)] = calendar
            self._memo.pop((service.key, kind), None)

    def _resolve(self, calendar: Calendar) -> None:
        """Look up, once each, the attendee e-mails not yet known."""
        if self.lookup_email is None:
            return
        for email in sorted(calendar.emails() - set(self._emails)):
            try:
                self._emails[email] = self.lookup_email(email)
            except OSError:
                continue  # Slack unsure: unresolved for now, asked again at the next refresh

    def _known(self) -> dict[str, str]:
        return {email: user for email, user in self._emails.items() if user}


def shown(source: str) -> str:
    """A source as people may see it: a URL's path and query may be a secret (Google's
    "secret address in iCal format"), so only its host is shown."""
    if source.startswith("https://"):
        return f"https://{urlsplit(source).hostname or ''}/…"
    return source


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, ScheduleError):
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return " ".join(str(exc).split())[:200]
