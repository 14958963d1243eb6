"""Point 6, bad input: user text never becomes a live mention or link, long text is shortened
in Slack (with a marker) but kept whole, and malformed payloads get a 4xx or a clear
ephemeral message - never a 500, never a half-written consult."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.dev.fakeslack.requests import state_values, static_select, users_select
from bot.flows.consults.drafts import QUESTION_MAX
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.render.primitives import TRUNCATED
from tests.harness import CARD_CHANNEL, RAD_CHANNEL, RAD_ON_CALL, REQUESTER, Bot
from tests.reliability.conftest import effects, form, interactive, wsgi_call
from tests.reliability.figures import Tally
from tests.reliability.invariants import assert_consistent
from tests.reliability.slack_rules import LIVE, limit_problems, live_tokens, ours

ON_CALL, BACKUP = "UCARDON", "UCARDBK"
EVIL = (
    "<!channel> <!here|here> <!everyone> <@UEVIL1> <@UEVIL2|boss> <#CEVIL|x> "
    "<https://evil.example/x|click me> <mailto:a@evil.example|mail> <!subteam^S0EVIL> "
    "*bold* _it_ `code` &amp; &lt;"
)


def text_input(value: str) -> dict[str, Any]:
    return {"value": {"type": "plain_text_input", "value": value}}


def submit(bot: Bot, callback: str, ref: str, block: str, element: Any, *, user: str, **kw):
    element = element if isinstance(element, dict) else text_input(element)["value"]
    return bot.sender.view_submission(
        callback, {block: {"value": element}, **kw}, user=user, private_metadata=ref
    )


def test_user_text_never_becomes_a_live_mention_or_link(bot: Bot):
    bot.services.dispatcher.pacer.interval = 0
    acks = []
    acks.append(bot.command(f"cards stat MRN 1 {EVIL}: {EVIL}").text)
    ref = bot.consults()[-1].ref
    bot.settle()
    # Every free-text path: thread replies (relayed), need info, the requester's reply,
    # answer, reopen, hand-off note, rating comment, cancel reason, intake fields.
    bot.reply(ref, f"consultant says {EVIL}", user=ON_CALL)
    acks.append(bot.command(f"needinfo {ref} {EVIL}", user=ON_CALL).text)
    bot.settle()
    bot.reply(ref, f"requester says {EVIL}", user=REQUESTER)
    submit(
        bot,
        CallbackId.HANDOFF,
        ref,
        BlockId.HANDOFF_TO,
        users_select(BACKUP),
        user=ON_CALL,
        **{BlockId.NOTE: text_input(EVIL)},
    )
    acks.append(bot.command(f"answer {ref} {EVIL}", user=BACKUP).text)
    bot.settle()
    acks.append(bot.command(f"reopen {ref} {EVIL}").text)
    submit(bot, CallbackId.ANSWER, ref, BlockId.ANSWER, EVIL, user=BACKUP)
    bot.settle()
    bot.click(ActionId.HELPFUL, ref, user=REQUESTER)
    submit(bot, CallbackId.FEEDBACK, ref + "|1", BlockId.COMMENT, EVIL, user=REQUESTER)
    second = bot.open("path MRN 2: q?")
    acks.append(bot.command(f"cancel {second} {EVIL}").text)
    bot.sender.view_submission(
        CallbackId.NEW_CONSULT,
        state_values(
            {
                (BlockId.SERVICE, ActionId.SERVICE_SELECT): static_select("radiology"),
                BlockId.URGENCY: static_select("stat"),
                BlockId.PATIENT: EVIL,
                BlockId.QUESTION: EVIL,
                BlockId.INTAKE_PREFIX + "accession": EVIL,
            }
        ),
        user=REQUESTER,
    )
    bot.command("help", user=REQUESTER)
    for text in (f"{EVIL} MRN: q", f"ack {EVIL}", f"patient {EVIL}", f"oncall {EVIL}"):
        acks.append(bot.command(text).text)
    bot.sender.event({"type": "app_home_opened", "user": REQUESTER, "tab": "home"})
    bot.settle()
    assert len(bot.consults()) == 3
    assert bot.consult(ref).answer == EVIL.strip()  # stored as typed
    # Nothing recorded by Slack, and no ack, mentions anyone or links anywhere.
    assert live_tokens(bot.slack.calls, allowed=set()) == []
    for ack in acks:  # the command's own answer is mrkdwn too
        assert [t for t in LIVE.findall(ack) if not ours(t)] == [], ack
    assert any("&lt;!channel&gt;" in str(m["blocks"]) for m in bot.slack.messages(RAD_CHANNEL))
    assert limit_problems(bot.slack.calls) == []


LONG = "Troponin 0.9 & rising; " * 2000  # 46,000 characters before the limit


@pytest.mark.parametrize("shape", ["one line", "many lines"])
def test_long_text_is_shortened_in_slack_and_kept_whole(bot: Bot, shape: str):
    text = LONG[: QUESTION_MAX - 10] if shape == "one line" else ("a&b\n" * 4000)[:QUESTION_MAX]
    text = text.strip()
    bot.command(f"cards stat MRN 3: {text}")
    ref = bot.consults()[-1].ref
    bot.settle()
    bot.reply(ref, text, user=ON_CALL)
    bot.command(f"needinfo {ref} {text}", user=ON_CALL)
    bot.settle()
    bot.reply(ref, "ok", user=REQUESTER)
    bot.command(f"answer {ref} {text}", user=ON_CALL)
    bot.settle()
    bot.command(f"reopen {ref} {text}")
    bot.click(ActionId.ANSWER, ref, user=ON_CALL, channel=CARD_CHANNEL)  # pre-filled modal
    bot.settle()
    consult = bot.consult(ref)
    assert consult.question == text and consult.answer == text  # whole in the database
    shortened = [
        c
        for c in bot.slack.calls
        if c.method in ("chat.postMessage", "chat.update")
        and TRUNCATED in json.dumps(c.args, ensure_ascii=False)
    ]
    assert len(shortened) >= 6  # card, relay, need-info thread + DM, answer thread + DM
    assert limit_problems(bot.slack.calls) == []
    # Slack's own limit is on characters of the rendered text: the whole question is in
    # the card up to the marker.
    card = bot.card(ref)
    assert TRUNCATED.strip() in str(card["blocks"])
    # What follows a shortened quote is still there: the need-info DM keeps its link.
    (asked,) = [t for t in bot.dm_texts(REQUESTER) if "needs information" in t]
    assert TRUNCATED in asked and "the answer clock resumes" in asked
    assert consult.permalink in asked


def test_too_long_input_is_refused_with_the_limit(bot: Bot):
    resp = bot.command("cards stat MRN 4: " + "x" * (QUESTION_MAX + 1))
    assert "longer than" in resp.text
    assert bot.consults() == []
    resp = bot.command("cards stat " + "M" * 201 + ": q?")
    assert "longer than" in resp.text or "form" in resp.text.lower()
    assert bot.consults() == []


NUL_TEXT = "MRN\x00 5\x07\x1b[31m \u202e evil\r\n\x7f"


def test_nul_and_control_characters_are_stored_clean(bot: Bot):
    """PostgreSQL refuses NUL in text; terminals and logs choke on escapes."""
    resp = bot.command(f"cards stat {NUL_TEXT}: chest\x00 pain\x08?")
    assert resp.status == 200
    (consult,) = bot.consults()
    bot.settle()
    bot.reply(consult.ref, "reply\x00 with\x01 controls", user=ON_CALL)
    bot.command(f"answer {consult.ref} ans\x00wer\x0b", user=ON_CALL)
    bot.command(f"cancel {consult.ref} \x00")
    bot.settle()
    consult = bot.consult(consult.ref)
    for value in (consult.patient, consult.question, consult.answer):
        assert value and not any(ord(ch) < 32 and ch != "\n" for ch in value), repr(value)
        assert "\x7f" not in value
    assert_consistent(bot)


# ---------------------------------------------------------------------------- malformed
def payload(kind: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": kind, "user": {"id": REQUESTER}, "team": {"id": "T0001"}}
    base.update(fields)
    return base


MALFORMED: dict[str, tuple[bytes, str]] = {
    "payload is not JSON": (interactive("{oops"), "form"),
    "payload is a list": (interactive([1, 2]), "form"),
    "payload is a string": (interactive('"s"'), "form"),
    "payload is null": (interactive("null"), "form"),
    "JSON body is a list": (b"[1]", "json"),
    "JSON body is not JSON": (b"{oops", "json"),
    "JSON body is empty": (b"", "json"),
    "body is not UTF-8": (b"command=/consult&text=\xff\xfe&user_id=U1", "form"),
    "actions is a string": (interactive(payload("block_actions", actions="x")), "form"),
    "action is a string": (interactive(payload("block_actions", actions=["x"])), "form"),
    "user is a string": (
        interactive(payload("block_actions", user="U1", actions=[{"action_id": "a"}])),
        "form",
    ),
    "no user": (interactive({"type": "block_actions", "actions": [{"action_id": "x"}]}), "form"),
    "view without type": (
        interactive(payload("view_submission", view={"callback_id": CallbackId.NEW_CONSULT})),
        "form",
    ),
    "view state is a string": (
        interactive(
            payload(
                "view_submission",
                view={"type": "modal", "callback_id": CallbackId.NEW_CONSULT, "state": "x"},
            )
        ),
        "form",
    ),
    "view values are strings": (
        interactive(
            payload(
                "view_submission",
                view={
                    "type": "modal",
                    "callback_id": CallbackId.NEW_CONSULT,
                    "state": {"values": {"patient": "MRN 1"}},
                },
            )
        ),
        "form",
    ),
    "event is a string": (json.dumps({"type": "event_callback", "event": "x"}).encode(), "json"),
    "command without user": (form({"command": "/consult", "text": "cards MRN 1: q?"}), "form"),
    "selected option is a string": (
        interactive(
            payload(
                "block_actions",
                actions=[{"action_id": ActionId.SERVICE_SELECT, "selected_option": "x"}],
            )
        ),
        "form",
    ),
}
CTYPES = {"form": "application/x-www-form-urlencoded", "json": "application/json"}


def test_malformed_payloads_get_a_400_and_change_nothing(bot: Bot, figures: Tally):
    before = effects(bot)
    for name, (body, ctype) in MALFORMED.items():
        result = wsgi_call(bot, body, CTYPES[ctype])
        assert result.status == 400, (name, result.status, result.body[:200])
    assert effects(bot) == before
    figures.add("forged", len(MALFORMED))


def test_odd_but_well_formed_requests_get_a_clear_answer(bot: Bot):
    ref = bot.open()
    bot.command(f"answer {ref} Done.", user=ON_CALL)
    bot.command(f"close {ref}")
    bot.settle()
    cases: list[tuple[str, Any, str]] = [
        # stale buttons on a closed consult
        (
            "stale acknowledge",
            lambda: bot.click(ActionId.ACKNOWLEDGE, ref, user=ON_CALL, channel=CARD_CHANNEL),
            "closed",
        ),
        (
            "stale answer",
            lambda: bot.click(ActionId.ANSWER, ref, user=ON_CALL, channel=CARD_CHANNEL),
            "closed",
        ),
        (
            "stale cancel",
            lambda: bot.click(ActionId.CANCEL, ref, user=REQUESTER, channel=CARD_CHANNEL),
            "closed",
        ),
        (
            "stale need info",
            lambda: bot.click(ActionId.NEED_INFO, ref, user=ON_CALL, channel=CARD_CHANNEL),
            "closed",
        ),
        # references that do not exist, or are not references
        (
            "unknown ref",
            lambda: bot.click(
                ActionId.ACKNOWLEDGE, "RAD-999", user=RAD_ON_CALL, channel=CARD_CHANNEL
            ),
            "no consult RAD-999",
        ),
        (
            "not a ref",
            lambda: bot.click(ActionId.ACKNOWLEDGE, "<@U1> x", user=ON_CALL, channel=CARD_CHANNEL),
            "not for a consult",
        ),
        (
            "no value",
            lambda: bot.click(ActionId.ACKNOWLEDGE, None, user=ON_CALL, channel=CARD_CHANNEL),
            "not for a consult",
        ),
    ]
    for name, send, expected in cases:
        seen = len(bot.slack.ephemerals())
        assert send().status == 200, name
        bot.settle()
        told = [e["text"] for e in bot.slack.ephemerals()[seen:]]
        assert len(told) == 1 and expected in told[0], (name, told)
    # Unknown action ids (a retired button on an old message): 200 and a notice saying what
    # to use instead, not Slack's bare failure mark; nothing changes.
    before = bot.consult(ref).status
    seen = len(bot.slack.ephemerals())
    resp = bot.click("consult_retired_button", ref, user=ON_CALL, channel=CARD_CHANNEL)
    assert resp.status == 200
    bot.settle()
    told = [e["text"] for e in bot.slack.ephemerals()[seen:]]
    assert len(told) == 1 and "no longer in use" in told[0] and "/consult list" in told[0]
    assert bot.consult(ref).status == before
    # A form this version does not know: it closes, and a DM says nothing was saved.
    resp = submit(bot, "consult_retired_form", ref, BlockId.ANSWER, "x", user=ON_CALL)
    assert resp.status == 200 and not resp.body
    bot.settle()
    assert any("nothing was saved" in t for t in bot.dm_texts(ON_CALL))
    # Modals pointing at nothing.
    for meta in ("", "RAD-999", "nonsense", "\x00"):
        resp = submit(bot, CallbackId.ANSWER, meta, BlockId.ANSWER, "x", user=ON_CALL)
        assert resp.status == 200 and resp.json["response_action"] == "errors", meta
    # Commands with unknown references and odd text.
    for text, expected in (
        ("ack RAD-999", "no consult RAD-999"),
        ("close XYZ-1", "no consult XYZ-1"),
        ("answer", "Usage"),
        ("answer RAD-1x", "not a consult reference"),
        ("oncall nowhere <@U1>", "Unknown service"),
        ("stats 5y", ""),
        ("\x00\x01", "form"),
    ):
        resp = bot.command(text, user=ON_CALL)
        assert resp.status == 200 and expected.lower() in resp.text.lower(), (text, resp.text)
    assert len(bot.consults()) == 1
    assert bot.consult(ref).status == "closed"
    assert_consistent(bot)


def test_odd_slack_ids_in_exactly_once_keys(bot: Bot):
    """Trigger and view ids are keys in the database: NUL (refused by PostgreSQL) or a
    length past the column must not crash a request, and the key must still work."""
    ref = bot.open()
    for trigger in ("t\x00rig", "x" * 400):
        for _ in range(2):
            resp = bot.command(f"needinfo {ref} Weight?", user=ON_CALL, trigger_id=trigger)
            assert resp.status == 200 and "went wrong" not in resp.text, resp.text
            assert "not saved" not in resp.text
    assert bot.audit(ref).count("need_info") == 1  # the second trigger met a waiting consult
    values = state_values(
        {
            (BlockId.SERVICE, ActionId.SERVICE_SELECT): static_select("cardiology"),
            BlockId.URGENCY: static_select("stat"),
            BlockId.PATIENT: "MRN 9",
            BlockId.QUESTION: "q?",
        }
    )
    for view_id in ("\x00", "V" * 400):
        for _ in range(2):
            resp = bot.sender.view_submission(
                CallbackId.NEW_CONSULT, values, user=REQUESTER, view_id=view_id
            )
            assert resp.status == 200 and not resp.body, resp.text
    assert len(bot.consults()) == 3
    assert_consistent(bot)
