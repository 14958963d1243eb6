"""`Services`: what the assembly hands to handlers and background work, injected into bolt's
context as `careloop`. A leaf: it names the collaborators' types and imports nothing that
imports it back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue import Catalogue
from bot.domain.clock import Clock
from bot.flows.consults.service import ConsultService
from bot.flows.critical import CriticalService
from bot.flows.followups import FollowUpService
from bot.flows.outbox import Outbox
from bot.settings import Settings
from bot.slack.delivery.dispatcher import Dispatcher
from bot.slack.membership import ChannelMembers


@dataclass
class Services:
    """Everything a handler may use, injected into bolt's context as `careloop`."""

    settings: Settings
    catalogue: Catalogue
    clock: Clock
    engine: Engine
    sessions: sessionmaker[Session]
    outbox: Outbox
    consults: ConsultService
    dispatcher: Dispatcher
    quick_client: WebClient
    members: ChannelMembers
    critical: CriticalService
    followups: FollowUpService
    extras: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.dispatcher.stop()
        self.engine.dispose()
