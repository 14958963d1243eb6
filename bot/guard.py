"""Checks on an HTTP request from Slack before anything parses it.

Bolt parses a request body before its own signature check runs, so an unsigned body could
reach JSON decoding, and a signed but malformed one could crash bolt's matchers (a 500).
`WsgiApp` therefore checks, in this order: the timestamp header is a plain number, the HMAC
signature over the raw bytes is valid and fresh (401 otherwise, nothing parsed), and the
body is UTF-8 whose JSON / `payload=` has the shape Slack always sends (400 otherwise).
That parse (`parse`, the same as bolt's) is the only one: bolt is handed its result.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

# Slack rejects requests whose timestamp is more than five minutes from now; so do we.
MAX_SKEW = 300
_STAMP = re.compile(r"[0-9]{1,12}")
_INTERACTIVE = {
    "block_actions",
    "view_submission",
    "view_closed",
    "shortcut",
    "message_action",
    "block_suggestion",
}
_OBJECTS = ("user", "team", "view", "container", "channel", "message", "event")


def valid_timestamp(stamp: str | None) -> bool:
    """A Unix time in ASCII digits (`int()` would accept '٣' or 5,000 digits, bolt not)."""
    return stamp is not None and _STAMP.fullmatch(stamp.strip()) is not None


def signature_ok(
    secret: str,
    body: bytes,
    stamp: str | None,
    signature: str | None,
    *,
    now: Callable[[], float] = time.time,
) -> bool:
    """Slack's v0 signature over the raw body, and a timestamp within five minutes."""
    if not secret or not signature or not valid_timestamp(stamp):
        return False
    assert stamp is not None
    if abs(now() - int(stamp)) > MAX_SKEW:
        return False
    # By hand on the raw bytes: slack_sdk's SignatureVerifier (which bolt runs afterwards)
    # decodes the body as UTF-8 first and raises on anything else.
    base = b"v0:" + stamp.strip().encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace"))


def parse(body: bytes, content_type: str) -> tuple[dict[str, Any], str | None]:
    """The body of a (signed) request as bolt reads it (`parse_body` of
    `slack_bolt.request.internals`: JSON, a form's `payload=` JSON, or a form's fields, the
    last value of each), and why it is not something Slack sends (None when it looks
    right). `WsgiApp` hands bolt this parse: the body is decoded once per request.

    One difference on purpose: bolt reads any form whose text contains the word "payload"
    as a `payload=` form and, finding no such field, as empty, so a `/consult` whose
    question says "payload" went unanswered (404). Here only a form that has a `payload`
    field is read as one; every other form is its fields."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}, "body is not UTF-8"
    if content_type == "application/json" and not text.strip():
        return {}, "body is not a JSON object"
    if not text:
        return {}, None
    if content_type == "application/json" or text.startswith("{"):
        return _json_object(text, "body")
    form = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in form:
        return _json_object(form["payload"], "payload")
    if "command" in form and not form.get("user_id", "").strip():
        return form, "command without user_id"
    return form, None


def _json_object(text: str, what: str) -> tuple[dict[str, Any], str | None]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}, f"{what} is not JSON"
    if not isinstance(data, dict):
        return {}, f"{what} is not a JSON object"
    return data, _shape(data)


def _shape(data: dict[str, Any]) -> str | None:
    for key in _OBJECTS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            return f"{key} is not an object"
    actions = data.get("actions")
    if actions is not None and not (
        isinstance(actions, list) and all(isinstance(a, dict) for a in actions)
    ):
        return "actions is not a list of objects"
    for action in actions or []:
        for key in ("selected_option", "text"):
            if action.get(key) is not None and not isinstance(action[key], dict):
                return f"action {key} is not an object"
    view = data.get("view")
    if isinstance(view, dict):
        if not isinstance(view.get("type"), str):
            return "view has no type"
        state = view.get("state")
        if state is not None and not isinstance(state, dict):
            return "view state is not an object"
        values = (state or {}).get("values")
        if values is not None and not _nested_objects(values, depth=3):
            return "view state values are not {block: {action: element}}"
    if data.get("type") in _INTERACTIVE:
        user = data.get("user") or {}
        if not isinstance(user.get("id"), str) or not user["id"]:
            return "interaction without a user"
    return None


def _nested_objects(value: Any, *, depth: int) -> bool:
    """`depth` levels of JSON objects: {block_id: {action_id: {element state}}}."""
    if not isinstance(value, dict):
        return False
    if depth == 1:
        return True
    return all(_nested_objects(v, depth=depth - 1) for v in value.values())
