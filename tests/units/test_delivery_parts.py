"""The parts of delivery on their own: which channel a message is paced in, how Slack's
answers are read, the outbox id every post carries, and that delivery decides nothing about
what a message says (it imports no flows, renderers or reports)."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.domain.vocabulary import Kind
from bot.slack.delivery.landed import is_ours, stamp
from bot.slack.delivery.pacing import paced_channel
from bot.slack.delivery.transport import (
    MAX_BACKOFF,
    Call,
    backoff,
    rate_limited,
    retry_after,
    transient,
)
from bot.slack.delivery.wakeup import Wakeup

DELIVERY = Path(__file__).resolve().parents[2] / "bot" / "slack" / "delivery"


def test_posts_are_paced_in_the_channel_they_go_to_and_other_calls_are_not():
    payload = {"user": "U1", "channel": "C9"}
    assert paced_channel(Kind.POST, payload, "C1") == "C1"
    assert paced_channel(Kind.THREAD, payload, "C1") == "C1"
    assert paced_channel(Kind.DM, payload, "C1") == "U1"
    assert paced_channel(Kind.CHANNEL, payload, "C1") == "C9"
    assert paced_channel(Kind.CHANNEL, {}, "C1") == "C1"
    for kind in (Kind.UPDATE, Kind.EPHEMERAL, Kind.HOME, Kind.UPLOAD):
        assert paced_channel(kind, payload, "C1") is None


def test_slack_answers_are_read_as_rate_limits_retries_or_refusals():
    assert rate_limited(429, "") and rate_limited(200, "ratelimited")
    assert transient(503, "") and transient(200, "internal_error") and transient(429, "")
    assert not transient(200, "channel_not_found") and not rate_limited(200, "not_in_channel")
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after": ["3"]}) == 3.0
    assert retry_after({"Retry-After": "soon"}) == 1.0 and retry_after(None) == 1.0
    assert [backoff(n) for n in (0, 1, 2, 3)] == [1.0, 1.0, 2.0, 4.0]
    assert backoff(50) == MAX_BACKOFF


def test_every_post_carries_its_outbox_id_and_other_calls_are_left_alone():
    post = stamp(Call("chat.postMessage", {"channel": "C1", "text": "hi"}), 42)
    assert post.args["channel"] == "C1" and post.args["text"] == "hi"
    assert is_ours({"metadata": post.args["metadata"], "ts": "1.0"}, 42)
    assert not is_ours({"metadata": post.args["metadata"]}, 43)
    assert not is_ours({"text": "someone else's"}, 42)
    update = Call("chat.update", {"channel": "C1", "ts": "1.0"})
    assert stamp(update, 42) is update


def test_delivery_imports_no_flows_renderers_or_reports():
    forbidden = ("bot.flows", "bot.reports", "bot.slack.render", "bot.app", "bot.services")
    for path in sorted(DELIVERY.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.startswith(forbidden)]
            assert not bad, f"{path.name} imports {bad}"


def test_the_wakeup_remembers_which_held_channels_its_messages_wait_behind():
    wakeup = Wakeup()
    assert wakeup.take_behind() == frozenset() and not wakeup.is_set()
    wakeup.set_behind("C1")
    wakeup.set_behind("C2")
    assert wakeup.is_set()
    assert wakeup.take_behind() == {"C1", "C2"} and not wakeup.is_set()
    wakeup.set_behind("C1")
    wakeup.set()  # a message that may go at once
    wakeup.set_behind("C2")
    assert wakeup.take_behind() is None
    wakeup.set()
    wakeup.clear()
    assert wakeup.take_behind() == frozenset() and not wakeup.is_set()
