"""Helpers for the reliability suite: in-process WSGI calls (fast enough for fuzzing),
counting every side effect, and capturing the bot's own log output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from bot.dev.fakeslack.requests import sign
from bot.logs import setup_logging
from storage.models import AuditEvent, Consult, OutboxMessage, ProcessedKey, Reply
from tests.harness import SECRET, Bot

# Web API methods the bot may call while deciding who someone is (not an effect).
LOOKUPS = {"conversations.members"}


@dataclass
class WsgiResult:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def text(self) -> str:
        data = self.json
        if isinstance(data, dict):
            return str(data.get("text") or data)
        return self.body.decode("utf-8", "replace")


def wsgi_call(
    bot: Bot,
    body: bytes,
    content_type: str = "application/x-www-form-urlencoded",
    *,
    headers: dict[str, str] | None = None,
    signed: bool = True,
    method: str = "POST",
    path: str = "/slack/events",
    environ_extra: dict[str, Any] | None = None,
) -> WsgiResult:
    """Call the bot's WSGI application directly (same app the HTTP server runs)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    hdrs = dict(sign(SECRET, body)) if signed else {}
    hdrs.update(headers or {})
    for key, value in hdrs.items():
        environ["HTTP_" + key.upper().replace("-", "_")] = value
    environ.update(environ_extra or {})
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], *_: Any) -> None:
        captured["status"] = int(status.split()[0])
        captured["headers"] = {k.lower(): v for k, v in response_headers}

    chunks = bot.server.get_app()(environ, start_response)
    data = b"".join(chunks)
    close = getattr(chunks, "close", None)
    if close:
        close()
    return WsgiResult(captured["status"], captured["headers"], data)


def form(fields: dict[str, Any]) -> bytes:
    return urlencode(fields).encode()


def interactive(payload: Any) -> bytes:
    return form({"payload": payload if isinstance(payload, str) else json.dumps(payload)})


@dataclass(frozen=True)
class Effects:
    """Everything a request could have changed."""

    consults: int
    audit: int
    outbox: int
    keys: int
    replies: int
    slack_calls: int


def effects(bot: Bot) -> Effects:
    with bot.services.sessions() as s:

        def n(model: Any) -> int:
            return int(s.execute(select(func.count()).select_from(model)).scalar_one())

        counts = (n(Consult), n(AuditEvent), n(OutboxMessage), n(ProcessedKey), n(Reply))
    calls = [c for c in bot.slack.calls if c.method not in LOOKUPS]
    return Effects(*counts, slack_calls=len(calls))


def audit_rows(bot: Bot, action: str | None = None) -> list[AuditEvent]:
    with bot.services.sessions() as s:
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        rows = list(s.execute(stmt).scalars())
        for r in rows:
            s.expunge(r)
        return rows


class LogCapture:
    """The bot's log output exactly as `setup_logging` writes it (PHI filter included)."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Route every log record through the production handler into a buffer (DEBUG level,
    so third-party debug dumps are exercised too), then restore pytest's handlers."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    setup_logging("DEBUG", "json")
    handler = root.handlers[0]
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        yield LogCapture(stream)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@pytest.fixture(autouse=True)
def _no_channel_pacing(request: pytest.FixtureRequest) -> None:
    """Channel pacing (about one post a second per channel) is tested elsewhere; here it
    would only make the many posts to one channel slow."""
    if "bot" in request.fixturenames:
        request.getfixturevalue("bot").services.dispatcher.pacer.interval = 0
