"""The dispatcher's alarm: set when committed messages are waiting to be delivered.

A wake-up may say that every message it announces waits behind a post to one channel (a
new consult's confirmation follows its card): while pacing holds that channel back, no
delivery round could send them, so such wake-ups need not start one (see
`Dispatcher._idle`). Under a burst of creates for one channel this keeps the due query
from running every few creates for nothing."""

from __future__ import annotations

import threading


class Wakeup(threading.Event):
    """A `threading.Event` that also remembers, since it was last cleared, the channels the
    announced messages wait behind; a plain `set()` announces messages that may go at once."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._behind: set[str] | None = set()

    def set(self) -> None:
        with self._lock:
            self._behind = None
            super().set()

    def set_behind(self, channel: str) -> None:
        """Wake the dispatcher for messages that go out only after a post to `channel`."""
        with self._lock:
            if self._behind is not None:
                self._behind.add(channel)
            super().set()

    def clear(self) -> None:
        with self._lock:
            self._behind = set()
            super().clear()

    def take_behind(self) -> frozenset[str] | None:
        """Clear the alarm; the channels every message announced since it was last cleared
        waits behind, or None when some wake-up announced messages that may go at once."""
        with self._lock:
            behind = None if self._behind is None else frozenset(self._behind)
            self._behind = set()
            super().clear()
            return behind
