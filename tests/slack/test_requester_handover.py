"""Requester hand-over end to end over signed HTTP against the fake Slack: the Hand over
button on the requester's confirmation opens a form (colleague and note), and
`/consult handover <ref> @colleague [note]` does the same; the consult's requester changes
for good, the thread and the audit trail record it (the note only in message bodies),
the new requester gets the consult with the requester's buttons and every later message,
the previous one none; who may hand over; exactly once on a retried request."""

from __future__ import annotations

import json
from typing import Any

from bot.dev.fakeslack.requests import state_values, users_select
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.harness import OUTSIDER, REQUESTER, Bot, wait_until

ON_CALL, LEAD = "UCARDON", "UCARDLEAD"
NEW = "UNEWREQ"
COVER = "UCOVER1"
NOTE = "Family prefers calls after 5pm"


def buttons(message: dict[str, Any]) -> list[str]:
    return [
        e["action_id"]
        for b in message.get("blocks") or []
        if b.get("type") == "actions"
        for e in b["elements"]
    ]


def opened_views(bot: Bot) -> list[dict[str, Any]]:
    out = []
    for call in bot.slack.calls_to("views.open"):
        view = call.args["view"]
        out.append(json.loads(view) if isinstance(view, str) else view)
    return out


def submit(bot: Bot, ref: str, to: str, note: str, *, user: str = REQUESTER, view_id: str):
    values = {BlockId.HANDOVER_TO: users_select(to), BlockId.NOTE: note}
    return bot.sender.view_submission(
        CallbackId.HANDOVER,
        state_values(values),
        user=user,
        private_metadata=ref,
        view_id=view_id,
    )


def handover_audits(bot: Bot, ref: str) -> list[dict[str, Any]]:
    from sqlalchemy import select  # noqa: PLC0415

    from storage.models import AuditEvent  # noqa: PLC0415

    consult = bot.consult(ref)
    with bot.services.sessions() as s:
        rows = s.execute(
            select(AuditEvent).where(
                AuditEvent.consult_id == consult.id, AuditEvent.action == "handover"
            )
        ).scalars()
        return [{"actor": r.actor, **r.details} for r in rows]


def test_hand_over_by_button_and_form(bot: Bot):
    ref = bot.open("cards stat MRN 11: chest pain?")
    (confirmation,) = [m for m in bot.slack.dms(REQUESTER) if ref in json.dumps(m)]
    assert buttons(confirmation) == [ActionId.HANDOVER, ActionId.CANCEL]

    bot.click(ActionId.HANDOVER, ref, user=REQUESTER, channel=confirmation["channel"])
    assert wait_until(lambda: opened_views(bot))
    (view,) = opened_views(bot)
    assert view["callback_id"] == CallbackId.HANDOVER and view["private_metadata"] == ref
    assert "MRN" not in view["title"]["text"]
    blocks = [b.get("block_id") for b in view["blocks"] if b.get("type") == "input"]
    assert blocks == [BlockId.HANDOVER_TO, BlockId.NOTE]

    resp = submit(bot, ref, NEW, NOTE, view_id="VHANDOVER1")
    assert not (resp.json or {}).get("response_action"), resp.text
    bot.settle()
    assert bot.consult(ref).requester == NEW
    (note,) = [t for t in bot.thread_texts(ref) if "handed over" in t]
    assert f"from <@{REQUESTER}> to <@{NEW}>" in note and NOTE in note
    assert handover_audits(bot, ref) == [
        {
            "actor": REQUESTER,
            "from": "open",
            "to": "open",
            "requester_from": REQUESTER,
            "requester_to": NEW,
        }
    ]
    (received,) = [m for m in bot.slack.dms(NEW) if "handed" in json.dumps(m)]
    body = json.dumps(received["blocks"])
    assert "MRN 11" in body and "chest pain" in body and NOTE in body
    assert buttons(received) == [ActionId.HANDOVER, ActionId.CANCEL]
    assert NOTE not in received["text"] and "MRN" not in received["text"]
    assert any(f"over to <@{NEW}>" in t for t in bot.dm_texts(REQUESTER))

    # Later messages go to the new requester only; the rights moved with it.
    before = len(bot.dm_texts(REQUESTER))
    bot.command(f"ack {ref}", user=ON_CALL)
    bot.command(f"answer {ref} Aspirin 300 mg.", user=ON_CALL)
    bot.settle()
    assert any("owns it now" in t for t in bot.dm_texts(NEW))
    answer = [m for m in bot.slack.dms(NEW) if "Aspirin 300" in json.dumps(m)]
    assert answer and ActionId.CLOSE in buttons(answer[0])
    assert len(bot.dm_texts(REQUESTER)) == before
    assert bot.command(f"close {ref}").text.startswith(":no_entry:")
    assert "closed" in bot.command(f"close {ref}", user=NEW).text


def test_hand_over_by_command_with_a_note(bot: Bot):
    ref = bot.open("cards stat MRN 12: syncope?")
    bot.command(f"ack {ref}", user=ON_CALL)
    told = bot.command(f"handover {ref} <@{NEW}> {NOTE}").text
    assert f"handed over to <@{NEW}>" in told
    bot.settle()
    assert bot.consult(ref).requester == NEW
    assert [t for t in bot.thread_texts(ref) if NOTE in t and "handed over" in t]
    assert "handover" in bot.audit(ref)
    assert all(NOTE not in str(a) for a in handover_audits(bot, ref))
    bot.command(f"needinfo {ref} Any syncope before?", user=ON_CALL)
    bot.settle()
    question = [m for m in bot.slack.dms(NEW) if "syncope before" in json.dumps(m)]
    assert question and buttons(question[0]) == [ActionId.REPLY]
    assert not [t for t in bot.dm_texts(REQUESTER) if "syncope before" in t]
    assert (
        f"<@{NEW}> is already the requester"
        in bot.command(f"handover {ref} <@{NEW}>", user=NEW).text
    )


def test_who_may_hand_over_and_to_whom(bot: Bot):
    ref = bot.open("cards stat MRN 13: chest pain?")
    refused = bot.command(f"handover {ref} <@{NEW}>", user=OUTSIDER).text
    assert refused.startswith(":no_entry:") and "Only" in refused
    assert bot.command(f"handover {ref} <@{NEW}>", user=ON_CALL).text.startswith(":no_entry:")
    bot.slack.set_user("UAPPBOT", is_bot=True)
    assert "is an app" in bot.command(f"handover {ref} <@UAPPBOT>").text
    assert "Name the colleague" in bot.command(f"handover {ref} bob").text
    assert bot.consult(ref).requester == REQUESTER
    # A lead may; whoever covers for the requester may.
    assert "handed over" in bot.command(f"handover {ref} <@{NEW}>", user=LEAD).text
    bot.command(f"cover <@{COVER}>", user=NEW)
    assert "handed over" in bot.command(f"handover {ref} <@{REQUESTER}>", user=COVER).text
    bot.settle()
    assert bot.consult(ref).requester == REQUESTER
    assert [a["actor"] for a in handover_audits(bot, ref)] == [LEAD, COVER]
    # A closed consult is not handed over.
    bot.command(f"answer {ref} Done.", user=ON_CALL)
    bot.command(f"close {ref}")
    closed = bot.command(f"handover {ref} <@{NEW}>").text
    assert closed.startswith(":no_entry:") and "closed" in closed


def test_the_new_requesters_cover_receives_the_hand_over(bot: Bot):
    ref = bot.open("cards stat MRN 14: chest pain?")
    bot.command(f"cover <@{COVER}>", user=NEW)
    bot.command(f"handover {ref} <@{NEW}> {NOTE}")
    bot.settle()
    received = [t for t in bot.dm_texts(COVER) if "handed" in t and NOTE in t]
    assert received and f"Covering for <@{NEW}>" in received[0]
    assert not [t for t in bot.dm_texts(NEW) if NOTE in t]


def test_a_retried_hand_over_happens_once(bot: Bot):
    ref = bot.open("cards stat MRN 15: chest pain?")
    for _ in range(2):
        resp = submit(bot, ref, NEW, NOTE, view_id="VTWICE")
        assert not (resp.json or {}).get("response_action"), resp.text
    for _ in range(2):
        bot.command(f"handover {ref} <@{OUTSIDER}>", user=NEW, trigger_id="THANDOVER")
    bot.settle()
    assert bot.consult(ref).requester == OUTSIDER
    assert len(handover_audits(bot, ref)) == 2
    assert len([t for t in bot.thread_texts(ref) if "handed over" in t]) == 2
    assert len([t for t in bot.dm_texts(NEW) if "handed" in t and "to you" in t]) == 1
    assert len([t for t in bot.dm_texts(OUTSIDER) if "handed" in t and "to you" in t]) == 1
