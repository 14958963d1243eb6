"""`bot.guard.parse` reads a body exactly as bolt's `parse_body` does, and the `BoltRequest`
`bot.app.bolt_request` builds from that parse is the one bolt's WSGI adapter builds from the
text: bolt is handed the guard's parse instead of parsing the body a second time."""

from __future__ import annotations

import io
import json
import random
from typing import Any
from urllib.parse import parse_qsl, urlencode

from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import parse_body

from bot.app import bolt_request
from bot.guard import parse

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

ACTION = {
    "type": "block_actions",
    "user": {"id": "U1", "team_id": "T1"},
    "team": {"id": "T1"},
    "channel": {"id": "C1"},
    "actions": [{"action_id": "consult_ack", "value": "CARD-1", "action_ts": "1.2"}],
    "trigger_id": "1.2.3",
}

BODIES = [
    "",
    "&&",
    "command",
    "command=",
    "command=%2Fconsult&user_id=U1&text=a+b%26c",
    "command=%2Fconsult&user_id=U1&user_id=U2",  # the last value wins
    "user%5Fid=U3&payload=%7B%22type%22%3A+%22x%22%7D",  # encoded names
    "pay+load=x&payload=%7B%7D&command=%E2%82%AC",  # '+' in a name, UTF-8
    "a=1;command=x&=y&=",
    "text=a+payload+word&command=%2Fconsult&user_id=U1",  # "payload" only in a value
    urlencode({"command": "/consult", "user_id": "U 1", "text": "MRN 1: é & = ?"}),
    urlencode({"payload": json.dumps(ACTION)}),
    urlencode({"payload": json.dumps(ACTION), "other": "1"}),
]


def _bolt_reads(body: str) -> dict[str, Any]:
    """What the guard should read: bolt's `parse_body`, except that a form with no
    ``payload`` field is its fields even when the word is in its text (bolt reads it as
    empty, and the request went unanswered)."""
    fields = dict(parse_qsl(body, keep_blank_values=True))
    if "payload" in body and "payload" not in fields and not body.startswith("{"):
        return fields
    return parse_body(body, FORM)


def test_parse_reads_a_form_as_bolt_does():
    for body in BODIES:
        data, _ = parse(body.encode(), FORM)
        assert data == _bolt_reads(body), body


def test_a_form_whose_text_says_payload_is_read_as_its_fields():
    body = "text=MRN+1%3A+payload+of+the+pump%3F&command=%2Fconsult&user_id=U1"
    assert parse_body(body, FORM) == {}  # bolt's own reading: nothing
    data, problem = parse(body.encode(), FORM)
    assert problem is None
    assert data == {"text": "MRN 1: payload of the pump?", "command": "/consult", "user_id": "U1"}


def test_parse_reads_json_as_bolt_does():
    for body in (json.dumps(ACTION), '{"type": "event_callback", "event": {}}'):
        data, problem = parse(body.encode(), JSON)
        assert problem is None and data == parse_body(body, JSON)
    # A form body that starts with "{" is JSON to bolt, hence to the guard.
    assert parse(b'{"type": "url_verification"}', FORM)[0] == {"type": "url_verification"}


def test_parse_on_random_bodies():
    rng = random.Random(15)
    alphabet = ["&", "=", "+", "%", "%2", "%41", "%5F", "payload", "command", "user_id", "_", "x"]
    for _ in range(3000):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        data, problem = parse(body.encode(), FORM)
        try:
            expected = _bolt_reads(body)
        except ValueError:  # a payload that is not JSON: refused before bolt sees it
            assert problem == "payload is not JSON", body
            continue
        if problem is None or problem == "command without user_id":
            assert data == expected, body


def test_parse_refuses_what_slack_never_sends():
    assert parse(b"\xff", FORM)[1] == "body is not UTF-8"
    assert parse(b"", JSON)[1] == "body is not a JSON object"
    assert parse(b"[1]", JSON)[1] == "body is not a JSON object"
    assert parse(b"{", JSON)[1] == "body is not JSON"
    assert parse(b"payload=%5B1%5D", FORM)[1] == "payload is not a JSON object"
    assert parse(b"payload=nope", FORM)[1] == "payload is not JSON"
    assert parse(b"command=%2Fconsult&user_id=+", FORM)[1] == "command without user_id"
    bad_user = urlencode({"payload": json.dumps({**ACTION, "user": "U1"})}).encode()
    assert parse(bad_user, FORM)[1] == "user is not an object"


def _environ(body: str, ctype: str) -> dict[str, Any]:
    raw = body.encode()
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/slack/events",
        "QUERY_STRING": "a=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": ctype,
        "CONTENT_LENGTH": str(len(raw)),
        "HTTP_X_SLACK_SIGNATURE": "v0=abc",
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": "1700000000",
        "wsgi.input": io.BytesIO(raw),
    }


def test_bolt_request_is_the_one_the_wsgi_adapter_builds():
    for body, ctype in [
        (urlencode({"payload": json.dumps(ACTION)}), FORM),
        (urlencode({"command": "/consult", "user_id": "U1", "team_id": "T1", "text": "x"}), FORM),
        (json.dumps({"type": "event_callback", "team_id": "T1", "event": {"user": "U2"}}), JSON),
    ]:
        environ = _environ(body, ctype)
        http = WsgiHttpRequest(environ)
        theirs = BoltRequest(body=body, query=http.query_string, headers=http.get_headers())
        data, problem = parse(body.encode(), ctype)
        assert problem is None
        ours = bolt_request(environ, body, data)
        for name in ("raw_body", "body", "query", "headers", "content_type", "mode"):
            assert getattr(ours, name) == getattr(theirs, name), name
        assert dict(ours.context) == dict(theirs.context)
        assert (ours.lazy_only, ours.lazy_function_name) == (
            theirs.lazy_only,
            theirs.lazy_function_name,
        )
