"""Plain unit tests of the domain: lifecycle transitions, roles, the ladder, parsing, text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.lifecycle import Action, Refused, Role, Status, check_allowed, next_status
from bot.domain.parsing import parse, parse_user
from bot.domain.policy import Ladder, NudgeState, plan_nudge
from bot.domain.text import clean, escape, normalize_ref, patient_key
from bot.slack.render.primitives import shorten

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "action", "after"),
    [
        (Status.OPEN, Action.ACKNOWLEDGE, Status.ACKNOWLEDGED),
        (Status.ACKNOWLEDGED, Action.NEED_INFO, Status.WAITING),
        (Status.WAITING, Action.INFO_GIVEN, Status.ACKNOWLEDGED),
        (Status.ACKNOWLEDGED, Action.ANSWER, Status.ANSWERED),
        (Status.OPEN, Action.ANSWER, Status.ANSWERED),
        (Status.ANSWERED, Action.CLOSE, Status.CLOSED),
        (Status.ANSWERED, Action.REOPEN, Status.ACKNOWLEDGED),
        (Status.WAITING, Action.CANCEL, Status.CANCELLED),
        (Status.OPEN, Action.CANCEL, Status.CANCELLED),
    ],
)
def test_allowed_transitions(status, action, after):
    assert next_status("RAD-1", status, action).after is after


@pytest.mark.parametrize(
    ("status", "action", "says"),
    [
        (Status.ACKNOWLEDGED, Action.ACKNOWLEDGE, "already acknowledged"),
        (Status.OPEN, Action.CLOSE, "cancel"),
        (Status.CLOSED, Action.ANSWER, "closed"),
        (Status.CANCELLED, Action.REOPEN, "cancelled"),
        (Status.ANSWERED, Action.CANCEL, "answered"),
        (Status.OPEN, Action.FEEDBACK, "not been answered"),
    ],
)
def test_refused_transitions_say_why(status, action, says):
    with pytest.raises(Refused, match=says):
        next_status("RAD-1", status, action)


def test_requester_may_not_act_as_consultant_on_own_consult():
    with pytest.raises(Refused, match="You requested RAD-1"):
        check_allowed("RAD-1", Action.ANSWER, {Role.REQUESTER, Role.CONSULTANT})


def test_roles():
    check_allowed("RAD-1", Action.CLOSE, {Role.LEAD})
    check_allowed("RAD-1", Action.ACKNOWLEDGE, {Role.CONSULTANT})
    with pytest.raises(Refused, match="Only"):
        check_allowed("RAD-1", Action.CANCEL, {Role.CONSULTANT})
    with pytest.raises(Refused, match="Only"):
        check_allowed("RAD-1", Action.ACKNOWLEDGE, set())


def test_ladder_escalates_after_n_nudges_and_stays_at_the_top():
    ladder = Ladder.build(first="U1", backup="U2", leads=["U3", "U4"])
    state = NudgeState(0, 0)
    seen = []
    for i in range(7):
        plan = plan_nudge(
            ladder=ladder,
            state=state,
            escalate_after=2,
            nudge_every=timedelta(minutes=10),
            now=NOW + timedelta(minutes=i),
        )
        seen.append((plan.targets, plan.escalated))
        state = NudgeState(plan.level, plan.nudges_at_level)
        assert plan.next_nudge_at == NOW + timedelta(minutes=i + 10)
    assert seen == [
        (("U1",), False),
        (("U1",), False),
        (("U2",), True),
        (("U2",), False),
        (("U3", "U4"), True),
        (("U3", "U4"), False),
        (("U3", "U4"), False),
    ]


def test_ladder_skips_missing_and_repeated_people():
    ladder = Ladder.build(first="U1", backup=None, leads=["U1", "U3"])
    assert ladder.levels == (("U1",), ("U3",))


def test_parse_quick_form():
    p = parse("rad stat MRN 123: CT head: r/o bleed")
    assert (p.verb, p.service, p.urgency, p.patient, p.question) == (
        "quick",
        "rad",
        "stat",
        "MRN 123",
        "CT head: r/o bleed",
    )
    p = parse("cardiology MRN9: q")
    assert p.urgency is None and p.patient == "MRN9"


def test_parse_subcommands():
    assert parse("").verb == "form"
    assert parse("ack rad-7").ref == "RAD-7"
    assert parse("answer RAD-7 text here").text == "text here"
    assert parse("answer RAD-7").error
    assert parse("handoff <@U123|bob> night team").user == "U123"
    assert parse("oncall rad <@U9>").service == "rad"
    assert parse("stats radiology 7d").days == 7
    assert parse("stats").days == 30
    assert parse("patient MRN 1").patient == "MRN 1"
    assert parse_user("<@W1>") == "W1" and parse_user("@bob") is None


def test_text_helpers():
    assert clean("a\x00b\x07c  ") == "abc"
    assert normalize_ref("path-0012") == "PATH-12"
    assert normalize_ref("nope") is None and normalize_ref("TOOLONGX-1") is None
    assert patient_key(" mrn   12 ") == "MRN 12"
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    long = shorten("x" * 5000, 3000)
    assert len(long) == 3000 and long.endswith("kept in CareLoop]")


def test_channel_pacer_allows_a_short_burst_then_one_post_per_interval():
    from bot.slack.delivery.pacing import ChannelPacer

    now = [100.0]
    pacer = ChannelPacer(interval=1.0, burst=3, monotonic=lambda: now[0])
    assert [pacer.take("C1") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = pacer.take("C1")
    assert 0.99 <= wait <= 1.0
    assert pacer.take("C2") == 0.0  # channels are paced separately
    now[0] += 1.0
    assert pacer.take("C1") == 0.0
    assert pacer.take("C1") > 0.0
