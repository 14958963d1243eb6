"""What CareLoop counts for Prometheus: every metric is defined here, and the rooms count at
their seams (`time_request` around bolt's dispatch for requests, `bot.slack.delivery` for Slack calls
and outbox outcomes, `bot.runtime` for the sweep). Gauges read from the database are
computed at scrape time (`bot.probes.DatabaseGauges`).

Labels come only from closed sets (surface, outcome, outbox kind, Slack method, service
key, urgency), never from a request's content: no patient data, no free text.

With `PROMETHEUS_MULTIPROC_DIR` set (`python -m bot serve` sets it for its gunicorn
workers, `bot.multiproc`), every process writes its values there and a scrape of any worker
adds them up; otherwise the process's own registry is served.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

log = logging.getLogger("careloop.metrics")

# A request that reaches a listener: which kind of Slack payload it is.
SURFACES = {
    "command": "command",  # bolt's body has "command" for slash commands
    "block_actions": "action",
    "view_submission": "view",
    "view_closed": "view",
    "event_callback": "event",
    "block_suggestion": "options",
}
FAILED = "careloop_failed"  # set in bolt's context by the error handler

REQUESTS = Histogram(
    "careloop_request_duration_seconds",
    "Slack requests handled, by surface and outcome (ok, error, unhandled), and how long "
    "the listener took until the answer.",
    ["surface", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
)
REFUSED = Counter(
    "careloop_requests_refused_total",
    "HTTP requests turned away before reaching bolt (bad signature, too large, malformed, "
    "unknown path), by HTTP status.",
    ["status"],
)
DELIVERED = Counter(
    "careloop_outbox_delivered_total", "Outbox messages Slack accepted, by kind.", ["kind"]
)
FAILED_MESSAGES = Counter(
    "careloop_outbox_failed_total",
    "Outbox messages given up on (Slack refused), by kind.",
    ["kind"],
)
RETRIED = Counter(
    "careloop_outbox_retried_total",
    "Outbox deliveries put back for another attempt (429, 5xx, timeout, unclear), by kind.",
    ["kind"],
)
SLACK_CALLS = Counter(
    "careloop_slack_api_calls_total",
    "Slack Web API calls, by method and outcome (ok, error, ratelimited, server_error, unclear).",
    ["method", "outcome"],
)
RETRY_AFTER = Counter(
    "careloop_slack_retry_after_seconds_total",
    "Seconds Slack asked CareLoop to wait (Retry-After of 429 answers), by method.",
    ["method"],
)
SWEEP_SECONDS = Histogram(
    "careloop_sweep_duration_seconds",
    "How long each overdue sweep took.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
SWEEP_LAG = Gauge(
    "careloop_sweep_lag_seconds",
    "How late the last sweep started after its interval (0 when on time).",
    multiprocess_mode="livemax",
)
SWEEP_LAST = Gauge(
    "careloop_sweep_last_run_timestamp_seconds",
    "When the last sweep finished (Unix time).",
    multiprocess_mode="livemax",
)
LOCK_HELD = Gauge(
    "careloop_delivery_lock_held",
    "1 in the process delivering the outbox, 0 in processes standing by.",
    multiprocess_mode="liveall",
)


def add(metric: Any, *labels: str, amount: float = 1.0) -> None:
    """Count `amount` on `metric` (with `labels`); never raises into the caller."""
    _safely(lambda: (metric.labels(*labels) if labels else metric).inc(amount))


def put(gauge: Any, value: float) -> None:
    """Set `gauge`; never raises into the caller."""
    _safely(lambda: gauge.set(value))


def observe(histogram: Any, value: float, *labels: str) -> None:
    """Record `value` on `histogram` (with `labels`); never raises into the caller."""
    _safely(lambda: (histogram.labels(*labels) if labels else histogram).observe(value))


def _safely(update: Callable[[], None]) -> None:
    # Counting must never stop a delivery or a request: a full disk, or a values file
    # already closed or removed while a worker exits, costs a count, not the work.
    try:
        update()
    except Exception as exc:  # noqa: BLE001 - whatever the metrics library raises
        log.warning("metric not recorded", extra={"error": type(exc).__name__})


def surface_of(body: Any) -> str:
    """The surface a bolt request body belongs to ("other" for anything else)."""
    if not isinstance(body, dict):
        return "other"
    if "command" in body:
        return "command"
    return SURFACES.get(str(body.get("type", "")), "other")


def time_request(req: Any, dispatch: Callable[[Any], Any]) -> Any:
    """Run bolt's `dispatch(req)` (middleware and listener), timing it and counting the
    request by surface and outcome. bolt's own middleware runs before the listener, so it
    cannot time it: the assembly's App calls this around `App.dispatch`."""
    started = time.perf_counter()
    response = dispatch(req)
    if req.context.get(FAILED):
        outcome = "error"
    elif getattr(response, "status", 200) == 404:
        outcome = "unhandled"
    else:
        outcome = "ok"
    observe(REQUESTS, time.perf_counter() - started, surface_of(req.body), outcome)
    return response


class SweepPace:
    """Times each sweep and how late it started after its interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last_start: float | None = None

    def run(self, job: Callable[[], object]) -> None:
        """Run one sweep, recording its duration, lag and finish time even if it fails."""
        start = time.monotonic()
        if self._last_start is not None:
            put(SWEEP_LAG, max(start - self._last_start - self.interval, 0.0))
        self._last_start = start
        try:
            job()
        finally:
            observe(SWEEP_SECONDS, time.monotonic() - start)
            put(SWEEP_LAST, time.time())


class _Proxy(Collector):
    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Iterable[Any]:
        return self.source.collect()


def exposition(*collectors: Collector) -> bytes:
    """The Prometheus text of every process's values plus `collectors` (scrape-time gauges)."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Proxy(REGISTRY))
    for collector in collectors:
        registry.register(collector)
    for _ in range(READ_ATTEMPTS - 1):
        try:
            return generate_latest(registry)
        except struct.error:
            # A worker was creating its values file (empty for an instant) as it was read.
            time.sleep(0.01)
    return generate_latest(registry)


READ_ATTEMPTS = 3


CONTENT_TYPE = CONTENT_TYPE_LATEST
