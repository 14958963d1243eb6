"""Tests for bot.dev.fakeslack: the fake Slack Web API (driven by a real slack_sdk WebClient),
request signing (checked by slack_sdk's SignatureVerifier) and SlackSender (against a local
echo server and a real Bolt app)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from bot.dev.fakeslack import FakeSlack, SlackSender, sign
from bot.dev.fakeslack.requests import static_select, users_select
from bot.slack.scopes import BOT_SCOPES

TOKEN = "xoxb-test"
SECRET = "s3cr3t-signing"
META = {"event_type": "careloop_outbox", "event_payload": {"outbox_id": 7}}


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as server:
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token=TOKEN, base_url=fake.url)


# ------------------------------------------------------------------------ Web API basics
def test_url_and_auth_test(fake: FakeSlack, client: WebClient):
    assert fake.url == fake.base + "/api/"
    assert fake.base.startswith("http://127.0.0.1:") and fake.port > 0
    resp = client.auth_test()
    assert resp["user_id"] == "UBOT" and resp["bot_id"] == "BBOT"
    assert resp["team_id"] == "T0001" and resp["url"] == "https://careloop-test.slack.com/"
    (call,) = fake.calls
    assert (call.method, call.status, call.token, call.ok) == ("auth.test", 200, TOKEN, True)


def test_auth_test_lists_the_granted_scopes_which_a_test_can_narrow(
    fake: FakeSlack, client: WebClient
):
    def header() -> str | None:
        headers = {k.lower(): v for k, v in client.auth_test().headers.items()}
        return headers.get("x-oauth-scopes")

    assert header() == ",".join(BOT_SCOPES)  # by default every scope CareLoop needs
    fake.grant(["commands", "chat:write"])
    assert header() == "commands,chat:write"
    fake.grant(None)
    assert header() is None
    fake.fail("auth.test", error="token_revoked")
    with pytest.raises(SlackApiError) as revoked:
        client.auth_test()
    assert revoked.value.response["error"] == "token_revoked"


def test_wrong_or_missing_token_is_rejected(fake: FakeSlack):
    with pytest.raises(SlackApiError) as bad:
        WebClient(token="xoxb-other", base_url=fake.url).auth_test()
    assert bad.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as missing:
        WebClient(base_url=fake.url).auth_test()
    assert missing.value.response["error"] == "not_authed"


def test_post_update_and_history_with_metadata(fake: FakeSlack, client: WebClient):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Consult*"}}]
    first = client.chat_postMessage(channel="C1", text="one", blocks=blocks, metadata=META)
    second = client.chat_postMessage(channel="C1", text="two")
    assert first["channel"] == "C1" and first["message"]["metadata"] == META
    assert float(second["ts"]) > float(first["ts"])
    assert len(first["ts"].split(".")[1]) == 6

    client.chat_update(channel="C1", ts=first["ts"], text="one (edited)")
    stored = fake.message("C1", first["ts"])
    assert stored is not None
    assert stored["text"] == "one (edited)"
    assert stored["blocks"] == blocks  # blocks left out of chat.update are kept
    assert stored["metadata"] == META and stored["user"] == "UBOT"

    with_meta = client.conversations_history(channel="C1", include_all_metadata=True)
    assert [m["ts"] for m in with_meta["messages"]] == [second["ts"], first["ts"]]
    assert with_meta["messages"][1]["metadata"] == META
    plain = client.conversations_history(channel="C1")
    assert all("metadata" not in m for m in plain["messages"])

    with pytest.raises(SlackApiError) as missing:
        client.chat_update(channel="C1", ts="1.000001", text="x")
    assert missing.value.response["error"] == "message_not_found"


def test_form_encoded_json_fields_and_get_query(fake: FakeSlack, client: WebClient):
    resp = client.api_call(
        "chat.postMessage",
        params={"channel": "C2", "text": "form", "metadata": json.dumps(META), "blocks": "[]"},
    )
    assert fake.message("C2", resp["ts"])["metadata"] == META
    call = fake.calls_to("chat.postMessage")[0]
    assert call.args["metadata"] == META and "token" not in call.args

    url = fake.url + f"conversations.history?channel=C2&include_all_metadata=true&token={TOKEN}"
    with urllib.request.urlopen(url, timeout=5) as raw:
        body = json.loads(raw.read())
    assert body["ok"] and body["messages"][0]["metadata"] == META
    assert fake.calls[-1].token == TOKEN


def test_history_oldest_latest_and_pagination(fake: FakeSlack, client: WebClient):
    ts = [client.chat_postMessage(channel="C3", text=str(i))["ts"] for i in range(5)]
    window = client.conversations_history(channel="C3", oldest=ts[1], latest=ts[4])
    assert [m["text"] for m in window["messages"]] == ["3", "2"]  # both ends exclusive
    inclusive = client.conversations_history(
        channel="C3", oldest=ts[1], latest=ts[4], inclusive=True
    )
    assert [m["text"] for m in inclusive["messages"]] == ["4", "3", "2", "1"]

    page1 = client.conversations_history(channel="C3", limit=3)
    assert page1["has_more"] is True
    cursor = page1["response_metadata"]["next_cursor"]
    page2 = client.conversations_history(channel="C3", limit=3, cursor=cursor)
    texts = [m["text"] for m in page1["messages"] + page2["messages"]]
    assert texts == ["4", "3", "2", "1", "0"]
    assert page2["response_metadata"]["next_cursor"] == ""


def test_clock_drives_timestamps():
    with FakeSlack(clock=lambda: 1_800_000_000.5) as fake:
        client = WebClient(token=TOKEN, base_url=fake.url)
        a = client.chat_postMessage(channel="C1", text="a")["ts"]
        b = client.chat_postMessage(channel="C1", text="b")["ts"]
    assert (a, b) == ("1800000000.500000", "1800000000.500001")


def test_threads_and_replies(fake: FakeSlack, client: WebClient):
    parent = client.chat_postMessage(channel="C1", text="parent", metadata=META)["ts"]
    r1 = client.chat_postMessage(channel="C1", text="r1", thread_ts=parent)["ts"]
    fake.inject_message("C1", "human reply", user="U0002", thread_ts=parent)

    replies = client.conversations_replies(channel="C1", ts=parent, include_all_metadata=True)
    assert [m["text"] for m in replies["messages"]] == ["parent", "r1", "human reply"]
    assert replies["messages"][0]["metadata"] == META
    assert replies["messages"][0]["reply_count"] == 2
    assert replies["messages"][2]["user"] == "U0002"
    assert [m["ts"] for m in fake.thread("C1", parent)][:2] == [parent, r1]

    history = client.conversations_history(channel="C1")
    assert [m["text"] for m in history["messages"]] == ["parent"]  # replies stay in thread
    assert len(fake.messages("C1")) == 3
    link = client.chat_getPermalink(channel="C1", message_ts=r1)["permalink"]
    assert link.startswith(f"https://careloop-test.slack.com/archives/C1/p{r1.replace('.', '')}")
    with pytest.raises(SlackApiError) as unknown:
        client.conversations_replies(channel="C1", ts="1.000001")
    assert unknown.value.response["error"] == "thread_not_found"


def test_dms_via_user_id_and_conversations_open(fake: FakeSlack, client: WebClient):
    posted = client.chat_postMessage(channel="U0123", text="hello", metadata=META)
    dm = client.conversations_open(users="U0123")["channel"]["id"]
    assert posted["channel"] == dm
    client.chat_postMessage(channel=dm, text="again")
    assert [m["text"] for m in fake.dms("U0123")] == ["hello", "again"]
    history = client.conversations_history(channel=dm, include_all_metadata=True)
    assert history["messages"][-1]["metadata"] == META
    assert fake.dms("U9999") == []


def test_ephemeral_members_and_users(fake: FakeSlack, client: WebClient):
    resp = client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert resp["message_ts"]
    client.chat_postEphemeral(channel="C1", user="U2", text="not you")
    assert [e["text"] for e in fake.ephemerals("U1")] == ["only you"]
    assert len(fake.ephemerals()) == 2
    assert fake.messages("C1") == []  # ephemerals are not channel messages

    fake.set_members("C1", ["U1", "U2", "U3"])
    page = client.conversations_members(channel="C1", limit=2)
    assert page["members"] == ["U1", "U2"]
    rest = client.conversations_members(
        channel="C1", limit=2, cursor=page["response_metadata"]["next_cursor"]
    )
    assert rest["members"] == ["U3"] and rest["response_metadata"]["next_cursor"] == ""
    assert client.conversations_members(channel="C404")["members"] == []

    fake.set_user("U1", tz="Europe/Oslo", tz_offset=3600)
    assert client.users_info(user="U1")["user"]["tz"] == "Europe/Oslo"
    user = client.users_info(user="U2")["user"]
    assert (user["id"], user["tz"], user["tz_offset"]) == ("U2", "UTC", 0)


def test_files_upload_v2_stores_exact_bytes(fake: FakeSlack, client: WebClient):
    content = b"\x00\x01\r\n--boundary\r\n\xff" + bytes(range(256))
    resp = client.files_upload_v2(
        content=content, filename="stats.png", title="Stats", channel="C1", initial_comment="hi"
    )
    assert resp["file"]["title"] == "Stats"
    (upload,) = fake.uploads
    assert upload["bytes"] == content
    assert upload["filename"] == "stats.png" and upload["channel_id"] == "C1"
    assert upload["initial_comment"] == "hi"
    methods = [c.method for c in fake.calls]
    assert methods == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]


def test_upload_url_accepts_multipart(fake: FakeSlack, client: WebClient):
    got = client.files_getUploadURLExternal(filename="a.txt", length=5)
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n"
    )
    req = urllib.request.Request(
        got["upload_url"], data=body, headers={"Content-Type": "multipart/form-data; boundary=XyZ"}
    )
    with urllib.request.urlopen(req, timeout=5) as raw:
        assert raw.status == 200
    client.files_completeUploadExternal(files=[{"id": got["file_id"]}], channel_id="C1")
    assert fake.uploads[0]["bytes"] == b"hello"
    with pytest.raises(SlackApiError) as err:
        client.files_completeUploadExternal(files=[{"id": "F404"}], channel_id="C1")
    assert err.value.response["error"] == "file_not_found"


def test_views_open_update_push_publish(fake: FakeSlack, client: WebClient):
    modal = {"type": "modal", "callback_id": "new", "title": {"type": "plain_text", "text": "A"}}
    opened = client.views_open(trigger_id="t1", view=modal)["view"]
    assert opened["id"].startswith("V") and opened["hash"].startswith("h")
    assert fake.views_opened[0]["view"]["callback_id"] == "new"

    with pytest.raises(SlackApiError) as reused:
        client.views_open(trigger_id="t1", view=modal)
    assert reused.value.response["error"] == "exchanged_trigger_id"

    new = dict(modal, callback_id="new2")
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=new)["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    assert fake.view(opened["id"])["callback_id"] == "new2"
    with pytest.raises(SlackApiError) as stale:
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal)
    assert stale.value.response["error"] == "hash_conflict"
    with pytest.raises(SlackApiError) as unknown:
        client.views_update(view_id="V404", view=modal)
    assert unknown.value.response["error"] == "not_found"

    pushed = client.views_push(trigger_id="t2", view=modal)["view"]
    assert pushed["id"] != opened["id"] and len(fake.views_pushed) == 1
    assert len(fake.views_updated) == 1

    home = {"type": "home", "blocks": []}
    first = client.views_publish(user_id="U1", view=home)["view"]
    again = client.views_publish(user_id="U1", view=home)["view"]
    assert first["id"] == again["id"] and fake.home("U1")["type"] == "home"
    assert [a["user_id"] for a in fake.views_published] == ["U1", "U1"]


def test_unknown_method_and_socket_mode(fake: FakeSlack, client: WebClient):
    with pytest.raises(SlackApiError) as unknown:
        client.api_call("chat.nope")
    assert unknown.value.response.status_code == 200
    assert unknown.value.response["error"] == "unknown_method"
    with pytest.raises(SlackApiError) as socket_mode:
        client.apps_connections_open(app_token="xapp-1-A0-1-abc")
    assert socket_mode.value.response["error"] == "not_allowed_token_type"
    assert [c.method for c in fake.calls] == ["chat.nope", "apps.connections.open"]
    assert fake.calls[-1].token == "xapp-1-A0-1-abc"


def test_concurrent_posts_get_unique_increasing_ts(fake: FakeSlack, client: WebClient):
    def post(i: int) -> None:
        client.chat_postMessage(channel="C1", text=str(i))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = fake.messages("C1")
    ts = [m["ts"] for m in stored]
    assert len(set(ts)) == 40 and ts == sorted(ts, key=float)
    assert len(fake.wait_calls("chat.postMessage", 40)) == 40


# ------------------------------------------------------------------------ failures
def test_rate_limit_raises_with_retry_after_and_changes_nothing(fake, client):
    fake.fail("chat.postMessage", status=429, retry_after=3)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "3"
    assert err.value.response["error"] == "ratelimited"
    assert fake.messages("C1") == []
    assert fake.calls[-1].status == 429 and not fake.calls[-1].ok
    client.chat_postMessage(channel="C1", text="x")  # times=1: next call succeeds
    assert len(fake.messages("C1")) == 1


def test_per_channel_post_limit_like_slacks_when_turned_on(fake, client):
    t = [100.0]
    client.chat_postMessage(channel="C1", text="before")  # off by default: no limit
    limit = fake.limit_rate(1.0, burst=3, clock=lambda: t[0])
    assert limit is not None
    for i in range(3):  # a burst of 3 ...
        client.chat_postMessage(channel="C1", text=f"burst {i}")
    with pytest.raises(SlackApiError) as err:  # ... then one a second
        client.chat_postMessage(channel="C1", text="too soon")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "1"
    assert err.value.response["error"] == "ratelimited"
    # Per channel: another channel and a person's DMs have buckets of their own; other
    # methods are not limited.
    client.chat_postMessage(channel="C2", text="elsewhere")
    client.chat_postMessage(channel="U9", text="a DM")
    client.chat_update(channel="C1", ts=fake.messages("C1")[0]["ts"], text="edited")
    t[0] += 1.0
    client.chat_postMessage(channel="C1", text="a second later")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="too soon again")
    texts = [m["text"] for m in fake.messages("C1")]
    assert texts == ["edited", "burst 0", "burst 1", "burst 2", "a second later"]
    assert fake.rate_limited == 2 and limit.refused == {"C1": 2}
    assert [c.status for c in fake.calls_to("chat.postMessage")].count(429) == 2
    fake.limit_rate(None)
    client.chat_postMessage(channel="C1", text="unlimited again")
    assert fake.rate_limited == 0


def test_server_error_and_api_error(fake: FakeSlack, client: WebClient):
    fake.fail("chat.postMessage")
    with pytest.raises(SlackApiError) as five:
        client.chat_postMessage(channel="C1", text="x")
    assert five.value.response.status_code == 500

    fake.fail("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError) as api:
        client.chat_postMessage(channel="C1", text="x")
    assert api.value.response.status_code == 200
    assert api.value.response["error"] == "channel_not_found"
    assert fake.messages("C1") == []
    assert [c.status for c in fake.calls_to("chat.postMessage")] == [500, 200]


def test_failures_until_cleared_and_wildcard(fake: FakeSlack, client: WebClient):
    fake.fail("*", status=503, times=None)
    for _ in range(3):
        with pytest.raises(SlackApiError):
            client.auth_test()
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="x")
    fake.clear_failures()
    assert client.auth_test()["ok"]
    assert [c.status for c in fake.calls] == [503, 503, 503, 503, 200]


def test_hang_times_out_but_the_post_lands(fake: FakeSlack):
    slow = WebClient(token=TOKEN, base_url=fake.url, timeout=0.5)
    fake.fail("chat.postMessage", hang=3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # slack_sdk lets socket timeouts through unwrapped
        slow.chat_postMessage(channel="C1", text="late", metadata=META)
    assert time.monotonic() - started < 2.5
    assert [m["metadata"] for m in fake.messages("C1")] == [META]
    assert fake.calls[-1].delay == 3


def test_hang_with_status_changes_nothing(fake: FakeSlack):
    slow = WebClient(token=TOKEN, base_url=fake.url, timeout=0.3)
    fake.fail("chat.postMessage", hang=2, status=500)
    with pytest.raises(TimeoutError):
        slow.chat_postMessage(channel="C1", text="lost")
    assert fake.messages("C1") == []


def test_wait_calls_and_clear(fake: FakeSlack, client: WebClient):
    client.chat_postMessage(channel="C1", text="x")
    assert len(fake.wait_calls("chat.postMessage")) == 1
    with pytest.raises(AssertionError, match=r"chat\.postMessage:200"):
        fake.wait_calls("views.open", timeout=0.05)
    fake.clear()
    assert fake.calls == [] and len(fake.messages("C1")) == 1


def test_wait_for_sees_a_later_change(fake: FakeSlack, client: WebClient):
    timer = threading.Timer(0.05, lambda: client.chat_postMessage(channel="C9", text="later"))
    timer.start()
    try:
        assert fake.wait_for(lambda: len(fake.messages("C9")) == 1, timeout=5)
    finally:
        timer.join()
    assert fake.wait_for(lambda: False, timeout=0.02) is False


def test_response_urls_collect_posts(fake: FakeSlack):
    url = fake.response_url()
    other = fake.response_url()
    assert url != other and url.startswith(fake.base + "/respond/")
    resp = WebhookClient(url).send(text="done", response_type="ephemeral")
    assert resp.status_code == 200
    assert fake.responses == [{"text": "done", "response_type": "ephemeral"}]
    assert fake.responses_to(url) == fake.responses and fake.responses_to(other) == []


# ------------------------------------------------------------------------ signing
def test_sign_matches_slack_sdk_verifier():
    body = "token=x&text=hello%20world"
    headers = sign(SECRET, body)
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    assert SignatureVerifier(SECRET).is_valid_request(body.encode(), headers)
    assert sign(SECRET, body.encode(), 1234) == sign(SECRET, body, 1234)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)
    assert not SignatureVerifier(SECRET).is_valid_request(body + "&x=1", headers)
    stale = sign(SECRET, body, int(time.time()) - 600)
    assert not SignatureVerifier(SECRET).is_valid_request(body, stale)


# ------------------------------------------------------------------------ SlackSender
class _EchoHandler(BaseHTTPRequestHandler):
    """Checks Slack's signature and echoes the parsed request back as JSON."""

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not SignatureVerifier(SECRET).is_valid_request(body, dict(self.headers.items())):
            self._answer(401, {"error": "invalid_signature"})
            return
        ctype = self.headers.get("Content-Type", "")
        echo: dict[str, Any] = {
            "retry_num": self.headers.get("X-Slack-Retry-Num"),
            "retry_reason": self.headers.get("X-Slack-Retry-Reason"),
            "content_type": ctype,
        }
        if ctype.startswith("application/json"):
            echo["json"] = json.loads(body)
        else:
            form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
            echo["form"] = form
            if "payload" in form:
                echo["payload"] = json.loads(form["payload"])
        self._answer(200, echo)

    def _answer(self, status: int, data: dict) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slack/events"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_command_is_signed_form(echo_url: str, fake: FakeSlack):
    sender = SlackSender(echo_url, SECRET, response_url_factory=fake.response_url)
    resp = sender.command("new cardiology", user="U1", channel="C7")
    assert resp.status == 200 and resp.elapsed > 0
    form = resp.json["form"]
    assert resp.json["content_type"] == "application/x-www-form-urlencoded"
    assert (form["command"], form["text"], form["user_id"], form["channel_id"]) == (
        "/consult",
        "new cardiology",
        "U1",
        "C7",
    )
    assert form["team_id"] == "T0001" and form["response_url"].startswith(fake.base + "/respond/")
    again = sender.command(user="U1", command="/other", team_domain="x")
    assert again.json["form"]["trigger_id"] != form["trigger_id"]
    assert again.json["form"]["command"] == "/other" and again.json["form"]["team_domain"] == "x"
    assert len(sender.sent) == 2


def test_bad_signatures_are_returned_not_raised(echo_url: str):
    sender = SlackSender(echo_url, SECRET)
    body = b'{"type": "url_verification"}'
    assert sender.post(body, "application/json").status == 200
    assert sender.post(body, "application/json", sign=False).status == 401
    assert sender.post(body, "application/json", signature="v0=deadbeef").status == 401
    stale = sender.post(body, "application/json", timestamp=int(time.time()) - 3600)
    assert stale.status == 401 and stale.json == {"error": "invalid_signature"}
    wrong = SlackSender(echo_url, "not-the-secret").command(user="U1")
    assert wrong.status == 401


def test_block_action_payload(echo_url: str):
    sender = SlackSender(echo_url, SECRET)
    resp = sender.block_action(
        "consult_claim", user="U2", value="CL-1", channel="C1", message_ts="1.000100"
    )
    payload = resp.json["payload"]
    assert payload["type"] == "block_actions"
    (action,) = payload["actions"]
    assert (action["action_id"], action["value"], action["type"]) == (
        "consult_claim",
        "CL-1",
        "button",
    )
    assert payload["user"]["id"] == "U2" and payload["channel"]["id"] == "C1"
    assert payload["message"]["ts"] == "1.000100"
    assert payload["container"] == {
        "type": "message",
        "message_ts": "1.000100",
        "channel_id": "C1",
        "is_ephemeral": False,
    }
    assert payload["trigger_id"] and payload["response_url"]

    view = {"id": "V1", "hash": "h1", "callback_id": "new", "state": {"values": {}}}
    option = {"text": {"type": "plain_text", "text": "Cardiology"}, "value": "cardio"}
    in_view = sender.block_action("service_select", user="U2", view=view, selected_option=option)
    payload = in_view.json["payload"]
    assert payload["container"] == {"type": "view", "view_id": "V1"}
    assert payload["view"]["hash"] == "h1" and "response_url" not in payload
    assert payload["actions"][0]["selected_option"]["value"] == "cardio"
    assert payload["actions"][0]["type"] == "static_select"


def test_view_submission_and_state_values(echo_url: str):
    values = SlackSender.state_values(
        {
            "patient": "MRN 123",
            ("service", "service_select"): static_select("cardio", "Cardiology"),
            "handoff_to": users_select("U3"),
            "optional_note": None,
        }
    )
    assert values["patient"] == {"value": {"type": "plain_text_input", "value": "MRN 123"}}
    assert values["service"]["service_select"]["selected_option"]["value"] == "cardio"
    assert values["handoff_to"]["value"] == {"type": "users_select", "selected_user": "U3"}
    assert values["optional_note"]["value"]["value"] is None

    sender = SlackSender(echo_url, SECRET)
    resp = sender.view_submission(
        "new_consult", values, user="U1", private_metadata="C1", view_id="V9", hash="h9"
    )
    payload = resp.json["payload"]
    assert payload["type"] == "view_submission"
    view = payload["view"]
    assert (view["callback_id"], view["private_metadata"], view["id"], view["hash"]) == (
        "new_consult",
        "C1",
        "V9",
        "h9",
    )
    assert view["state"]["values"] == values
    closed = sender.view_closed("new_consult", user="U1", view_id="V9").json["payload"]
    assert closed["type"] == "view_closed" and closed["view"]["id"] == "V9"


def test_event_and_url_verification(echo_url: str):
    sender = SlackSender(echo_url, SECRET)
    first = sender.event({"type": "app_home_opened", "user": "U1", "tab": "home"})
    body = first.json["json"]
    assert body["type"] == "event_callback" and body["event"]["type"] == "app_home_opened"
    assert body["event_id"].startswith("Ev") and body["team_id"] == "T0001"
    assert first.json["retry_num"] is None

    retry = sender.event(
        {"type": "app_home_opened", "user": "U1"},
        event_id=body["event_id"],
        retry_num=1,
        retry_reason="http_timeout",
        event_time=1_700_000_000,
    )
    assert retry.json["json"]["event_id"] == body["event_id"]
    assert retry.json["json"]["event_time"] == 1_700_000_000
    assert (retry.json["retry_num"], retry.json["retry_reason"]) == ("1", "http_timeout")

    verify = sender.url_verification("chal-123").json["json"]
    assert verify == {
        "token": verify["token"],
        "challenge": "chal-123",
        "type": "url_verification",
    }


def test_sender_against_a_real_bolt_app(fake: FakeSlack):
    """Both halves together: Bolt verifies SlackSender's signatures and talks to FakeSlack."""
    from slack_bolt import App
    from slack_bolt.request import BoltRequest

    bolt = App(
        token=TOKEN,
        signing_secret=SECRET,
        client=WebClient(token=TOKEN, base_url=fake.url),
        process_before_response=True,
    )

    @bolt.command("/consult")
    def on_command(ack, body, client, respond):
        ack()
        client.views_open(trigger_id=body["trigger_id"], view={"type": "modal", "blocks": []})
        respond(text=f"got {body['text']}")

    @bolt.action("claim")
    def on_claim(ack, body, client):
        ack()
        client.chat_update(channel=body["channel"]["id"], ts=body["message"]["ts"], text="claimed")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            result = bolt.dispatch(BoltRequest(body=raw, headers=self.headers))
            out = result.body.encode()
            self.send_response(result.status)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/slack/events"
        sender = SlackSender(url, SECRET, response_url_factory=fake.response_url)
        assert sender.command("hello", user="U1").status == 200
        fake.wait_calls("views.open")
        assert fake.wait_for(lambda: fake.responses == [{"text": "got hello"}])

        ts = WebClient(token=TOKEN, base_url=fake.url).chat_postMessage(
            channel="C1", text="consult"
        )["ts"]
        assert sender.block_action("claim", user="U2", channel="C1", message_ts=ts).status == 200
        fake.wait_calls("chat.update")
        assert fake.message("C1", ts)["text"] == "claimed"
        assert SlackSender(url, "wrong-secret").command(user="U1").status == 401
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
