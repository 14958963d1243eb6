"""Whether a Slack user id names a person who can receive CareLoop's messages (not a bot,
not deactivated, known to the workspace), asked of Slack (`users.info`) with a short
cache of the people found. Used before a cover or a hand-over names someone, so messages
are never routed to nobody."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger("careloop.people")

# What the caller tells the person, by what Slack said about the one they named.
NOT_FOUND = "{who} is not a Slack user I can find."
A_BOT = "{who} is an app, not a person: choose a colleague."
DEACTIVATED = "{who} is deactivated in Slack: choose a colleague."
UNKNOWN = "Slack could not say who {who} is just now; try again in a moment."


class People:
    """`problem(user)`: None for a person, else why not (one of the texts above). People
    found are cached for `ttl` seconds; failures and refusals are asked again."""

    def __init__(
        self,
        client: WebClient | None,
        ttl: float = 600.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._now = monotonic
        self._people: dict[str, float] = {}
        self._lock = threading.Lock()

    def problem(self, user: str) -> str | None:
        """Why `user` cannot be named (mentioned as `<@user>` in the text), or None."""
        who = f"<@{user}>"
        with self._lock:
            seen = self._people.get(user)
        if seen is not None and self._now() - seen < self._ttl:
            return None
        if self._client is None:
            return None
        try:
            info = self._client.users_info(user=user)["user"] or {}
        except SlackApiError as exc:
            error = (exc.response or {}).get("error")
            if error in ("user_not_found", "user_not_visible"):
                return NOT_FOUND.format(who=who)
            log.warning("users.info failed", extra={"error": str(error)})
            return UNKNOWN.format(who=who)
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning("users.info failed", extra={"error": type(exc).__name__})
            return UNKNOWN.format(who=who)
        if info.get("is_bot") or info.get("is_app_user") or user == "USLACKBOT":
            return A_BOT.format(who=who)
        if info.get("deleted"):
            return DEACTIVATED.format(who=who)
        with self._lock:
            self._people[user] = self._now()
        return None
