"""Background work of one bot process: the outbox dispatcher and the APScheduler jobs
(overdue sweep every `sweep_interval`, the critical-result and follow-up sweeps, weekly
digest, optional retention purge).

APScheduler holds no state here (memory job store only): everything a job needs lives in the
consult and outbox rows, so several processes can run this side by side and a restart, even
a kill -9, resumes exactly where it was. A weekly digest whose scheduled time passed while no
process ran is sent once at the next start if that is within `DIGEST_CATCH_UP` of it
(`catch_up_digest`), and skipped with a log line otherwise."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from slack_sdk.errors import SlackApiError

from bot import metrics
from bot.flows import shifts
from bot.flows.critical_sweep import critical_sweep
from bot.flows.followup_sweep import followup_sweep
from bot.flows.retention import purge
from bot.flows.sweep import sweep
from bot.reports import days as report_days
from bot.reports import digest as digests
from bot.reports import hop_days
from bot.reports.model import iso_z
from bot.services import Services

log = logging.getLogger("careloop.runtime")

# How late a weekly digest may still be sent at start-up when no process ran at its time.
DIGEST_CATCH_UP = timedelta(hours=24)


class Runtime:
    """Starts and stops the dispatcher thread and the scheduler for one process."""

    def __init__(self, services: Services, *, scheduler: bool = True) -> None:
        self.services = services
        self.scheduler: BackgroundScheduler | None = None
        self._with_scheduler = scheduler
        self._started = False

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        threading.Thread(target=self._identify, name="careloop-identify", daemon=True).start()
        self.services.dispatcher.start()
        if self._with_scheduler:
            self.scheduler = build_scheduler(self.services)
            self.scheduler.start()
        log.info("background work started")

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        self.services.dispatcher.stop()
        log.info("background work stopped")

    def _identify(self) -> None:
        """Learn the bot's own user id (to ignore our own messages) without blocking start."""
        try:
            result = self.services.dispatcher.client.auth_test()
            self.services.extras["bot_user_id"] = result.get("user_id")
            self.services.extras["bot_id"] = result.get("bot_id")
        except (SlackApiError, OSError, TimeoutError) as exc:
            log.warning("auth.test failed; will still serve", extra={"error": type(exc).__name__})


def _guard(name: str, job: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:  # noqa: BLE001 - one bad run must not stop the schedule
            log.exception("scheduled job failed", extra={"event": name})

    return run


def catch_up_digest(services: Services) -> int:
    """Start-up catch-up for the weekly digest; returns how many digest DMs it queued.

    If the most recent scheduled digest time (by `services.clock`) is less than
    `DIGEST_CATCH_UP` ago, send that digest now, for the week it belongs to: a no-op when
    it already went out (the dedupe keys are per service, ISO week and lead), so every
    process may run this when it starts. Older than that, it is skipped; if some of its
    digests were never queued, one INFO line names the ISO week and services (no PHI).
    """
    now = services.clock.now()
    due = digests.last_digest_time(services.catalogue, now)
    if due is None:
        return 0
    # Usually it went out on time: look at the dedupe keys before computing any figures.
    missing = digests.digests_not_queued(
        catalogue=services.catalogue, sessions=services.sessions, at=due
    )
    if not missing:
        return 0
    if now - due < DIGEST_CATCH_UP:
        return digests.send_weekly_digests(
            catalogue=services.catalogue,
            sessions=services.sessions,
            clock=services.clock,
            outbox=services.outbox,
            at=due,
        )
    log.info(
        "weekly digest for %s (due %s) skipped: missed by more than %d h",
        digests.digest_week(services.catalogue, due).iso_week,
        iso_z(due),
        DIGEST_CATCH_UP // timedelta(hours=1),
        extra={"event": "digest-catch-up", "service": ",".join(missing)},
    )
    return 0


def build_scheduler(services: Services) -> BackgroundScheduler:
    """The process's jobs; coalescing means a late or missed run happens once, not N times."""
    scheduler = BackgroundScheduler(
        timezone="UTC",
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    _add_sweep(scheduler, services)
    _add_critical_sweep(scheduler, services)
    _add_followup_sweep(scheduler, services)
    if services.consults.schedules is not None:
        _add_schedules(scheduler, services)
    if services.catalogue.digest.enabled:
        _add_digest(scheduler, services)
    if services.catalogue.retention is not None:
        _add_purge(scheduler, services)
    _add_report_days(scheduler, services)
    return scheduler


def _every(
    scheduler: BackgroundScheduler,
    services: Services,
    name: str,
    run: Callable[[], object],
    interval: timedelta,
) -> None:
    """`run` every `interval` (at least a second), first at once, guarded."""
    seconds = max(interval.total_seconds(), 1.0)
    scheduler.add_job(_guard(name, run), "interval", seconds=seconds, id=name, next_run_time=None)
    scheduler.get_job(name).modify(next_run_time=services.clock.now())  # type: ignore[union-attr]


def _add_sweep(scheduler: BackgroundScheduler, services: Services) -> None:
    """The overdue sweep every `sweep_interval`, first at once, timed for `/metrics`."""
    pace = metrics.SweepPace(max(services.catalogue.sweep_interval.total_seconds(), 1.0))
    run = partial(
        sweep, sessions=services.sessions, catalogue=services.catalogue, clock=services.clock,
        outbox=services.outbox, on_call=services.consults.roster,
    )  # fmt: skip
    _every(scheduler, services, "sweep", partial(pace.run, run), services.catalogue.sweep_interval)


def _add_critical_sweep(scheduler: BackgroundScheduler, services: Services) -> None:
    """The critical-result re-notification sweep, next to the consult sweep: as often, or
    as the shortest `renotify_every` when that is shorter, so none is late by more."""
    catalogue = services.catalogue
    every = [catalogue.critical_for(s).renotify_every for s in catalogue.services]
    run = partial(critical_sweep, services.consults.ctx)
    _every(scheduler, services, "critical-sweep", run, min([catalogue.sweep_interval, *every]))


def _add_followup_sweep(scheduler: BackgroundScheduler, services: Services) -> None:
    """The follow-up sweep (overdue nudges, escalation), as often as the consult sweep or
    as `[followups] nudge_every` when that is shorter."""
    catalogue = services.catalogue
    every = min(catalogue.sweep_interval, catalogue.followups.nudge_every)
    run = partial(followup_sweep, services.consults.ctx)
    _every(scheduler, services, "followup-sweep", run, every)


def _add_digest(scheduler: BackgroundScheduler, services: Services) -> None:
    """The weekly digest at its `[digest]` time, and once at start the one missed, if any."""
    digest = services.catalogue.digest
    hour, minute = (int(x) for x in digest.time.split(":"))
    job = _guard(
        "digest",
        lambda: digests.send_weekly_digests(
            catalogue=services.catalogue,
            sessions=services.sessions,
            clock=services.clock,
            outbox=services.outbox,
        ),
    )
    trigger = CronTrigger(
        day_of_week=digest.day, hour=hour, minute=minute, timezone=digest.timezone
    )
    scheduler.add_job(job, trigger, id="digest")
    scheduler.add_job(
        _guard("digest-catch-up", lambda: catch_up_digest(services)), "date", id="digest-catch-up"
    )


def _add_purge(scheduler: BackgroundScheduler, services: Services) -> None:
    """The retention purge, nightly at 03:17 UTC."""
    retention = services.catalogue.retention
    assert retention is not None
    job = _guard(
        "purge",
        lambda: purge(
            sessions=services.sessions,
            clock=services.clock,
            older_than=retention,
            actor="scheduler",
        ),
    )
    scheduler.add_job(job, CronTrigger(hour=3, minute=17, timezone="UTC"), id="purge")


def _add_report_days(scheduler: BackgroundScheduler, services: Services) -> None:
    """On PostgreSQL, the reports' stored days (settled consults and finished hops,
    `bot.reports.hop_days.fill_both`) filled every `report_days.FILL_EVERY`, the
    first `report_days.FILL_FIRST_AFTER` after start (a few queries when nothing is
    missing; the first fill of a year at 1M consults takes a few seconds)."""
    if not report_days.on_postgres(services.sessions):
        return
    scheduler.add_job(
        _guard("report-days", partial(hop_days.fill_both, services.sessions, services.catalogue)),
        "interval",
        seconds=report_days.FILL_EVERY.total_seconds(),
        id="report-days",
        next_run_time=services.clock.now() + report_days.FILL_FIRST_AFTER,
    )


def _add_schedules(scheduler: BackgroundScheduler, services: Services) -> None:
    """Shift changes, hand-off reminders and gap warnings every `sweep_interval` (at most a
    minute); the schedules re-read every `schedule_refresh`."""
    consults = services.consults
    book = consults.schedules
    assert book is not None
    watch = partial(shifts.watch_shifts, ctx=consults.ctx, roster=consults.roster)
    every = min(services.catalogue.sweep_interval, timedelta(minutes=1))
    _every(scheduler, services, "shifts", watch, every)
    refresh = _guard("schedule-refresh", lambda: shifts.refresh(ctx=consults.ctx, book=book))
    seconds = max(services.catalogue.schedule_refresh.total_seconds(), 1.0)
    scheduler.add_job(refresh, "interval", seconds=seconds, id="schedule-refresh")
