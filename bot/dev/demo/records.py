"""What the demo keeps: entries of the transcript, the scripted checks, people's actions,
and the day's (compressed) clock."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DAY_STARTS = datetime(2026, 3, 2, 8, 0)  # a Monday, 08:00


@dataclass
class Entry:
    """One thing someone saw or did: real time `at`, the day's clock `time`, where, who."""

    at: float
    time: str
    where: str
    who: str
    text: str
    kind: str  # scene | action | post | reply | dm | update | ephemeral | form | form_error


@dataclass
class Step:
    """One scripted check: did the expected effect appear in (the stand-in for) Slack?"""

    name: str
    scene: str
    ok: bool
    seconds: float
    detail: str = ""


class StepFailed(Exception):
    """A scripted step did not produce what it should."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


@dataclass
class Action:
    """Something a person did (or a scene starting), as the transcript shows it."""

    at: float
    where: str
    who: str
    text: str
    kind: str = "action"


@dataclass
class DayClock:
    """The demo's day: `scale` day minutes pass per real second from real time `t0`."""

    scale: float
    t0: float = field(default_factory=time.time)

    def __call__(self, epoch: float) -> str:
        """HH:MM of the demo's day for a real time (whole seconds, as Slack dates are)."""
        minutes = max(math.floor(epoch) - math.floor(self.t0), 0) * self.scale
        when = DAY_STARTS + timedelta(minutes=minutes)
        return when.strftime("%H:%M" if when.date() == DAY_STARTS.date() else "%a %H:%M")

    def pause(self, minutes: float) -> None:
        """Let `minutes` of the day pass (between what people do)."""
        time.sleep(minutes / self.scale)
