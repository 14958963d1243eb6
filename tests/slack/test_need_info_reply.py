"""The requester answers a need-info question from their direct message (Reply button and
form), end to end over signed HTTP against the fake Slack: recorded as their thread reply,
posted in the thread by the bot, exactly once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.flows.consults.drafts import QUESTION_MAX
from bot.slack.ids import ActionId, BlockId, CallbackId
from storage.models import Consult, Reply
from tests.harness import OUTSIDER, REQUESTER, Bot, wait_until
from tests.reliability.slack_rules import limit_problems, live_tokens

ON_CALL = "UCARDON"
MINUTE = 60
QUESTION = "Is the patient on anticoagulants?"


def replies(bot: Bot, ref: str) -> list[Reply]:
    with bot.services.sessions() as s:
        consult_id = s.execute(select(Consult.id).where(Consult.ref == ref)).scalar_one()
        rows = list(
            s.execute(select(Reply).where(Reply.consult_id == consult_id).order_by(Reply.id))
            .scalars()
            .all()
        )
        for row in rows:
            s.expunge(row)
        return rows


def need_info_dm(bot: Bot, ref: str) -> dict[str, Any]:
    (dm,) = [
        m
        for m in bot.slack.dms(REQUESTER)
        if "needs information" in str(m.get("blocks")) and ref in str(m.get("blocks"))
    ]
    return dm


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e for b in message.get("blocks") or [] if b.get("type") == "actions" for e in b["elements"]
    ]


def opened_views(bot: Bot) -> list[dict[str, Any]]:
    views = []
    for call in bot.slack.calls_to("views.open"):
        view = call.args["view"]
        views.append(json.loads(view) if isinstance(view, str) else view)
    return views


def reply_values(text: str) -> dict[str, Any]:
    return {BlockId.REPLY: {"value": {"type": "plain_text_input", "value": text}}}


def submit_reply(bot: Bot, ref: str, text: str, *, user: str = REQUESTER, view_id: str = "VRE1"):
    return bot.sender.view_submission(
        CallbackId.REPLY, reply_values(text), user=user, private_metadata=ref, view_id=view_id
    )


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at the same moment (a barrier releases them together)."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def waiting_consult(bot: Bot) -> str:
    """A stat cardiology consult, acknowledged, then asked about after 30 minutes."""
    ref = bot.open("cards stat MRN 1: chest pain?")
    bot.command(f"ack {ref}", user=ON_CALL)
    bot.clock.advance(30 * MINUTE)
    resp = bot.command(f"needinfo {ref} {QUESTION}", user=ON_CALL)
    assert "paused" in resp.text
    bot.settle()
    assert bot.consult(ref).status == "waiting"
    return ref


def test_requester_answers_with_the_reply_button_and_the_consult_resumes(bot: Bot):
    ref = waiting_consult(bot)
    consult = bot.consult(ref)
    due_before = consult.answer_due_at
    # The need-info DM: the question, the Reply button, and still the thread with its link.
    dm = need_info_dm(bot, ref)
    (reply_button,) = [b for b in buttons(dm) if b["action_id"] == ActionId.REPLY]
    assert reply_button["value"] == ref and reply_button["text"]["text"] == "Reply"
    text = str(dm["blocks"])
    assert "anticoagulants" in text and "*Reply*" in text and "thread" in text
    assert consult.permalink in text and "the answer clock resumes" in text

    bot.clock.advance(20 * MINUTE)
    bot.click(ActionId.REPLY, ref, user=REQUESTER, channel=dm["channel"], message_ts=dm["ts"])
    assert wait_until(lambda: opened_views(bot))
    (view,) = opened_views(bot)
    assert view["callback_id"] == CallbackId.REPLY
    assert view["private_metadata"] == ref
    inputs = [b for b in view["blocks"] if b.get("type") == "input"]
    assert [b["label"]["text"] for b in inputs] == ["Your reply"]
    assert inputs[0]["block_id"] == BlockId.REPLY and inputs[0]["element"]["multiline"]
    # The consultant's question is shown above the input.
    shown = json.dumps(view["blocks"][: view["blocks"].index(inputs[0])])
    assert "anticoagulants" in shown and f"<@{ON_CALL}>" in shown

    typed = "Yes, apixaban 5 mg bd <!channel> <@UEVIL> & <https://evil.example|x>"
    resp = submit_reply(bot, ref, typed, view_id="VREPLY1")
    assert resp.status == 200
    assert not (resp.json or {}).get("response_action"), resp.text  # the form closes
    bot.settle()

    consult = bot.consult(ref)
    assert consult.status == "acknowledged"  # back to where it was before the question
    assert consult.waiting_since is None
    assert consult.waiting_seconds == 20 * MINUTE  # charged as a thread reply would be
    assert consult.answer_due_at - due_before == timedelta(minutes=20)
    audit = bot.audit(ref)
    assert audit[-2:] == ["requester_reply", "info_given"]
    (row,) = replies(bot, ref)
    assert row.by_requester and row.user == REQUESTER and row.text == typed
    assert row.ts == "view:VREPLY1"
    # Posted in the thread by the bot, escaped, where the consultant asked.
    posted = [t for t in bot.thread_texts(ref) if f"<@{REQUESTER}> replied" in t]
    assert len(posted) == 1
    assert "apixaban" in posted[0] and "&lt;!channel&gt;" in posted[0]
    assert "running again" in posted[0]
    # The owner is told as for a thread reply; the requester gets a confirmation.
    assert any("replied on" in t and "running again" in t for t in bot.dm_texts(ON_CALL))
    assert any(f"Your reply on *{ref}*" in t for t in bot.dm_texts(REQUESTER))
    assert live_tokens(bot.slack.calls, allowed=set()) == []
    assert limit_problems(bot.slack.calls) == []


def test_the_same_reply_form_submitted_twice_records_and_posts_once(bot: Bot):
    ref = waiting_consult(bot)
    for _ in range(2):
        resp = submit_reply(bot, ref, "Creatinine 88.", view_id="VTWICE")
        assert resp.status == 200 and not (resp.json or {}).get("response_action")
    bot.settle()
    assert len(replies(bot, ref)) == 1
    assert len([t for t in bot.thread_texts(ref) if "Creatinine 88." in t]) == 1
    audit = bot.audit(ref)
    assert audit.count("requester_reply") == 1 and audit.count("info_given") == 1
    assert len([t for t in bot.dm_texts(REQUESTER) if "Your reply on" in t]) == 1
    assert len([t for t in bot.dm_texts(ON_CALL) if "replied on" in t]) == 1
    # A different form (a second answer) is a second reply.
    submit_reply(bot, ref, "And no bleeding history.", view_id="VOTHER")
    bot.settle()
    assert len(replies(bot, ref)) == 2
    assert bot.consult(ref).status == "acknowledged"


def test_the_same_reply_form_submitted_concurrently_records_and_posts_once(bot: Bot):
    ref = waiting_consult(bot)
    responses = race(*[lambda: submit_reply(bot, ref, "Weight 82 kg.", view_id="VRACE")] * 3)
    assert all(r.status == 200 and not (r.json or {}).get("errors") for r in responses)
    bot.settle()
    assert len(replies(bot, ref)) == 1
    assert len([t for t in bot.thread_texts(ref) if "Weight 82 kg." in t]) == 1
    assert bot.audit(ref).count("info_given") == 1
    assert bot.consult(ref).status == "acknowledged"


def test_empty_or_too_long_reply_is_shown_in_the_form_and_nothing_is_recorded(bot: Bot):
    ref = waiting_consult(bot)
    for text, expected in (
        ("   ", "Write your reply"),
        ("x" * (QUESTION_MAX + 1), f"longer than {QUESTION_MAX} characters"),
    ):
        resp = submit_reply(bot, ref, text, view_id="VBAD")
        assert resp.status == 200
        assert resp.json["response_action"] == "errors"
        assert expected in resp.json["errors"][BlockId.REPLY]
    bot.settle()
    assert replies(bot, ref) == []
    assert bot.consult(ref).status == "waiting"
    assert "requester_reply" not in bot.audit(ref)
    assert not [t for t in bot.thread_texts(ref) if f"<@{REQUESTER}> replied" in t]


def test_only_the_requester_may_reply_through_the_form(bot: Bot):
    ref = waiting_consult(bot)
    # Someone else clicks the button: told why, only to them; no form opens.
    bot.click(ActionId.REPLY, ref, user=OUTSIDER, channel="CCARD")
    bot.settle()
    assert opened_views(bot) == []
    (notice,) = [e["text"] for e in bot.slack.ephemerals(OUTSIDER)]
    assert ":no_entry:" in notice and "Only the requester" in notice
    # Someone else submits the form (the consultant, say): refused in the form.
    resp = submit_reply(bot, ref, "It's fine.", user=ON_CALL, view_id="VNOTYOU")
    assert resp.json["response_action"] == "errors"
    assert "Only the requester" in resp.json["errors"][BlockId.REPLY]
    bot.settle()
    assert replies(bot, ref) == []
    consult = bot.consult(ref)
    assert consult.status == "waiting" and consult.waiting_since is not None
    audit = bot.audit(ref)
    assert audit.count("refused") == 2 and "requester_reply" not in audit
    assert not [t for t in bot.thread_texts(ref) if "It's fine." in t]


def test_a_late_reply_is_recorded_and_posted_without_changing_the_status(bot: Bot):
    ref = waiting_consult(bot)
    bot.command(f"answer {ref} Start apixaban.", user=ON_CALL)
    bot.settle()
    assert bot.consult(ref).status == "answered"
    resp = submit_reply(bot, ref, "He is already on apixaban.", view_id="VLATE")
    assert not (resp.json or {}).get("response_action"), resp.text
    bot.settle()
    consult = bot.consult(ref)
    assert consult.status == "answered"
    (row,) = replies(bot, ref)
    assert row.by_requester
    assert bot.audit(ref)[-1] == "requester_reply"  # as a late thread reply: no info_given
    (posted,) = [t for t in bot.thread_texts(ref) if "already on apixaban" in t]
    assert "running again" not in posted
    assert any(
        f"Your reply on *{ref}* is posted in its thread." in t for t in bot.dm_texts(REQUESTER)
    )


def test_the_reminder_while_waiting_has_the_reply_button(bot: Bot):
    ref = waiting_consult(bot)
    bot.clock.advance(10 * MINUTE)
    assert bot.sweep().reminded == [ref]
    bot.settle()
    (reminder,) = [
        m for m in bot.slack.dms(REQUESTER) if "waiting for your reply" in str(m.get("blocks"))
    ]
    assert [(b["action_id"], b["value"]) for b in buttons(reminder)] == [(ActionId.REPLY, ref)]
