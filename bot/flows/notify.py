"""Every message CareLoop queues, one method per kind of message: the card's update, a note
in its thread, a direct message (to the requester or to anyone), a top-level channel
message, a notice for one person, App Home, the digest chart; and the two messages a new
consult is stored with. Each is queued through `Outbox.add` in the caller's transaction;
delivery renders it by `Template` (or `Artifact`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.domain.vocabulary import Artifact, Kind, Template
from bot.flows.outbox import Outbox
from storage import creation
from storage.models import Consult

Params = dict[str, Any] | None


@dataclass(frozen=True)
class Notify:
    """Queues messages in one transaction (`session`), all stamped `now`; with a
    `dedupe_key` (see `once`), a message whose key was queued before is not queued again."""

    outbox: Outbox
    session: Session
    now: datetime
    dedupe_key: str | None = None

    def once(self, key: str) -> Notify:
        """The same, for one message that must be queued at most once: under `key`."""
        return replace(self, dedupe_key=key)

    def card_update(self, consult_id: int) -> None:
        """Redraw the consult's card in its service channel (`chat.update`)."""
        self._add(Kind.UPDATE, Template.CARD, consult_id=consult_id)

    def thread_note(self, consult: Consult, template: Template, params: Params = None) -> None:
        """A reply in the consult's thread, under its card."""
        self._add(Kind.THREAD, template, consult_id=consult.id, params=params)

    def latest_thread_note(self, consult: Consult, template: Template, params: Params) -> None:
        """A thread note that replaces any note of the same template still queued for the
        consult (a newer nudge makes an older, unsent one moot: it is marked `superseded`)."""
        self._add(Kind.THREAD, template, consult_id=consult.id, params=params, supersede=True)

    def dm_requester(self, consult: Consult, template: Template, params: Params = None) -> None:
        """A direct message about `consult` to the person who requested it, or, when it is
        delivered, to whoever covers for them then (`dm_covered`)."""
        self.dm_covered(consult.requester, template, params, consult=consult)

    def dm_covered(
        self,
        user: str,
        template: Template,
        params: Params = None,
        *,
        consult: Consult | None = None,
    ) -> bool:
        """A direct message to `user` in their own role (requester, follow-up owner) that
        whoever covers for them receives instead, decided when it is delivered (the cover
        in force then; marked "covering for"); False when its exactly-once key was queued
        before."""
        consult_id = consult.id if consult is not None else None
        return self._add(
            Kind.DM, template, consult_id=consult_id, user=user, params=params, covered=True
        )

    def dm_user(self, user: str, template: Template, params: Params = None) -> bool:
        """A direct message to `user` about no single consult (or several, in `params`);
        False when its exactly-once key was queued before."""
        return self._add(Kind.DM, template, consult_id=None, user=user, params=params)

    def notice(self, user: str, channel: str | None, text: str) -> None:
        """`text` for `user` alone: ephemeral in `channel`, or a direct message without one."""
        kind = Kind.EPHEMERAL if channel else Kind.DM
        self._add(kind, Template.TEXT, user=user, channel=channel or None, params={"text": text})

    def home(self, user: str) -> None:
        """A fresh App Home for `user`."""
        self._add(Kind.HOME, Artifact.HOME, user=user)

    def chart(self, user: str, params: Params) -> None:
        """The weekly digest's chart, as a file in a direct message to `user`."""
        self._add(Kind.UPLOAD, Artifact.DIGEST_CHART, user=user, params=params)

    def dm_about(self, consult: Consult, user: str, template: Template, p: Params = None) -> None:
        """A direct message to `user` about `consult`, in order with its other messages."""
        self._add(Kind.DM, template, consult_id=consult.id, user=user, params=p)

    def channel_message(self, channel: str, template: Template, params: Params) -> None:
        """A top-level message in `channel` (the storm summary, an on-call change)."""
        self._add(Kind.CHANNEL, template, channel=channel, params=params)

    def _add(self, kind: Kind, template: Template | Artifact, **where: Any) -> bool:
        return self.outbox.add(
            self.session,
            kind=kind,
            template=template,
            now=self.now,
            dedupe_key=self.dedupe_key,
            **where,
        )


def opening_rows(outbox: Outbox, *, requester: str, now: datetime) -> list[dict[str, Any]]:
    """The outbox rows a new consult is stored with (by `storage.creation.create_consult`): its
    card for the service channel and the requester's confirmation, which lists the
    patient's other open consults."""
    return outbox.rows(
        [
            {"kind": Kind.POST, "template": Template.CARD},
            {
                "kind": Kind.DM,
                "template": Template.CONFIRMATION,
                "user": requester,
                "params": {"others": creation.OTHERS},
            },
        ],
        now=now,
    )
