"""Point 5, who may do what. Acknowledge, answer, need info, hand off: the service's channel
members and its configured on-call, backup and leads - never the requester on their own
consult. Close, reopen, cancel: the requester and the leads. Changing who is on call: the
leads and the current on-call. A refusal is an ephemeral message, audited, and changes
nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.dev.fakeslack.requests import users_select
from bot.slack.ids import ActionId, BlockId, CallbackId
from storage.models import OutboxMessage
from tests.harness import CARD_CHANNEL, OTHER_REQUESTER, OUTSIDER, REQUESTER, Bot
from tests.reliability.conftest import audit_rows

ON_CALL, BACKUP, LEAD, ADMIN = "UCARDON", "UCARDBK", "UCARDLEAD", "UADMIN"
MEMBER = "UCARDMEM"
EVERYONE = [REQUESTER, ON_CALL, BACKUP, LEAD, ADMIN, MEMBER, OUTSIDER, OTHER_REQUESTER]
CONSULTANTS = {ON_CALL, BACKUP, LEAD, ADMIN, MEMBER}
OWNERS = {REQUESTER, LEAD, ADMIN}


@pytest.fixture
def ward(bot: Bot) -> Bot:
    # The requester is in the service channel too: being a member must not let them act as
    # a consultant on their own consult.
    bot.slack.set_members(CARD_CHANNEL, [MEMBER, REQUESTER])
    bot.services.members.forget()
    bot.services.dispatcher.pacer.interval = 0  # dozens of cards in one channel: no pacing
    return bot


def new_consult(bot: Bot, state: str = "open") -> str:
    resp = bot.command("cards stat MRN 900: chest pain?", user=REQUESTER)
    assert resp.status == 200
    ref = bot.consults()[-1].ref
    if state == "answered":
        assert "answered" in bot.command(f"answer {ref} Aspirin.", user=ON_CALL).text
    return ref


def snapshot(bot: Bot, ref: str) -> tuple[Any, ...]:
    c = bot.consult(ref)
    with bot.services.sessions() as s:
        outbox = [
            (m.kind, (m.payload or {}).get("template"))
            for m in s.execute(
                select(OutboxMessage)
                .where(OutboxMessage.consult_id == c.id)
                .order_by(OutboxMessage.id)  # a heap's order changes as rows are updated
            ).scalars()
        ]
    return (c.status, c.version, c.assignee, c.answer, c.closed_at, c.cancelled_at, outbox)


def refused_count(bot: Bot, user: str) -> int:
    return sum(1 for a in audit_rows(bot, "refused") if a.actor == user)


def check_refused(bot: Bot, ref: str, user: str, before: tuple[Any, ...], told: str) -> None:
    assert snapshot(bot, ref) == before, (user, told)
    assert told.startswith(":no_entry:"), (user, told)


# ---------------------------------------------------------------------------- commands
CONSULTANT_COMMANDS = {
    "ack": "ack {ref}",
    "answer": "answer {ref} Start heparin.",
    "needinfo": "needinfo {ref} Latest troponin?",
}


@pytest.mark.parametrize("verb", list(CONSULTANT_COMMANDS))
def test_consultant_commands(ward: Bot, verb: str):
    bot = ward
    for user in EVERYONE:
        ref = new_consult(bot)
        before = snapshot(bot, ref)
        refusals = refused_count(bot, user)
        told = bot.command(CONSULTANT_COMMANDS[verb].format(ref=ref), user=user).text
        if user in CONSULTANTS:
            assert bot.consult(ref).version == before[1] + 1, (verb, user, told)
            assert ":no_entry:" not in told
        else:
            check_refused(bot, ref, user, before, told)
            assert refused_count(bot, user) == refusals + 1
    assert "You requested" in bot.command(f"ack {new_consult(bot)}", user=REQUESTER).text


@pytest.mark.parametrize("verb", ["cancel", "close", "reopen"])
def test_requester_commands(ward: Bot, verb: str):
    bot = ward
    for user in EVERYONE:
        ref = new_consult(bot, "open" if verb == "cancel" else "answered")
        before = snapshot(bot, ref)
        refusals = refused_count(bot, user)
        text = f"{verb} {ref}" + (" What dose?" if verb == "reopen" else "")
        told = bot.command(text, user=user).text
        if user in OWNERS:
            assert bot.consult(ref).version == before[1] + 1, (verb, user, told)
        else:
            check_refused(bot, ref, user, before, told)
            assert "Only" in told
            assert refused_count(bot, user) == refusals + 1


def test_whoever_covers_for_the_requester_holds_the_requesters_rights_only(ward: Bot):
    """`/consult cover`: the cover may do what the requester may (cancel, close, reopen,
    hand over), never what a consultant does, and nothing once the cover ends."""
    bot = ward
    cover = OTHER_REQUESTER
    bot.command(f"cover <@{cover}>", user=REQUESTER)
    commands = {
        "cancel": ("open", "cancel {ref}"),
        "close": ("answered", "close {ref}"),
        "reopen": ("answered", "reopen {ref} What dose?"),
        "handover": ("open", f"handover {{ref}} <@{OUTSIDER}>"),
    }
    for state, text in commands.values():
        ref = new_consult(bot, state)
        before = snapshot(bot, ref)
        told = bot.command(text.format(ref=ref), user=cover).text
        assert bot.consult(ref).version == before[1] + 1, (text, told)
    ref = new_consult(bot)
    assert "You requested" not in bot.command(f"ack {ref}", user=cover).text
    assert bot.command(f"ack {ref}", user=cover).text.startswith(":no_entry:")
    bot.command("cover off", user=REQUESTER)
    for state, text in commands.values():
        ref = new_consult(bot, state)
        before = snapshot(bot, ref)
        check_refused(bot, ref, cover, before, bot.command(text.format(ref=ref), user=cover).text)


def test_changing_who_is_on_call(ward: Bot):
    bot = ward
    for user in (BACKUP, MEMBER, OUTSIDER, REQUESTER):
        told = bot.command(f"oncall cards <@{OUTSIDER}>", user=user).text
        assert told.startswith(":no_entry:") and "Only" in told, (user, told)
        assert refused_count(bot, user) == 1
    table = bot.services.consults.on_call_table()
    assert [row.service.key for row in table if row.people == (ON_CALL,)] == ["cardiology"]
    # The current on-call hands over; then only the new on-call (or a lead) may change it.
    assert "now on call" in bot.command(f"oncall cards <@{MEMBER}>", user=ON_CALL).text
    assert bot.command(f"oncall cards <@{BACKUP}>", user=ON_CALL).text.startswith(":no_entry:")
    assert "now on call" in bot.command(f"oncall cards <@{BACKUP}>", user=MEMBER).text
    assert "now on call" in bot.command(f"oncall cards <@{ON_CALL}>", user=LEAD).text
    assert "now on call" in bot.command(f"oncall cards <@{ON_CALL}>", user=ADMIN).text
    changes = [a for a in audit_rows(bot, "on_call_changed")]
    assert [a.actor for a in changes] == [ON_CALL, MEMBER, LEAD, ADMIN]


# ---------------------------------------------------------------------------- buttons, modals
def click(bot: Bot, action: str, ref: str, user: str) -> None:
    resp = bot.click(action, ref, user=user, channel=CARD_CHANNEL)
    assert resp.status == 200


def ephemerals(bot: Bot, user: str) -> list[str]:
    bot.settle()
    return [e.get("text") or str(e.get("blocks")) for e in bot.slack.ephemerals(user)]


@pytest.mark.parametrize(
    ("action", "state", "allowed"),
    [
        (ActionId.ACKNOWLEDGE, "open", CONSULTANTS),
        (ActionId.ANSWER, "open", CONSULTANTS),
        (ActionId.NEED_INFO, "open", CONSULTANTS),
        (ActionId.HANDOFF, "open", CONSULTANTS),
        (ActionId.CANCEL, "open", OWNERS),
        (ActionId.CLOSE, "answered", OWNERS),
        (ActionId.REOPEN, "answered", OWNERS),
        (ActionId.HANDOVER, "open", OWNERS),
    ],
)
def test_buttons(ward: Bot, action: str, state: str, allowed: set[str]):
    bot = ward
    for user in EVERYONE:
        ref = new_consult(bot, state)
        bot.settle()
        before = snapshot(bot, ref)
        opened = len(bot.slack.views_opened)
        seen = len(ephemerals(bot, user))
        click(bot, action, ref, user)
        told = ephemerals(bot, user)[seen:]
        if user in allowed:
            assert not any(":no_entry:" in t for t in told), (action, user, told)
            changed = bot.consult(ref).version != before[1]
            assert changed or len(bot.slack.views_opened) == opened + 1, (action, user)
        else:
            after = snapshot(bot, ref)
            assert after[:6] == before[:6], (action, user)
            assert len(bot.slack.views_opened) == opened, "a refused button opened a form"
            assert len(told) == 1 and told[0].startswith(":no_entry:"), (action, user, told)
            assert refused_count(bot, user) >= 1


@pytest.mark.parametrize(
    ("callback", "block", "value", "allowed"),
    [
        (CallbackId.ANSWER, BlockId.ANSWER, "Cath lab.", CONSULTANTS),
        (CallbackId.NEED_INFO, BlockId.QUESTION, "Troponin trend?", CONSULTANTS),
        (CallbackId.HANDOFF, BlockId.HANDOFF_TO, users_select(BACKUP), CONSULTANTS - {BACKUP}),
    ],
)
def test_forged_modal_submissions_are_checked_too(
    ward: Bot, callback: str, block: str, value: Any, allowed: set[str]
):
    """A modal's submission is checked again: the button check alone is not enough."""
    bot = ward
    for n, user in enumerate(EVERYONE):
        ref = new_consult(bot)
        before = snapshot(bot, ref)
        element = value if isinstance(value, dict) else {"type": "plain_text_input", "value": value}
        resp = bot.sender.view_submission(
            callback,
            {block: {"value": element}},
            user=user,
            private_metadata=ref,
            view_id=f"V{callback[:6]}{n}",
        )
        assert resp.status == 200
        if user in allowed:
            assert not resp.body, (callback, user, resp.text)
            assert bot.consult(ref).version == before[1] + 1
        else:
            assert resp.json["response_action"] == "errors", (callback, user)
            assert snapshot(bot, ref) == before
            assert refused_count(bot, user) >= 1


def test_membership_is_cached_and_an_outage_grants_nothing(ward: Bot):
    bot = ward
    refs = [new_consult(bot) for _ in range(3)]
    before = len(bot.slack.calls_to("conversations.members"))
    for ref in refs:
        bot.command(f"ack {ref}", user=MEMBER)
    for ref in refs:
        bot.command(f"needinfo {ref} More?", user=MEMBER)
    assert len(bot.slack.calls_to("conversations.members")) - before <= 1
    # Slack cannot say who is in the channel (cache cold): named people still may act,
    # unnamed members and outsiders may not.
    bot.services.members.forget()
    bot.slack.fail("conversations.members", status=500, times=None)
    ref = new_consult(bot)
    assert bot.command(f"ack {ref}", user=OUTSIDER).text.startswith(":no_entry:")
    assert bot.command(f"ack {ref}", user=MEMBER).text.startswith(":no_entry:")
    assert "acknowledged" in bot.command(f"ack {ref}", user=BACKUP).text
    bot.slack.clear_failures()


def test_refusal_audit_row_carries_no_free_text(ward: Bot):
    bot = ward
    ref = new_consult(bot)
    bot.command(f"answer {ref} MRN 900 secret clinical note", user=OUTSIDER)
    (row,) = [a for a in audit_rows(bot, "refused") if a.actor == OUTSIDER]
    assert row.details["attempted"] == "answer" and row.details["ref"] == ref
    assert "secret clinical note" not in str(row.details)
    assert row.consult_id == bot.consult(ref).id
