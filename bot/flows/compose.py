"""What an outbox message says, decided when it is delivered: `Composer.compose` turns a
message into the Slack call to make, rendered from the consult's current state (so an
update that waited in the outbox never shows a stale card), and `Composer.record` keeps
the consult in step with what became of its card. Delivery gets both injected by the
assembly; neither talks to Slack itself (links are asked for through delivery)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue import Catalogue
from bot.domain.clock import Clock
from bot.domain.vocabulary import CriticalStep, Kind, Template
from bot.flows.consults.oncall import OnCall
from bot.flows.cover_routing import earlier_recipients, recipient
from bot.flows.critical import audit
from bot.flows.home import build_home_view
from bot.flows.notify import Notify
from bot.flows.outbox import Outbox
from bot.flows.schedules import ScheduleBook
from bot.reports.chart import digest_chart_png
from bot.reports.model import iso_z
from bot.slack.delivery.dispatcher import LinkLookup, Outcome
from bot.slack.delivery.transport import Call
from bot.slack.render.context import RenderContext
from bot.slack.render.cover import covering_for
from bot.slack.render.messages import render_message
from storage import critical, followups, repo
from storage.models import Consult, OutboxMessage
from storage.transfers import LEFT_CARD

# Templates whose renderer gets a `CriticalResult` (params["critical"]) instead of a consult.
CRITICAL_TEMPLATES = "critical_"
# Templates whose renderer gets a `FollowUp` (params["followup"]) instead of a consult.
FOLLOWUP_TEMPLATES = "followup_"


@dataclass(kw_only=True)
class Composer:
    """Composes outbox messages for delivery and records delivered consult cards."""

    sessions: sessionmaker[Session]
    catalogue: Catalogue
    clock: Clock
    outbox: Outbox
    schedules: ScheduleBook | None = None
    # The clock who is on call is read by (the consults' clock); `clock` when not given.
    on_call_clock: Clock | None = None

    def compose(self, msg: OutboxMessage, permalink: LinkLookup) -> Call | None:
        """The Slack call for `msg` (None: nothing to send); `permalink` asks Slack for the
        link of a message, for a confirmation whose card has none yet."""
        payload = msg.payload or {}
        template = payload.get("template", Template.TEXT)
        params = dict(payload.get("params") or {})
        if template == Template.CONFIRMATION and msg.consult_id:
            self._ensure_permalink(msg.consult_id, permalink)
        with self.sessions() as s:
            consult = _consult_of(s, msg, params)
            ctx = self._context(s)
            if msg.kind == Kind.UPLOAD:
                return _upload_call(s, payload, params)
            if msg.kind == Kind.HOME:
                view = build_home_view(payload["user"], session=s, ctx=ctx, book=self.schedules)
                return Call("views.publish", {"user_id": payload["user"], "view": view})
            if template == Template.CONFIRMATION and consult is not None:
                if not consult.channel_ts:
                    # The card never reached the channel (the requester got "could not be
                    # posted" instead): do not tell them it is there.
                    return None
            subject: Any = consult
            if str(template).startswith(CRITICAL_TEMPLATES):
                subject = critical.by_id(session=s, critical_id=int(params["critical"]))
                if subject is None:
                    return None
            if str(template).startswith(FOLLOWUP_TEMPLATES):
                subject = followups.by_id(session=s, followup_id=int(params["followup"]))
                if subject is None:
                    return None
            text, blocks = render_message(template, subject, params, ctx)
            to, covered = recipient(s, msg)
            if covered:
                text, blocks = covering_for(text, blocks, covered)
            others = earlier_recipients(s, msg, to, self.clock.now())
            if s.in_transaction():
                s.commit()
        call = _addressed(msg, consult, {"text": text, "blocks": blocks}, to=to)
        if call is not None and others:
            call.look_also = tuple(others)
        return call

    def record(self, session: Session, msg: OutboxMessage, outcome: Outcome) -> None:
        """In delivery's transaction: a consult card that was sent gives the consult its
        message ts and link; one Slack refused is reported to the requester by DM. A
        critical result's direct message that Slack accepted is recorded as delivered."""
        if msg.kind == Kind.DM and outcome.status == "sent":
            record_critical_delivery(session, msg, self.clock.now())
        if msg.kind != Kind.POST:
            return
        consult = _consult_of(session, msg, dict((msg.payload or {}).get("params") or {}))
        if consult is None:
            return
        if outcome.status == "sent" and outcome.ts:
            consult.channel_ts = outcome.ts
            consult.permalink = outcome.permalink
        elif outcome.status == "failed":
            notify = Notify(self.outbox, session, self.clock.now())
            notify.dm_covered(
                consult.requester,
                Template.POST_FAILED,
                {"error": outcome.error, "consult": consult.id},
            )

    def _context(self, s: Session) -> RenderContext:
        def load(ids: list[int]) -> list[Consult]:
            # One query for a storm summary's hundred consults, not one each.
            return repo.get_consults(session=s, consult_ids=[int(i) for i in ids])

        now = self.clock.now()
        found: list[OnCall] = []

        def on_call(key: str) -> tuple[str, ...]:
            # Read once per message, and only when a card or confirmation asks.
            service = self.catalogue.service(key)
            if service is None:
                return ()
            if not found:
                at = (self.on_call_clock or self.clock).now()
                found.append(OnCall(repo.on_call_overrides(session=s), at, self.schedules))
            return found[0].people(service)

        return RenderContext(catalogue=self.catalogue, now=now, load=load, on_call=on_call)

    def _ensure_permalink(self, consult_id: int, permalink: LinkLookup) -> None:
        """Fetch the card's link if chat.getPermalink failed when it was posted: the
        confirmation exists to give the requester that link. No transaction is held while
        Slack is asked."""
        with self.sessions() as s:
            consult = repo.get_consult(session=s, consult_id=consult_id)
            if consult is None or not consult.channel_ts or consult.permalink:
                return
            channel, ts = consult.channel, consult.channel_ts
        link = permalink(channel, ts)
        if link:
            with self.sessions() as s, s.begin():
                row = repo.get_consult(session=s, consult_id=consult_id)
                if row is not None and not row.permalink:
                    row.permalink = link


def record_critical_delivery(session: Session, msg: OutboxMessage, at: datetime) -> None:
    """When Slack accepted a critical result's direct message: an audit event for each,
    and the first time per recipient in the row (what the log shows as delivered)."""
    payload = msg.payload or {}
    if payload.get("template") != Template.CRITICAL_RESULT:
        return
    params = payload.get("params") or {}
    r = critical.by_id(session=session, critical_id=int(params["critical"]))
    if r is None:
        return
    user = str(payload.get("user"))
    if user not in (r.delivered or {}):
        r.delivered = {**(r.delivered or {}), user: iso_z(at)}
    audit(session, r, CriticalStep.DELIVERED, "slack", at, user=user, message=msg.id)


def _consult_of(s: Session, msg: OutboxMessage, params: dict[str, Any]) -> Consult | None:
    """The consult a message is about: its own, or the one its params name."""
    consult = repo.get_consult(session=s, consult_id=msg.consult_id) if msg.consult_id else None
    if consult is None and params.get("consult"):
        consult = repo.get_consult(session=s, consult_id=int(params["consult"]))
    return consult


def _upload_call(s: Session, payload: dict[str, Any], params: dict[str, Any]) -> Call:
    """The digest chart, rendered now from the database (files need a channel id)."""
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


def _addressed(
    msg: OutboxMessage, consult: Consult | None, base: dict[str, Any], *, to: str
) -> Call | None:
    """The call delivering rendered text and blocks where the message's kind says (a
    direct message to `to`; None: the consult's card, which it attaches to, is not in the
    channel)."""
    payload = msg.payload or {}
    post = {"unfurl_links": False}
    if msg.kind == Kind.POST:
        assert consult is not None
        return Call("chat.postMessage", base | {"channel": consult.channel} | post)
    left = (payload.get("params") or {}).get(LEFT_CARD)
    if msg.kind in (Kind.UPDATE, Kind.THREAD) and left and payload.get("channel"):
        # About the card the consult left behind (a transfer): that card's channel and ts,
        # not the consult's current card.
        if msg.kind == Kind.UPDATE:
            return Call("chat.update", base | {"channel": payload["channel"], "ts": left})
        return Call(
            "chat.postMessage", base | {"channel": payload["channel"], "thread_ts": left} | post
        )
    if msg.kind in (Kind.UPDATE, Kind.THREAD):
        if consult is None or not consult.channel_ts:
            return None
        if msg.kind == Kind.UPDATE:
            return Call(
                "chat.update", base | {"channel": consult.channel, "ts": consult.channel_ts}
            )
        thread = {"channel": consult.channel, "thread_ts": consult.channel_ts}
        return Call("chat.postMessage", base | thread | post)
    if msg.kind == Kind.DM:
        return Call("chat.postMessage", base | {"channel": to} | post)
    if msg.kind == Kind.CHANNEL:
        channel = payload.get("channel") or (consult.channel if consult else "")
        return Call("chat.postMessage", base | {"channel": channel} | post)
    if msg.kind == Kind.EPHEMERAL:
        return Call(
            "chat.postEphemeral",
            base | {"channel": payload.get("channel"), "user": payload["user"]},
        )
    raise ValueError(f"unknown outbox kind {msg.kind!r}")
