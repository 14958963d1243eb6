"""Direct messages in a storm. When one sweep nudges more than `storm_threshold` consults
of a channel, the channel gets summaries instead of thread nudges (`bot.flows.sweep`), and
each person gets one direct message listing the consults that concern them (escalated to
them, or theirs as requester) instead of one message per consult: a backup escalated a
hundred consults at once gets one message, not a hundred paced at one a second. Outside a
storm, and for a person concerned by one consult only, each message goes as before.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bot.domain.vocabulary import Template
from bot.flows.notify import Notify
from storage.models import Consult

# The most consults one storm message lists: about 17 fit in a section (Slack's 3,000
# characters), so 100 take 6 of a message's 50 blocks. More go in further messages.
STORM_CHUNK = 100


@dataclass(frozen=True)
class Letter:
    """One direct message about one consult, as it is sent alone: its exactly-once key."""

    key: str
    consult: Consult
    params: dict[str, Any]


class Letters:
    """The direct messages of one channel's sweep: queued at once one per consult, or, in a
    storm (`grouped`), collected and queued by `send` as one message per person."""

    def __init__(self, notify: Notify, *, grouped: bool) -> None:
        self.notify = notify
        self.grouped = grouped
        self._by: dict[tuple[str, Template, bool], list[Letter]] = defaultdict(list)

    def add(
        self, key: str, consult: Consult, user: str, template: Template, params: dict[str, Any]
    ) -> None:
        """A message to `user` about `consult` (`template` with `params`), once under `key`;
        to the consult's requester (`REQUESTER_OVERDUE`) it goes, when delivered, to whoever
        covers for them then (`Notify.dm_requester`)."""
        letter = Letter(key, consult, params)
        if not self.grouped:
            self._one(user, template, letter)
            return
        self._by[(user, template, bool(params.get("escalated")))].append(letter)

    def send(self) -> None:
        """Queue the collected messages: one per person (and kind), listing their consults."""
        for (user, template, escalated), letters in self._by.items():
            if len(letters) == 1:
                self._one(user, template, letters[0])
                continue
            for start in range(0, len(letters), STORM_CHUNK):
                chunk = letters[start : start + STORM_CHUNK]
                keys = repr(sorted(letter.key for letter in chunk))
                once = self.notify.once("storm-dm:" + hashlib.sha1(keys.encode()).hexdigest())
                targets = {t for letter in chunk for t in letter.params.get("targets") or []}
                params = {
                    "ids": [letter.consult.id for letter in chunk],
                    "role": "escalation" if template == Template.ESCALATION else "requester",
                    "escalated": escalated,
                    "targets": sorted(targets),
                }
                if template == Template.REQUESTER_OVERDUE:
                    once.dm_covered(user, Template.STORM_DM, params)
                else:
                    once.dm_user(user, Template.STORM_DM, params)
        self._by.clear()

    def _one(self, user: str, template: Template, letter: Letter) -> None:
        once = self.notify.once(letter.key)
        if template == Template.REQUESTER_OVERDUE:
            once.dm_requester(letter.consult, template, letter.params)
        else:
            once.dm_about(letter.consult, user, template, letter.params)
