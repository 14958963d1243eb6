"""The reliability suite's figures: tests add to a session-wide tally, and the run ends with
one line, e.g. `reliability: 41 forged requests refused, 25 retries absorbed, 7.5 s outage
survived, 6000 fuzz cases`.

Loaded as a plugin from `tests/conftest.py`, so the line is printed by the process that
writes the terminal summary: with pytest-xdist each worker hands its tally to the controller
through `workeroutput`, and the controller adds them up.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

FIGURES = (
    ("forged", "{:g} forged requests refused"),
    ("retries", "{:g} retries absorbed"),
    ("outage_s", "{:.1f} s outage survived"),
    ("fuzz", "{:g} fuzz cases"),
)
_KEY = "careloop_reliability"


class Tally:
    """Thread-safe counters; `add("forged")` or `add("outage_s", 2.5)`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, name: str, amount: float = 1) -> None:
        if name not in dict(FIGURES):
            raise KeyError(f"unknown reliability figure {name!r}")
        with self._lock:
            self.counts[name] += amount

    def merge(self, other: dict[str, float]) -> None:
        with self._lock:
            for name, amount in other.items():
                self.counts[name] += amount

    def line(self) -> str:
        return "reliability: " + ", ".join(
            fmt.format(self.counts.get(name, 0)) for name, fmt in FIGURES
        )


TALLY = Tally()


@pytest.fixture(scope="session")
def figures() -> Tally:
    """The session's tally; reliability tests add what they proved."""
    return TALLY


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the tally to the controller
        workeroutput[_KEY] = json.dumps(dict(TALLY.counts))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    raw = (getattr(node, "workeroutput", None) or {}).get(_KEY)
    if raw:
        TALLY.merge(json.loads(raw))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.counts:
        terminalreporter.write_line(TALLY.line())
