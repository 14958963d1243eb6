"""Requester cover end to end over signed HTTP against the fake Slack: while
`/consult cover @colleague` is in force, the acknowledgement, the need-info question, the
answer, relayed replies and overdue notices go to the covering clinician marked "covering
for", who may reply, close and cancel as the requester; `/consult cover off` sends them
back; the listing; the refusals (self, chains, apps and unknown users); and the decision
made at delivery (a cover ended while a message waited is honoured)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.dev.fakeslack.requests import state_values
from bot.slack.ids import ActionId, BlockId, CallbackId
from storage import covers
from storage.models import AuditEvent, OutboxMessage
from tests.fake_slack import FakeSlack
from tests.harness import OTHER_REQUESTER, OUTSIDER, REQUESTER, Bot, start_bot, wait_until

ON_CALL = "UCARDON"
COVER = "UCOVER1"
MINUTE = 60


def cover_dms(bot: Bot, user: str = COVER) -> list[str]:
    return bot.dm_texts(user)


def covered(texts: list[str], what: str, for_user: str = REQUESTER) -> list[str]:
    return [t for t in texts if what in t and f"Covering for <@{for_user}>" in t]


def audit_changes(bot: Bot, *actions: str) -> list[AuditEvent]:
    with bot.services.sessions() as s:
        rows = s.execute(
            select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.id)
        ).scalars()
        return list(rows)


def dm_with(bot: Bot, user: str, needle: str) -> dict[str, Any]:
    found = [m for m in bot.slack.dms(user) if needle in json.dumps(m.get("blocks"))]
    assert found, (needle, bot.dm_texts(user))
    return found[-1]


def test_cover_on_sends_the_requesters_messages_to_the_cover_who_may_act(bot: Bot):
    ref = bot.open("cards stat MRN 1: chest pain?")
    told = bot.command(f"cover <@{COVER}>").text
    assert f"<@{COVER}> covers for you now" in told and "cover off" in told
    bot.settle()
    (started,) = [t for t in cover_dms(bot) if "You now cover for" in t]
    assert f"<@{REQUESTER}>" in started and ref in started  # the open consults' references
    before = len(bot.dm_texts(REQUESTER))

    bot.command(f"ack {ref}", user=ON_CALL)
    bot.command(f"needinfo {ref} Is he on warfarin?", user=ON_CALL)
    bot.reply(ref, "ECG attached in PACS.", user=ON_CALL)
    bot.settle()
    texts = cover_dms(bot)
    assert covered(texts, "owns it now") and covered(texts, "warfarin")
    assert covered(texts, "ECG attached")
    assert len(bot.dm_texts(REQUESTER)) == before  # nothing to the requester meanwhile

    # The cover answers with the Reply button on the question they received.
    question = dm_with(bot, COVER, "warfarin")
    bot.click(ActionId.REPLY, ref, user=COVER, channel=question["channel"])
    assert wait_until(lambda: bot.slack.calls_to("views.open"))
    resp = bot.sender.view_submission(
        CallbackId.REPLY,
        state_values({BlockId.REPLY: "No, apixaban."}),
        user=COVER,
        private_metadata=ref,
        view_id="VCOVERREPLY",
    )
    assert not (resp.json or {}).get("response_action"), resp.text
    bot.settle()
    assert bot.consult(ref).status == "acknowledged"  # resumed, as the requester's reply
    (posted,) = [t for t in bot.thread_texts(ref) if "apixaban" in t]
    assert f"<@{COVER}> (covering for <@{REQUESTER}>) replied" in posted
    assert "requester_reply" in bot.audit(ref)

    bot.command(f"answer {ref} Start aspirin.", user=ON_CALL)
    bot.settle()
    answer = dm_with(bot, COVER, "Start aspirin")
    assert "Covering for" in json.dumps(answer["blocks"])
    bot.click(ActionId.CLOSE, ref, user=COVER, channel=answer["channel"])
    bot.settle()
    assert bot.consult(ref).status == "closed"
    assert any(f"Closed by <@{COVER}>" in t for t in bot.thread_texts(ref))
    assert len(bot.dm_texts(REQUESTER)) == before


def test_overdue_notices_go_to_the_cover_and_the_cover_may_cancel(bot: Bot):
    ref = bot.open("cards stat MRN 2: syncope?")
    bot.command(f"cover <@{COVER}>")
    bot.clock.advance(16 * MINUTE)  # stat: acknowledge within 15 minutes
    assert ref in bot.sweep().nudged
    bot.settle()
    assert covered(cover_dms(bot), "is overdue")
    assert not [t for t in bot.dm_texts(REQUESTER) if "is overdue" in t]
    told = bot.command(f"cancel {ref} found another way", user=COVER).text
    assert "is cancelled" in told
    assert bot.consult(ref).status == "cancelled"
    # A stranger still may not.
    other = bot.open("cards stat MRN 3: palpitations?")
    assert bot.command(f"cancel {other}", user=OUTSIDER).text.startswith(":no_entry:")


def test_cover_off_sends_messages_back_and_both_ends_are_audited(bot: Bot):
    ref = bot.open("cards stat MRN 4: chest pain?")
    bot.command(f"cover <@{COVER}>")
    off = bot.command("cover off").text
    assert f"<@{COVER}> no longer covers for you" in off
    bot.settle()
    assert [t for t in cover_dms(bot) if "You no longer cover for" in t]
    bot.command(f"ack {ref}", user=ON_CALL)
    bot.settle()
    assert any("owns it now" in t and "Covering" not in t for t in bot.dm_texts(REQUESTER))
    assert not [t for t in cover_dms(bot) if "owns it now" in t]
    # The cover's rights ended with it.
    assert bot.command(f"cancel {ref}", user=COVER).text.startswith(":no_entry:")
    rows = audit_changes(bot, "cover_on", "cover_off")
    assert [(r.action, r.actor, r.details) for r in rows] == [
        ("cover_on", REQUESTER, {"cover": COVER}),
        ("cover_off", REQUESTER, {"cover": COVER}),
    ]
    assert all(r.consult_id is None for r in rows)
    assert "Nobody covers for you" in bot.command("cover off").text


def test_the_cover_listing_shows_who_covers_whom(bot: Bot):
    ref = bot.open("cards stat MRN 5: chest pain?")
    assert "Nobody covers for you" in bot.command("cover").text
    bot.command(f"cover <@{COVER}>")
    mine = bot.command("cover").text
    assert f"<@{COVER}> covers for you since" in mine and "You cover for nobody" in mine
    theirs = bot.command("cover", user=COVER).text
    assert f"You cover for <@{REQUESTER}>" in theirs and ref in theirs
    # Another covering: switching cover ends the first and tells both.
    bot.command(f"cover <@{OTHER_REQUESTER}>")
    bot.settle()
    assert "You cover for nobody" in bot.command("cover", user=COVER).text
    assert [t for t in cover_dms(bot) if "You no longer cover for" in t]
    assert [t for t in bot.dm_texts(OTHER_REQUESTER) if "You now cover for" in t]
    with bot.services.sessions() as s:
        assert covers.cover_for(s, REQUESTER) == OTHER_REQUESTER
        assert covers.covered_by(s, OTHER_REQUESTER) == [REQUESTER]
        assert covers.covered_by(s, COVER) == []


def open_home(bot: Bot, user: str) -> str:
    before = len(bot.slack.calls_to("views.publish"))
    bot.sender.event({"type": "app_home_opened", "user": user, "tab": "home", "channel": "DX"})
    assert wait_until(lambda: len(bot.slack.calls_to("views.publish")) > before)
    return json.dumps(bot.slack.calls_to("views.publish")[-1].args["view"])


def test_the_cover_sees_the_covered_requests_in_list_and_app_home(bot: Bot):
    ref = bot.open("cards stat MRN 55: chest pain?")
    done = bot.open("cards stat MRN 56: chest pain?")
    bot.command(f"cancel {done}")
    listed = bot.command("list", user=COVER).text
    home = open_home(bot, COVER)
    assert "Covering for colleagues" not in listed and "Covering for colleagues" not in home
    bot.command(f"cover <@{COVER}>")
    listed = bot.command("list", user=COVER).text
    section = listed.split("*Covering for colleagues*")[1]
    assert ref in section and f"for <@{REQUESTER}>" in section
    assert done not in section  # cancelled: nothing left to do
    home = open_home(bot, COVER)
    assert "Covering for colleagues" in home and ref in home and "MRN" not in home
    # The requester's own list is unchanged; the cover's ends with the cover.
    assert "Covering for colleagues" not in bot.command("list").text
    bot.command("cover off")
    assert "Covering for colleagues" not in bot.command("list", user=COVER).text
    assert "Covering for colleagues" not in open_home(bot, COVER)


def test_refusals_self_chains_apps_and_unknown_users(bot: Bot):
    def refused(text: str, user: str = REQUESTER) -> str:
        told = bot.command(text, user=user).text
        assert told.startswith(":no_entry:"), told
        return told

    assert "cannot cover for yourself" in refused(f"cover <@{REQUESTER}>")
    bot.slack.set_user("UAPPBOT", is_bot=True)
    assert "is an app" in refused("cover <@UAPPBOT>")
    bot.slack.set_user("UGONE", deleted=True)
    assert "deactivated" in refused("cover <@UGONE>")
    bot.slack.fail("users.info", error="user_not_found")
    assert "not a Slack user" in refused("cover <@UNOBODY>")
    bot.slack.fail("users.info", status=500)  # Slack cannot say: refused, not guessed
    assert "try again" in refused("cover <@UMAYBE>")
    assert "Name who covers for you" in bot.command("cover bob").text
    # One level: someone covered cannot cover, and a cover cannot pass their own on.
    bot.command(f"cover <@{COVER}>", user=OTHER_REQUESTER)
    assert "away themselves" in refused(f"cover <@{OTHER_REQUESTER}>")
    assert "covers do not pass on" in refused(f"cover <@{OUTSIDER}>", user=COVER)
    with bot.services.sessions() as s:
        assert covers.cover_for(s, REQUESTER) is None
        assert covers.cover_for(s, COVER) is None
    refusals = [r for r in audit_changes(bot, "refused") if r.details["attempted"] == "cover"]
    assert len(refusals) == 7


def test_a_retried_cover_command_changes_once(bot: Bot):
    for _ in range(2):
        resp = bot.command(f"cover <@{COVER}>", trigger_id="TCOVER1")
        assert "covers for you now" in resp.text
    bot.settle()
    assert len(audit_changes(bot, "cover_on")) == 1
    assert len([t for t in cover_dms(bot) if "You now cover for" in t]) == 1


@pytest.fixture
def held(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    """A bot whose outbox is delivered only when the test says (`dispatcher.drain()`)."""
    running = start_bot(db_url, slack, dispatcher=False)
    yield running
    running.stop()


def test_the_recipient_is_decided_at_delivery(held: Bot):
    bot = held
    bot.command("cards stat MRN 6: chest pain?")
    ref = bot.consults()[-1].ref
    bot.command(f"cover <@{COVER}>")
    bot.command(f"ack {ref}", user=ON_CALL)  # queued while the cover is in force ...
    bot.command("cover off")  # ... which ends before it is delivered
    bot.services.dispatcher.drain()
    assert any("owns it now" in t for t in bot.dm_texts(REQUESTER))
    assert not [t for t in bot.dm_texts(COVER) if "owns it now" in t]
    # And the other way round: queued before the cover starts, delivered to the cover.
    bot.command(f"needinfo {ref} Weight?", user=ON_CALL)
    bot.command(f"cover <@{COVER}>")
    bot.services.dispatcher.drain()
    assert covered(bot.dm_texts(COVER), "Weight?")


def test_a_cover_change_between_attempts_does_not_duplicate_a_dm_that_landed(held: Bot):
    bot = held
    bot.services.dispatcher.client.timeout = 1
    bot.command("cards stat MRN 61: chest pain?")
    ref = bot.consults()[-1].ref
    bot.command(f"cover <@{COVER}>")
    bot.services.dispatcher.drain()
    # The acknowledgement lands in the cover's DM, but its answer is lost (a timeout) ...
    bot.slack.fail("chat.postMessage", hang=2.5, times=1)
    bot.command(f"ack {ref}", user=ON_CALL)
    bot.services.dispatcher.drain()
    assert len([t for t in cover_dms(bot) if "owns it now" in t]) == 1
    # ... then the cover ends before the retry, which would now go to the requester.
    bot.command("cover off")
    with bot.services.sessions() as s, s.begin():  # its back-off is over
        s.execute(update(OutboxMessage).values(next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC)))
    bot.services.dispatcher.drain()
    assert bot.slack.calls_to("conversations.history"), "the retry did not look first"
    assert len([t for t in cover_dms(bot) if "owns it now" in t]) == 1
    assert not [t for t in bot.dm_texts(REQUESTER) if "owns it now" in t]
    with bot.services.sessions() as s:
        rows = s.execute(select(OutboxMessage).where(OutboxMessage.kind == "dm")).scalars()
        assert all(r.status == "sent" for r in rows)


def test_reminders_while_waiting_on_the_requester_go_to_the_cover(bot: Bot):
    ref = bot.open("cards stat MRN 7: chest pain?")
    bot.command(f"ack {ref}", user=ON_CALL)
    bot.command(f"needinfo {ref} Creatinine?", user=ON_CALL)
    bot.command(f"cover <@{COVER}>")
    bot.clock.advance(10 * MINUTE)
    assert bot.sweep().reminded == [ref]
    bot.settle()
    reminder = dm_with(bot, COVER, "waiting for your reply")
    assert "Covering for" in json.dumps(reminder["blocks"])
    assert [e["action_id"] for e in reminder["blocks"][-1]["elements"]] == [ActionId.REPLY]
    assert not [t for t in bot.dm_texts(REQUESTER) if "waiting for your reply" in t]


def test_concurrent_cover_changes_cannot_build_a_chain(bot: Bot):
    """A→B and B→C at the same moment: cover changes are serialised, so one of them sees
    the other and is refused (one level, whichever came first)."""
    for n in range(3):
        a, b, c = f"UCHAINA{n}", f"UCHAINB{n}", f"UCHAINC{n}"
        barrier = threading.Barrier(2)

        def send(user: str, text: str, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            return bot.command(text, user=user).text

        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(send, a, f"cover <@{b}>")
            second = pool.submit(send, b, f"cover <@{c}>")
            told = [first.result(), second.result()]
        assert sum(t.startswith(":no_entry:") for t in told) == 1, told
        with bot.services.sessions() as s:
            chain = covers.cover_for(s, a) == b and covers.cover_for(s, b) == c
            assert not chain
            assert (covers.cover_for(s, a), covers.cover_for(s, b)) in ((b, None), (None, c))


def test_two_bots_on_one_database_route_by_the_cover_in_force(
    postgres_only: None, db_url: str, slack: FakeSlack
):
    """The cover set through one process decides where the other process's messages go,
    and ending it there is seen here at once: the answer is read from the database at
    delivery, never from a process's memory."""
    first = start_bot(db_url, slack, dispatcher=False)
    second = start_bot(db_url, slack, clock=first.clock, dispatcher=False)
    try:
        first.command("cards stat MRN 8: chest pain?")
        ref = first.consults()[-1].ref
        first.services.dispatcher.drain()
        first.command(f"cover <@{COVER}>")
        second.command(f"ack {ref}", user=ON_CALL)
        second.services.dispatcher.drain()
        assert covered(second.dm_texts(COVER), "owns it now")
        first.command("cover off")
        second.command(f"answer {ref} Aspirin.", user=ON_CALL)
        second.services.dispatcher.drain()
        assert any("Aspirin." in t and "Covering" not in t for t in second.dm_texts(REQUESTER))
        assert not [t for t in second.dm_texts(COVER) if "Aspirin." in t]
    finally:
        first.stop()
        second.stop()


def test_the_cover_may_see_the_timeline_while_the_cover_lasts(bot: Bot):
    ref = bot.open("cards stat MRN 6: chest pain?")
    assert "can see its timeline" in bot.command(f"show {ref}", user=COVER).text
    bot.command(f"cover <@{COVER}>")
    shown = bot.command(f"show {ref}", user=COVER)
    assert "Timeline" in json.dumps(shown.json) and "MRN 6" in json.dumps(shown.json)
    bot.command("cover off")
    assert "can see its timeline" in bot.command(f"show {ref}", user=COVER).text


def test_a_services_shift_change_changes_nothing_for_requesters_or_their_cover(bot: Bot):
    first = bot.open("cards stat MRN 7: chest pain?")
    second = bot.open("cards urgent MRN 8: palpitations?")
    for ref in (first, second):
        bot.command(f"ack {ref}", user=ON_CALL)
    bot.command(f"cover <@{COVER}>")
    bot.settle()
    before = len(bot.dm_texts(REQUESTER))
    resp = bot.command("handoff <@UNIGHT|night> end of my shift", user=ON_CALL)
    assert "Handed off" in resp.text, resp.text
    bot.settle()
    for ref in (first, second):
        consult = bot.consult(ref)
        assert (consult.requester, consult.assignee) == (REQUESTER, "UNIGHT")
        assert covered(cover_dms(bot), f"{ref} has a new owner")
    assert len(bot.dm_texts(REQUESTER)) == before  # all of it went to the cover
