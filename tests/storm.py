"""A storm of overdue consults, shared by `tests/slack/test_storm.py` and the benchmarks in
`bench/` (storm and backlog): a catalogue of five services, consults opened through the
flow the slash command uses as if their cards had been posted long ago, and readers of
what the fake Slack received (which consults a storm summary or a thread nudge named,
which requesters were told)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, update

from bot.domain.catalogue import Catalogue
from bot.domain.catalogue_load import parse_catalogue
from bot.flows.consults.drafts import Draft
from storage.models import Consult, OutboxMessage
from tests.fake_slack import BOT_USER_ID, FakeSlack
from tests.harness import TEST_CATALOGUE, Bot

# alias -> channel of the five services.
CHANNELS = {
    "cards": "CCARD",
    "path": "CPATH",
    "neuro": "CNEURO",
    "surg": "CSURG",
    "renal": "CRENAL",
}
_EXTRA = """
[[services]]
key = "{key}"
name = "{name}"
prefix = "{prefix}"
aliases = ["{alias}"]
channel = "{channel}"
on_call = "U{prefix}ON"
backup = "U{prefix}BK"
leads = ["U{prefix}LEAD"]
"""
_MORE = [
    ("neurology", "Neurology", "NEURO", "neuro", "CNEURO"),
    ("surgery", "Surgery", "SURG", "surg", "CSURG"),
    ("nephrology", "Nephrology", "RENAL", "renal", "CRENAL"),
]
REF = re.compile(r"\b[A-Z]+-\d+\b")


def storm_catalogue(storm_threshold: int = 3) -> Catalogue:
    """The test catalogue with two services more: five channels."""
    text = TEST_CATALOGUE.replace("storm_threshold = 3", f"storm_threshold = {storm_threshold}")
    for key, name, prefix, alias, channel in _MORE:
        text += _EXTRA.format(key=key, name=name, prefix=prefix, alias=alias, channel=channel)
    return parse_catalogue(text, "storm.toml")


def requesters(n: int) -> list[str]:
    """`n` requesters' user ids."""
    return [f"UREQ{i:03d}" for i in range(n)]


def open_storm(
    bot: Bot, count: int, people: list[str], *, over: timedelta, aliases: list[str] | None = None
) -> list[str]:
    """`count` stat consults spread evenly over the five channels (or the services of
    `aliases`) and `people`, opened
    over `over` of the bot's clock (so they fall due over as long), as if their cards and
    confirmations had been posted long ago. They are opened through the flow the slash
    command uses (`ConsultService.open`), not over HTTP, and their opening messages are
    marked sent rather than delivered (a hundred cards in one channel take Slack's pace a
    hundred seconds); opening and first delivery are tested elsewhere. Their references."""
    step = over / max(count, 1)
    aliases = aliases or list(CHANNELS)
    for i in range(count):
        alias = aliases[i % len(aliases)]
        draft = Draft(service=alias, urgency="stat", patient=f"MRN {i}", question="q?")
        bot.services.consults.open(draft, requester=people[i % len(people)], origin_key=None)
        bot.clock.advance(step)
    consults = bot.consults()[-count:]
    table = Consult.__table__
    with bot.services.engine.begin() as conn:
        conn.execute(update(OutboxMessage.__table__).values(status="sent"))
        conn.execute(
            update(table).where(table.c.id == bindparam("cid")).values(channel_ts=bindparam("ts")),
            [{"cid": c.id, "ts": _card(bot.slack, c)} for c in consults],
        )
    return [c.ref for c in consults]


def _card(slack: FakeSlack, c: Consult) -> str:
    """A stand-in for the consult's card in its channel (so its thread and updates land);
    its ts."""
    return str(slack.inject_message(c.channel, f"{c.ref} card", user=BOT_USER_ID)["ts"])


def posts(slack: FakeSlack, since: int = 0) -> list[Any]:
    """The successful chat.postMessage calls from call number `since` on."""
    return [
        c
        for c in slack.calls[since:]
        if c.method == "chat.postMessage" and c.status == 200 and c.ok
    ]


def nudge_times(slack: FakeSlack, since: int = 0) -> dict[str, float]:
    """When each consult was first named in a storm summary or nudged in its thread (the
    fake Slack's receipt time, seconds since the epoch)."""
    seen: dict[str, float] = {}
    for call in posts(slack, since):
        blocks = str(call.args.get("blocks"))
        if str(call.args.get("channel", "")).startswith("U"):
            continue
        if "consults are overdue" in blocks or "has not been" in blocks:
            for ref in REF.findall(blocks):
                seen.setdefault(ref, call.at)
    return seen


def told_times(slack: FakeSlack, since: int = 0, *, users: str = "UREQ") -> dict[str, float]:
    """When each consult's requester (a user whose id starts with `users`) was first told it
    is overdue: alone ("RAD-3 is overdue") or in a storm's list ("5 of your consults are
    overdue")."""
    seen: dict[str, float] = {}
    for call in posts(slack, since):
        text = str(call.args.get("text") or "")
        if not str(call.args.get("channel", "")).startswith(users):
            continue
        if text.endswith("is overdue"):
            seen.setdefault(text.split()[0], call.at)
        elif text.endswith("of your consults are overdue"):
            for ref in REF.findall(str(call.args.get("blocks"))):
                seen.setdefault(ref, call.at)
    return seen
