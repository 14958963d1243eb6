"""Point 6, property tests: `bot.domain.parsing.parse` and every payload handler (slash command
text, button values, modal values, events) take arbitrary input without a crash, a 5xx or
an inconsistent database. Requests go straight into the WSGI app, signed as Slack signs
them, so thousands of cases run in seconds. Derandomized: every run tries the same cases."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.dev.fakeslack import FakeSlack
from bot.domain.commands import WORDS
from bot.domain.parsing import Parsed, parse
from bot.domain.text import REF_RE
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.harness import (
    CARD_CHANNEL,
    OUTSIDER,
    RAD_CHANNEL,
    RAD_ON_CALL,
    REQUESTER,
    Bot,
    start_bot,
)
from tests.reliability.conftest import form, interactive, wsgi_call
from tests.reliability.figures import TALLY, Tally
from tests.reliability.invariants import assert_consistent
from tests.reliability.slack_rules import LIVE, limit_problems, live_tokens, ours

ON_CALL = "UCARDON"
USERS = [REQUESTER, ON_CALL, "UCARDBK", "UCARDLEAD", OUTSIDER, RAD_ON_CALL, "UADMIN", "UREQ2"]
CHANNELS = [CARD_CHANNEL, RAD_CHANNEL, "CPATH", "C0GENERAL", "DUREQ1"]
# What the app.error handler says: a handler crashed on this input.
CRASHED = ("went wrong on our side", "database did not answer")


def fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# ---------------------------------------------------------------------------- strategies
# Text that is hostile to every layer: control characters and NUL, Slack's control
# sequences, markdown, separators the parser uses, odd Unicode (RTL marks, combining).
NASTY = st.sampled_from(
    [
        "\x00",
        "\x07",
        "\x1b[31m",
        "\r\n",
        "\t",
        "\u202e",
        "\u0301",
        "\ufeff",
        "<!channel>",
        "<!here>",
        "<@U999>",
        "<#C1|x>",
        "<https://evil.example|x>",
        "&amp;",
        "&",
        "<",
        ">",
        ":",
        "::",
        "*",
        "_",
        "`",
        "```",
        "RAD-1",
        "card-1",
        "CARD-0",
        "CARD-999999999",
        "stat",
        "urgent",
        "routine",
        "cards",
        "rad",
        "path",
        "MRN 1",
        "@",
        "'",
        '"',
        "\\",
        "%00",
        "%",
        "+",
        "=",
        "💉",
        "Ω",
        "ß",
        "İ",
    ]
)
TEXT = st.lists(st.one_of(st.text(max_size=12), NASTY, st.sampled_from(WORDS)), max_size=12).map(
    " ".join
) | st.text(max_size=60)
REFS = st.sampled_from(["CARD-1", "CARD-2", "RAD-1", "PATH-1", "card-1", "RAD-999", "X-1"])
LONGISH = st.one_of(TEXT, st.builds(lambda t, n: (t or "x") * n, TEXT, st.integers(1, 400)))


def printable(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")


# ---------------------------------------------------------------------------- parse()
@fuzz_settings(3000)
@given(text=st.one_of(TEXT, st.text(), st.builds("{} {}".format, st.sampled_from(WORDS), TEXT)))
def test_parse_takes_any_text(figures: Tally, text: str):
    figures.add("fuzz")
    parsed = parse(text)
    assert isinstance(parsed, Parsed)
    assert parsed.verb in set(WORDS) | {"form", "quick"}
    if parsed.error is not None:
        assert isinstance(parsed.error, str) and parsed.error
        return
    if parsed.ref is not None:
        assert REF_RE.match(parsed.ref) and parsed.ref == parsed.ref.upper()
    if parsed.verb in ("answer", "needinfo"):
        assert parsed.text
    if parsed.verb in ("ack", "answer", "needinfo", "close", "reopen", "cancel"):
        assert parsed.ref is not None
    for value in (parsed.patient, parsed.question, parsed.text):
        assert "\x00" not in value and value == value.strip()
    if parsed.days is not None:
        assert parsed.days in (7, 30, 90)


PATIENT = st.text(
    alphabet=st.characters(categories=("Lu", "Ll", "Nd"), max_codepoint=0x2FF) | st.just(" "),
    min_size=1,
    max_size=30,
).filter(lambda p: p.strip() and p.split()[0].lower() not in ("stat", "urgent", "routine"))
QUESTION = st.text(min_size=1, max_size=80).map(printable).filter(lambda q: q.strip())


@fuzz_settings(1000)
@given(
    service=st.sampled_from(["cards", "cardiology", "rad", "imaging", "path", "PATH", "CARD"]),
    urgency=st.sampled_from([None, "stat", "urgent", "routine", "STAT", "Urgent"]),
    patient=PATIENT,
    question=QUESTION,
)
def test_quick_form_round_trips(
    figures: Tally, service: str, urgency: str | None, patient: str, question: str
):
    figures.add("fuzz")
    text = " ".join(p for p in (service, urgency, f"{patient}: {question}") if p)
    parsed = parse(text)
    assert parsed.error is None and parsed.verb == "quick"
    assert parsed.service == service
    assert parsed.urgency == (urgency.lower() if urgency else None)
    assert parsed.patient == unicodedata.normalize("NFC", patient).strip()
    assert parsed.question == unicodedata.normalize("NFC", question).strip()


# ---------------------------------------------------------------------------- handlers
@pytest.fixture
def fuzz_bot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    """A bot whose outbox is delivered at the end (no pacing), so rendering of whatever
    the fuzzer stored is checked too."""
    running = start_bot(db_url, slack, dispatcher=False)
    running.services.dispatcher.pacer.interval = 0
    for text in ("cards stat MRN 1: first?", "rad stat MRN 2: x?", "path MRN 3: y?"):
        running.command(text)
    yield running
    running.stop()


def check_response(result: Any, allowed: tuple[int, ...] = (200,)) -> None:
    TALLY.add("fuzz")
    assert result.status in allowed, (result.status, result.body[:300])
    body = result.body.decode("utf-8", "replace")
    assert not any(marker in body for marker in CRASHED), result.body[:300]


def finish(bot: Bot) -> None:
    """Everything stored is consistent, renders, and respects Slack's rules."""
    assert_consistent(bot)
    bot.services.dispatcher.drain(timeout=60)
    from sqlalchemy import select  # noqa: PLC0415

    from storage.models import OutboxMessage  # noqa: PLC0415

    with bot.services.sessions() as s:
        errors = [
            m.last_error
            for m in s.execute(select(OutboxMessage)).scalars()
            if (m.last_error or "").startswith("render")
        ]
    assert errors == []
    assert limit_problems(bot.slack.calls) == []
    assert (
        live_tokens(bot.slack.calls, allowed=set(), users=set(USERS) | {"UPATHON", "UCARDON"}) == []
    )


N_HANDLER = 500


def test_slash_command_text(fuzz_bot: Bot):
    bot = fuzz_bot

    @fuzz_settings(N_HANDLER)
    @given(
        text=st.one_of(
            TEXT,
            st.builds("{} {} {}".format, st.sampled_from(WORDS), REFS, LONGISH),
            st.builds("{} {}".format, st.sampled_from(["cards", "rad", "path"]), TEXT),
            st.builds(
                "oncall {} <@{}>".format,
                st.sampled_from(["cards", "rad", "x"]),
                st.sampled_from(USERS),
            ),
            st.builds("handoff <@{}> {}".format, st.sampled_from(USERS), TEXT),
            # well-formed quick forms with hostile content: these create consults
            st.builds(
                "{} {} {}: {}".format,
                st.sampled_from(["cards", "path", "rad", "cardiology"]),
                st.sampled_from(["stat", "urgent", "routine", ""]),
                TEXT.map(lambda t: t.replace(":", "")),
                LONGISH,
            ),
        ),
        user=st.sampled_from([REQUESTER, ON_CALL, *USERS]),
        channel=st.sampled_from(CHANNELS),
        trigger=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    )
    def run(text: str, user: str, channel: str, trigger: str | None) -> None:
        fields = {"command": "/consult", "text": text, "user_id": user, "channel_id": channel}
        fields |= {"team_id": "T0001"} | ({"trigger_id": trigger} if trigger else {})
        result = wsgi_call(bot, form(fields))
        check_response(result)
        assert [t for t in LIVE.findall(result.text) if not ours(t)] == [], result.text

    run()
    finish(bot)


ACTION_IDS = [a.value for a in ActionId] + ["consult_unknown", ""]


def test_button_values(fuzz_bot: Bot):
    bot = fuzz_bot

    @fuzz_settings(N_HANDLER)
    @given(
        action_id=st.sampled_from(ACTION_IDS),
        value=st.one_of(st.none(), REFS, TEXT),
        user=st.sampled_from(USERS),
        channel=st.one_of(st.none(), st.sampled_from(CHANNELS)),
        trigger=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
        selected=st.one_of(st.none(), st.builds(lambda v: {"value": v}, TEXT)),
        in_view=st.booleans(),
    )
    def run(
        action_id: str,
        value: str | None,
        user: str,
        channel: str | None,
        trigger: str | None,
        selected: dict | None,
        in_view: bool,
    ) -> None:
        action: dict[str, Any] = {"action_id": action_id, "type": "button", "action_ts": "1.1"}
        if value is not None:
            action["value"] = value
        if selected is not None:
            action["selected_option"] = selected
        body: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user},
            "team": {"id": "T0001"},
            "actions": [action],
        }
        if trigger:
            body["trigger_id"] = trigger
        if channel:
            body["channel"] = {"id": channel}
            body["container"] = {"type": "message", "channel_id": channel}
        if in_view:
            body["view"] = {"id": "VFUZZ", "type": "modal", "hash": "h", "state": {"values": {}}}
        check_response(wsgi_call(bot, interactive(body)), (200, 404))

    run()
    finish(bot)


ELEMENT = st.one_of(
    st.builds(lambda v: {"type": "plain_text_input", "value": v}, st.one_of(st.none(), LONGISH)),
    st.builds(
        lambda v: {"type": "static_select", "selected_option": v},
        st.one_of(
            st.none(),
            st.builds(
                lambda x: {"value": x},
                st.one_of(
                    TEXT,
                    st.sampled_from(
                        ["cardiology", "radiology", "pathology", "stat", "urgent", "routine"]
                    ),
                ),
            ),
        ),
    ),
    st.builds(
        lambda u: {"type": "users_select", "selected_user": u},
        st.one_of(st.none(), st.sampled_from(USERS)),
    ),
)
BLOCKS = st.sampled_from([b.value for b in BlockId] + ["intake__accession", "other"])


def test_modal_values(fuzz_bot: Bot):
    bot = fuzz_bot

    random_values = st.dictionaries(
        BLOCKS,
        st.dictionaries(
            st.sampled_from(["value", ActionId.SERVICE_SELECT.value]),
            ELEMENT,
            min_size=1,
            max_size=2,
        ),
        max_size=6,
    )
    # Well-formed submissions with hostile text, so that consults, answers and notes with
    # that text are stored and rendered.
    typed = st.builds(
        lambda service, urgency, patient, question, extra: {
            BlockId.SERVICE: {
                ActionId.SERVICE_SELECT: {"type": "static_select", "selected_option": service}
            },
            BlockId.URGENCY: {"value": {"type": "static_select", "selected_option": urgency}},
            BlockId.PATIENT: {"value": {"type": "plain_text_input", "value": patient}},
            BlockId.QUESTION: {"value": {"type": "plain_text_input", "value": question}},
            BlockId.ANSWER: {"value": {"type": "plain_text_input", "value": question}},
            BlockId.FOLLOW_UP: {"value": {"type": "plain_text_input", "value": question}},
            BlockId.COMMENT: {"value": {"type": "plain_text_input", "value": extra}},
            BlockId.NOTE: {"value": {"type": "plain_text_input", "value": extra}},
            BlockId.HANDOFF_TO: {"value": {"type": "users_select", "selected_user": "UCARDBK"}},
            "intake__accession": {"value": {"type": "plain_text_input", "value": extra}},
        },
        st.sampled_from([{"value": "cardiology"}, {"value": "radiology"}, {"value": "pathology"}]),
        st.sampled_from([{"value": "stat"}, {"value": "routine"}, None]),
        TEXT,
        LONGISH,
        TEXT,
    )

    @fuzz_settings(N_HANDLER)
    @given(
        callback=st.sampled_from([c.value for c in CallbackId] + ["consult_unknown"]),
        metadata=st.one_of(REFS, TEXT, st.builds("{}|{}".format, REFS, st.sampled_from("01x"))),
        values=st.one_of(random_values, typed),
        user=st.sampled_from([ON_CALL, REQUESTER, *USERS]),
        view_id=st.text(min_size=1, max_size=12),
    )
    def run(callback: str, metadata: str, values: dict, user: str, view_id: str) -> None:
        body = {
            "type": "view_submission",
            "user": {"id": user},
            "team": {"id": "T0001"},
            "view": {
                "id": view_id,
                "type": "modal",
                "callback_id": callback,
                "private_metadata": metadata,
                "blocks": [{"type": "input", "block_id": b} for b in values],
                "state": {"values": values},
            },
        }
        result = wsgi_call(bot, interactive(body))
        check_response(result, (200, 404))
        if result.status == 200 and result.body:
            answer = json.loads(result.body)
            assert answer.get("response_action") == "errors" and answer["errors"], answer

    run()
    finish(bot)


def test_events(fuzz_bot: Bot):
    bot = fuzz_bot
    bot.services.dispatcher.drain(timeout=30)  # the seeded consults have channel messages
    roots = [c.channel_ts for c in bot.consults() if c.channel_ts]
    assert roots

    @fuzz_settings(N_HANDLER)
    @given(
        kind=st.sampled_from(
            ["message", "message", "message", "app_home_opened", "reaction_added"]
        ),
        subtype=st.sampled_from(
            [None, None, "thread_broadcast", "message_changed", "bot_message", "file_share", "x"]
        ),
        channel=st.sampled_from(CHANNELS),
        user=st.one_of(st.sampled_from(USERS), st.none()),
        text=st.one_of(st.none(), LONGISH),
        thread_ts=st.one_of(st.none(), st.sampled_from(roots), st.text(max_size=20)),
        ts=st.one_of(st.none(), st.from_regex(r"1[0-9]{9}\.[0-9]{6}", fullmatch=True)),
        tab=st.sampled_from([None, "home", "messages"]),
        event_id=st.text(min_size=1, max_size=16),
        bot_id=st.one_of(st.none(), st.just("BOTHER")),
    )
    def run(
        kind: str,
        subtype: str | None,
        channel: str,
        user: str | None,
        text: str | None,
        thread_ts: str | None,
        ts: str | None,
        tab: str | None,
        event_id: str,
        bot_id: str | None,
    ) -> None:
        event: dict[str, Any] = {"type": kind, "channel": channel}
        for key, value in (
            ("subtype", subtype),
            ("user", user),
            ("text", text),
            ("thread_ts", thread_ts),
            ("ts", ts),
            ("tab", tab),
            ("bot_id", bot_id),
        ):
            if value is not None:
                event[key] = value
        body = {
            "type": "event_callback",
            "team_id": "T0001",
            "api_app_id": "A0CARELOOP",
            "event_id": event_id,
            "event_time": 1,
            "event": event,
        }
        check_response(wsgi_call(bot, json.dumps(body).encode(), "application/json"), (200, 404))

    run()
    finish(bot)
