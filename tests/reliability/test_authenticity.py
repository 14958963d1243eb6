"""Point 1, authenticity: only correctly signed, fresh requests have an effect, and a signed
request replayed inside the five-minute window has no second effect."""

from __future__ import annotations

import io
import json
import time
from urllib.parse import urlencode

import pytest

from bot.dev.fakeslack.requests import sign, state_values, static_select
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.harness import CARD_CHANNEL, REQUESTER, SECRET, Bot
from tests.reliability.conftest import effects, wsgi_call
from tests.reliability.figures import Tally

ON_CALL = "UCARDON"
LEAD = "UCARDLEAD"


def command_body(text: str, *, user: str = REQUESTER, trigger: str = "trig-auth-1") -> bytes:
    return urlencode(
        {
            "command": "/consult",
            "text": text,
            "user_id": user,
            "team_id": "T0001",
            "channel_id": "C0GENERAL",
            "trigger_id": trigger,
            "response_url": "http://127.0.0.1:9/none",
        }
    ).encode()


def action_body(action_id: str, value: str, *, user: str, trigger: str = "trig-act-1") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T0001"},
        "channel": {"id": CARD_CHANNEL},
        "container": {"type": "message", "channel_id": CARD_CHANNEL},
        "trigger_id": trigger,
        "actions": [
            {"action_id": action_id, "value": value, "type": "button", "action_ts": "1.000001"}
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def form_body(view_id: str = "VAUTH1", *, user: str = REQUESTER) -> bytes:
    values = state_values(
        {
            (BlockId.SERVICE, ActionId.SERVICE_SELECT): static_select("cardiology"),
            BlockId.URGENCY: static_select("stat"),
            BlockId.PATIENT: "MRN 4242",
            BlockId.QUESTION: "Syncope, ECG?",
        }
    )
    payload = {
        "type": "view_submission",
        "user": {"id": user},
        "team": {"id": "T0001"},
        "trigger_id": "trig-view-1",
        "view": {
            "id": view_id,
            "type": "modal",
            "callback_id": CallbackId.NEW_CONSULT,
            "private_metadata": "",
            "blocks": [],
            "state": {"values": values},
        },
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def reply_body(bot: Bot, ref: str, *, event_id: str, ts: str = "1800000000.000100") -> bytes:
    consult = bot.consult(ref)
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0001",
            "api_app_id": "A0CARELOOP",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": {
                "type": "message",
                "channel": consult.channel,
                "user": ON_CALL,
                "text": "Looking at it now",
                "ts": ts,
                "thread_ts": consult.channel_ts,
            },
        }
    ).encode()


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def genuine_requests(bot: Bot, ref: str) -> dict[str, tuple[bytes, str]]:
    """One request of every kind that would change something if it were accepted."""
    return {
        "quick form": (command_body("cards stat MRN 1: forged?", trigger="trig-forged"), FORM),
        "acknowledge": (action_body(ActionId.ACKNOWLEDGE, ref, user=ON_CALL), FORM),
        "cancel button": (action_body(ActionId.CANCEL, ref, user=REQUESTER), FORM),
        "new consult form": (form_body("VFORGED"), FORM),
        "thread reply": (reply_body(bot, ref, event_id="EvForged"), JSON),
        "oncall": (command_body(f"oncall cards <@{OUTSIDER_ID}>", user=LEAD), FORM),
    }


OUTSIDER_ID = "UOUTSIDE"


def forgeries(body: bytes) -> dict[str, dict[str, str]]:
    """Header sets that must all be refused for `body`."""
    now = int(time.time())
    good = sign(SECRET, body, now)
    return {
        "no signature headers": {},
        "signature only": {"X-Slack-Signature": good["X-Slack-Signature"]},
        "timestamp only": {"X-Slack-Request-Timestamp": str(now)},
        "wrong secret": sign("not-the-secret", body, now),
        "signature of another body": {
            **sign(SECRET, body + b"&x=1", now),
        },
        "signature for another timestamp": {
            "X-Slack-Request-Timestamp": str(now - 1),
            "X-Slack-Signature": good["X-Slack-Signature"],
        },
        "stale by 6 minutes": sign(SECRET, body, now - 360),
        "stale by a day": sign(SECRET, body, now - 86_400),
        "from the future": sign(SECRET, body, now + 360),
        "v1 scheme": {
            "X-Slack-Request-Timestamp": str(now),
            "X-Slack-Signature": "v1=" + good["X-Slack-Signature"][3:],
        },
        "empty signature": {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": ""},
        "uppercase hex": {
            "X-Slack-Request-Timestamp": str(now),
            "X-Slack-Signature": good["X-Slack-Signature"].upper(),
        },
    }


MALFORMED_TIMESTAMPS = [
    "abc",
    "",
    " ",
    "-5",
    "1e9",
    "12.5",
    "١٧٠٠٠٠٠٠٠٠",  # Arabic-Indic digits: str.isdigit() is true, bolt's int() is not safe
    "²",
    "9" * 5000,  # past Python's int-from-string digit limit
    "0x10",
    "\u00a0123",
]


def test_forged_and_stale_requests_are_refused_with_no_effect(bot: Bot, figures: Tally):
    ref = bot.open("cards stat MRN 77: chest pain?")
    before = effects(bot)
    refused = 0
    for kind, (body, ctype) in genuine_requests(bot, ref).items():
        for name, headers in forgeries(body).items():
            resp = bot.sender.post(body, ctype, sign=False, headers=headers)
            assert resp.status == 401, (kind, name, resp.status, resp.text)
            refused += 1
    assert effects(bot) == before
    assert bot.consult(ref).status == "open"
    figures.add("forged", refused)


@pytest.mark.parametrize("stamp", MALFORMED_TIMESTAMPS)
def test_malformed_timestamp_is_a_4xx_not_a_500(bot: Bot, figures: Tally, stamp: str):
    body = command_body("cards stat MRN 1: q?", trigger=f"trig-ts-{len(stamp)}")
    good = sign(SECRET, body)
    before = effects(bot)
    # In-process, so headers that http.client would refuse to send are tried too.
    result = wsgi_call(
        bot,
        body,
        FORM,
        signed=False,
        headers={
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": good["X-Slack-Signature"],
        },
    )
    assert 400 <= result.status < 500, (stamp, result.status)
    assert effects(bot) == before
    figures.add("forged")


def test_ssl_check_with_a_bad_signature_has_no_effect(bot: Bot, figures: Tally):
    fields = {
        "ssl_check": "1",
        "token": "whatever",
        "command": "/consult",
        "text": "cards stat MRN 5: smuggled?",
        "user_id": REQUESTER,
        "team_id": "T0001",
        "trigger_id": "trig-ssl",
    }
    body = urlencode(fields).encode()
    before = effects(bot)
    for headers in ({}, sign("wrong-secret", body)):
        resp = bot.sender.post(body, FORM, sign=False, headers=headers)
        assert resp.status in (200, 401), resp.status
        figures.add("forged")
    # Even correctly signed, an ssl_check is answered and nothing else runs.
    resp = bot.sender.post(body, FORM)
    assert resp.status == 200
    assert effects(bot) == before
    assert bot.consults() == []


def test_signed_requests_replayed_inside_the_window_have_one_effect(bot: Bot, figures: Tally):
    ref = bot.open("cards stat MRN 88: syncope?")
    now = int(time.time())

    def replay(body: bytes, ctype: str, times: int = 3) -> list[int]:
        statuses = []
        for _ in range(times):
            resp = bot.sender.post(body, ctype, sign=False, headers=sign(SECRET, body, now))
            statuses.append(resp.status)
        return statuses

    def once_then_same(body: bytes, ctype: str) -> None:
        assert (
            bot.sender.post(body, ctype, sign=False, headers=sign(SECRET, body, now)).status == 200
        )
        bot.settle()
        first = effects(bot)
        assert replay(body, ctype, times=2) == [200, 200]
        bot.settle()
        assert effects(bot) == first, body[:80]
        figures.add("retries", 2)

    # Slash command (trigger_id), quick form and sub-commands.
    once_then_same(command_body("cards urgent MRN 9: palpitations?", trigger="trig-r1"), FORM)
    once_then_same(command_body(f"ack {ref}", user=ON_CALL, trigger="trig-r2"), FORM)
    once_then_same(command_body(f"snooze {ref} 30m", user=ON_CALL, trigger="trig-r2s"), FORM)
    once_then_same(
        command_body(f"needinfo {ref} Any prior ECG?", user=ON_CALL, trigger="trig-r3"), FORM
    )
    once_then_same(reply_body(bot, ref, event_id="EvR1", ts="1800000000.000200"), JSON)
    once_then_same(
        command_body(f"answer {ref} Outpatient Holter.", user=ON_CALL, trigger="trig-r4"), FORM
    )
    once_then_same(command_body(f"reopen {ref} And if it recurs?", trigger="trig-r5"), FORM)
    once_then_same(command_body(f"answer {ref} Admit.", user=ON_CALL, trigger="trig-r6"), FORM)
    once_then_same(command_body(f"close {ref}", trigger="trig-r7"), FORM)
    once_then_same(
        command_body(f"oncall cards <@{OUTSIDER_ID}>", user=LEAD, trigger="trig-r8"), FORM
    )
    # Buttons (trigger_id + action), the form (view.id), events (event_id, message ts).
    other = bot.open("path stat MRN 89: frozen section?")
    once_then_same(action_body(ActionId.ACKNOWLEDGE, other, user="UPATHON", trigger="t-b1"), FORM)
    once_then_same(action_body(ActionId.CANCEL, other, user=REQUESTER, trigger="t-b2"), FORM)
    once_then_same(form_body("VREPLAY1"), FORM)
    assert len(bot.consults()) == 4
    consult = bot.consult(ref)
    assert consult.status == "closed" and consult.reopened_count == 1
    assert bot.audit(ref).count("answer") == 2
    assert "refused" not in bot.audit(ref)


def test_body_over_the_limit_is_refused_before_parsing(bot: Bot, figures: Tally):
    limit = bot.services.settings.max_body_bytes
    before = effects(bot)
    valid = command_body("cards stat MRN 1: " + "x" * (limit + 10))
    invalid_json = b"{" + b"!" * (limit + 10)
    for body, ctype, signed in (
        (valid, FORM, True),
        (valid, FORM, False),
        (invalid_json, JSON, True),
        (invalid_json, "text/plain", False),
    ):
        stream = io.BytesIO(body)
        result = wsgi_call(bot, body, ctype, signed=signed, environ_extra={"wsgi.input": stream})
        assert result.status == 413, (ctype, signed, result.status)
        assert stream.tell() == 0, "the body was read before the size check"
    # At the limit the body is read, and refused for what it is, not for its size.
    at_limit = b"{" + b" " * (limit - 2) + b"}"
    assert len(at_limit) == limit
    assert bot.sender.post(at_limit, JSON).status not in (413, 500)
    assert effects(bot) == before
    figures.add("forged", 4)


def test_wrong_method_path_and_content_type(bot: Bot, figures: Tally):
    body = command_body("cards stat MRN 1: q?")
    before = effects(bot)
    for ctype in ("text/plain", "multipart/form-data; boundary=x", "application/xml", ""):
        assert bot.sender.post(body, ctype).status == 415, ctype
    assert wsgi_call(bot, body, FORM, method="GET").status == 405
    assert wsgi_call(bot, body, FORM, method="PUT").status == 405
    assert wsgi_call(bot, body, FORM, path="/slack/other").status == 404
    for length in ("x", "-1", "1.5"):
        result = wsgi_call(bot, body, FORM, environ_extra={"CONTENT_LENGTH": length})
        assert result.status == 400, length
    assert effects(bot) == before
    figures.add("forged", 10)
