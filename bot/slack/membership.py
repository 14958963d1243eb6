"""Who is in a service's channel, asked of Slack and cached briefly (authorization input)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger("careloop.membership")


class ChannelMembers:
    """Caches conversations.members per channel for `ttl` seconds.

    A failed look-up returns None ("unknown"): callers then fall back to the people named in
    the catalogue rather than letting a Slack outage block or grant anything.
    """

    def __init__(
        self,
        client: WebClient | None,
        ttl: float = 120.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._now = monotonic
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def is_member(self, channel: str, user: str) -> bool | None:
        """True/False when known, None when Slack could not be asked."""
        members = self.members(channel)
        return None if members is None else user in members

    def members(self, channel: str) -> frozenset[str] | None:
        with self._lock:
            hit = self._cache.get(channel)
        if hit and self._now() - hit[0] < self._ttl:
            return hit[1]
        if self._client is None:
            return None
        try:
            found: set[str] = set()
            cursor = None
            while True:
                resp = self._client.conversations_members(
                    channel=channel, cursor=cursor, limit=1000
                )
                found.update(resp.get("members") or [])
                cursor = (resp.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except (SlackApiError, OSError) as exc:
            log.warning(
                "channel membership look-up failed",
                extra={"channel": channel, "error": type(exc).__name__},
            )
            return hit[1] if hit else None
        value = frozenset(found)
        with self._lock:
            self._cache[channel] = (self._now(), value)
        return value

    def forget(self, channel: str | None = None) -> None:
        """Drop cached members (all channels when None)."""
        with self._lock:
            if channel is None:
                self._cache.clear()
            else:
                self._cache.pop(channel, None)
