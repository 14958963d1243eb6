"""The consult lifecycle end to end over signed HTTP against the fake Slack."""

from __future__ import annotations

import re

import pytest

from bot.dev.fakeslack.requests import SlackSender
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.harness import (
    CARD_CHANNEL,
    OTHER_REQUESTER,
    OUTSIDER,
    RAD_CHANNEL,
    RAD_MEMBER,
    RAD_ON_CALL,
    REQUESTER,
    Bot,
    wait_until,
)

CARD_ON_CALL = "UCARDON"


def labels(view: dict) -> list[str]:
    return [b["label"]["text"] for b in view["blocks"] if b.get("type") == "input"]


def button_labels(message: dict) -> list[str]:
    return [
        e["text"]["text"]
        for b in message.get("blocks") or []
        if b.get("type") == "actions"
        for e in b["elements"]
    ]


def ack_text(resp) -> str:
    if isinstance(resp.json, dict):
        return str(resp.json.get("text", ""))
    return resp.body.decode()


# ---------------------------------------------------------------------------- the form
def test_consult_without_text_opens_the_form_with_the_labelled_inputs(bot: Bot):
    resp = bot.command("", user=REQUESTER)
    assert resp.status == 200
    opened = bot.slack.calls_to("views.open")
    assert len(opened) == 1
    view = opened[0].args["view"]
    if isinstance(view, str):
        import json

        view = json.loads(view)
    assert labels(view) == ["Service", "Urgency", "Patient", "Question"]
    urgency = next(b for b in view["blocks"] if b.get("block_id") == BlockId.URGENCY)
    assert [o["text"]["text"] for o in urgency["element"]["options"]] == [
        "Stat",
        "Urgent",
        "Routine",
    ]


def _view(call) -> dict:
    import json

    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else view


def test_choosing_a_service_adds_its_intake_fields(bot: Bot):
    bot.command("", user=REQUESTER)
    view = _view(bot.slack.calls_to("views.open")[0])
    view["id"] = "VFORM1"
    view["hash"] = "h1"
    view["state"] = {
        "values": {BlockId.PATIENT: {"value": {"type": "plain_text_input", "value": "MRN 7"}}}
    }
    bot.sender.block_action(
        ActionId.SERVICE_SELECT,
        user=REQUESTER,
        view=view,
        selected_option={"value": "radiology", "text": {"type": "plain_text", "text": "Radiology"}},
    )
    assert wait_until(lambda: bot.slack.calls_to("views.update"))
    updated = _view(bot.slack.calls_to("views.update")[0])
    assert labels(updated) == [
        "Service",
        "Urgency",
        "Patient",
        "Question",
        "Study / accession number",
    ]
    patient = next(b for b in updated["blocks"] if b.get("block_id") == BlockId.PATIENT)
    assert patient["element"]["initial_value"] == "MRN 7"


def form_values(
    service="cardiology", urgency="stat", patient="MRN 55", question="Chest pain?", **intake
) -> dict:
    values = {
        BlockId.SERVICE: {
            ActionId.SERVICE_SELECT: {
                "type": "static_select",
                "selected_option": {"value": service},
            }
        },
        BlockId.URGENCY: {
            "value": {"type": "static_select", "selected_option": {"value": urgency}}
        },
        BlockId.PATIENT: {"value": {"type": "plain_text_input", "value": patient}},
        BlockId.QUESTION: {"value": {"type": "plain_text_input", "value": question}},
    }
    for key, value in intake.items():
        values[BlockId.INTAKE_PREFIX + key] = {
            "value": {"type": "plain_text_input", "value": value}
        }
    return values


def test_invalid_form_input_is_shown_in_the_modal_and_nothing_is_stored(bot: Bot):
    resp = bot.sender.view_submission(
        CallbackId.NEW_CONSULT,
        form_values(service="radiology", question=""),
        user=REQUESTER,
        view_id="VBAD1",
    )
    assert resp.status == 200
    assert resp.json["response_action"] == "errors"
    errors = resp.json["errors"]
    assert "question" in errors[BlockId.QUESTION].lower()
    assert bot.consults() == []


def test_form_submission_creates_one_consult_even_when_submitted_twice(bot: Bot):
    values = form_values(service="radiology", accession="ACC-991")
    for _ in range(2):
        resp = bot.sender.view_submission(
            CallbackId.NEW_CONSULT, values, user=REQUESTER, view_id="VDUP1"
        )
        assert resp.status == 200
        assert not resp.body or "errors" not in (resp.json or {})
    consults = bot.consults()
    assert len(consults) == 1
    assert consults[0].intake == {"accession": "ACC-991"}
    bot.settle()
    card = bot.card(consults[0].ref)
    assert "ACC-991" in str(card["blocks"])


# ---------------------------------------------------------------------------- quick form
def test_quick_form_creates_at_once_with_patient_before_the_first_colon(bot: Bot):
    resp = bot.command("cards MRN 12345: chest pain: troponin rising?", user=REQUESTER)
    assert resp.status == 200
    assert "CARD-1" in ack_text(resp)
    (consult,) = bot.consults()
    assert consult.patient == "MRN 12345"
    assert consult.question == "chest pain: troponin rising?"
    assert consult.urgency == "routine"  # the default
    assert consult.requester == REQUESTER
    assert consult.service == "cardiology"


def test_a_question_that_says_payload_is_created_like_any_other(bot: Bot):
    # bolt reads any form whose text contains "payload" as an interaction payload: this
    # consult used to be answered 404 and never stored.
    resp = bot.command("cards MRN 12345: payload of the pump? chest pain", user=REQUESTER)
    assert resp.status == 200
    assert "CARD-1" in ack_text(resp)
    (consult,) = bot.consults()
    assert consult.question == "payload of the pump? chest pain"


def test_quick_form_accepts_aliases_and_urgency(bot: Bot):
    bot.command("path stat S-22-1234: frozen section margins?", user=REQUESTER)
    (consult,) = bot.consults()
    assert (consult.ref, consult.urgency) == ("PATH-1", "stat")


def test_quick_form_missing_required_intake_opens_the_form_prefilled(bot: Bot):
    resp = bot.command("rad urgent MRN 1: CT chest for PE?", user=REQUESTER)
    assert resp.status == 200
    assert bot.consults() == []
    view = _view(bot.slack.calls_to("views.open")[0])
    patient = next(b for b in view["blocks"] if b.get("block_id") == BlockId.PATIENT)
    question = next(b for b in view["blocks"] if b.get("block_id") == BlockId.QUESTION)
    assert patient["element"]["initial_value"] == "MRN 1"
    assert question["element"]["initial_value"] == "CT chest for PE?"
    assert "Study / accession number" in labels(view)


def test_quick_form_missing_question_opens_the_form(bot: Bot):
    resp = bot.command("cards stat MRN4", user=REQUESTER)
    assert resp.status == 200
    assert bot.consults() == []
    view = _view(bot.slack.calls_to("views.open")[0])
    patient = next(b for b in view["blocks"] if b.get("block_id") == BlockId.PATIENT)
    assert patient["element"]["initial_value"] == "MRN4"


# ---------------------------------------------------------------------------- posting
def test_consult_is_posted_with_everything_the_service_needs(bot: Bot):
    ref = bot.open("cards stat MRN 12345: chest pain, troponin rising?")
    card = bot.card(ref)
    text = str(card["blocks"])
    for expected in (
        ref,
        "Stat",
        "MRN 12345",
        "chest pain, troponin rising?",
        f"<@{REQUESTER}>",
        f"<@{CARD_ON_CALL}>",
        "<!date^",
    ):
        assert expected in text, expected
    assert button_labels(card)[:4] == ["Acknowledge", "Answer", "Need info", "Hand off"]
    assert card["channel"] == CARD_CHANNEL
    # Notification text carries no patient details.
    assert "MRN" not in card["text"] and "troponin" not in card["text"]


def test_requester_gets_a_confirmation_with_the_reference_and_a_link(bot: Bot):
    ref = bot.open()
    consult = bot.consult(ref)
    assert consult.permalink and consult.channel_ts
    dms = bot.dm_texts(REQUESTER)
    assert any(ref in t and consult.permalink in t for t in dms), dms


def test_consult_is_stored_before_it_is_posted(bot: Bot):
    bot.slack.fail("chat.postMessage", status=500, times=None)
    resp = bot.command("cards stat MRN 9: ECG changes?", user=REQUESTER)
    assert resp.status == 200 and "CARD-1" in ack_text(resp)
    (consult,) = bot.consults()
    assert consult.channel_ts is None
    bot.slack.clear_failures()
    bot.clock.advance(0)
    bot.settle(timeout=15)
    assert bot.consult("CARD-1").channel_ts is not None


# ---------------------------------------------------------------------------- acknowledge
def test_acknowledge_button_assigns_updates_the_card_and_tells_the_requester(bot: Bot):
    ref = bot.open()
    resp = bot.click(
        ActionId.ACKNOWLEDGE,
        ref,
        user=CARD_ON_CALL,
        channel=CARD_CHANNEL,
        message_ts=bot.consult(ref).channel_ts,
    )
    assert resp.status == 200
    bot.settle()
    consult = bot.consult(ref)
    assert consult.status == "acknowledged" and consult.assignee == CARD_ON_CALL
    assert consult.acknowledged_at is not None
    updates = bot.slack.calls_to("chat.update")
    assert updates
    card = bot.card(ref)
    assert "Acknowledged" in str(card["blocks"]) and f"<@{CARD_ON_CALL}>" in str(card["blocks"])
    assert "Acknowledge" not in button_labels(card)
    assert any("acknowledged" in t and ref in t for t in bot.dm_texts(REQUESTER))


def test_acknowledge_by_command(bot: Bot):
    ref = bot.open()
    resp = bot.command(f"ack {ref.lower()}", user=CARD_ON_CALL)
    assert "acknowledged" in ack_text(resp).lower()
    assert bot.consult(ref).assignee == CARD_ON_CALL


def test_double_click_acknowledge_has_one_effect(bot: Bot):
    ref = bot.open()
    for _ in range(3):
        bot.click(ActionId.ACKNOWLEDGE, ref, user=CARD_ON_CALL, channel=CARD_CHANNEL)
    bot.settle()
    assert bot.audit(ref).count("acknowledge") == 1
    assert sum("owns it now" in t for t in bot.dm_texts(REQUESTER)) == 1


# ---------------------------------------------------------------------------- thread
def test_consultant_reply_is_recorded_and_relayed_to_the_requester(bot: Bot):
    ref = bot.open()
    bot.clock.advance(120)
    resp = bot.reply(ref, "Can you send the latest ECG?", user=CARD_ON_CALL)
    assert resp.status == 200
    bot.settle()
    consult = bot.consult(ref)
    assert consult.first_reply_at is not None
    assert (consult.first_reply_at - consult.created_at).total_seconds() == 120
    relayed = [t for t in bot.dm_texts(REQUESTER) if "latest ECG" in t]
    assert relayed and consult.permalink in relayed[0]


def test_requester_reply_is_recorded_but_not_a_first_reply(bot: Bot):
    ref = bot.open()
    bot.reply(ref, "Also: patient on apixaban", user=REQUESTER)
    bot.settle()
    assert bot.consult(ref).first_reply_at is None
    assert "requester_reply" in bot.audit(ref)


def test_retried_event_is_recorded_once(bot: Bot):
    ref = bot.open()
    event = bot.thread_event(ref, "Looking now", user=CARD_ON_CALL, ts="1800000000.000001")
    bot.sender.event(event, event_id="EvSAME")
    bot.sender.event(event, event_id="EvSAME", retry_num=1, retry_reason="http_timeout")
    bot.settle()
    assert bot.audit(ref).count("reply") == 1
    assert sum("Looking now" in t for t in bot.dm_texts(REQUESTER)) == 1


@pytest.mark.parametrize(
    "field, value",
    [
        ("thread_ts", "\x00"),
        ("ts", "1800000000.0000\x00"),
        ("user", "U" * 40),
        ("channel", "C\x01"),
    ],
)
def test_a_reply_event_with_malformed_ids_is_ignored_quietly(bot: Bot, field: str, value: str):
    """Slack never sends such ids; a forged or garbled event is no consult's reply: 200
    with an empty body (no "not saved" notice), nothing stored, the next reply recorded.
    (PostgreSQL refused the NUL and the bot answered "the database did not answer".)"""
    ref = bot.open()
    event = bot.thread_event(ref, "garbled", user=CARD_ON_CALL, ts="1800000000.000002")
    event[field] = value
    resp = bot.sender.event(event)
    assert resp.status == 200 and b"not saved" not in resp.body
    bot.reply(ref, "Looking now", user=CARD_ON_CALL)
    bot.settle()
    assert bot.audit(ref).count("reply") == 1
    assert not any("garbled" in t for t in bot.dm_texts(REQUESTER))


# ---------------------------------------------------------------------------- answer
def test_answer_button_opens_modal_prefilled_with_latest_reply(bot: Bot):
    ref = bot.open()
    bot.reply(ref, "Likely NSTEMI; start heparin.", user=CARD_ON_CALL)
    bot.settle()
    bot.click(ActionId.ANSWER, ref, user=CARD_ON_CALL, channel=CARD_CHANNEL)
    assert wait_until(lambda: bot.slack.calls_to("views.open"))
    view = _view(bot.slack.calls_to("views.open")[-1])
    answer = next(b for b in view["blocks"] if b.get("block_id") == BlockId.ANSWER)
    assert answer["element"]["initial_value"] == "Likely NSTEMI; start heparin."
    assert "MRN" not in view["title"]["text"]


def test_answer_modal_submission_answers_posts_and_tells_the_requester(bot: Bot):
    ref = bot.open()
    resp = bot.sender.view_submission(
        CallbackId.ANSWER,
        {BlockId.ANSWER: {"value": {"type": "plain_text_input", "value": "Cath lab today."}}},
        user=CARD_ON_CALL,
        private_metadata=ref,
        view_id="VANS1",
    )
    assert resp.status == 200
    bot.settle()
    consult = bot.consult(ref)
    assert consult.status == "answered" and consult.answer == "Cath lab today."
    assert any("Cath lab today." in t for t in bot.thread_texts(ref))
    answered = [m for m in bot.slack.dms(REQUESTER) if "Cath lab today." in str(m["blocks"])]
    assert answered and {"Close", "Reopen"} <= set(button_labels(answered[0]))
    assert "Answered" in str(bot.card(ref)["blocks"])


def test_answer_by_command(bot: Bot):
    ref = bot.open()
    resp = bot.command(f"answer {ref} No contraindication to MRI.", user=CARD_ON_CALL)
    assert resp.status == 200
    assert bot.consult(ref).status == "answered"


def test_requester_cannot_answer_their_own_consult(bot: Bot):
    ref = bot.open()
    resp = bot.command(f"answer {ref} self answer", user=REQUESTER)
    assert "cannot" in ack_text(resp)
    assert bot.consult(ref).status == "open"
    assert "refused" in bot.audit(ref)


# ---------------------------------------------------------------------------- close/reopen/cancel
def test_requester_closes_with_the_button(bot: Bot):
    ref = bot.open()
    bot.command(f"answer {ref} Done.", user=CARD_ON_CALL)
    bot.settle()
    bot.click(ActionId.CLOSE, ref, user=REQUESTER)
    bot.settle()
    consult = bot.consult(ref)
    assert consult.status == "closed" and consult.closed_at is not None


def test_reopen_with_follow_up_goes_back_to_the_consultant(bot: Bot):
    ref = bot.open()
    bot.command(f"answer {ref} Start aspirin.", user=CARD_ON_CALL)
    resp = bot.command(f"reopen {ref} What dose?", user=REQUESTER)
    assert "reopened" in ack_text(resp)
    bot.settle()
    consult = bot.consult(ref)
    assert consult.status == "acknowledged" and consult.reopened_count == 1
    assert any("What dose?" in t for t in bot.thread_texts(ref))
    assert any("What dose?" in t for t in bot.dm_texts(CARD_ON_CALL))


def test_cancel_by_command_and_by_button(bot: Bot):
    first = bot.open()
    second = bot.open("path MRN 8: margins?")
    bot.command(f"cancel {first} resolved clinically", user=REQUESTER)
    bot.click(ActionId.CANCEL, second, user=REQUESTER)
    bot.settle()
    assert bot.consult(first).status == "cancelled"
    assert bot.consult(second).status == "cancelled"
    assert bot.consult(first).next_nudge_at is None


def test_only_the_requester_may_close_or_cancel(bot: Bot):
    ref = bot.open()
    resp = bot.command(f"cancel {ref}", user=OTHER_REQUESTER)
    assert "Only" in ack_text(resp)
    assert bot.consult(ref).status == "open"


def test_close_before_answer_is_refused_with_advice(bot: Bot):
    ref = bot.open()
    resp = bot.command(f"close {ref}", user=REQUESTER)
    assert "cancel" in ack_text(resp)


# ---------------------------------------------------------------------------- patient-centred
def test_confirmation_lists_the_patients_other_open_consults(bot: Bot):
    first = bot.open("cards stat MRN 777: chest pain?")
    resp = bot.command("path MRN  777: biopsy result?", user=OTHER_REQUESTER)
    assert first in ack_text(resp)
    bot.settle()
    confirmation = [t for t in bot.dm_texts(OTHER_REQUESTER) if "PATH-1" in t]
    assert confirmation and first in confirmation[0]


def test_patient_command_lists_open_consults_across_services(bot: Bot):
    a = bot.open("cards MRN 31: q1?")
    b = bot.open("path mrn 31: q2?")
    bot.open("cards MRN 32: other patient?")
    resp = bot.command("patient MRN 31", user=RAD_MEMBER)
    text = ack_text(resp)
    assert a in text and b in text and "CARD-2" not in text


# ---------------------------------------------------------------------------- list/help/errors
def test_list_shows_my_consults_as_requester_and_assignee(bot: Bot):
    mine = bot.open()
    bot.command("ack " + mine, user=CARD_ON_CALL)
    text = ack_text(bot.command("list", user=CARD_ON_CALL))
    assert "Assigned to you" in text and mine in text
    text = ack_text(bot.command("list", user=REQUESTER))
    assert "Requested by you" in text and mine in text and "old" in text


def test_help_lists_every_form(bot: Bot):
    text = ack_text(bot.command("help", user=REQUESTER))
    for word in (
        "list",
        "ack",
        "answer",
        "needinfo",
        "handoff",
        "close",
        "reopen",
        "cancel",
        "patient",
        "oncall",
        "stats",
        "radiology",
    ):
        assert word in text


def test_bad_input_gets_a_clear_ephemeral_message(bot: Bot):
    cases = {
        "dermatology MRN 1: rash?": "Unknown service",
        "ack RAD-999": "no consult RAD-999",
        "ack nonsense": "not a consult reference",
        "answer CARD-1": "Add the answer",
        "handoff nobody": "Name who takes over",
    }
    for text, expected in cases.items():
        resp = bot.command(text, user=REQUESTER)
        assert resp.status == 200, text
        assert expected.lower() in ack_text(resp).lower(), (text, ack_text(resp))
    assert bot.consults() == []


def test_every_transition_is_audited(bot: Bot):
    ref = bot.open()
    bot.command(f"ack {ref}", user=CARD_ON_CALL)
    bot.command(f"answer {ref} ok", user=CARD_ON_CALL)
    bot.command(f"reopen {ref} and?", user=REQUESTER)
    bot.command(f"answer {ref} and this.", user=CARD_ON_CALL)
    bot.command(f"close {ref}", user=REQUESTER)
    assert bot.audit(ref) == ["created", "acknowledge", "answer", "reopen", "answer", "close"]


def test_user_text_is_escaped_so_nobody_is_pinged(bot: Bot):
    ref = bot.open("cards MRN 1: <!channel> see <@U999> <https://evil.example|click> & more")
    blocks = str(bot.card(ref)["blocks"])
    assert "<!channel>" not in blocks and "<@U999>" not in blocks
    assert "&lt;!channel&gt;" in blocks and "&amp; more" in blocks


def test_times_use_slack_date_formatting(bot: Bot):
    ref = bot.open()
    assert re.search(r"<!date\^\d+\^", str(bot.card(ref)["blocks"]))


def test_member_of_channel_may_acknowledge_but_outsider_may_not(bot: Bot):
    bot.slack.set_members(CARD_CHANNEL, ["UCARDMEM"])
    ref = bot.open()
    resp = bot.command(f"ack {ref}", user=OUTSIDER)
    assert "Only" in ack_text(resp)
    resp = bot.command(f"ack {ref}", user="UCARDMEM")
    assert bot.consult(ref).assignee == "UCARDMEM"


def test_radiology_consult_mentions_the_on_call(bot: Bot):
    bot.sender.view_submission(
        CallbackId.NEW_CONSULT,
        form_values(service="radiology", accession="A1"),
        user=REQUESTER,
        view_id="VRAD1",
    )
    bot.settle()
    (consult,) = bot.consults()
    assert consult.channel == RAD_CHANNEL
    assert f"<@{RAD_ON_CALL}>" in str(bot.card(consult.ref)["blocks"])


def test_unsigned_request_is_refused(bot: Bot):
    forged = SlackSender(bot.url, "wrong-secret")
    resp = forged.command("cards MRN 1: x?", user=REQUESTER)
    assert resp.status == 401
    assert bot.consults() == []


def test_reopen_button_opens_a_modal_and_the_follow_up_reopens(bot: Bot):
    ref = bot.open()
    bot.command(f"answer {ref} Aspirin.", user=CARD_ON_CALL)
    bot.click(ActionId.REOPEN, ref, user=REQUESTER)
    assert wait_until(lambda: bot.slack.calls_to("views.open"))
    assert _view(bot.slack.calls_to("views.open")[-1])["callback_id"] == CallbackId.REOPEN
    resp = bot.sender.view_submission(
        CallbackId.REOPEN,
        {BlockId.FOLLOW_UP: {"value": {"type": "plain_text_input", "value": "Which dose?"}}},
        user=REQUESTER,
        private_metadata=ref,
        view_id="VRE1",
    )
    assert resp.status == 200
    assert bot.consult(ref).status == "acknowledged"


def test_refused_button_tells_the_clicker_why_and_changes_nothing(bot: Bot):
    ref = bot.open()
    bot.click(ActionId.ANSWER, ref, user=REQUESTER, channel=CARD_CHANNEL)
    bot.settle()
    notices = [e for e in bot.slack.ephemerals(REQUESTER) if ref in str(e)]
    assert notices and "cannot answer" in str(notices[0])
    assert bot.slack.calls_to("views.open") == []
    assert bot.consult(ref).status == "open" and "refused" in bot.audit(ref)


def test_stale_button_on_a_closed_consult_gets_a_clear_notice(bot: Bot):
    ref = bot.open()
    bot.command(f"answer {ref} ok", user=CARD_ON_CALL)
    bot.command(f"close {ref}", user=REQUESTER)
    bot.click(ActionId.ACKNOWLEDGE, ref, user=CARD_ON_CALL, channel=CARD_CHANNEL)
    bot.settle()
    notices = [e for e in bot.slack.ephemerals(CARD_ON_CALL) if ref in str(e)]
    assert notices and "closed" in str(notices[0])
    assert bot.consult(ref).status == "closed"


def test_a_repeated_form_submission_does_not_use_up_a_reference_number(bot: Bot):
    values = form_values()
    bot.sender.view_submission(CallbackId.NEW_CONSULT, values, user=REQUESTER, view_id="VGAP1")
    bot.sender.view_submission(CallbackId.NEW_CONSULT, values, user=REQUESTER, view_id="VGAP1")
    bot.sender.view_submission(CallbackId.NEW_CONSULT, values, user=REQUESTER, view_id="VGAP2")
    assert [c.ref for c in bot.consults()] == ["CARD-1", "CARD-2"]
