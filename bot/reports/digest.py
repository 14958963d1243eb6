"""The weekly digest: when it is due (the catalogue's `[digest]` day, time and time zone),
which week it covers, and queueing each service lead's digest DM and chart through the
outbox, exactly once per week (dedupe keys per service, ISO week and lead). The DM's Block
Kit is `bot.slack.render.digest`; the chart is `bot.reports.chart`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue import Catalogue, Service
from bot.domain.clock import Clock
from bot.domain.vocabulary import Template
from bot.flows.notify import Notify
from bot.flows.outbox import Outbox
from bot.reports.compute import compute_report
from bot.reports.model import ServiceReport, as_utc, iso_z
from bot.reports.queries import overdue_refs
from bot.slack.render.figures import MAX_REFS
from storage.models import OutboxMessage

# The chart upload's template name: delivery draws it (`bot.reports.chart`), no renderer.
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class DigestWeek:
    """The week a digest covers: the 7 calendar days before the day it is sent, in the
    digest's time zone (`since`/`until` in UTC), named by the ISO week it is sent in."""

    since: datetime
    until: datetime
    first_day: str  # "2026-10-24", local
    last_day: str  # "2026-10-30", local
    iso_week: str  # "2026-W44", of the sending day


def digest_week(catalogue: Catalogue, now: datetime) -> DigestWeek:
    """The digest week for a digest sent at `now` (midnight to midnight, local time)."""
    tz = ZoneInfo(catalogue.digest.timezone or "UTC")
    today = as_utc(now).astimezone(tz).date()
    first = today - timedelta(days=7)
    year, week, _ = today.isocalendar()
    return DigestWeek(
        since=datetime.combine(first, time(0), tzinfo=tz).astimezone(UTC),
        until=datetime.combine(today, time(0), tzinfo=tz).astimezone(UTC),
        first_day=first.isoformat(),
        last_day=(today - timedelta(days=1)).isoformat(),
        iso_week=f"{year}-W{week:02d}",
    )


def last_digest_time(catalogue: Catalogue, now: datetime) -> datetime | None:
    """The most recent scheduled digest time at or before `now` (aware, UTC), or None when
    the digest is off.

    The schedule is the catalogue's `[digest]` day, "HH:MM" time and time zone, read as the
    scheduler's cron trigger reads them: a wall-clock time skipped by a DST change falls one
    hour later (at the old offset), and one that happens twice is scheduled twice (the same
    day, so the same digest week: the second run is a no-op).
    """
    digest = catalogue.digest
    if not digest.enabled:
        return None
    tz = ZoneInfo(digest.timezone or "UTC")
    hour, minute = (int(x) for x in digest.time.split(":"))
    now = as_utc(now)
    today = now.astimezone(tz).date()
    day = today - timedelta(days=(today.weekday() - _WEEKDAYS.index(digest.day)) % 7)

    def scheduled(on: date) -> list[datetime]:
        first, second = (
            datetime.combine(on, time(hour, minute, fold=fold), tzinfo=tz).astimezone(UTC)
            for fold in (0, 1)
        )
        return [first, second] if second > first else [first]  # second < first: a DST gap

    due = [when for when in scheduled(day) if when <= now]
    return due[-1] if due else scheduled(day - timedelta(days=7))[-1]


def _digest_key(service: str, iso_week: str, lead: str) -> str:
    return f"digest:{service}:{iso_week}:{lead}"


def digest_figures(entry: ServiceReport) -> dict[str, Any]:
    """A service's week as the digest's params carry it (what `render_digest` shows)."""
    f = entry.figures
    return {
        "consults": f.consults,
        "answered": f.answered,
        "acknowledged": f.acknowledged,
        "escalated": f.escalated,
        "tta_median": f.time_to_acknowledge.median,
        "ttans_median": f.time_to_answer.median,
        "ttans_p90": f.time_to_answer.p90,
        "within_sla": f.within_sla,
        "ack_within_sla": f.ack_within_sla,
        "waiting_total": f.waiting_on_requester.total,
        "helpful_share": f.feedback.helpful_share,
    }


def _digest_params(
    week: DigestWeek,
    this: ServiceReport,
    prev: ServiceReport,
    refs: list[tuple[str, str | None]],
) -> dict[str, Any]:
    return {
        "service": this.service,
        "week": week.iso_week,
        "since": iso_z(week.since),
        "until": iso_z(week.until),
        "first_day": week.first_day,
        "last_day": week.last_day,
        "this_week": digest_figures(this),
        "previous_week": digest_figures(prev),
        "overdue": {"count": len(refs), "refs": [r for r, _ in refs[:MAX_REFS]]},
    }


def _queue_for_leads(
    session: Session,
    outbox: Outbox,
    service: Service,
    week: DigestWeek,
    params: dict[str, Any],
    now: datetime,
) -> int:
    """Queue the digest DM and chart to each lead of `service`; how many DMs were new."""
    queued = 0
    notify = Notify(outbox, session, now)
    for lead in dict.fromkeys(service.leads):
        key = _digest_key(service.key, week.iso_week, lead)
        if notify.once(key).dm_user(lead, Template.DIGEST, params):
            queued += 1
        chart = {"service": service.key, "until": iso_z(week.until)}
        notify.once(f"digest-chart:{service.key}:{week.iso_week}:{lead}").chart(lead, chart)
    return queued


def send_weekly_digests(
    *,
    catalogue: Catalogue,
    sessions: sessionmaker[Session],
    clock: Clock,
    outbox: Outbox,
    at: datetime | None = None,
) -> int:
    """Queue each service lead's weekly digest DM and chart; returns how many were queued.

    `at` is the scheduled time the digest belongs to (default: now); it sets the week
    covered and the ISO week it is named by, so a digest sent late (start-up catch-up) still
    covers the week before its scheduled day. The week's figures come with the previous
    week's and the list of consults overdue *now* (references only). Dedupe keys per
    service, ISO week and lead make this exactly-once per week even when several processes
    run the job, or a late run follows a punctual one.
    """
    now = as_utc(clock.now())
    week = digest_week(catalogue, now if at is None else at)
    targets = [s for s in catalogue.services if s.leads]
    if not targets:
        return 0
    keys = [s.key for s in targets]
    queued = 0
    with sessions.begin() as session:
        current = compute_report(
            session, catalogue=catalogue, since=week.since, until=week.until, now=now,
            services=keys, holders=False,
        )  # fmt: skip
        before = compute_report(
            session, catalogue=catalogue, since=week.since - timedelta(days=7),
            until=week.since, now=now, services=keys, holders=False,
        )  # fmt: skip
        overdue = overdue_refs(session, keys, now)
        weeks = zip(targets, current.services, before.services, current.critical, strict=True)
        for s, this, prev, crit in weeks:
            params = _digest_params(week, this, prev, overdue[s.key]) | {"critical": crit.as_dict()}
            queued += _queue_for_leads(session, outbox, s, week, params, now)
    return queued


def digests_not_queued(
    *, catalogue: Catalogue, sessions: sessionmaker[Session], at: datetime
) -> list[str]:
    """Keys of the services with leads at least one of whom has no digest DM queued for the
    digest scheduled at `at` (its ISO week). Reads dedupe keys only; sends nothing."""
    iso_week = digest_week(catalogue, at).iso_week
    expected = {
        _digest_key(s.key, iso_week, lead): s.key for s in catalogue.services for lead in s.leads
    }
    if not expected:
        return []
    with sessions() as session:
        found = set(
            session.execute(
                select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(expected))
            ).scalars()
        )
    return list(dict.fromkeys(key for dk, key in expected.items() if dk not in found))
