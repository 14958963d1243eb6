"""A change of on-call reaches the consults still waiting for acknowledgement: their cards
name the new on-call, and the sweep nudges them; consults someone owns keep their owner."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import AuditEvent
from tests.harness import Bot

ON_CALL = "UCARDON"  # cardiology in tests.harness.TEST_CATALOGUE
MINUTE = 60


def test_on_call_change_moves_unacknowledged_cards_to_the_new_on_call(bot: Bot):
    waiting = bot.open("cards stat MRN 1: chest pain?")
    owned = bot.open("cards stat MRN 2: syncope?")
    bot.command(f"ack {owned}", user=ON_CALL)
    bot.settle()
    assert f"<@{ON_CALL}>" in str(bot.card(waiting)["blocks"])

    resp = bot.command("oncall cards <@UNEWDOC|newdoc>", user=ON_CALL)
    assert "now on call" in resp.text
    bot.settle()

    moved = bot.consult(waiting)
    assert moved.on_call == "UNEWDOC" and moved.assignee is None
    card = str(bot.card(waiting)["blocks"])
    assert "<@UNEWDOC>" in card and f"<@{ON_CALL}>" not in card
    kept = bot.consult(owned)
    assert kept.assignee == ON_CALL and kept.on_call == ON_CALL
    with bot.services.sessions() as s:
        (audit,) = s.execute(
            select(AuditEvent).where(AuditEvent.action == "on_call_changed")
        ).scalars()
        assert audit.details["consults"] == [moved.id]

    # The nudge for the waiting consult goes to the new on-call, as its card says.
    bot.clock.advance(16 * MINUTE)
    bot.sweep()
    bot.settle()
    nudges = [t for t in bot.thread_texts(waiting) if "has not been acknowledged" in t]
    assert len(nudges) == 1 and "<@UNEWDOC>" in nudges[0]
    # The new on-call may acknowledge it.
    bot.command(f"ack {waiting}", user="UNEWDOC")
    assert bot.consult(waiting).assignee == "UNEWDOC"
