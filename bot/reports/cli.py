"""`python -m bot report [--since 30d] [--service KEY] [--format json|csv|table]`: the
report for consults created over a recent period, printed for the quality office."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy.orm import Session

from bot.domain.catalogue import Catalogue
from bot.domain.catalogue_load import load_catalogue
from bot.domain.clock import SystemClock
from bot.domain.durations import parse_duration
from bot.reports.compute import compute_report
from bot.reports.export import report_csv, report_json, report_table
from bot.reports.hop_days import fill_both
from bot.reports.model import Report
from bot.settings import Settings
from storage.db import create_db_engine, migrate, session_factory

MAX_PERIOD = timedelta(days=100 * 366)
FORMATS = {"json": report_json, "csv": report_csv, "table": report_table}


def parse_period(text: str) -> timedelta:
    """A reporting period such as "7d", "30d" or "90d" (any `bot.domain.durations` duration)."""
    period = parse_duration(text)  # its ValueError messages are written for users
    if period > MAX_PERIOD:
        raise ValueError(f"{text.strip()!r} is too long a period; at most {MAX_PERIOD.days}d")
    return period


def service_keys(catalogue: Catalogue, service: str | None) -> list[str] | None:
    """The one service asked for (None: all); ValueError names the valid keys."""
    if service is None:
        return None
    found = catalogue.service(service)
    if found is None:
        valid = ", ".join(s.key for s in catalogue.services)
        raise ValueError(f"unknown service {service!r}; valid keys: {valid}")
    return [found.key]


@contextmanager
def database(settings: Settings) -> Iterator[Session]:
    """A session on the configured database (migrated first), closed with its engine."""
    engine = create_db_engine(settings.database_url)
    try:
        migrate(engine)
        with session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def read_scope(
    settings: Settings, since: str, service: str | None
) -> tuple[Catalogue, timedelta, list[str] | None] | None:
    """The catalogue, the period and the service keys (None: all) a command asks for;
    None after printing what is wrong with `--since` or `--service` on stderr."""
    try:
        period = parse_period(since)
    except ValueError as exc:
        print(f"--since: {exc}", file=sys.stderr)
        return None
    catalogue = load_catalogue(settings.consult_config)
    try:
        return catalogue, period, service_keys(catalogue, service)
    except ValueError as exc:
        print(f"--service: {exc}", file=sys.stderr)
        return None


def _report(
    settings: Settings,
    catalogue: Catalogue,
    period: timedelta,
    keys: list[str] | None,
    fill: bool = False,
) -> Report:
    """The report up to now, from the configured database (migrated first); with `fill`,
    the missing settled days and hop days stored first (`bot.reports.hop_days.fill_both`,
    PostgreSQL only)."""
    now = SystemClock().now().replace(microsecond=0)
    with database(settings) as session:
        if fill:
            sessions = session_factory(session.get_bind())
            written, hop_pairs = fill_both(sessions, catalogue)
            print(f"report days: {written} rows stored, hop days: {hop_pairs}", file=sys.stderr)
        return compute_report(
            session, catalogue=catalogue, since=now - period, until=now, now=now, services=keys
        )


def report_cli(
    settings: Settings, *, since: str, service: str | None, fmt: str, fill: bool = False
) -> int:
    """`python -m bot report [--since 30d] [--service KEY] [--format json|csv|table]
    [--fill-days]`.

    Prints the report for consults created in the last `since`, to now; returns the exit
    code (2 for a bad period or an unknown service, with the reason on stderr).
    """
    if fmt not in FORMATS:
        print(f"--format: {fmt!r} is not one of json, csv, table", file=sys.stderr)
        return 2
    scope = read_scope(settings, since, service)
    if scope is None:
        return 2
    catalogue, period, keys = scope
    sys.stdout.write(FORMATS[fmt](_report(settings, catalogue, period, keys, fill)))
    return 0
