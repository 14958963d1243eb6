"""A fake Slack Web API server (standard library only).

:class:`FakeSlack` listens on ``http://127.0.0.1:<port>/api/<method>`` (port 0 = any free port,
so tests can run in parallel), answers the Web API methods CareLoop uses, keeps a small
in-memory workspace (messages, threads, views, uploads, ...) and records every call.

Requests are accepted the way ``slack_sdk`` sends them: form-encoded (``params=``), JSON
(``json=``), multipart, or GET with a query string.  The token comes from
``Authorization: Bearer ...`` or a ``token`` parameter; it is removed from the recorded args
and kept in :attr:`Call.token`.

Besides ``/api/<method>`` the server answers two other kinds of URL:

* ``/upload/<file_id>`` - the ``upload_url`` handed out by ``files.getUploadURLExternal``
  (``files_upload_v2`` POSTs the raw file bytes there); recorded as method ``"upload"``.
* ``/respond/<n>`` - a Slack-style ``response_url`` (see :meth:`FakeSlack.response_url`);
  JSON bodies POSTed there land in :attr:`FakeSlack.responses`; recorded as method
  ``"response_url"``.

Failure scripting (:meth:`FakeSlack.fail`): a failed call is recorded (with its HTTP status)
but changes nothing.  A *hang* is different: with ``hang=`` and no ``status``/``error`` the
call takes effect as soon as it arrives and only the answer is delayed - this simulates a
client timeout where the post landed in Slack anyway, which is exactly the case a client has
to reconcile (e.g. by looking for its message metadata in ``conversations.history``).

Message timestamps come from a clock (``time.time`` unless ``clock=`` is given), formatted
as Slack does (``"1700000000.000100"``), and are strictly increasing per server.  Pass the
bot's fake clock (``clock=lambda: fake_clock.now().timestamp()``) when the code under test
filters history by ``oldest``/``latest`` computed from that clock.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TEAM_ID = "T0001"
TEAM_DOMAIN = "careloop-test"
TEAM_URL = "https://careloop-test.slack.com/"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
APP_ID = "A0CARELOOP"

# Parameters that slack_sdk may send JSON-encoded inside a form body.
_JSON_FIELDS = ("blocks", "attachments", "metadata", "view", "files", "user_auth_blocks")
_TRUE = {"1", "true", "True", "yes"}
# Methods answered whatever token is sent (Socket Mode uses a separate xapp- token).
_ANY_TOKEN = {"apps.connections.open"}

Json = dict[str, Any]


@dataclass
class Call:
    """One request the fake server answered.

    ``method`` is the Web API method (``"chat.postMessage"``), or ``"upload"`` /
    ``"response_url"`` for the two non-API URLs.  ``args`` are the parsed parameters (JSON
    strings for blocks/metadata/view/files already decoded; no ``token``).  ``status`` is the
    HTTP status answered; ``ok``/``error`` mirror the JSON body; ``delay`` is any scripted hang.
    """

    method: str
    args: dict[str, Any]
    at: float
    status: int
    token: str | None
    ok: bool = False
    error: str | None = None
    delay: float = 0.0


@dataclass
class _Failure:
    method: str
    status: int | None
    times: int | None
    retry_after: int | None
    hang: float | None
    error: str | None


@dataclass
class _Outcome:
    status: int
    body: Json | bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class _ApiError(Exception):
    """Raised by a method implementation: answer HTTP 200 {"ok": false, "error": ...}."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _dm_channel(user: str) -> str:
    return "D" + user


def _is_user(channel: str) -> bool:
    return channel[:1] in ("U", "W")


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value) in _TRUE


def _ts_key(ts: Any) -> Decimal:
    try:
        return Decimal(str(ts))
    except (InvalidOperation, ValueError):
        return Decimal(0)


class FakeSlack:
    """In-memory fake of the Slack Web API, served over HTTP on a background thread.

    ``token``: if given, any other token is answered with ``invalid_auth`` (``not_authed`` when
    none is sent).  ``clock``: source of message timestamps (seconds since the epoch).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self._clock = clock or time.time
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._last_us = 0
        self._failures: list[_Failure] = []
        self.calls: list[Call] = []
        # workspace state
        self._messages: dict[str, list[Json]] = {}
        self._index: dict[tuple[str, str], Json] = {}
        self._ephemerals: list[Json] = []
        self._view_calls: dict[str, list[Json]] = {}
        self._views: dict[str, Json] = {}
        self._home: dict[str, str] = {}
        self._triggers: set[str] = set()
        self._members: dict[str, list[str]] = {}
        self._users: dict[str, Json] = {}
        self._pending_files: dict[str, Json] = {}
        self._uploads: list[Json] = []
        self._responses: list[tuple[str, Json]] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeSlack:
        """Start serving on a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._server = _Server((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"devslack-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); hanging requests are abandoned."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base(self) -> str:
        """``http://HOST:PORT`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The Web API base URL for ``WebClient(base_url=...)`` / ``SLACK_API_URL``."""
        return self.base + "/api/"

    # ------------------------------------------------------------------ recording
    def calls_to(self, method: str) -> list[Call]:
        """All recorded calls to ``method`` (any status), in order."""
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def clear(self) -> None:
        """Forget recorded calls; the workspace state stays."""
        with self._lock:
            self.calls.clear()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` every 10 ms until it is true or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return bool(predicate())
            time.sleep(0.01)

    def wait_calls(self, method: str, n: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait for at least ``n`` successful (HTTP 200, ok) calls to ``method``; return them.

        Raises AssertionError listing every recorded method if they do not arrive in time.
        """

        def good() -> list[Call]:
            return [c for c in self.calls_to(method) if c.status == 200 and c.ok]

        if not self.wait_for(lambda: len(good()) >= n, timeout):
            with self._lock:
                seen = [_describe(c) for c in self.calls]
            raise AssertionError(
                f"expected {n} successful {method} call(s) within {timeout}s, "
                f"got {len(good())}; recorded: {seen}"
            )
        return good()

    # ------------------------------------------------------------------ scripting
    def fail(
        self,
        method: str,
        *,
        status: int | None = None,
        times: int | None = 1,
        retry_after: int | None = None,
        hang: float | None = None,
        error: str | None = None,
    ) -> None:
        """Script failures for ``method`` (``"*"`` = any Web API method).

        * ``status`` (default 500): answer with that HTTP status and
          ``{"ok": false, "error": "internal_error" | "ratelimited" | "http_<status>"}``.
          429 carries ``Retry-After: <retry_after or 1>``; any status carries ``Retry-After``
          when ``retry_after`` is given.
        * ``error="channel_not_found"``: HTTP 200 (or ``status`` if given) with
          ``{"ok": false, "error": ...}``.
        * ``hang=seconds``: wait that long before answering.  Alone (no ``status``/``error``)
          the call *takes effect* on arrival and then answers normally, late - a timeout
          where the post landed anyway.  With ``status``/``error`` it hangs and then fails.
        * ``times``: how many matching calls to affect; ``None`` = until
          :meth:`clear_failures`.  Rules are consumed in the order they were added.

        Failed calls are recorded (with their status) but change no state.
        ``"upload"`` and ``"response_url"`` can be failed by name, not through ``"*"``.
        """
        with self._lock:
            self._failures.append(_Failure(method, status, times, retry_after, hang, error))

    def clear_failures(self) -> None:
        """Drop every scripted failure."""
        with self._lock:
            self._failures.clear()

    # ------------------------------------------------------------------ fixtures
    def set_members(self, channel: str, users: list[str]) -> None:
        """Set the member list ``conversations.members`` returns for ``channel``."""
        with self._lock:
            self._members[channel] = list(users)

    def set_user(self, user: str, **fields: Any) -> None:
        """Override fields of the ``users.info`` answer for ``user`` (e.g. ``tz=...``)."""
        with self._lock:
            self._users.setdefault(user, {}).update(fields)

    def inject_message(
        self,
        channel: str,
        text: str,
        *,
        user: str,
        thread_ts: str | None = None,
        blocks: list[Json] | None = None,
        metadata: Json | None = None,
    ) -> Json:
        """Store a message as if a person (``user``) had posted it; returns the stored copy."""
        with self._lock:
            msg = self._store(channel, text, blocks, thread_ts, metadata, user)
            return copy.deepcopy(msg)

    def response_url(self) -> str:
        """A fresh Slack-style ``response_url`` on this server (accepts JSON POSTs)."""
        return f"{self.base}/respond/{next(self._ids)}"

    # ------------------------------------------------------------------ state read by tests
    def messages(self, channel: str) -> list[Json]:
        """Every message in ``channel`` (top-level and replies) in posting order.

        Each is ``{"ts", "channel", "text", "blocks", "thread_ts", "metadata", "user"}``
        as currently stored.  A user id (``U...``) means that user's DM channel.
        """
        with self._lock:
            return copy.deepcopy(self._messages.get(self._resolve(channel), []))

    def thread(self, channel: str, ts: str) -> list[Json]:
        """The parent message ``ts`` and its replies, oldest first."""
        with self._lock:
            ch = self._resolve(channel)
            return copy.deepcopy(
                [m for m in self._messages.get(ch, []) if m["ts"] == ts or m["thread_ts"] == ts]
            )

    def message(self, channel: str, ts: str) -> Json | None:
        """One stored message, or None."""
        with self._lock:
            msg = self._index.get((self._resolve(channel), ts))
            return copy.deepcopy(msg) if msg is not None else None

    def dms(self, user: str) -> list[Json]:
        """Messages posted to ``user`` directly or to their DM channel."""
        return self.messages(_dm_channel(user))

    def ephemerals(self, user: str | None = None) -> list[Json]:
        """Args of every ``chat.postEphemeral`` (optionally only those for ``user``)."""
        with self._lock:
            return copy.deepcopy(
                [e for e in self._ephemerals if user is None or e.get("user") == user]
            )

    @property
    def views_opened(self) -> list[Json]:
        """Args of every successful ``views.open``."""
        return self._view_args("views.open")

    @property
    def views_pushed(self) -> list[Json]:
        """Args of every successful ``views.push``."""
        return self._view_args("views.push")

    @property
    def views_updated(self) -> list[Json]:
        """Args of every successful ``views.update``."""
        return self._view_args("views.update")

    @property
    def views_published(self) -> list[Json]:
        """Args of every successful ``views.publish``."""
        return self._view_args("views.publish")

    def views(self) -> list[Json]:
        """Every view as Slack now holds it (``id``, ``hash``, ``state`` ...), oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._views.values()))

    def view(self, view_id: str) -> Json | None:
        """The current view object ``view_id`` (what Slack would put in a payload's ``view``)."""
        with self._lock:
            found = self._views.get(view_id)
            return copy.deepcopy(found) if found is not None else None

    def home(self, user: str) -> Json | None:
        """The App Home view last published for ``user``."""
        with self._lock:
            view_id = self._home.get(user)
            return copy.deepcopy(self._views[view_id]) if view_id else None

    @property
    def uploads(self) -> list[Json]:
        """Completed uploads: ``{"file_id", "filename", "title", "bytes", "channel_id",
        "initial_comment", "thread_ts"}``."""
        with self._lock:
            return copy.deepcopy(self._uploads)

    @property
    def responses(self) -> list[Json]:
        """JSON bodies POSTed to response URLs, in order."""
        with self._lock:
            return [copy.deepcopy(body) for _, body in self._responses]

    def responses_to(self, url: str) -> list[Json]:
        """JSON bodies POSTed to one response URL."""
        with self._lock:
            return [copy.deepcopy(body) for u, body in self._responses if u == _url_path(url)]

    def _view_args(self, method: str) -> list[Json]:
        with self._lock:
            return copy.deepcopy(self._view_calls.get(method, []))

    # ------------------------------------------------------------------ request handling
    def _dispatch(self, verb: str, target: str, headers: Any, body: bytes) -> _Outcome:
        parts = urlsplit(target)
        path = parts.path
        if path.startswith("/api/"):
            method = path[len("/api/") :].strip("/")
            return self._api(method, parts.query, headers, body)
        if path.startswith("/upload/") and verb == "POST":
            return self._upload(path[len("/upload/") :], headers, body)
        if path.startswith("/respond/") and verb == "POST":
            return self._respond(path, headers, body)
        return _Outcome(404, {"ok": False, "error": "not_found"})

    def _api(self, method: str, query: str, headers: Any, body: bytes) -> _Outcome:
        try:
            args = _parse_args(query, headers.get("Content-Type") or "", body)
            bad_request = None
        except ValueError:
            args, bad_request = {}, "invalid_json"
        auth = headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        form_token = args.pop("token", None)
        token = token or (str(form_token) if form_token else None)

        with self._lock:
            now = time.time()
            rule = self._take_failure(method, api=True)
            outcome = self._failure_outcome(rule) if rule else None
            if outcome is None:
                if bad_request:
                    outcome = _Outcome(200, {"ok": False, "error": bad_request})
                elif self.token is not None and token != self.token and method not in _ANY_TOKEN:
                    err = "not_authed" if not token else "invalid_auth"
                    outcome = _Outcome(200, {"ok": False, "error": err})
                else:
                    outcome = self._run(method, args)
                if rule is not None and rule.hang:
                    outcome.delay = rule.hang
            self._record(method, args, now, outcome, token)
            return outcome

    def _run(self, method: str, args: Json) -> _Outcome:
        impl = _METHODS.get(method)
        if impl is None:
            return _Outcome(200, {"ok": False, "error": "unknown_method"})
        try:
            result = impl(self, args)
        except _ApiError as exc:
            return _Outcome(200, {"ok": False, "error": exc.error})
        return _Outcome(200, {"ok": True, **result})

    def _record(self, method: str, args: Json, at: float, out: _Outcome, token: str | None) -> None:
        body = out.body if isinstance(out.body, dict) else {}
        ok = bool(body.get("ok")) if isinstance(out.body, dict) else out.status == 200
        self.calls.append(
            Call(
                method=method,
                args=copy.deepcopy(args),
                at=at,
                status=out.status,
                token=token,
                ok=ok,
                error=body.get("error"),
                delay=out.delay,
            )
        )

    def _take_failure(self, method: str, *, api: bool) -> _Failure | None:
        for rule in self._failures:
            if rule.method == method or (api and rule.method == "*"):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._failures.remove(rule)
                return rule
        return None

    def _failure_outcome(self, rule: _Failure) -> _Outcome | None:
        """The failing answer for ``rule``, or None if it only delays a normal answer."""
        if rule.hang and rule.status is None and rule.error is None:
            return None
        headers: dict[str, str] = {}
        if rule.error is not None:
            status = rule.status if rule.status is not None else 200
            body: Json = {"ok": False, "error": rule.error}
        else:
            status = rule.status if rule.status is not None else 500
            if status == 429:
                name = "ratelimited"
            elif status >= 500:
                name = "internal_error"
            else:
                name = f"http_{status}"
            body = {"ok": False, "error": name}
        if rule.retry_after is not None or status == 429:
            headers["Retry-After"] = str(rule.retry_after if rule.retry_after is not None else 1)
        return _Outcome(status, body, headers, delay=rule.hang or 0.0)

    def _upload(self, file_id: str, headers: Any, body: bytes) -> _Outcome:
        with self._lock:
            now = time.time()
            rule = self._take_failure("upload", api=False)
            outcome = self._failure_outcome(rule) if rule else None
            if outcome is None:
                pending = self._pending_files.get(file_id)
                if pending is None:
                    outcome = _Outcome(404, b"file not found")
                else:
                    data = _file_bytes(headers.get("Content-Type") or "", body)
                    pending["bytes"] = data
                    outcome = _Outcome(200, f"OK - {len(data)}".encode())
                if rule is not None and rule.hang:
                    outcome.delay = rule.hang
            self._record("upload", {"file_id": file_id, "length": len(body)}, now, outcome, None)
            return outcome

    def _respond(self, path: str, headers: Any, body: bytes) -> _Outcome:
        with self._lock:
            now = time.time()
            rule = self._take_failure("response_url", api=False)
            outcome = self._failure_outcome(rule) if rule else None
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                payload = {"_raw": body.decode("utf-8", "replace")}
            if outcome is None:
                self._responses.append((path, payload))
                outcome = _Outcome(200, b"ok")
                if rule is not None and rule.hang:
                    outcome.delay = rule.hang
            args = payload if isinstance(payload, dict) else {"_body": payload}
            self._record("response_url", {"url": path, **args}, now, outcome, None)
            return outcome

    # ------------------------------------------------------------------ workspace helpers
    def _resolve(self, channel: str) -> str:
        return _dm_channel(channel) if _is_user(channel) else channel

    def _next_ts(self) -> str:
        now_us = int(round(self._clock() * 1_000_000))
        self._last_us = max(now_us, self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def _store(
        self,
        channel: str,
        text: Any,
        blocks: Any,
        thread_ts: Any,
        metadata: Any,
        user: str,
    ) -> Json:
        ch = self._resolve(channel)
        msg: Json = {
            "ts": self._next_ts(),
            "channel": ch,
            "text": "" if text is None else str(text),
            "blocks": list(blocks or []),
            "thread_ts": str(thread_ts) if thread_ts else None,
            "metadata": metadata or None,
            "user": user,
        }
        self._messages.setdefault(ch, []).append(msg)
        self._index[(ch, msg["ts"])] = msg
        return msg

    def _api_message(self, msg: Json, *, with_metadata: bool) -> Json:
        """A stored message in the shape Slack's API returns it."""
        out: Json = {"type": "message", "ts": msg["ts"], "text": msg["text"], "user": msg["user"]}
        if msg["user"] == BOT_USER_ID:
            out["bot_id"] = BOT_ID
            out["app_id"] = APP_ID
        if msg["blocks"]:
            out["blocks"] = copy.deepcopy(msg["blocks"])
        if msg["thread_ts"]:
            out["thread_ts"] = msg["thread_ts"]
            parent = self._index.get((msg["channel"], msg["thread_ts"]))
            if parent is not None:
                out["parent_user_id"] = parent["user"]
        else:
            replies = [
                m for m in self._messages.get(msg["channel"], []) if m["thread_ts"] == msg["ts"]
            ]
            if replies:
                out["thread_ts"] = msg["ts"]
                out["reply_count"] = len(replies)
                out["latest_reply"] = replies[-1]["ts"]
        if with_metadata and msg["metadata"]:
            out["metadata"] = copy.deepcopy(msg["metadata"])
        return out

    def _new_view(self, view: Any, *, view_id: str | None = None) -> Json:
        if not isinstance(view, dict):
            raise _ApiError("invalid_arguments")
        n = next(self._ids)
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
        self._views[stored["id"]] = stored
        return stored

    def _use_trigger(self, args: Json) -> None:
        trigger = args.get("trigger_id") or (args.get("interactivity_pointer"))
        if not trigger:
            raise _ApiError("invalid_arguments")
        if trigger in self._triggers:
            raise _ApiError("exchanged_trigger_id")
        self._triggers.add(str(trigger))

    def _view_call(self, method: str, args: Json) -> None:
        self._view_calls.setdefault(method, []).append(copy.deepcopy(args))

    # ------------------------------------------------------------------ Web API methods
    def _auth_test(self, args: Json) -> Json:
        return {
            "url": TEAM_URL,
            "team": "CareLoop Test",
            "user": "careloop",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: Json) -> Json:
        raise _ApiError("not_allowed_token_type")

    def _chat_post_message(self, args: Json) -> Json:
        channel = args.get("channel")
        if not channel:
            raise _ApiError("channel_not_found")
        text, blocks = args.get("text"), args.get("blocks")
        if not text and not blocks and not args.get("attachments"):
            raise _ApiError("no_text")
        if blocks is not None and not isinstance(blocks, list):
            raise _ApiError("invalid_blocks")
        metadata = args.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and isinstance(metadata.get("event_type"), str)
            and isinstance(metadata.get("event_payload", {}), dict)
        ):
            raise _ApiError("invalid_metadata_format")
        msg = self._store(str(channel), text, blocks, args.get("thread_ts"), metadata, BOT_USER_ID)
        return {
            "channel": msg["channel"],
            "ts": msg["ts"],
            "message": self._api_message(msg, with_metadata=True),
        }

    def _chat_update(self, args: Json) -> Json:
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        msg = self._index.get((self._resolve(channel), ts))
        if msg is None:
            raise _ApiError("message_not_found")
        if "blocks" in args:
            if not isinstance(args["blocks"], list):
                raise _ApiError("invalid_blocks")
            msg["blocks"] = list(args["blocks"])
        if "text" in args:
            msg["text"] = "" if args["text"] is None else str(args["text"])
        if isinstance(args.get("metadata"), dict):
            msg["metadata"] = args["metadata"]
        return {
            "channel": msg["channel"],
            "ts": msg["ts"],
            "text": msg["text"],
            "message": self._api_message(msg, with_metadata=True),
        }

    def _chat_post_ephemeral(self, args: Json) -> Json:
        if not args.get("channel"):
            raise _ApiError("channel_not_found")
        if not args.get("user"):
            raise _ApiError("user_not_in_channel")
        self._ephemerals.append(copy.deepcopy(args))
        return {"message_ts": self._next_ts()}

    def _chat_get_permalink(self, args: Json) -> Json:
        channel = self._resolve(str(args.get("channel") or ""))
        ts = str(args.get("message_ts") or "")
        if not channel or not ts:
            raise _ApiError("invalid_arguments")
        link = f"{TEAM_URL}archives/{channel}/p{ts.replace('.', '')}"
        msg = self._index.get((channel, ts))
        if msg is not None and msg["thread_ts"]:
            link += f"?thread_ts={msg['thread_ts']}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _conversations_history(self, args: Json) -> Json:
        channel = self._resolve(str(args.get("channel") or ""))
        if not channel:
            raise _ApiError("channel_not_found")
        inclusive = _truthy(args.get("inclusive", False))
        oldest = _ts_key(args["oldest"]) if args.get("oldest") else None
        latest = _ts_key(args["latest"]) if args.get("latest") else None

        def in_range(ts: str) -> bool:
            key = _ts_key(ts)
            if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
                return False
            if latest is not None and (key > latest or (key == latest and not inclusive)):
                return False
            return True

        top = [
            m
            for m in self._messages.get(channel, [])
            if (not m["thread_ts"] or m["thread_ts"] == m["ts"]) and in_range(m["ts"])
        ]
        top.sort(key=lambda m: _ts_key(m["ts"]), reverse=True)
        page, has_more, cursor = _paginate(top, args, default_limit=100)
        meta = _truthy(args.get("include_all_metadata", False))
        return {
            "messages": [self._api_message(m, with_metadata=meta) for m in page],
            "has_more": has_more,
            "pin_count": 0,
            "response_metadata": {"next_cursor": cursor},
        }

    def _conversations_replies(self, args: Json) -> Json:
        channel = self._resolve(str(args.get("channel") or ""))
        ts = str(args.get("ts") or "")
        parent = self._index.get((channel, ts))
        if parent is None:
            raise _ApiError("thread_not_found")
        root = parent["thread_ts"] or parent["ts"]
        msgs = [m for m in self._messages.get(channel, []) if root in (m["ts"], m["thread_ts"])]
        page, has_more, cursor = _paginate(msgs, args, default_limit=1000)
        meta = _truthy(args.get("include_all_metadata", False))
        return {
            "messages": [self._api_message(m, with_metadata=meta) for m in page],
            "has_more": has_more,
            "response_metadata": {"next_cursor": cursor},
        }

    def _conversations_members(self, args: Json) -> Json:
        members = self._members.get(str(args.get("channel") or ""), [])
        page, _, cursor = _paginate(members, args, default_limit=100)
        return {"members": list(page), "response_metadata": {"next_cursor": cursor}}

    def _conversations_open(self, args: Json) -> Json:
        raw = args.get("users") or ""
        users = raw if isinstance(raw, list) else [u for u in str(raw).split(",") if u]
        if args.get("channel"):
            return {"channel": {"id": str(args["channel"])}}
        if not users:
            raise _ApiError("users_list_not_supplied")
        if len(users) == 1:
            channel = _dm_channel(users[0])
            return {"channel": {"id": channel, "is_im": True, "user": users[0]}}
        return {"channel": {"id": "G" + "-".join(sorted(users)), "is_mpim": True}}

    def _conversations_info(self, args: Json) -> Json:
        channel = str(args.get("channel") or "")
        if not channel:
            raise _ApiError("channel_not_found")
        return {
            "channel": {
                "id": channel,
                "name": channel.lower(),
                "is_im": channel.startswith("D"),
                "is_member": True,
                "is_archived": False,
            }
        }

    def _users_info(self, args: Json) -> Json:
        user = str(args.get("user") or "")
        if not user:
            raise _ApiError("user_not_found")
        info: Json = {
            "id": user,
            "team_id": TEAM_ID,
            "name": user.lower(),
            "real_name": f"User {user}",
            "deleted": False,
            "is_bot": user == BOT_USER_ID,
            "tz": "UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "profile": {"real_name": f"User {user}", "display_name": user.lower()},
        }
        info.update(copy.deepcopy(self._users.get(user, {})))
        return {"user": info}

    def _views_open(self, args: Json) -> Json:
        self._use_trigger(args)
        view = self._new_view(args.get("view"))
        self._view_call("views.open", args)
        return {"view": copy.deepcopy(view)}

    def _views_push(self, args: Json) -> Json:
        self._use_trigger(args)
        view = self._new_view(args.get("view"))
        self._view_call("views.push", args)
        return {"view": copy.deepcopy(view)}

    def _views_update(self, args: Json) -> Json:
        view_id = args.get("view_id")
        if not view_id and args.get("external_id"):
            wanted = args["external_id"]
            view_id = next(
                (v["id"] for v in self._views.values() if v["external_id"] == wanted), None
            )
        current = self._views.get(str(view_id)) if view_id else None
        if current is None:
            raise _ApiError("not_found")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise _ApiError("hash_conflict")
        keep = {k: current[k] for k in ("root_view_id", "previous_view_id")}
        view = self._new_view(args.get("view"), view_id=current["id"])
        view.update(keep)
        self._view_call("views.update", args)
        return {"view": copy.deepcopy(view)}

    def _views_publish(self, args: Json) -> Json:
        user = str(args.get("user_id") or "")
        if not user:
            raise _ApiError("invalid_arguments")
        current_id = self._home.get(user)
        if current_id and args.get("hash") and args["hash"] != self._views[current_id]["hash"]:
            raise _ApiError("hash_conflict")
        view = self._new_view(args.get("view"), view_id=current_id)
        self._home[user] = view["id"]
        self._view_call("views.publish", args)
        return {"view": copy.deepcopy(view)}

    def _files_get_upload_url_external(self, args: Json) -> Json:
        filename, length = args.get("filename"), args.get("length")
        if not filename or length in (None, ""):
            raise _ApiError("invalid_arguments")
        file_id = f"F{next(self._ids):08d}"
        self._pending_files[file_id] = {
            "filename": str(filename),
            "length": int(length),
            "bytes": None,
        }
        return {"upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload_external(self, args: Json) -> Json:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            raise _ApiError("invalid_arguments")
        done: list[Json] = []
        for f in files:
            pending = self._pending_files.get(str(f.get("id")))
            if pending is None or pending["bytes"] is None:
                raise _ApiError("file_not_found")
            done.append({"id": f["id"], "title": f.get("title") or pending["filename"], **pending})
        out = []
        for f in done:
            self._pending_files.pop(f["id"], None)
            self._uploads.append(
                {
                    "file_id": f["id"],
                    "filename": f["filename"],
                    "title": f["title"],
                    "bytes": f["bytes"],
                    "channel_id": args.get("channel_id"),
                    "initial_comment": args.get("initial_comment"),
                    "thread_ts": args.get("thread_ts"),
                }
            )
            out.append(
                {"id": f["id"], "name": f["filename"], "title": f["title"], "size": len(f["bytes"])}
            )
        return {"files": out}


_METHODS: dict[str, Callable[[FakeSlack, Json], Json]] = {
    "auth.test": FakeSlack._auth_test,
    "apps.connections.open": FakeSlack._apps_connections_open,
    "chat.postMessage": FakeSlack._chat_post_message,
    "chat.update": FakeSlack._chat_update,
    "chat.postEphemeral": FakeSlack._chat_post_ephemeral,
    "chat.getPermalink": FakeSlack._chat_get_permalink,
    "conversations.history": FakeSlack._conversations_history,
    "conversations.replies": FakeSlack._conversations_replies,
    "conversations.members": FakeSlack._conversations_members,
    "conversations.open": FakeSlack._conversations_open,
    "conversations.info": FakeSlack._conversations_info,
    "users.info": FakeSlack._users_info,
    "views.open": FakeSlack._views_open,
    "views.push": FakeSlack._views_push,
    "views.update": FakeSlack._views_update,
    "views.publish": FakeSlack._views_publish,
    "files.getUploadURLExternal": FakeSlack._files_get_upload_url_external,
    "files.completeUploadExternal": FakeSlack._files_complete_upload_external,
}


# ---------------------------------------------------------------------- parsing helpers
def _describe(call: Call) -> str:
    return f"{call.method}:{call.status}" + ("" if call.ok else f":{call.error}")


def _url_path(url: str) -> str:
    """The path part of a URL (``/respond/3`` for ``http://host:1/respond/3``)."""
    return urlsplit(url).path or url


def _paginate(items: list[Any], args: Json, *, default_limit: int) -> tuple[list[Any], bool, str]:
    try:
        limit = int(args.get("limit") or default_limit)
        start = int(args.get("cursor") or 0)
    except (TypeError, ValueError) as exc:
        raise _ApiError("invalid_cursor") from exc
    limit = max(1, limit)
    page = items[start : start + limit]
    more = start + limit < len(items)
    return page, more, str(start + limit) if more else ""


def _parse_args(query: str, content_type: str, body: bytes) -> Json:
    """Parameters from the query string and a form, JSON or multipart body."""
    args: Json = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    ctype = content_type.lower()
    if body:
        if "json" in ctype:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("JSON body must be an object")
            args.update(data)
        elif ctype.startswith("multipart/"):
            for name, _filename, value in _multipart(content_type, body):
                args[name] = value if isinstance(value, bytes) and _filename else _text(value)
        else:
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            args.update({k: v[-1] for k, v in form.items()})
    for name in _JSON_FIELDS:
        value = args.get(name)
        if isinstance(value, str):
            try:
                args[name] = json.loads(value)
            except ValueError:
                pass
    return args


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _multipart(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]]:
    """(field name, filename, raw bytes) for each part of a multipart body."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_param("filename", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        parts.append((str(name or ""), str(filename) if filename else None, payload))
    return parts


def _file_bytes(content_type: str, body: bytes) -> bytes:
    """The uploaded file: raw body, or the file part of a multipart body."""
    if content_type.lower().startswith("multipart/"):
        parts = _multipart(content_type, body)
        for _name, filename, payload in parts:
            if filename:
                return payload
        if parts:
            return parts[0][2]
    return body


# ---------------------------------------------------------------------- HTTP plumbing
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet
        pass


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSlack
    server_version = "devslack/1"
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet server
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            out = self.fake._dispatch(self.command, self.path, self.headers, body)
        except Exception as exc:  # a bug in the fake: answer, do not kill the thread
            out = _Outcome(500, {"ok": False, "error": f"devslack_bug: {exc!r}"})
        if out.delay and self.fake._stopping.wait(out.delay):
            return
        if isinstance(out.body, dict):
            payload = json.dumps(out.body).encode()
            ctype = "application/json; charset=utf-8"
        else:
            payload = out.body
            ctype = "text/plain; charset=utf-8"
        try:
            self.send_response(out.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in out.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout) - nothing to do
            pass
