"""Finding an earlier attempt of a post. chat.postMessage has no idempotency key, so every
post carries its outbox id in the message metadata (`stamp`); a post that may have landed
(a timeout, a 5xx, or a lease that expired after a crash) is looked for in the channel, or
in the thread it replies to, before it is sent again (`find_landed`)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.delivery.transport import Call, Unclear, answer_of, dm_channel, transient
from bot.slack.ids import OUTBOX_EVENT_TYPE
from storage.models import OutboxMessage

log = logging.getLogger("careloop.delivery")

STAMPED_METHODS = {"chat.postMessage"}


def stamp(call: Call, outbox_id: int) -> Call:
    """`call` carrying the outbox id in its metadata when it posts a message."""
    if call.method not in STAMPED_METHODS:
        return call
    metadata = {"event_type": OUTBOX_EVENT_TYPE, "event_payload": {"outbox_id": outbox_id}}
    return replace(call, args=call.args | {"metadata": metadata})


def is_ours(message: dict[str, Any], outbox_id: int) -> bool:
    """Whether a Slack message is a post of outbox message `outbox_id`."""
    meta = message.get("metadata") or {}
    return meta.get("event_type") == OUTBOX_EVENT_TYPE and str(
        (meta.get("event_payload") or {}).get("outbox_id")
    ) == str(outbox_id)


def find_landed(client: WebClient, msg: OutboxMessage, call: Call) -> str | None:
    """The ts of an earlier attempt of this message that reached Slack, if any.

    Raises Unclear when Slack could not be asked (5xx, 429, timeout): the caller retries
    later rather than risk a second post. A permanent refusal (e.g. a missing history
    scope) is logged and treated as "not found", so delivery never stalls for good.
    """
    channel = str(call.args.get("channel", ""))
    try:
        target = dm_channel(client, channel) if channel.startswith(("U", "W")) else channel
        found = _in_history(client, msg, target)
        thread_ts = call.args.get("thread_ts")
        if found is None and thread_ts:
            replies = client.conversations_replies(
                channel=target, ts=thread_ts, include_all_metadata=True, limit=200
            )
            found = _ours_in(replies.get("messages"), msg.id)
        for user in call.look_also:  # a cover changed since the earlier attempt
            if found is None:
                found = _in_history(client, msg, dm_channel(client, user))
        return found
    except SlackApiError as exc:
        status, error = answer_of(exc)
        if transient(status, error):
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


def _in_history(client: WebClient, msg: OutboxMessage, channel: str) -> str | None:
    """The ts of a post of `msg` among `channel`'s recent messages, if any."""
    history = client.conversations_history(
        channel=channel,
        limit=100,
        include_all_metadata=True,
        oldest=str(msg.created_at.timestamp() - 60) if msg.created_at else None,
    )
    return _ours_in(history.get("messages"), msg.id)


def _ours_in(messages: list[dict[str, Any]] | None, outbox_id: int) -> str | None:
    for m in messages or []:
        if is_ours(m, outbox_id):
            return str(m.get("ts"))
    return None
