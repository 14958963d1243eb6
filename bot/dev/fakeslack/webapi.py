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

The server is split by concern: the workspace (``workspace``), the methods (``chat``,
``views``, ``files``, by name in ``dispatch``), request parsing (``wire``), failures
(``failures``), recorded calls (``calls``) and the HTTP plumbing (``serving``).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from bot.dev.fakeslack.calls import Call, Outcome, describe, new_call
from bot.dev.fakeslack.dispatch import run_method
from bot.dev.fakeslack.failures import FailureRule, FailureScript
from bot.dev.fakeslack.files import receive_upload
from bot.dev.fakeslack.ratelimit import RateLimit
from bot.dev.fakeslack.serving import Server, make_server
from bot.dev.fakeslack.wire import parse_args, url_path
from bot.dev.fakeslack.workspace import Json, Workspace, dm_channel
from bot.slack.scopes import BOT_SCOPES

# Methods answered whatever token is sent (Socket Mode uses a separate xapp- token).
_ANY_TOKEN = {"apps.connections.open"}


def _view_args(method: str) -> property:
    """A read-only property: the args of every successful call to the views `method`."""

    def get(fake: FakeSlack) -> list[Json]:
        with fake._lock:
            return copy.deepcopy(fake._ws.view_calls.get(method, []))

    return property(get, doc=f"Args of every successful ``{method}``.")


class FakeSlack:
    """In-memory fake of the Slack Web API, served over HTTP on a background thread.

    ``token``: if given, any other token is answered with ``invalid_auth`` (``not_authed`` when
    none is sent).  ``clock``: source of message timestamps (seconds since the epoch).
    ``scopes``: what ``auth.test`` lists in its ``x-oauth-scopes`` header (default: every
    scope CareLoop needs; None: no header); change it with :meth:`grant`.  A revoked token:
    ``fail("auth.test", error="token_revoked", times=None)``.  ``rate_limit``: Slack's
    per-channel posting limit (off by default; see :meth:`limit_rate`).
    """

    views_opened = _view_args("views.open")
    views_pushed = _view_args("views.push")
    views_updated = _view_args("views.update")
    views_published = _view_args("views.publish")

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        *,
        clock: Callable[[], float] | None = None,
        scopes: list[str] | None = list(BOT_SCOPES),  # noqa: B006 - copied below
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.host, self.port, self.token = host, port, token
        self.scopes = None if scopes is None else list(scopes)
        self.stopping = threading.Event()
        self.calls: list[Call] = []
        self._lock = threading.RLock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._failures = FailureScript()
        self._ws = Workspace(clock or time.time)
        self.rate_limit = rate_limit

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeSlack:
        """Start serving on a daemon thread; returns self."""
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server = make_server(self, self.host, self.port)
        self.port = self._server.server_address[1]
        self._ws.base = self.base
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
        self.stopping.set()
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
                seen = [describe(c) for c in self.calls]
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
            self._failures.rules.append(
                FailureRule(method, status, times, retry_after, hang, error)
            )

    def limit_rate(
        self,
        per_second: float | None = 1.0,
        *,
        burst: int = 5,
        clock: Callable[[], float] | None = None,
    ) -> RateLimit | None:
        """Enforce Slack's per-channel limit on ``chat.postMessage`` from now on: ``burst``
        posts at once, then ``per_second``; over it, HTTP 429 with ``Retry-After`` (whole
        seconds, at least 1) and no effect.  ``clock`` (default ``time.monotonic``) may be
        stepped by a test.  ``per_second=None`` turns the limit off.  Returns the limit,
        whose ``refused`` counts the 429s per channel (see :attr:`rate_limited`)."""
        with self._lock:
            if per_second is None:
                self.rate_limit = None
            else:
                self.rate_limit = RateLimit(per_second, burst, clock or time.monotonic)
            return self.rate_limit

    @property
    def rate_limited(self) -> int:
        """How many calls the per-channel limit answered with 429 (scripted failures
        aside)."""
        with self._lock:
            return sum(self.rate_limit.refused.values()) if self.rate_limit else 0

    def clear_failures(self) -> None:
        """Drop every scripted failure."""
        with self._lock:
            self._failures.rules.clear()

    # ------------------------------------------------------------------ fixtures
    def grant(self, scopes: list[str] | None) -> None:
        """The scopes ``auth.test`` reports from now on (None: no ``x-oauth-scopes``)."""
        with self._lock:
            self.scopes = None if scopes is None else list(scopes)

    def set_members(self, channel: str, users: list[str]) -> None:
        """Set the member list ``conversations.members`` returns for ``channel``."""
        with self._lock:
            self._ws.members[channel] = list(users)

    def set_email(self, user: str, email: str) -> None:
        """Make ``users.lookupByEmail`` find ``user`` by ``email``."""
        with self._lock:
            self._ws.emails[email.lower()] = user

    def set_user(self, user: str, **fields: Any) -> None:
        """Override fields of the ``users.info`` answer for ``user`` (e.g. ``tz=...``)."""
        with self._lock:
            self._ws.users.setdefault(user, {}).update(fields)

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
            msg = self._ws.store(channel, text, blocks, thread_ts, metadata, user)
            return copy.deepcopy(msg)

    def response_url(self) -> str:
        """A fresh Slack-style ``response_url`` on this server (accepts JSON POSTs)."""
        return f"{self.base}/respond/{next(self._ws.ids)}"

    # ------------------------------------------------------------------ state read by tests
    def messages(self, channel: str) -> list[Json]:
        """Every message in ``channel`` (top-level and replies) in posting order.

        Each is ``{"ts", "channel", "text", "blocks", "thread_ts", "metadata", "user"}``
        as currently stored.  A user id (``U...``) means that user's DM channel.
        """
        with self._lock:
            return copy.deepcopy(self._ws.messages.get(self._ws.resolve(channel), []))

    def thread(self, channel: str, ts: str) -> list[Json]:
        """The parent message ``ts`` and its replies, oldest first."""
        with self._lock:
            ch = self._ws.resolve(channel)
            return copy.deepcopy(
                [m for m in self._ws.messages.get(ch, []) if m["ts"] == ts or m["thread_ts"] == ts]
            )

    def message(self, channel: str, ts: str) -> Json | None:
        """One stored message, or None."""
        with self._lock:
            msg = self._ws.index.get((self._ws.resolve(channel), ts))
            return copy.deepcopy(msg) if msg is not None else None

    def dms(self, user: str) -> list[Json]:
        """Messages posted to ``user`` directly or to their DM channel."""
        return self.messages(dm_channel(user))

    def ephemerals(self, user: str | None = None) -> list[Json]:
        """Args of every ``chat.postEphemeral`` (optionally only those for ``user``)."""
        with self._lock:
            return copy.deepcopy(
                [e for e in self._ws.ephemerals if user is None or e.get("user") == user]
            )

    def views(self) -> list[Json]:
        """Every view as Slack now holds it (``id``, ``hash``, ``state`` ...), oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._ws.views.values()))

    def view(self, view_id: str) -> Json | None:
        """The current view object ``view_id`` (what Slack would put in a payload's ``view``)."""
        with self._lock:
            found = self._ws.views.get(view_id)
            return copy.deepcopy(found) if found is not None else None

    def home(self, user: str) -> Json | None:
        """The App Home view last published for ``user``."""
        with self._lock:
            view_id = self._ws.home.get(user)
            return copy.deepcopy(self._ws.views[view_id]) if view_id else None

    @property
    def uploads(self) -> list[Json]:
        """Completed uploads: ``{"file_id", "filename", "title", "bytes", "channel_id",
        "initial_comment", "thread_ts"}``."""
        with self._lock:
            return copy.deepcopy(self._ws.uploads)

    @property
    def responses(self) -> list[Json]:
        """JSON bodies POSTed to response URLs, in order."""
        with self._lock:
            return [copy.deepcopy(body) for _, body in self._ws.responses]

    def responses_to(self, url: str) -> list[Json]:
        """JSON bodies POSTed to one response URL."""
        with self._lock:
            return [copy.deepcopy(body) for u, body in self._ws.responses if u == url_path(url)]

    # ------------------------------------------------------------------ request handling
    def handle(self, verb: str, target: str, headers: Any, body: bytes) -> Outcome:
        """Answer one HTTP request (called by the server's handler threads)."""
        parts = urlsplit(target)
        path = parts.path
        if path.startswith("/api/"):
            return self._api(path[len("/api/") :].strip("/"), parts.query, headers, body)
        if path.startswith("/upload/") and verb == "POST":
            file_id = path[len("/upload/") :]
            ctype = headers.get("Content-Type") or ""
            args = {"file_id": file_id, "length": len(body)}
            return self._answer(
                "upload", args, None, lambda: receive_upload(self._ws, file_id, ctype, body)
            )
        if path.startswith("/respond/") and verb == "POST":
            return self._respond(path, body)
        return Outcome(404, {"ok": False, "error": "not_found"})

    def _api(self, method: str, query: str, headers: Any, body: bytes) -> Outcome:
        try:
            args = parse_args(query, headers.get("Content-Type") or "", body)
            bad_request = None
        except ValueError:
            args, bad_request = {}, "invalid_json"
        auth = headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        form_token = args.pop("token", None)
        token = token or (str(form_token) if form_token else None)

        def answer() -> Outcome:
            if bad_request:
                return Outcome(200, {"ok": False, "error": bad_request})
            if self.token is not None and token != self.token and method not in _ANY_TOKEN:
                err = "not_authed" if not token else "invalid_auth"
                return Outcome(200, {"ok": False, "error": err})
            outcome = run_method(self._ws, method, args)
            if method == "auth.test" and self.scopes is not None:
                outcome.headers["x-oauth-scopes"] = ",".join(self.scopes)
            return outcome

        return self._answer(method, args, token, answer, api=True)

    def _respond(self, path: str, body: bytes) -> Outcome:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = {"_raw": body.decode("utf-8", "replace")}

        def answer() -> Outcome:
            self._ws.responses.append((path, payload))
            return Outcome(200, b"ok")

        args = payload if isinstance(payload, dict) else {"_body": payload}
        return self._answer("response_url", {"url": path, **args}, None, answer)

    def _answer(
        self,
        method: str,
        args: Json,
        token: str | None,
        answer: Callable[[], Outcome],
        *,
        api: bool = False,
    ) -> Outcome:
        """Answer a call to `method` (or the failure scripted for it) and record it."""
        with self._lock:
            now = time.time()
            rule = self._failures.take(method, api=api)
            outcome = rule.outcome() if rule else None
            if outcome is None and api and self.rate_limit is not None:
                channel = self._ws.resolve(str(args.get("channel") or ""))
                outcome = self.rate_limit.check(method, channel)
            if outcome is None:
                outcome = answer()
                if rule is not None and rule.hang:
                    outcome.delay = rule.hang
            self.calls.append(new_call(method, args, now, outcome, token))
            return outcome
