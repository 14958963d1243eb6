"""App Home and requester feedback over HTTP."""

from __future__ import annotations

from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.harness import REQUESTER, Bot, wait_until

ON_CALL = "UCARDON"


def open_home(bot: Bot, user: str) -> dict:
    before = len(bot.slack.calls_to("views.publish"))
    bot.sender.event({"type": "app_home_opened", "user": user, "tab": "home", "channel": "DX"})
    assert wait_until(lambda: len(bot.slack.calls_to("views.publish")) > before)
    return bot.slack.calls_to("views.publish")[-1].args["view"]


def test_home_shows_waiting_on_me_and_my_requests_without_patient_details(bot: Bot):
    ref = bot.open("cards stat MRN 4242: SECRET-QUESTION-TEXT?")
    home = open_home(bot, ON_CALL)
    text = str(home)
    assert "Waiting on me" in text and ref in text
    assert "4242" not in text and "SECRET-QUESTION-TEXT" not in text
    mine = str(open_home(bot, REQUESTER))
    assert "My requests" in mine and ref in mine and "4242" not in mine


def test_helpful_tap_is_stored_audited_and_can_carry_a_comment(bot: Bot):
    ref = bot.open()
    bot.command(f"answer {ref} Start a beta blocker.", user=ON_CALL)
    resp = bot.click(ActionId.HELPFUL, ref, user=REQUESTER)
    assert resp.status == 200
    consult = bot.consult(ref)
    assert consult.feedback_helpful is True
    assert "feedback" in bot.audit(ref)
    assert wait_until(lambda: bot.slack.calls_to("views.open"))
    bot.sender.view_submission(
        CallbackId.FEEDBACK,
        {BlockId.COMMENT: {"value": {"type": "plain_text_input", "value": "Clear and fast"}}},
        user=REQUESTER,
        private_metadata=f"{ref}|1",
        view_id="VFB1",
    )
    consult = bot.consult(ref)
    assert consult.feedback_comment == "Clear and fast" and consult.feedback_helpful is True


def test_not_helpful_and_only_the_requester_rates(bot: Bot):
    ref = bot.open()
    bot.command(f"answer {ref} ok", user=ON_CALL)
    bot.click(ActionId.NOT_HELPFUL, ref, user=ON_CALL)
    assert bot.consult(ref).feedback_helpful is None
    bot.click(ActionId.NOT_HELPFUL, ref, user=REQUESTER)
    assert bot.consult(ref).feedback_helpful is False


def test_rating_before_an_answer_is_refused(bot: Bot):
    ref = bot.open()
    bot.click(ActionId.HELPFUL, ref, user=REQUESTER, channel="DUREQ1")
    bot.settle()
    assert bot.consult(ref).feedback_helpful is None
    assert any("not been answered" in str(e) for e in bot.slack.ephemerals(REQUESTER))
