"""Notices for one person, each queued through the outbox in its own transaction (so it
survives a Slack hiccup): a line of text, and a fresh App Home."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.clock import Clock
from bot.flows.notify import Notify
from bot.flows.outbox import Outbox
from storage.db import unit_of_work

# App Home is rendered from the person's consults at delivery; it has no message template.


def tell(
    sessions: sessionmaker[Session],
    outbox: Outbox,
    clock: Clock,
    *,
    user: str,
    channel: str | None,
    text: str,
) -> None:
    """Queue `text` for `user`: ephemeral in `channel`, or a direct message without one."""
    with unit_of_work(sessions) as session:
        Notify(outbox, session, clock.now()).notice(user, channel, text)


def refresh_home(
    sessions: sessionmaker[Session], outbox: Outbox, clock: Clock, *, user: str
) -> None:
    """Queue a fresh App Home for `user`."""
    with unit_of_work(sessions) as session:
        Notify(outbox, session, clock.now()).home(user)
