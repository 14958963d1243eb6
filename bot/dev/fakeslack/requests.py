"""Acting as Slack towards the bot: signed HTTP requests to its request URL.

:class:`SlackSender` builds the bodies Slack sends to an app over HTTP - slash commands
(form-encoded), interactivity payloads (form field ``payload=<json>``) and Events API
callbacks (JSON) - signs them the way Slack does (:func:`sign`), POSTs them with
``http.client`` and returns a :class:`Response`.  Non-2xx answers are returned, never raised;
connection errors and timeouts do raise (``OSError`` / ``TimeoutError``).

Helpers for ``view.state.values`` (what a modal submission carries)::

    values = SlackSender.state_values({
        "patient": "MRN 123",                        # plain_text_input, action_id "value"
        ("service", "service_select"): static_select("cardiology"),
        "handoff_to": users_select("U0002"),
    })
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from http.client import HTTPConnection, HTTPSConnection
from typing import Any
from urllib.parse import urlencode, urlsplit

TEAM_DOMAIN = "careloop-test"
APP_ID = "A0CARELOOP"
VERIFICATION_TOKEN = "devslack-verification-token"

Json = dict[str, Any]
_counter = itertools.count(1)


def sign(secret: str, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's request-signing headers for ``body``.

    ``X-Slack-Signature`` is ``"v0=" + hex(HMAC-SHA256(secret, f"v0:{timestamp}:{body}"))``;
    ``timestamp`` defaults to now.  The caller sets Content-Type.
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    raw = body.encode("utf-8") if isinstance(body, str) else body
    base = f"v0:{ts}:".encode() + raw
    digest = hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


@dataclass
class Response:
    """What the bot answered: status, raw body, headers (keys lower-cased), parsed JSON
    (None unless the body is JSON) and round-trip time in seconds."""

    status: int
    body: bytes
    headers: dict[str, str]
    json: Any | None
    elapsed: float

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8", "replace")


# --------------------------------------------------------------------- view state helpers
def plain_text(value: str | None) -> Json:
    """State of a ``plain_text_input`` (None = left empty)."""
    return _chosen("plain_text_input", "value", value)


def static_select(value: str | None, text: str | None = None) -> Json:
    """State of a ``static_select`` (None = nothing chosen)."""
    if value is None:
        return _chosen("static_select", "selected_option", None)
    option = {"text": {"type": "plain_text", "text": text or value, "emoji": True}, "value": value}
    return _chosen("static_select", "selected_option", option)


def multi_static_select(values: list[str]) -> Json:
    """State of a ``multi_static_select``."""
    return _options("multi_static_select", "plain_text", values)


def users_select(user: str | None) -> Json:
    """State of a ``users_select``."""
    return _chosen("users_select", "selected_user", user)


def conversations_select(channel: str | None) -> Json:
    """State of a ``conversations_select``."""
    return _chosen("conversations_select", "selected_conversation", channel)


def checkboxes(values: list[str]) -> Json:
    """State of ``checkboxes``."""
    return _options("checkboxes", "mrkdwn", values)


def datepicker(date: str | None) -> Json:
    """State of a ``datepicker`` (``"YYYY-MM-DD"``)."""
    return _chosen("datepicker", "selected_date", date)


def _chosen(kind: str, key: str, value: Any) -> Json:
    return {"type": kind, key: value}


def _options(kind: str, text_type: str, values: list[str]) -> Json:
    options = [{"text": {"type": text_type, "text": v}, "value": v} for v in values]
    return {"type": kind, "selected_options": options}


def state_values(fields: Mapping[str | tuple[str, str], Any], *, action_id: str = "value") -> Json:
    """Build ``view.state.values`` (``{block_id: {action_id: element_state}}``).

    Keys are a ``block_id`` (the element's action_id is then ``action_id``, default
    ``"value"``) or a ``(block_id, action_id)`` tuple.  Values are a ``str``/``None``
    (a ``plain_text_input``) or an element state built with :func:`plain_text`,
    :func:`static_select`, :func:`users_select`, ... (any dict is used as given).
    """
    out: Json = {}
    for key, value in fields.items():
        block_id, action = key if isinstance(key, tuple) else (key, action_id)
        state = value if isinstance(value, dict) else plain_text(value)
        out.setdefault(block_id, {})[action] = state
    return out


# --------------------------------------------------------------------------- the sender
@dataclass(eq=False)
class SlackSender:
    """Sends Slack-shaped, signed requests to the bot at ``url`` (its request URL).

    ``response_url_factory`` supplies ``response_url`` values (pass ``fake.response_url``
    so that ``respond()`` lands in :attr:`FakeSlack.responses`); without it a placeholder
    URL that nothing answers is used.  Every payload sent is appended to :attr:`sent`.
    """

    url: str
    signing_secret: str
    _: KW_ONLY
    team_id: str = "T0001"
    response_url_factory: Callable[[], str] | None = None
    timeout: float = 10.0
    sent: list[Json] = field(default_factory=list, init=False)

    # ------------------------------------------------------------------ raw
    def post(
        self,
        body: bytes,
        content_type: str,
        *,
        sign: bool = True,
        headers: dict | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Response:
        """POST ``body`` as is; for fault tests.

        ``sign=False`` sends no signing headers; ``signature`` replaces the computed
        ``X-Slack-Signature``; ``timestamp`` signs with that time (e.g. a stale one);
        ``headers`` are added last and win.
        """
        hdrs: dict[str, str] = {"Content-Type": content_type}
        if sign:
            hdrs.update(_signature_headers(self.signing_secret, body, timestamp))
        if signature is not None:
            hdrs["X-Slack-Signature"] = signature
            hdrs.setdefault("X-Slack-Request-Timestamp", str(int(time.time())))
        hdrs.update({str(k): str(v) for k, v in (headers or {}).items()})
        return self._send(body, hdrs)

    def _send(self, body: bytes, headers: dict[str, str]) -> Response:
        parts = urlsplit(self.url)
        conn_cls = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        conn = conn_cls(parts.hostname or "127.0.0.1", parts.port, timeout=self.timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        started = time.monotonic()
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            elapsed = time.monotonic() - started
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
            status = resp.status
        finally:
            conn.close()
        parsed: Any | None = None
        if data and ("json" in resp_headers.get("content-type", "") or data[:1] in (b"{", b"[")):
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
        return Response(status, data, resp_headers, parsed, elapsed)

    def _form(self, fields: Mapping[str, Any]) -> Response:
        body = urlencode({k: "" if v is None else v for k, v in fields.items()}).encode()
        return self.post(body, "application/x-www-form-urlencoded")

    def _interactive(self, payload: Json) -> Response:
        self.sent.append(payload)
        return self._form({"payload": json.dumps(payload)})

    def _json(self, payload: Json, headers: dict[str, str] | None = None) -> Response:
        self.sent.append(payload)
        body = json.dumps(payload).encode()
        return self.post(body, "application/json", headers=headers)

    # ------------------------------------------------------------------ helpers
    def new_trigger_id(self) -> str:
        """A unique trigger id like Slack's (``trig-<n>-<random>``)."""
        return f"trig-{next(_counter)}-{secrets.token_hex(4)}"

    def _response_url(self) -> str:
        if self.response_url_factory is not None:
            return self.response_url_factory()
        return f"http://127.0.0.1:9/devslack-no-response-url/{next(_counter)}"

    def _user(self, user: str) -> Json:
        return {"id": user, "username": user.lower(), "name": user.lower(), "team_id": self.team_id}

    def _team(self) -> Json:
        return {"id": self.team_id, "domain": TEAM_DOMAIN}

    @staticmethod
    def state_values(
        fields: Mapping[str | tuple[str, str], Any], *, action_id: str = "value"
    ) -> Json:
        """See :func:`state_values` (module level)."""
        return state_values(fields, action_id=action_id)

    # ------------------------------------------------------------------ Slack requests
    def command(
        self,
        text: str = "",
        *,
        user: str,
        channel: str = "C0GENERAL",
        command: str = "/consult",
        trigger_id: str | None = None,
        **extra: Any,
    ) -> Response:
        """A slash command, form-encoded as Slack sends it; ``extra`` adds/overrides fields."""
        fields: Json = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel,
            "channel_name": "directmessage" if channel.startswith("D") else channel.lower(),
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self._response_url(),
            "trigger_id": trigger_id or self.new_trigger_id(),
        }
        fields.update(extra)
        self.sent.append(dict(fields))
        return self._form(fields)

    def block_action(
        self,
        action_id: str,
        *,
        user: str,
        value: str | None = None,
        channel: str | None = None,
        message_ts: str | None = None,
        block_id: str = "b",
        trigger_id: str | None = None,
        view: dict | None = None,
        selected_option: dict | None = None,
        container: dict | None = None,
        message: dict | None = None,
        action_type: str | None = None,
    ) -> Response:
        """A ``block_actions`` payload for one button / select.

        The action is a ``button`` with ``value``, or a ``static_select`` when
        ``selected_option`` is given (``action_type`` overrides).  ``message`` supplies the
        whole message (e.g. from ``fake.message(...)``); otherwise a minimal one is built when
        ``message_ts`` is given.  ``view`` makes it a view action (container type ``view``).
        """
        if message is not None and message_ts is None:
            message_ts = message.get("ts")
        action = _action(action_id, block_id, value, selected_option, action_type)
        payload: Json = {
            "type": "block_actions",
            "token": VERIFICATION_TOKEN,
            "api_app_id": APP_ID,
            "user": self._user(user),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
            "container": container
            if container is not None
            else _container(view, channel, message_ts),
            "trigger_id": trigger_id or self.new_trigger_id(),
            "actions": [action],
        }
        if channel is not None:
            payload["channel"] = {"id": channel, "name": channel.lower()}
        if message is not None or message_ts is not None:
            payload["message"] = _message(message, message_ts)
        if view is not None:
            payload["view"] = view
        else:
            payload["response_url"] = self._response_url()
            payload["state"] = {"values": {}}
        return self._interactive(payload)

    def view_submission(
        self,
        callback_id: str,
        values: dict,
        *,
        user: str,
        private_metadata: str = "",
        view_id: str | None = None,
        trigger_id: str | None = None,
        hash: str | None = None,  # noqa: A002 - Slack's field name
        view: dict | None = None,
    ) -> Response:
        """A ``view_submission`` with ``values`` as ``view.state.values`` (Slack's shape,
        see :meth:`state_values`).  ``view`` (e.g. ``fake.view(id)``) supplies the rest of
        the view object; the explicit arguments win over it."""
        return self._interactive(
            {
                **self._view_payload("view_submission", user),
                "trigger_id": trigger_id or self.new_trigger_id(),
                "view": self._view(view, callback_id, private_metadata, view_id, hash, values),
                "response_urls": [],
            }
        )

    def view_closed(
        self,
        callback_id: str,
        *,
        user: str,
        private_metadata: str = "",
        view_id: str | None = None,
        is_cleared: bool = False,
        view: dict | None = None,
    ) -> Response:
        """A ``view_closed`` payload (only sent for views with ``notify_on_close``)."""
        return self._interactive(
            {
                **self._view_payload("view_closed", user),
                "view": self._view(view, callback_id, private_metadata, view_id, None, {}),
                "is_cleared": is_cleared,
            }
        )

    def _view_payload(self, kind: str, user: str) -> Json:
        """What every view payload (``view_submission``, ``view_closed``) starts with."""
        return {
            "type": kind,
            "token": VERIFICATION_TOKEN,
            "api_app_id": APP_ID,
            "team": self._team(),
            "user": self._user(user),
            "enterprise": None,
            "is_enterprise_install": False,
        }

    def _view(
        self,
        base: dict | None,
        callback_id: str,
        private_metadata: str,
        view_id: str | None,
        hash_: str | None,
        values: dict,
    ) -> Json:
        view: Json = {
            "id": f"V{next(_counter):08d}",
            "team_id": self.team_id,
            "type": "modal",
            "blocks": [],
            "title": {"type": "plain_text", "text": "CareLoop"},
            "hash": f"h{secrets.token_hex(4)}",
            "app_id": APP_ID,
            "bot_id": "BBOT",
            "root_view_id": None,
            "previous_view_id": None,
            "external_id": "",
        }
        view.update(base or {})
        view["callback_id"] = callback_id
        view["private_metadata"] = private_metadata or view.get("private_metadata", "")
        if view_id is not None:
            view["id"] = view_id
        if hash_ is not None:
            view["hash"] = hash_
        view["state"] = {"values": values}
        view["root_view_id"] = view.get("root_view_id") or view["id"]
        return view

    def event(
        self,
        event: dict,
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        event_time: int | None = None,
    ) -> Response:
        """An Events API ``event_callback`` wrapping ``event``; with ``retry_num`` the
        ``X-Slack-Retry-Num`` / ``X-Slack-Retry-Reason`` headers Slack adds to redeliveries."""
        when = int(time.time()) if event_time is None else int(event_time)
        inner = dict(event)
        inner.setdefault("event_ts", f"{when}.{next(_counter) % 1_000_000:06d}")
        payload: Json = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "api_app_id": APP_ID,
            "event": inner,
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(_counter):06d}{secrets.token_hex(3).upper()}",
            "event_time": when,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": "UBOT",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        headers: dict[str, str] = {}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        return self._json(payload, headers)

    def url_verification(self, challenge: str) -> Response:
        """The ``url_verification`` handshake Slack does when the request URL is set."""
        return self._json(
            {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
        )


def _signature_headers(secret: str, body: bytes, timestamp: int | None) -> dict[str, str]:
    return sign(secret, body, timestamp)


def _action(
    action_id: str,
    block_id: str,
    value: str | None,
    selected_option: dict | None,
    action_type: str | None,
) -> Json:
    """The one action of a ``block_actions`` payload: a button, or a static_select."""
    action: Json = {
        "action_id": action_id,
        "block_id": block_id,
        "type": action_type or ("static_select" if selected_option else "button"),
        "action_ts": f"{time.time():.6f}",
    }
    if selected_option is not None:
        action["selected_option"] = selected_option
    if value is not None:
        action["value"] = value
    return action


def _container(view: dict | None, channel: str | None, message_ts: str | None) -> Json:
    """Where the action happened: the view, or the message in `channel`."""
    if view is not None:
        return {"type": "view", "view_id": view.get("id")}
    return {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel,
        "is_ephemeral": False,
    }


def _message(message: dict | None, message_ts: str | None) -> Json:
    """The message the action's button is on (a minimal one from `message_ts`)."""
    msg = dict(message or {})
    msg.setdefault("type", "message")
    msg.setdefault("ts", message_ts)
    msg.setdefault("text", "")
    return msg
