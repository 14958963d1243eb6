"""Delivers the outbox to Slack, off the request path.

Each message is leased (a conditional UPDATE, so two processes never take the same one),
turned into a Slack call by the injected composer, sent, and then marked sent. HTTP 429
waits at least Retry-After; 5xx, timeouts and connection errors back off and retry for as
long as it takes; permanent errors (e.g. channel_not_found) fail the message, and the
injected result callback hears of it. A consult's messages go out in order per place
(`storage.outbox_store.due_outbox`). A post that may have landed is first looked for in
Slack (see `landed`); while Slack cannot say, the post waits rather than risk a duplicate.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot import metrics
from bot.domain.clock import Clock, SystemClock
from bot.domain.vocabulary import INFORMATIONAL, OVERDUE_NOTICES, Kind
from bot.slack.delivery import transport
from bot.slack.delivery.landed import find_landed, stamp
from bot.slack.delivery.pacing import ChannelPacer, paced_channel
from bot.slack.delivery.transport import Call, Unclear
from bot.slack.delivery.wakeup import Wakeup
from storage import outbox_store
from storage.db import SessionLock, read_once
from storage.models import OutboxMessage

log = logging.getLogger("careloop.delivery")

# With a paced backlog, the shortest time between two delivery rounds (see `_idle`): a new
# message for another destination waits at most this long.
PACED_ROUND_GAP = 0.05

# The link to a message: (channel, ts) -> permalink, None when Slack would not say.
LinkLookup = Callable[[str, str], str | None]


@dataclass(frozen=True)
class Outcome:
    """What became of a composed message Slack answered: "sent" (with the message's ts
    and, for a consult card, its link) or "failed" (Slack refused it, with its error)."""

    status: str
    ts: str | None = None
    permalink: str | None = None
    error: str = ""


# Turns a leased outbox message into the Slack call to make; None when there is nothing to
# send (e.g. an update of a card that never reached the channel). May look up links.
Compose = Callable[[OutboxMessage, LinkLookup], Call | None]
# Hears, inside the transaction that marks the message done, what became of it.
OnResult = Callable[[Session, OutboxMessage, Outcome], None]


class Dispatcher:
    """Leases due outbox messages and delivers them; run `run()` on a background thread."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        client: WebClient,
        compose: Compose,
        on_result: OnResult,
        wakeup: Wakeup,
        clock: Clock | None = None,
        pacer: ChannelPacer | None = None,
        lease: timedelta = timedelta(seconds=60),
        poll_interval: float = 0.5,
        batch: int = 50,
        leadership: SessionLock | None = None,
        standby_interval: float = 1.0,
    ) -> None:
        self.sessions = sessions
        self.client = client
        self.clock = clock or SystemClock()
        self.pacer = pacer or ChannelPacer()
        # What a message says, and what becomes of it, is decided outside delivery.
        self.compose = compose
        self.on_result = on_result
        # Set when messages are committed (and by stop()): the loop stops waiting.
        self.wakeup = wakeup
        self.lease = lease
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # Set when a round lost the database with messages of ours leased: the next round
        # ends those leases first instead of letting them run out (`self.lease`).
        self.orphaned = False
        self.poll_interval = poll_interval
        self.batch = batch
        # Only the holder delivers in the background (see `run`); None: always deliver.
        self.leadership = leadership
        self.leading = False
        self.standby_interval = standby_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._check_first: set[int] = set()
        self.delivered = 0
        self.paced_for: float | None = None

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        """Deliver on a daemon thread until stop()."""
        self._thread = threading.Thread(target=self.run, name="careloop-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the background loop (waiting up to `timeout` seconds for it)."""
        self._stop.set()
        self.wakeup.set()
        if self._thread:
            self._thread.join(timeout)

    def run(self) -> None:
        """Deliver until stop(). With `leadership`, one dispatcher among every process on
        the database delivers at a time, so one pacer sees every post to a channel; the
        others stand by and the first to find the lock free (its holder stopped, crashed or
        lost its connection) takes over within `standby_interval`."""
        try:
            self._run()
        finally:
            if self.leadership is not None:
                self.leadership.release()
            self.leading = False

    def _lead(self) -> bool:
        if self.leadership is None:
            if not self.leading:
                self.leading = True
                metrics.put(metrics.LOCK_HELD, 1)
            return True
        try:
            leading = self.leadership.held()
        except Exception:  # noqa: BLE001 - cannot tell: stand by, ask again
            log.exception("could not check the delivery lock")
            leading = False
        if leading != self.leading:
            log.info(
                "delivering the outbox" if leading else "standing by: another process delivers",
                extra={"event": "outbox_leader" if leading else "outbox_standby"},
            )
            self.leading = leading
            metrics.put(metrics.LOCK_HELD, 1 if leading else 0)
        return leading

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._lead():
                self._stop.wait(self.standby_interval)
                continue
            try:
                worked = self.deliver_due()
            except Exception:  # noqa: BLE001 - a bad round must not end delivery
                log.exception("outbox round failed")
                worked = 0
            if not worked:
                self._idle()

    def _idle(self) -> None:
        """Wait for new work after a round that delivered nothing. A new message wakes the
        loop at once; with a paced backlog (a burst of creates), wake-ups are coalesced to
        one round per `PACED_ROUND_GAP`, so the due query does not run once per create, and
        wake-ups for messages behind a channel still held back start no round at all."""
        paced = self.paced_for is not None
        wait = min(self.paced_for, self.poll_interval) if paced else self.poll_interval
        if self.wakeup.wait(wait) and paced:
            self._stop.wait(PACED_ROUND_GAP)
            self._sit_out_holds()
        self.wakeup.clear()

    def _sit_out_holds(self) -> None:
        """While every message announced since the last round waits behind a post to a
        channel pacing still holds back (`Wakeup.set_behind`), a round could send none of
        them: wait instead until that hold ends, the poll interval passes, or a message
        that may go sooner is announced."""
        while not self._stop.is_set():
            behind = self.wakeup.take_behind()
            held = self.pacer.held()
            if behind is None or not held or not behind <= held.keys():
                return
            # Another held channel's hold may end sooner: a round then, as before.
            until = min(min(held.values()), self.poll_interval)
            if not self.wakeup.wait(until):
                return
            self._stop.wait(PACED_ROUND_GAP)

    def drain(self, timeout: float = 10.0) -> int:
        """Deliver until nothing is due (tests, demo, CLI); returns messages handled."""
        deadline = time.monotonic() + timeout
        total = 0
        while time.monotonic() < deadline:
            n = self.deliver_due()
            total += n
            if not n:
                break
        return total

    # ------------------------------------------------------------------ one round
    def deliver_due(self) -> int:
        """Lease and deliver the messages due now; returns how many were attempted."""
        now = self.clock.now()
        # Channels held back by pacing are left out of the query, and the rest come fairly
        # (each destination's first message before anyone's second), so a backlog in one
        # channel never holds back another channel's messages or anyone's DMs; within a
        # destination, time-critical messages come before informational thread notes, and
        # notices about overdue consults before new cards.
        held = self.pacer.held()
        if self.orphaned:
            with self.sessions() as s, s.begin():
                outbox_store.expire_own_leases(session=s, owner=self.owner, now=now)
            self.orphaned = False
        with read_once(self.sessions) as s:
            rows = outbox_store.due_outbox(
                session=s,
                now=now,
                limit=self.batch,
                skip=sorted(held),
                per_destination=max(self.pacer.burst, 1),
                informational=INFORMATIONAL,
                first=OVERDUE_NOTICES,
            )
        handled = 0
        self.paced_for = min(held.values()) if held else None
        for message_id, kind, payload, consult_channel in rows:
            if self._stop.is_set():
                break
            # A channel held back by pacing is skipped before any lease or rendering, so
            # a backlog for one busy channel costs one query per round, not a busy loop.
            target = paced_channel(kind, payload, consult_channel)
            if target is not None:
                wait = self.pacer.wait(target)
                if wait > 0:
                    self.paced_for = min(self.paced_for or wait, wait)
                    continue
            msg = self._lease(message_id)
            if msg is None:
                continue
            # The due query returns a consult's message only when nothing it must follow is
            # undelivered (its card; in its thread, older notes unless they are informational
            # and this one is not; the same person's older DMs), so each place gets a
            # consult's messages in order.
            try:
                self._deliver(msg)
            except SQLAlchemyError:
                self.orphaned = True  # it may still hold its lease: the next round ends it
                raise
            handled += 1
        return handled

    def _lease(self, message_id: int) -> OutboxMessage | None:
        now = self.clock.now()
        with self.sessions() as s, s.begin():
            msg = outbox_store.lease_outbox(
                session=s, message_id=message_id, owner=self.owner, now=now, until=now + self.lease
            )
            if msg is None:
                return None
            s.expunge(msg)
        # Whether an earlier attempt may have reached Slack: it timed out or got a 5xx
        # (unclear), or its process died holding the lease (the lease marks that unclear).
        # A clear refusal (429, an error answer) did not post: no look in the history.
        if (msg.last_error or "").startswith("unclear"):
            self._check_first.add(msg.id)
        else:
            self._check_first.discard(msg.id)
        return msg

    def _release(self, message_id: int, *, delay: float, count: bool, error: str = "") -> None:
        with self.sessions() as s, s.begin():
            msg = outbox_store.get_outbox(session=s, message_id=message_id)
            if msg is None or msg.lease_owner != self.owner:
                return
            msg.status = "pending"
            msg.lease_owner = None
            msg.lease_until = None
            msg.next_attempt_at = self.clock.now() + timedelta(seconds=delay)
            if message_id in self._check_first and not error.startswith("unclear"):
                # An earlier attempt may have landed (its process lost it mid-send): the
                # mark must outlive this release, or the next attempt would post blind.
                error = "unclear: an earlier attempt may have landed"
            if not count:
                msg.attempts = max(msg.attempts - 1, 0)
            if error:
                msg.last_error = error[:255]
        if count:
            metrics.add(metrics.RETRIED, _kind(msg))

    # ------------------------------------------------------------------ delivery
    def _deliver(self, msg: OutboxMessage) -> None:
        try:
            call = self._prepare(msg)
        except SQLAlchemyError as exc:
            # The database went away while the message was composed (composing reads the
            # consult): nothing is wrong with the message, so it waits and tries again.
            self._database_away(msg, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a message that cannot render is dead
            log.exception("outbox message cannot be rendered", extra={"outbox_id": msg.id})
            self._finish(msg, Outcome("failed", error=f"render: {type(exc).__name__}"))
            return
        if call is None:
            self._finish(msg, Outcome("failed", error="no channel message to attach to"))
            return
        if call.method == "chat.postMessage" and not self._clear_to_post(msg, call):
            return
        self._send(msg, call)

    def _database_away(self, msg: OutboxMessage, exc: SQLAlchemyError) -> None:
        """Put a message back for a later attempt after a database error; if the database
        cannot take even that, the next round that reaches it ends the lease
        (`orphaned`) and takes the message again (first looking in Slack, as after a crash:
        nothing was sent, so nothing is found)."""
        log.warning(
            "database error while composing; will retry",
            extra={"outbox_id": msg.id, "error": type(exc).__name__},
        )
        # (An earlier attempt that may have landed stays marked unclear: see `_release`.)
        error = f"database: {type(exc).__name__}"
        try:
            self._release(msg.id, delay=transport.backoff(msg.attempts), count=True, error=error)
        except SQLAlchemyError:
            log.warning("could not put the message back; the next round will")
            self.orphaned = True

    def _prepare(self, msg: OutboxMessage) -> Call | None:
        """The call for `msg` from the composer, carrying the outbox id if it posts."""
        call = self.compose(msg, self._permalink)
        return stamp(call, msg.id) if call is not None else None

    def _clear_to_post(self, msg: OutboxMessage, call: Call) -> bool:
        """Whether the post may go now: its channel's pace allows it, and no earlier
        attempt of it is found in Slack (found: the message is done)."""
        wait = self.pacer.take(call.args.get("channel", ""))
        if wait > 0:
            self._release(msg.id, delay=wait, count=False)
            return False
        if msg.id not in self._check_first:
            return True
        try:
            found = find_landed(self.client, msg, call)
        except Unclear as exc:
            # Slack could not say whether the earlier attempt landed: posting now could
            # duplicate it, so ask again later instead.
            log.warning(
                "could not check whether a post landed; will retry",
                extra={"outbox_id": msg.id, "error": str(exc)[:100]},
            )
            self._release(
                msg.id,
                delay=transport.backoff(msg.attempts),
                count=True,
                error=f"unclear: history {exc}"[:255],
            )
            return False
        if found:
            self._answered(msg, "sent", ts=found, channel=call.args.get("channel", ""))
            return False
        return True

    def _send(self, msg: OutboxMessage, call: Call) -> None:
        try:
            response = transport.send(self.client, call)
        except SlackApiError as exc:
            self._on_api_error(msg, call, exc)
            return
        except Unclear as exc:
            log.warning(
                "slack call unclear; will check and retry",
                extra={"outbox_id": msg.id, "method": call.method, "error": str(exc)[:100]},
            )
            self._release(
                msg.id,
                delay=transport.backoff(msg.attempts),
                count=True,
                error=f"unclear: {exc}"[:255],
            )
            return
        ts = response.get("ts") or response.get("message_ts")
        channel = response.get("channel") or call.args.get("channel", "")
        self._answered(msg, "sent", ts=ts, channel=channel)

    def _on_api_error(self, msg: OutboxMessage, call: Call, exc: SlackApiError) -> None:
        status, error = transport.answer_of(exc)
        if transport.rate_limited(status, error):
            delay = max(transport.retry_after(exc.response.headers), 1.0)
            log.warning("slack rate limited", extra={"outbox_id": msg.id, "retry_after": delay})
            if call.method == "chat.postMessage":
                # The whole channel waits what Slack asked, not only this message.
                self.pacer.hold(call.args.get("channel", ""), delay)
            self._release(msg.id, delay=delay, count=True, error="429")
            return
        if transport.transient(status, error):
            # A 5xx may come from a proxy after Slack acted: as unclear as a timeout.
            self._release(
                msg.id,
                delay=transport.backoff(msg.attempts),
                count=True,
                error=f"unclear: {status} {error}",
            )
            return
        log.error("slack refused a message", extra={"outbox_id": msg.id, "error": error})
        self._answered(msg, "failed", error=error or str(status))

    def _answered(
        self,
        msg: OutboxMessage,
        status: str,
        *,
        ts: str | None = None,
        channel: str = "",
        error: str = "",
    ) -> None:
        """Slack answered the composed call: finish the message and tell `on_result`
        (a consult card that was sent comes with its link)."""
        link = None
        if status == "sent" and msg.kind == Kind.POST and ts:
            link = self._permalink(channel, ts)
        self._finish(msg, Outcome(status, ts=ts, permalink=link, error=error), report=True)

    def _finish(self, msg: OutboxMessage, outcome: Outcome, *, report: bool = False) -> None:
        self._check_first.discard(msg.id)
        with self.sessions() as s, s.begin():
            row = outbox_store.get_outbox(session=s, message_id=msg.id)
            if row is None:
                return
            row.status = outcome.status
            row.lease_owner = None
            row.lease_until = None
            row.last_error = outcome.error[:255] if outcome.error else row.last_error
            if outcome.status == "sent":
                row.sent_at = self.clock.now()
                row.result_ts = outcome.ts
            if report:
                self.on_result(s, msg, outcome)
        if outcome.status == "sent":
            self.delivered += 1
            metrics.add(metrics.DELIVERED, _kind(msg))
        else:
            metrics.add(metrics.FAILED_MESSAGES, _kind(msg))

    def _permalink(self, channel: str, ts: str) -> str | None:
        return transport.permalink(self.client, channel, ts)


def _kind(msg: OutboxMessage) -> str:
    """The message's kind as a metric label: one of `Kind`, never anything else."""
    return msg.kind if msg.kind in _KINDS else "other"


_KINDS = frozenset(Kind)
