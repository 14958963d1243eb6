"""The outbox: every Slack message the bot intends to send is stored first, in the same
transaction as the change that caused it, then delivered by `bot.slack.delivery.dispatcher.Dispatcher`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from bot.domain.vocabulary import Artifact, Kind, Template
from bot.slack.delivery.wakeup import Wakeup
from storage import outbox_store
from storage.models import OutboxMessage

# New messages are due at once. The dispatcher schedules retries on its own clock, which in
# tests may differ from the (fake) clock of the consult domain that queued the message.
IMMEDIATELY = datetime(1970, 1, 1, tzinfo=UTC)


class Outbox:
    """Queues messages inside the caller's transaction and wakes the dispatcher on commit."""

    def __init__(self) -> None:
        self.wakeup = Wakeup()

    def add(
        self,
        session: Session,
        *,
        kind: Kind,
        template: Template | Artifact,
        now: datetime,
        consult_id: int | None = None,
        user: str | None = None,
        channel: str | None = None,
        params: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
        supersede: bool = False,
        covered: bool = False,
    ) -> bool:
        """Queue one message; False when `dedupe_key` was queued before (exactly once).
        With `supersede`, only one of the consult's messages of the same kind and template
        still queued is sent: the oldest, in its place in line, with this one's payload;
        the rest are marked `superseded` (see `outbox_store.supersede_pending`). A
        `covered` direct message goes to whoever covers for `user` when it is delivered
        (`bot.flows.cover_routing`)."""
        row = _row(kind, template, now, consult_id, user, channel, params, covered=covered)
        # Its values put in its dict, as `OutboxMessage(**row)` stores them (the flush
        # reads a new object's dict) without the per-attribute events: a press's hot path.
        message = OutboxMessage()
        message.__dict__.update(row, dedupe_key=dedupe_key)
        added = outbox_store.add_outbox(session=session, message=message)
        if added:
            self._wake_on_commit(session)
        if added and supersede and consult_id is not None:
            session.flush()
            same = {"consult_id": consult_id, "kind": kind, "template": template}
            outbox_store.supersede_pending(session=session, newest=message, **same)
        return added

    def rows(self, messages: list[dict[str, Any]], *, now: datetime) -> list[dict[str, Any]]:
        """The outbox rows of several messages (each the keywords of `add`, without
        `dedupe_key`), for a caller that stores them itself (`storage.creation.create_consult`)
        and then calls `wake()`."""
        return [
            _row(
                m["kind"],
                m["template"],
                now,
                m.get("consult_id"),
                m.get("user"),
                m.get("channel"),
                m.get("params"),
            )
            | {"dedupe_key": None}
            for m in messages
        ]

    def wake(self, *, behind: str | None = None) -> None:
        """Tell the dispatcher that committed messages are waiting; `behind`: every one of
        them goes out only after a post to that channel (a new consult's card)."""
        if behind:
            self.wakeup.set_behind(behind)
        else:
            self.wakeup.set()

    def _wake_on_commit(self, session: Session) -> None:
        # Read by `_wake_after_commit`, one listener for every session (a listener of the
        # session's own cost an `event.listen` per unit of work on the hot path).
        session.info[_WAKE] = self.wakeup


_WAKE = "outbox_wake"  # `Session.info`: the dispatcher's event to set once it commits


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    wakeup = session.info.pop(_WAKE, None)
    if wakeup is not None:
        wakeup.set()


def _row(
    kind: Kind,
    template: Template | Artifact,
    now: datetime,
    consult_id: int | None,
    user: str | None,
    channel: str | None,
    params: dict[str, Any] | None,
    *,
    covered: bool = False,
) -> dict[str, Any]:
    """The columns of a new, immediately due outbox message."""
    payload: dict[str, Any] = {"template": template, "params": params or {}}
    if user:
        payload["user"] = user
    if covered:
        payload["covered"] = True
    if channel:
        payload["channel"] = channel
    return {
        "consult_id": consult_id,
        "kind": kind,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": IMMEDIATELY,
    }
