"""What must hold in the database whatever was sent: no half-written consult."""

from __future__ import annotations

import re

from sqlalchemy import select

from bot.domain.lifecycle import Status
from storage.models import AuditEvent, Consult, OutboxMessage, Reply
from tests.harness import Bot

STATUSES = {s.value for s in Status}
_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def assert_consistent(bot: Bot) -> None:
    with bot.services.sessions() as s:
        consults = list(s.execute(select(Consult)).scalars())
        audits = list(s.execute(select(AuditEvent)).scalars())
        outbox = list(s.execute(select(OutboxMessage)).scalars())
        replies = list(s.execute(select(Reply)).scalars())
    created = {a.consult_id for a in audits if a.action == "created"}
    posted = {m.consult_id for m in outbox if m.kind == "post"}
    ids = {c.id for c in consults}
    prefixes = {svc.key: svc.prefix for svc in bot.services.catalogue.services}
    for c in consults:
        where = f"{c.ref} ({c.id})"
        assert c.ref == f"{prefixes[c.service]}-{c.seq}", where
        assert c.status in STATUSES, where
        assert c.requester, where
        assert c.created_at and c.acknowledge_due_at and c.answer_due_at, where
        if c.purged_at is None:
            assert c.patient and c.question, where
            for text in (c.patient, c.question, c.answer or "", *(c.intake or {}).values()):
                assert not _BAD.search(str(text)), (where, text)
        assert c.id in created, f"{where} has no 'created' audit event"
        assert c.id in posted, f"{where} was never queued for its channel"
        if c.status != Status.OPEN.value and c.status != Status.CANCELLED.value:
            assert c.acknowledged_at or c.answered_at, where
    assert {a.consult_id for a in audits if a.consult_id is not None} <= ids
    assert {m.consult_id for m in outbox if m.consult_id is not None} <= ids
    for r in replies:
        assert r.consult_id in ids and not _BAD.search(r.text or "")
    for m in outbox:
        assert isinstance(m.payload, dict) and m.payload.get("template"), m.id
