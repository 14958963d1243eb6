"""Slack's per-channel posting limit, as the fake Slack enforces it (see
:meth:`FakeSlack.limit_rate`): ``chat.postMessage`` allows about one message per second per
channel, with short bursts; over that Slack answers HTTP 429 with ``Retry-After``.

A token bucket per channel (a user id and their DM channel are one channel): ``burst``
posts at once, then one more every ``1 / per_second`` seconds. A refused post takes no
token and changes nothing. The clock is injectable so a test can step it.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.dev.fakeslack.calls import Outcome

# The methods limited per channel (Slack's "special" rate limit for posting).
PER_CHANNEL_METHODS = frozenset({"chat.postMessage"})


@dataclass
class RateLimit:
    """Per-channel token buckets; `refused` counts the 429s answered, per channel."""

    per_second: float = 1.0
    burst: int = 5
    clock: Callable[[], float] = time.monotonic
    refused: Counter[str] = field(default_factory=Counter)
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def admit(self, channel: str) -> float:
        """0 when a post to `channel` may go now (it takes a token), else the seconds until
        it may."""
        now = self.clock()
        tokens, last = self._buckets.get(channel, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.per_second)
        if tokens >= 1.0:
            self._buckets[channel] = (tokens - 1.0, now)
            return 0.0
        self._buckets[channel] = (tokens, now)
        return (1.0 - tokens) / self.per_second

    def check(self, method: str, channel: str) -> Outcome | None:
        """The 429 answer for a call to `method` in `channel` over the limit, else None."""
        if method not in PER_CHANNEL_METHODS or not channel:
            return None
        wait = self.admit(channel)
        if wait <= 0:
            return None
        self.refused[channel] += 1
        retry = str(max(1, math.ceil(wait)))
        return Outcome(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": retry})
