"""Requester cover and hand-over without Slack: `/consult cover` and `/consult handover`
parsed from the table, the "covering for" line, the requester's buttons by state, and a
hand-over's texts (the note only in message bodies)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.domain.catalogue_load import parse_catalogue
from bot.domain.commands import OFF, Verb
from bot.domain.parsing import parse
from bot.slack.ids import ActionId
from bot.slack.render.context import RenderContext
from bot.slack.render.cover import (
    covering_for,
    handover_received,
    handover_thread,
    requester_buttons,
)
from storage.models import Consult
from tests.harness import TEST_CATALOGUE

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_cover_reads_nothing_off_or_a_colleague():
    assert parse("cover") == parse("cover ")
    shown = parse("cover")
    assert shown.verb == Verb.COVER and shown.user is None and not shown.extra
    assert parse("cover OFF").extra == {OFF: "yes"}
    on = parse("cover <@U0BOB|bob>")
    assert on.verb == Verb.COVER and on.user == "U0BOB" and on.error is None
    for bad in ("cover bob", "cover @bob", "cover <@U0BOB> <@U0EVE>"):
        assert "Name who covers for you" in (parse(bad).error or ""), bad


def test_handover_reads_a_reference_a_colleague_and_a_note():
    parsed = parse("handover rad-42 <@U0BOB> off shift, call back re MRN")
    assert parsed.verb == Verb.HANDOVER and parsed.ref == "RAD-42"
    assert parsed.user == "U0BOB" and parsed.text == "off shift, call back re MRN"
    assert parse("handover RAD-42 <@U0BOB>").text == ""
    assert "not a consult reference" in (parse("handover bob <@U0BOB>").error or "")
    assert "Name the colleague" in (parse("handover RAD-42 bob").error or "")
    assert "Name the colleague" in (parse("handover RAD-42").error or "")


def _consult(status: str) -> Consult:
    return Consult(
        id=1, ref="CARD-1", service="cardiology", urgency="stat", patient="MRN 55",
        question="Chest pain?", requester="U0NEW", assignee="U0ON", status=status,
        channel="CCARD", permalink="https://x/1", answer_due_at=NOW,
    )  # fmt: skip


def _ids(block: dict | None) -> list[str]:
    return [e["action_id"] for e in (block or {}).get("elements", [])]


def test_the_requester_buttons_follow_the_state():
    assert _ids(requester_buttons(_consult("open"))) == [ActionId.HANDOVER, ActionId.CANCEL]
    assert _ids(requester_buttons(_consult("waiting")))[0] == ActionId.REPLY
    answered = _ids(requester_buttons(_consult("answered")))
    assert answered[:2] == [ActionId.CLOSE, ActionId.REOPEN] and ActionId.HANDOVER in answered
    assert requester_buttons(_consult("closed")) is None


def test_a_covered_message_says_whom_it_covers_for_first():
    text, blocks = covering_for("CARD-1 was acknowledged", [{"type": "section"}], "U0AWAY")
    assert text.startswith("(covering for <@U0AWAY>)")
    assert blocks[0]["type"] == "context" and "Covering for <@U0AWAY>" in str(blocks[0])
    assert blocks[1] == {"type": "section"}


def test_hand_over_texts_keep_the_note_in_the_body_only():
    ctx = RenderContext(catalogue=parse_catalogue(TEST_CATALOGUE), now=NOW, load=lambda ids: [])
    params = {"from": "U0OLD", "to": "U0NEW", "by": "U0OLD", "note": "Call <!channel> back"}
    text, blocks = handover_received(_consult("acknowledged"), params, ctx)
    assert "Call" not in text and "MRN" not in text
    body = str(blocks)
    assert "&lt;!channel&gt;" in body and "MRN 55" in body and "<@U0OLD>" in body
    assert ActionId.HANDOVER in body and ActionId.CANCEL in body
    text, blocks = handover_thread(_consult("acknowledged"), params, ctx)
    assert "Call" not in text and " by <@U0OLD>" not in str(blocks)
    _, blocks = handover_thread(_consult("open"), params | {"by": "U0LEAD"}, ctx)
    assert "by <@U0LEAD>" in str(blocks)
