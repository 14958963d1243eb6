"""Pacing of posts per channel: Slack allows about one message per second per channel, with
short bursts. A token bucket per channel says how long a post must wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from bot.domain.vocabulary import Kind


class ChannelPacer:
    """A token bucket per channel: short bursts, then about one post per `interval`."""

    def __init__(
        self, interval: float = 1.0, burst: int = 4, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.burst = burst
        self._now = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait(self, channel: str) -> float:
        """Seconds until a post to `channel` may go (0 = now), without counting one."""
        return self._use(channel, take=False)

    def take(self, channel: str) -> float:
        """0 when a post may go now (and counts it), else seconds to wait."""
        return self._use(channel, take=True)

    def hold(self, channel: str, seconds: float) -> None:
        """Slack refused a post to `channel` (HTTP 429) and asked for `seconds`: no post
        goes there before then, so the rest of its queue waits instead of being refused
        in turn."""
        if self.interval <= 0 or seconds <= 0:
            return
        with self._lock:
            self._buckets[channel] = (1.0 - seconds / self.interval, self._now())

    def held(self) -> dict[str, float]:
        """The channels that must wait now, with how long (seconds)."""
        waits = {channel: self.wait(channel) for channel in list(self._buckets)}
        return {channel: wait for channel, wait in waits.items() if wait > 0}

    def _use(self, channel: str, *, take: bool) -> float:
        if self.interval <= 0:
            return 0.0
        with self._lock:
            now = self._now()
            tokens, last = self._buckets.get(channel, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) / self.interval)
            if tokens >= 1.0:
                if take:
                    self._buckets[channel] = (tokens - 1.0, now)
                return 0.0
            if take:
                self._buckets[channel] = (tokens, now)
            return (1.0 - tokens) * self.interval


_POSTING_KINDS = {Kind.POST, Kind.THREAD, Kind.DM, Kind.CHANNEL}


def paced_channel(kind: str, payload: dict[str, Any], consult_channel: str | None) -> str | None:
    """The channel a chat.postMessage for this message will go to (None: not paced)."""
    if kind not in _POSTING_KINDS:
        return None
    if kind == Kind.DM:
        return payload.get("user")
    if kind == Kind.CHANNEL:
        return payload.get("channel") or consult_channel
    return consult_channel
