"""What the parts of the consult flows work with: the catalogue, the database, the clock
and the outbox, given once to each part."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue import Catalogue
from bot.domain.clock import Clock
from bot.flows.notify import Notify
from bot.flows.outbox import Outbox
from storage.db import unit_of_work


@dataclass(frozen=True)
class Context:
    """The collaborators every consult flow needs."""

    catalogue: Catalogue
    sessions: sessionmaker[Session]
    clock: Clock
    outbox: Outbox

    def unit(self) -> AbstractContextManager[Session]:
        """One transaction; commits on success."""
        return unit_of_work(self.sessions)

    def notify(self, session: Session, now: datetime) -> Notify:
        """Queues messages in `session`'s transaction, stamped `now`."""
        return Notify(self.outbox, session, now)
