"""Helpers shared by the listeners: the injected services, and telling a person something."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.domain.vocabulary import Kind
from bot.services import Services

log = logging.getLogger("careloop.handlers")


def services(context: dict[str, Any]) -> Services:
    """The CareLoop services injected by the app's middleware."""
    return context["careloop"]


def tell(svc: Services, *, user: str, channel: str | None, text: str) -> None:
    """An ephemeral notice for one person (queued, so it survives a Slack hiccup)."""
    with svc.consults.unit() as s:
        if channel:
            svc.outbox.add(
                s,
                kind=Kind.EPHEMERAL,
                template="text",
                user=user,
                channel=channel,
                now=svc.clock.now(),
                params={"text": text},
            )
        else:
            svc.outbox.add(
                s,
                kind=Kind.DM,
                template="text",
                user=user,
                now=svc.clock.now(),
                params={"text": text},
            )


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
