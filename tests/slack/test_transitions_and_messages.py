"""The shared steps of the flows: who counts as consultant-only, the one helper that applies
a transition (status, version, audit), and the one place each kind of message is queued."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from bot.domain.lifecycle import ALLOWED, CONSULTANT_ACTIONS, Action, Refused, Role, Status
from bot.domain.vocabulary import Kind, Template
from bot.flows.notify import Notify
from bot.flows.work import Audit, apply_transition
from storage import repo
from storage.models import AuditEvent
from tests.harness import Bot

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)


def test_consultant_only_actions_are_the_ones_only_consultants_may_take():
    assert CONSULTANT_ACTIONS == {
        Action.ACKNOWLEDGE,
        Action.ANSWER,
        Action.NEED_INFO,
        Action.HANDOFF,
        Action.SNOOZE,
        Action.TRANSFER,
    }
    assert all(ALLOWED[a] == {Role.CONSULTANT} for a in CONSULTANT_ACTIONS)


def _audit(bot: Bot, consult_id: int) -> list[AuditEvent]:
    with bot.services.sessions() as s:
        return list(
            s.execute(
                select(AuditEvent)
                .where(AuditEvent.consult_id == consult_id)
                .order_by(AuditEvent.id)
            ).scalars()
        )


def test_applying_a_transition_sets_the_status_bumps_the_version_and_audits_it(bot: Bot):
    ref = bot.open("cards stat MRN 1: chest pain?")
    with bot.services.sessions() as s, s.begin():
        consult = repo.get_by_ref(session=s, ref=ref, lock=True)
        assert consult is not None
        version = consult.version
        done = apply_transition(
            s, consult, Action.ACKNOWLEDGE, Audit("UDOC", NOW, details={"note": 1})
        )
        assert (done.before, done.after) == (Status.OPEN, Status.ACKNOWLEDGED)
        assert consult.status == "acknowledged" and consult.version == version + 1
        consult_id = consult.id
    event = _audit(bot, consult_id)[-1]
    assert (event.action, event.actor) == ("acknowledge", "UDOC")
    assert event.details == {"from": "open", "to": "acknowledged", "note": 1}


def test_a_transition_can_be_audited_under_its_own_name(bot: Bot):
    ref = bot.open("cards stat MRN 1: chest pain?")
    with bot.services.sessions() as s, s.begin():
        consult = repo.get_by_ref(session=s, ref=ref, lock=True)
        assert consult is not None
        apply_transition(s, consult, Action.CANCEL, Audit("UREQ1", NOW, event="withdrawn"))
    assert _audit(bot, consult.id)[-1].action == "withdrawn"


def test_a_refused_transition_changes_and_audits_nothing(bot: Bot):
    ref = bot.open("cards stat MRN 1: chest pain?")
    before = bot.consult(ref)
    audited = len(_audit(bot, before.id))
    with bot.services.sessions() as s, s.begin():
        consult = repo.get_by_ref(session=s, ref=ref, lock=True)
        assert consult is not None
        with pytest.raises(Refused, match="has not been answered yet"):
            apply_transition(s, consult, Action.CLOSE, Audit("UREQ1", NOW))
    after = bot.consult(ref)
    assert (after.status, after.version) == (before.status, before.version)
    assert len(_audit(bot, before.id)) == audited


class RecordingOutbox:
    """Stands in for `Outbox`: records what would be queued."""

    def __init__(self) -> None:
        self.added: list[dict[str, Any]] = []

    def add(self, session: object, **message: Any) -> bool:
        self.added.append(message)
        return True


def test_each_kind_of_message_is_queued_with_its_kind_and_template():
    outbox = RecordingOutbox()
    notify = Notify(outbox, session=object(), now=NOW)  # type: ignore[arg-type]
    consult = SimpleNamespace(id=7, requester="UREQ")

    notify.card_update(7)
    notify.thread_note(consult, Template.CLOSED_THREAD, {"by": "UDOC"})
    notify.dm_requester(consult, Template.ANSWERED, {"text": "fine"})
    notify.dm_user("UDOC", Template.HANDOFF_RECEIVED, {"ids": [7]})
    notify.once("storm:1").channel_message("CRAD", Template.STORM, {"ids": [7]})

    common = {"now": NOW}
    assert outbox.added == [
        common
        | {"kind": Kind.UPDATE, "template": Template.CARD, "consult_id": 7}
        | {"dedupe_key": None},
        common
        | {"kind": Kind.THREAD, "template": Template.CLOSED_THREAD, "consult_id": 7}
        | {"params": {"by": "UDOC"}, "dedupe_key": None},
        common
        | {"kind": Kind.DM, "template": Template.ANSWERED, "consult_id": 7, "user": "UREQ"}
        | {"params": {"text": "fine"}, "dedupe_key": None, "covered": True},
        common
        | {"kind": Kind.DM, "template": Template.HANDOFF_RECEIVED, "consult_id": None}
        | {"user": "UDOC", "params": {"ids": [7]}, "dedupe_key": None},
        common
        | {"kind": Kind.CHANNEL, "template": Template.STORM, "channel": "CRAD"}
        | {"params": {"ids": [7]}, "dedupe_key": "storm:1"},
    ]


def test_an_exactly_once_key_applies_to_one_message_only():
    outbox = RecordingOutbox()
    notify = Notify(outbox, session=object(), now=NOW)  # type: ignore[arg-type]
    consult = SimpleNamespace(id=7, requester="UREQ")
    notify.once("nudge:7:1").thread_note(consult, Template.NUDGE)
    notify.thread_note(consult, Template.NUDGE)
    assert [m["dedupe_key"] for m in outbox.added] == ["nudge:7:1", None]
