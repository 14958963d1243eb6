"""App Home: what is waiting on me, my requests, and (for leads) their services' week.
Published through the outbox; no patient references appear there."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from bot.flows import notices
from handlers.common import services


def register(app: App) -> None:
    """Listen for people opening the app's Home tab."""
    app.event("app_home_opened")(home_opened)


def home_opened(event: dict[str, Any], context: dict[str, Any]) -> None:
    """Queue a fresh App Home for the person who opened it."""
    if event.get("tab") not in (None, "home"):
        return
    user = event.get("user")
    if not user:
        return
    svc = services(context)
    notices.refresh_home(svc.sessions, svc.outbox, svc.clock, user=str(user))
