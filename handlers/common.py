"""Helpers shared by the listeners: the injected services, opening a modal, and telling a
person about a button or form this version no longer knows."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.flows import notices
from bot.services import Services

log = logging.getLogger("careloop.handlers")


def one_of(ids: Iterable[str]) -> re.Pattern[str]:
    """A bolt constraint (bolt `re.search`es a pattern) matching exactly these ids."""
    return re.compile("^(?:" + "|".join(re.escape(i) for i in ids) + r")\Z")


def services(context: dict[str, Any]) -> Services:
    """The CareLoop services injected by the app's middleware."""
    return context["careloop"]


def tell(svc: Services, *, user: str, channel: str | None, text: str) -> None:
    """An ephemeral notice for one person (a DM without a channel), queued."""
    notices.tell(svc.sessions, svc.outbox, svc.clock, user=user, channel=channel, text=text)


def retired(
    svc: Services, *, user: str, channel: str | None, what: str, event: str, text: str
) -> None:
    """Something this version does not know (a retired button or form, or a forged id):
    logged, and the person is told what to do instead of seeing Slack's bare failure."""
    log.warning(what, extra={"event": event})
    tell(svc, user=user, channel=channel, text=text)


def open_modal(svc: Services, trigger_id: str | None, view: dict[str, Any]) -> bool:
    """Open a modal now (trigger ids last 3 s); False when Slack did not take it."""
    if not trigger_id:
        return False
    try:
        svc.quick_client.views_open(trigger_id=trigger_id, view=view)
        return True
    except (SlackApiError, OSError, TimeoutError) as exc:
        log.warning("could not open a modal", extra={"error": type(exc).__name__})
        return False
