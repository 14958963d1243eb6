"""What the fake Slack answers (:class:`Outcome`) and what it records of each request
(:class:`Call`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from bot.dev.fakeslack.workspace import Json


@dataclass
class Call:
    """One request the fake server answered.

    ``method`` is the Web API method (``"chat.postMessage"``), or ``"upload"`` /
    ``"response_url"`` for the two non-API URLs.  ``args`` are the parsed parameters (JSON
    strings for blocks/metadata/view/files already decoded; no ``token``).  ``status`` is the
    HTTP status answered; ``ok``/``error`` mirror the JSON body; ``delay`` is any scripted hang.
    """

    method: str
    args: dict[str, Any]
    at: float
    status: int
    token: str | None
    ok: bool = False
    error: str | None = None
    delay: float = 0.0


@dataclass
class Outcome:
    """The answer to one request: HTTP status, JSON (or raw) body, headers, delay."""

    status: int
    body: Json | bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def new_call(method: str, args: Json, at: float, out: Outcome, token: str | None) -> Call:
    """The record of a request to `method` answered with `out`."""
    body = out.body if isinstance(out.body, dict) else {}
    ok = bool(body.get("ok")) if isinstance(out.body, dict) else out.status == 200
    return Call(
        method=method,
        args=copy.deepcopy(args),
        at=at,
        status=out.status,
        token=token,
        ok=ok,
        error=body.get("error"),
        delay=out.delay,
    )


def describe(call: Call) -> str:
    """``method:status`` (and ``:error`` when not ok), for assertion messages."""
    return f"{call.method}:{call.status}" + ("" if call.ok else f":{call.error}")
