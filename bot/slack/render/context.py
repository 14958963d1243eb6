"""What rendering may look up besides the consult in hand: the catalogue, other consults by
id, who is on call now, and the time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.domain.catalogue import Catalogue, Service
from storage.models import Consult


@dataclass
class RenderContext:
    """What rendering may look up: the catalogue, other consults by id, and the time."""

    catalogue: Catalogue
    now: datetime
    load: Callable[[list[int]], list[Consult]] = lambda ids: []
    # Everyone on call now for a service key (looked up by the composer, not here).
    on_call: Callable[[str], tuple[str, ...]] = lambda key: ()

    def service(self, key: str) -> Service:
        """The catalogue's service for `key` (KeyError when unknown)."""
        return self.catalogue.service_by_key(key)

    def service_name(self, key: str) -> str:
        """The service's name, or the key itself when the catalogue no longer has it."""
        try:
            return self.catalogue.service_by_key(key).name
        except KeyError:
            return key
