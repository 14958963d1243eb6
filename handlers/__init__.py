"""Thin Slack listeners, one module per surface; each has `register(app)`.

They parse the payload, call the consult domain (`context["careloop"]`), and render."""

from __future__ import annotations

from slack_bolt import App

from handlers import actions, commands, events, home, views


def register_all(app: App) -> None:
    """Register every listener on a fresh App."""
    for module in (commands, actions, views, events, home):
        module.register(app)
