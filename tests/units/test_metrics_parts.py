"""Parts of `bot.metrics`: the sweep's duration and last run are recorded even when it
fails, and its lag is how late it started after its interval (0 when on time); surfaces
come from a closed set; a metric that cannot be written never stops the work counted."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from bot import metrics


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(name: str) -> float:
    found = REGISTRY.get_sample_value(name)
    assert found is not None, name
    return found


def test_lag_is_how_late_a_sweep_started_after_its_interval(monkeypatch: pytest.MonkeyPatch):
    ticks = Ticks()
    monkeypatch.setattr(metrics.time, "monotonic", ticks)
    pace = metrics.SweepPace(interval=60.0)
    runs = sample("careloop_sweep_duration_seconds_count")

    pace.run(lambda: None)
    ticks.now += 60.0  # on time
    pace.run(lambda: None)
    assert sample("careloop_sweep_lag_seconds") == 0.0

    ticks.now += 75.0  # 15 s late
    pace.run(lambda: setattr(ticks, "now", ticks.now + 2.5))  # and took 2.5 s
    assert sample("careloop_sweep_lag_seconds") == 15.0
    assert sample("careloop_sweep_duration_seconds_count") == runs + 3
    assert sample("careloop_sweep_duration_seconds_sum") >= 2.5


def test_a_failed_sweep_is_still_timed(monkeypatch: pytest.MonkeyPatch):
    pace = metrics.SweepPace(interval=60.0)
    runs = sample("careloop_sweep_duration_seconds_count")

    def boom() -> None:
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        pace.run(boom)
    assert sample("careloop_sweep_duration_seconds_count") == runs + 1
    assert sample("careloop_sweep_last_run_timestamp_seconds") > 0


def test_surfaces_come_from_a_closed_set():
    assert metrics.surface_of({"command": "/consult", "text": "MRN 123"}) == "command"
    assert metrics.surface_of({"type": "block_actions"}) == "action"
    assert metrics.surface_of({"type": "view_submission"}) == "view"
    assert metrics.surface_of({"type": "event_callback"}) == "event"
    assert metrics.surface_of({"type": "block_suggestion"}) == "options"
    assert metrics.surface_of({"type": "MRN 123 chest pain"}) == "other"
    assert metrics.surface_of("not a dict") == "other"


class Unwritable:
    """A metric whose values file cannot be written (disk full, directory gone)."""

    def labels(self, *_: str) -> Unwritable:
        return self

    def inc(self, _amount: float) -> None:
        raise FileNotFoundError("metrics directory removed")

    set = observe = inc


def test_a_metric_that_cannot_be_written_never_raises_into_the_work(caplog):
    metrics.add(Unwritable(), "post")
    metrics.put(Unwritable(), 1)
    metrics.observe(Unwritable(), 0.5, "command", "ok")
    assert [r.getMessage() for r in caplog.records] == ["metric not recorded"] * 3
