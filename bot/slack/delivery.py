"""Delivers the outbox to Slack, off the request path.

Each message is leased (a conditional UPDATE, so two processes never take the same one),
rendered from the consult's current state, sent, and then marked sent. HTTP 429 waits at
least Retry-After; 5xx, timeouts and connection errors back off and retry for as long as it
takes; permanent errors (e.g. channel_not_found) fail the message and tell the requester.
A consult's messages go out in order. chat.postMessage has no idempotency key, so a post
that may have landed (a timeout, a 5xx, or a lease that expired after a crash) is first
looked for in the channel history by the outbox id carried in the message metadata; while
the history cannot be read, the post waits rather than risk a duplicate.
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
from datetime import datetime, timedelta
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue import Catalogue
from bot.domain.clock import Clock, SystemClock
from bot.domain.vocabulary import Kind
from bot.flows.home import build_home_view
from bot.flows.outbox import Outbox
from bot.slack.ids import OUTBOX_EVENT_TYPE
from bot.slack.render.context import RenderContext
from bot.slack.render.messages import render_message
from storage import repo
from storage.db import SessionLock
from storage.models import Consult, OutboxMessage

log = logging.getLogger("careloop.delivery")

RETRYABLE_ERRORS = {
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "team_added_to_org",
}
MAX_BACKOFF = 60.0


class Unclear(Exception):
    """Slack may or may not have acted (timeout, dropped connection)."""


@dataclass
class Call:
    """One Web API call the dispatcher will make."""

    method: str
    args: dict[str, Any]


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


class Dispatcher:
    """Leases due outbox messages and delivers them; run `run()` on a background thread."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        client: WebClient,
        catalogue: Catalogue,
        outbox: Outbox,
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
        self.catalogue = catalogue
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self.pacer = pacer or ChannelPacer()
        self.lease = lease
        self.poll_interval = poll_interval
        self.batch = batch
        # Only the holder delivers in the background (see `run`); None: always deliver.
        self.leadership = leadership
        self.standby_interval = standby_interval
        self.leading = False
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
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
        self._stop.set()
        self.outbox.wakeup.set()
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
                if self.paced_for is not None:
                    # Only paced work is left: new messages cannot go sooner either.
                    self._stop.wait(min(self.paced_for, self.poll_interval))
                else:
                    self.outbox.wakeup.wait(self.poll_interval)
                self.outbox.wakeup.clear()

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
        # channel never holds back another channel's messages or anyone's DMs.
        held = self.pacer.held()
        with self.sessions() as s:
            rows = repo.due_outbox(
                session=s,
                now=now,
                limit=self.batch,
                skip=sorted(held),
                per_destination=max(self.pacer.burst, 1),
            )
        handled = 0
        self.paced_for = min(held.values()) if held else None
        for message_id, kind, payload, consult_channel in rows:
            if self._stop.is_set():
                break
            # A channel held back by pacing is skipped before any lease or rendering, so
            # a backlog for one busy channel costs one query per round, not a busy loop.
            target = _pacing_channel(kind, payload, consult_channel)
            if target is not None:
                wait = self.pacer.wait(target)
                if wait > 0:
                    self.paced_for = min(self.paced_for or wait, wait)
                    continue
            msg = self._lease(message_id)
            if msg is None:
                continue
            # The due query returns only the first undelivered message of each consult, so
            # a consult's messages go out one at a time, in order.
            self._deliver(msg)
            handled += 1
        return handled

    def _lease(self, message_id: int) -> OutboxMessage | None:
        now = self.clock.now()
        with self.sessions() as s, s.begin():
            before = s.execute(
                select(OutboxMessage.status).where(OutboxMessage.id == message_id)
            ).scalar_one_or_none()
            if not repo.lease_outbox(
                session=s, message_id=message_id, owner=self.owner, now=now, until=now + self.lease
            ):
                return None
            msg = repo.get_outbox(session=s, message_id=message_id)
            assert msg is not None
            # Whether an earlier attempt may have reached Slack: it timed out or got a 5xx
            # (unclear), or its process died holding the lease ("sending" past its lease).
            # A clear refusal (429, an error answer) did not post: no look in the history.
            if before == "sending" or (msg.last_error or "").startswith("unclear"):
                self._check_first.add(msg.id)
            else:
                self._check_first.discard(msg.id)
            msg.attempts += 1
            s.flush()
            s.expunge(msg)
            return msg

    def _release(self, message_id: int, *, delay: float, count: bool, error: str = "") -> None:
        with self.sessions() as s, s.begin():
            msg = repo.get_outbox(session=s, message_id=message_id)
            if msg is None or msg.lease_owner != self.owner:
                return
            msg.status = "pending"
            msg.lease_owner = None
            msg.lease_until = None
            msg.next_attempt_at = self.clock.now() + timedelta(seconds=delay)
            if not count:
                msg.attempts = max(msg.attempts - 1, 0)
            if error:
                msg.last_error = error[:255]

    # ------------------------------------------------------------------ delivery
    def _deliver(self, msg: OutboxMessage) -> None:
        try:
            consult, call = self._prepare(msg)
        except Exception as exc:  # noqa: BLE001 - a message that cannot render is dead
            log.exception("outbox message cannot be rendered", extra={"outbox_id": msg.id})
            self._finish(msg, status="failed", error=f"render: {type(exc).__name__}")
            return
        if call is None:
            self._finish(msg, status="failed", error="no channel message to attach to")
            return
        channel = call.args.get("channel", "")
        if call.method == "chat.postMessage":
            wait = self.pacer.take(channel)
            if wait > 0:
                self._release(msg.id, delay=wait, count=False)
                return
            if msg.id in self._check_first:
                try:
                    found = self._find_landed(msg, channel)
                except Unclear as exc:
                    # Slack could not say whether the earlier attempt landed: posting now
                    # could duplicate it, so ask again later instead.
                    log.warning(
                        "could not check whether a post landed; will retry",
                        extra={"outbox_id": msg.id, "error": str(exc)[:100]},
                    )
                    self._release(
                        msg.id,
                        delay=self._backoff(msg.attempts),
                        count=True,
                        error=f"unclear: history {exc}"[:255],
                    )
                    return
                if found:
                    self._finish(msg, status="sent", ts=found, consult=consult, channel=channel)
                    return
        try:
            response = self._call(call)
        except SlackApiError as exc:
            self._on_api_error(msg, consult, exc)
            return
        except Unclear as exc:
            delay = self._backoff(msg.attempts)
            log.warning(
                "slack call unclear; will check and retry",
                extra={"outbox_id": msg.id, "method": call.method, "error": str(exc)[:100]},
            )
            self._release(msg.id, delay=delay, count=True, error=f"unclear: {exc}"[:255])
            return
        ts = response.get("ts") or response.get("message_ts")
        self._finish(
            msg, status="sent", ts=ts, consult=consult, channel=response.get("channel") or channel
        )

    def _call(self, call: Call) -> dict[str, Any]:
        try:
            if call.method == "files.upload_v2":
                args = dict(call.args)
                channel = _dm_channel(self.client, args.pop("user"))
                response = self.client.files_upload_v2(channel=channel, **args)
            else:
                response = self.client.api_call(call.method, json=call.args)
        except (TimeoutError, URLError, ConnectionError, OSError) as exc:
            raise Unclear(type(exc).__name__) from exc
        return dict(response.data) if isinstance(response.data, dict) else {}

    def _on_api_error(
        self, msg: OutboxMessage, consult: Consult | None, exc: SlackApiError
    ) -> None:
        status = exc.response.status_code
        error = (
            str((exc.response.data or {}).get("error", ""))
            if isinstance(exc.response.data, dict)
            else ""
        )
        if status == 429 or error == "ratelimited":
            retry_after = _retry_after(exc.response.headers)
            delay = max(retry_after, 1.0)
            log.warning("slack rate limited", extra={"outbox_id": msg.id, "retry_after": delay})
            self._release(msg.id, delay=delay, count=True, error="429")
            return
        if status >= 500 or error in RETRYABLE_ERRORS:
            # A 5xx may come from a proxy after Slack acted: as unclear as a timeout.
            self._release(
                msg.id,
                delay=self._backoff(msg.attempts),
                count=True,
                error=f"unclear: {status} {error}",
            )
            return
        log.error("slack refused a message", extra={"outbox_id": msg.id, "error": error})
        self._finish(msg, status="failed", error=error or str(status), consult=consult)

    def _backoff(self, attempts: int) -> float:
        return min(2.0 ** max(attempts - 1, 0), MAX_BACKOFF)

    def _finish(
        self,
        msg: OutboxMessage,
        *,
        status: str,
        ts: str | None = None,
        error: str = "",
        consult: Consult | None = None,
        channel: str = "",
    ) -> None:
        permalink = None
        if status == "sent" and msg.kind == Kind.POST and ts and consult is not None:
            permalink = self._permalink(channel or consult.channel, ts)
        self._check_first.discard(msg.id)
        with self.sessions() as s, s.begin():
            row = repo.get_outbox(session=s, message_id=msg.id)
            if row is None:
                return
            row.status = status
            row.lease_owner = None
            row.lease_until = None
            row.last_error = error[:255] if error else row.last_error
            if status == "sent":
                row.sent_at = self.clock.now()
                row.result_ts = ts
            if msg.kind == Kind.POST and consult is not None:
                target = repo.get_consult(session=s, consult_id=consult.id)
                if target is not None and status == "sent" and ts:
                    target.channel_ts = ts
                    target.permalink = permalink
                elif target is not None and status == "failed":
                    self.outbox.add(
                        s,
                        kind=Kind.DM,
                        template="post_failed",
                        user=target.requester,
                        consult_id=None,
                        now=self.clock.now(),
                        params={"error": error, "consult": target.id},
                    )
        if status == "sent":
            self.delivered += 1

    def _permalink(self, channel: str, ts: str) -> str | None:
        try:
            return self.client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
        except (SlackApiError, OSError, TimeoutError, URLError):
            return None

    def _ensure_permalink(self, consult_id: int) -> None:
        """Fetch the card's link if chat.getPermalink failed when it was posted: the
        confirmation exists to give the requester that link. No transaction is held while
        Slack is asked."""
        with self.sessions() as s:
            consult = repo.get_consult(session=s, consult_id=consult_id)
            if consult is None or not consult.channel_ts or consult.permalink:
                return
            channel, ts = consult.channel, consult.channel_ts
        link = self._permalink(channel, ts)
        if link:
            with self.sessions() as s, s.begin():
                row = repo.get_consult(session=s, consult_id=consult_id)
                if row is not None and not row.permalink:
                    row.permalink = link

    def _find_landed(self, msg: OutboxMessage, channel: str) -> str | None:
        """The ts of an earlier attempt of this message that reached Slack, if any.

        Raises Unclear when Slack could not be asked (5xx, 429, timeout): the caller retries
        later rather than risk a second post. A permanent refusal (e.g. a missing history
        scope) is logged and treated as "not found", so delivery never stalls for good.
        """
        try:
            target = channel
            if channel.startswith(("U", "W")):
                target = self.client.conversations_open(users=channel)["channel"]["id"]
            history = self.client.conversations_history(
                channel=target,
                limit=100,
                include_all_metadata=True,
                oldest=str(msg.created_at.timestamp() - 60) if msg.created_at else None,
            )
            for m in history.get("messages") or []:
                if _is_ours(m, msg.id):
                    return str(m.get("ts"))
            if msg.kind == Kind.THREAD:
                return self._find_in_thread(msg, target)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = (
                str((exc.response.data or {}).get("error", ""))
                if isinstance(exc.response.data, dict)
                else ""
            )
            if status == 429 or status >= 500 or error in RETRYABLE_ERRORS:
                raise Unclear(f"{status} {error}".strip()) from exc
            log.warning(
                "could not check whether a post landed",
                extra={"outbox_id": msg.id, "error": error or str(status)},
            )
        except (OSError, TimeoutError, URLError) as exc:
            raise Unclear(type(exc).__name__) from exc
        except KeyError:
            log.warning("could not check whether a post landed", extra={"outbox_id": msg.id})
        return None

    def _find_in_thread(self, msg: OutboxMessage, channel: str) -> str | None:
        consult_id = msg.consult_id
        if consult_id is None:
            return None
        with self.sessions() as s:
            consult = repo.get_consult(session=s, consult_id=consult_id)
        if consult is None or not consult.channel_ts:
            return None
        replies = self.client.conversations_replies(
            channel=channel, ts=consult.channel_ts, include_all_metadata=True, limit=200
        )
        for m in replies.get("messages") or []:
            if _is_ours(m, msg.id):
                return str(m.get("ts"))
        return None

    # ------------------------------------------------------------------ rendering
    def _upload_call(self, s: Session, payload: dict[str, Any], params: dict[str, Any]) -> Call:
        """The digest chart, rendered now from the database (files need a channel id)."""
        from bot.reports.chart import digest_chart_png  # noqa: PLC0415 - matplotlib loads lazily

        until = datetime.fromisoformat(str(params["until"]).replace("Z", "+00:00"))
        png = digest_chart_png(s, service=str(params["service"]), until=until)
        return Call(
            "files.upload_v2",
            {
                "user": payload["user"],
                "content": png,
                "filename": f"{params['service']}-time-to-answer.png",
                "title": f"{params['service']}: daily median time to answer, 8 weeks",
            },
        )

    def _prepare(self, msg: OutboxMessage) -> tuple[Consult | None, Call | None]:
        payload = msg.payload or {}
        template = payload.get("template", "text")
        params = dict(payload.get("params") or {})
        if template == "confirmation" and msg.consult_id:
            self._ensure_permalink(msg.consult_id)
        with self.sessions() as s:
            consult = (
                repo.get_consult(session=s, consult_id=msg.consult_id) if msg.consult_id else None
            )
            if consult is None and params.get("consult"):
                consult = repo.get_consult(session=s, consult_id=int(params["consult"]))

            def load(ids: list[int]) -> list[Consult]:
                found = [repo.get_consult(session=s, consult_id=int(i)) for i in ids]
                return [c for c in found if c is not None]

            ctx = RenderContext(catalogue=self.catalogue, now=self.clock.now(), load=load)
            if msg.kind == Kind.UPLOAD:
                return consult, self._upload_call(s, payload, params)
            if msg.kind == Kind.HOME:
                view = build_home_view(payload["user"], session=s, ctx=ctx)
                return consult, Call("views.publish", {"user_id": payload["user"], "view": view})
            if template == "confirmation" and consult is not None:
                if not consult.channel_ts:
                    # The card never reached the channel (the requester got "could not be
                    # posted" instead): do not tell them it is there.
                    return consult, None
            text, blocks = render_message(template, consult, params, ctx)
            if s.in_transaction():
                s.commit()
        metadata = {"event_type": OUTBOX_EVENT_TYPE, "event_payload": {"outbox_id": msg.id}}
        base: dict[str, Any] = {"text": text, "blocks": blocks}
        if msg.kind == Kind.POST:
            assert consult is not None
            return consult, Call(
                "chat.postMessage",
                base | {"channel": consult.channel, "metadata": metadata, "unfurl_links": False},
            )
        if msg.kind == Kind.UPDATE:
            if consult is None or not consult.channel_ts:
                return consult, None
            return consult, Call(
                "chat.update", base | {"channel": consult.channel, "ts": consult.channel_ts}
            )
        if msg.kind == Kind.THREAD:
            if consult is None or not consult.channel_ts:
                return consult, None
            return consult, Call(
                "chat.postMessage",
                base
                | {
                    "channel": consult.channel,
                    "thread_ts": consult.channel_ts,
                    "metadata": metadata,
                    "unfurl_links": False,
                },
            )
        if msg.kind == Kind.DM:
            return consult, Call(
                "chat.postMessage",
                base | {"channel": payload["user"], "metadata": metadata, "unfurl_links": False},
            )
        if msg.kind == Kind.CHANNEL:
            channel = payload.get("channel") or (consult.channel if consult else "")
            return consult, Call(
                "chat.postMessage",
                base | {"channel": channel, "metadata": metadata, "unfurl_links": False},
            )
        if msg.kind == Kind.EPHEMERAL:
            return consult, Call(
                "chat.postEphemeral",
                base | {"channel": payload.get("channel"), "user": payload["user"]},
            )
        raise ValueError(f"unknown outbox kind {msg.kind!r}")


_POSTING_KINDS = {Kind.POST, Kind.THREAD, Kind.DM, Kind.CHANNEL}


def _pacing_channel(kind: str, payload: dict[str, Any], consult_channel: str | None) -> str | None:
    """The channel a chat.postMessage for this message will go to (None: not paced)."""
    if kind not in _POSTING_KINDS:
        return None
    if kind == Kind.DM:
        return payload.get("user")
    if kind == Kind.CHANNEL:
        return payload.get("channel") or consult_channel
    return consult_channel


def _dm_channel(client: WebClient, user: str) -> str:
    return str(client.conversations_open(users=user)["channel"]["id"])


def _is_ours(message: dict[str, Any], outbox_id: int) -> bool:
    meta = message.get("metadata") or {}
    return meta.get("event_type") == OUTBOX_EVENT_TYPE and str(
        (meta.get("event_payload") or {}).get("outbox_id")
    ) == str(outbox_id)


def _retry_after(headers: Any) -> float:
    try:
        for key, value in (headers or {}).items():
            if key.lower() == "retry-after":
                raw = value[0] if isinstance(value, list) else value
                return float(raw)
    except (TypeError, ValueError):
        pass
    return 1.0
