"""The demo's people, channels and channel members (Slack ids the stand-in knows)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Person:
    """Someone in the demo: Slack user id, display name and role."""

    id: str
    name: str
    role: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.role})"


# The roster: Slack user id, display name and role, in columns two or more spaces apart.
_ROSTER = """
UAHMED        Dr Ahmed       emergency physician
UBROWN        Dr Brown       ward 4B physician
UGARCIA       Dr Garcia      orthopaedic surgeon
URADCHEN      Dr Chen        radiology on call
URADNOVAK     Dr Novak       radiology, night shift
URADOKOYE     Dr Okoye       radiology backup
URADREYES     Dr Reyes       radiology lead
UPATHSINGH    Dr Singh       pathology on call
UPATHPATEL    Dr Patel       pathology backup
UPATHMOREAU   Dr Moreau      pathology lead
UCARDLI       Dr Li          cardiology on call
UCARDKOWAL    Dr Kowalski    cardiology backup
UCARDOBI      Dr Obi         cardiology lead
UWALSH        Dr Walsh       house supervisor
"""
CAST = tuple(Person(*re.split(r"\s{2,}", row)) for row in _ROSTER.strip().splitlines())
(AHMED, BROWN, GARCIA, CHEN, NOVAK, OKOYE, REYES, SINGH, PATEL, MOREAU, LI, KOWALSKI, OBI,
 WALSH) = CAST  # fmt: skip
PEOPLE = {p.id: p for p in CAST}

CHANNELS = {
    "CEMERG": "emergency",
    "CWARD4B": "ward-4b",
    "CORTHO": "orthopaedics",
    "CRAD": "radiology",
    "CPATH": "pathology",
    "CCARD": "cardiology",
}
MEMBERS = {
    "CRAD": [CHEN.id, NOVAK.id, OKOYE.id, REYES.id],
    "CPATH": [SINGH.id, PATEL.id, MOREAU.id],
    "CCARD": [LI.id, KOWALSKI.id, OBI.id],
}
_SERVICE_CHANNELS = {"RAD": "CRAD", "PATH": "CPATH", "CARD": "CCARD"}


def service_channel(ref: str) -> str:
    """The channel of the service a consult reference (``RAD-1``) belongs to."""
    return _SERVICE_CHANNELS[ref.split("-")[0]]
