"""Scripted failures of the fake Slack (see :meth:`FakeSlack.fail`): which calls fail, and
the HTTP answer a failing call gets."""

from __future__ import annotations

from dataclasses import dataclass

from bot.dev.fakeslack.calls import Outcome
from bot.dev.fakeslack.workspace import Json


@dataclass
class FailureRule:
    """Fail (or delay) the next `times` calls to `method` (None = until cleared)."""

    method: str
    status: int | None
    times: int | None
    retry_after: int | None
    hang: float | None
    error: str | None

    def outcome(self) -> Outcome | None:
        """The failing answer, or None if the rule only delays a normal answer."""
        if self.hang and self.status is None and self.error is None:
            return None
        headers: dict[str, str] = {}
        if self.error is not None:
            status = self.status if self.status is not None else 200
            body: Json = {"ok": False, "error": self.error}
        else:
            status = self.status if self.status is not None else 500
            body = {"ok": False, "error": _error_name(status)}
        if self.retry_after is not None or status == 429:
            headers["Retry-After"] = str(self.retry_after if self.retry_after is not None else 1)
        return Outcome(status, body, headers, delay=self.hang or 0.0)


class FailureScript:
    """The scripted rules, consumed in the order they were added."""

    def __init__(self) -> None:
        self.rules: list[FailureRule] = []

    def take(self, method: str, *, api: bool) -> FailureRule | None:
        """The rule the next call to `method` meets (``"*"`` matches Web API methods)."""
        for rule in self.rules:
            if rule.method == method or (api and rule.method == "*"):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.rules.remove(rule)
                return rule
        return None


def _error_name(status: int) -> str:
    if status == 429:
        return "ratelimited"
    if status >= 500:
        return "internal_error"
    return f"http_{status}"
