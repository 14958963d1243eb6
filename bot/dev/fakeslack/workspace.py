"""The fake Slack's in-memory workspace: messages and threads, ephemeral messages, views and
App Homes, channel members, user profiles, file uploads and response-URL posts, with the
helpers the Web API methods share (timestamps, the API's message shape, new views)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

TEAM_ID = "T0001"
TEAM_DOMAIN = "careloop-test"
TEAM_URL = "https://careloop-test.slack.com/"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
APP_ID = "A0CARELOOP"

_TRUE = {"1", "true", "True", "yes"}

Json = dict[str, Any]


class ApiError(Exception):
    """Raised by a method implementation: answer HTTP 200 {"ok": false, "error": ...}."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def dm_channel(user: str) -> str:
    """The DM channel id the fake uses for `user`."""
    return "D" + user


def is_user(channel: str) -> bool:
    """Whether a channel argument is a user id (a DM to that user)."""
    return channel[:1] in ("U", "W")


def truthy(value: Any) -> bool:
    """A boolean argument as Slack reads it (``true``, ``1``, ...)."""
    if isinstance(value, bool):
        return value
    return str(value) in _TRUE


def ts_key(ts: Any) -> Decimal:
    """A message timestamp as a number that sorts and compares (0 if it is not one)."""
    try:
        return Decimal(str(ts))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def paginate(items: list[Any], args: Json, *, default_limit: int) -> tuple[list[Any], bool, str]:
    """One page of `items` by the ``limit``/``cursor`` arguments: page, more?, next cursor."""
    try:
        limit = int(args.get("limit") or default_limit)
        start = int(args.get("cursor") or 0)
    except (TypeError, ValueError) as exc:
        raise ApiError("invalid_cursor") from exc
    limit = max(1, limit)
    page = items[start : start + limit]
    more = start + limit < len(items)
    return page, more, str(start + limit) if more else ""


class Workspace:
    """The state the Web API methods read and change (callers hold the server's lock).

    ``clock`` gives message timestamps; ``base`` is the server's URL once it listens.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.base = ""
        self.ids = itertools.count(1)
        self.last_us = 0
        self.messages: dict[str, list[Json]] = {}
        self.index: dict[tuple[str, str], Json] = {}
        self.ephemerals: list[Json] = []
        self.view_calls: dict[str, list[Json]] = {}
        self.views: dict[str, Json] = {}
        self.home: dict[str, str] = {}
        self.triggers: set[str] = set()
        self.members: dict[str, list[str]] = {}
        self.users: dict[str, Json] = {}
        self.emails: dict[str, str] = {}  # lower-case e-mail → user (users.lookupByEmail)
        self.pending_files: dict[str, Json] = {}
        self.uploads: list[Json] = []
        self.responses: list[tuple[str, Json]] = []

    def resolve(self, channel: str) -> str:
        return dm_channel(channel) if is_user(channel) else channel

    def next_ts(self) -> str:
        now_us = int(round(self.clock() * 1_000_000))
        self.last_us = max(now_us, self.last_us + 1)
        return f"{self.last_us // 1_000_000}.{self.last_us % 1_000_000:06d}"

    def store(
        self,
        channel: str,
        text: Any,
        blocks: Any,
        thread_ts: Any,
        metadata: Any,
        user: str,
    ) -> Json:
        ch = self.resolve(channel)
        msg: Json = {
            "ts": self.next_ts(),
            "channel": ch,
            "text": "" if text is None else str(text),
            "blocks": list(blocks or []),
            "thread_ts": str(thread_ts) if thread_ts else None,
            "metadata": metadata or None,
            "user": user,
        }
        self.messages.setdefault(ch, []).append(msg)
        self.index[(ch, msg["ts"])] = msg
        return msg

    def api_message(self, msg: Json, *, with_metadata: bool) -> Json:
        """A stored message in the shape Slack's API returns it."""
        out: Json = {"type": "message", "ts": msg["ts"], "text": msg["text"], "user": msg["user"]}
        if msg["user"] == BOT_USER_ID:
            out["bot_id"] = BOT_ID
            out["app_id"] = APP_ID
        if msg["blocks"]:
            out["blocks"] = copy.deepcopy(msg["blocks"])
        if msg["thread_ts"]:
            out["thread_ts"] = msg["thread_ts"]
            parent = self.index.get((msg["channel"], msg["thread_ts"]))
            if parent is not None:
                out["parent_user_id"] = parent["user"]
        else:
            replies = [
                m for m in self.messages.get(msg["channel"], []) if m["thread_ts"] == msg["ts"]
            ]
            if replies:
                out["thread_ts"] = msg["ts"]
                out["reply_count"] = len(replies)
                out["latest_reply"] = replies[-1]["ts"]
        if with_metadata and msg["metadata"]:
            out["metadata"] = copy.deepcopy(msg["metadata"])
        return out

    def new_view(self, view: Any, *, view_id: str | None = None) -> Json:
        if not isinstance(view, dict):
            raise ApiError("invalid_arguments")
        n = next(self.ids)
        stored: Json = {
            "id": view_id or f"V{n:08d}",
            "team_id": TEAM_ID,
            "type": view.get("type", "modal"),
            "blocks": [],
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "state": {"values": {}},
            "hash": f"h{n:08d}",
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": None,
            "previous_view_id": None,
            "app_id": APP_ID,
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }
        stored.update(copy.deepcopy(view))
        stored["id"] = view_id or f"V{n:08d}"
        stored["hash"] = f"h{n:08d}"
        stored["root_view_id"] = stored["root_view_id"] or stored["id"]
        self.views[stored["id"]] = stored
        return stored

    def use_trigger(self, args: Json) -> None:
        trigger = args.get("trigger_id") or (args.get("interactivity_pointer"))
        if not trigger:
            raise ApiError("invalid_arguments")
        if trigger in self.triggers:
            raise ApiError("exchanged_trigger_id")
        self.triggers.add(str(trigger))

    def record_view_call(self, method: str, args: Json) -> None:
        self.view_calls.setdefault(method, []).append(copy.deepcopy(args))
