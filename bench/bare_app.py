"""The baseline for bench/create_bench.py: a bare bolt app whose /consult handler inserts one
row and acks, whose button handler runs one `UPDATE` of the row its value names and acks,
and whose view handler (a modal submitted) runs one `UPDATE` of the row its private
metadata names and acks, served exactly like `python -m bot serve` (embedded gunicorn, gthread, the
same workers/threads/keep-alive settings, bolt with process_before_response=True, signature
checks on, a static authorize so no request waits on auth.test).

    PORT=3001 DATABASE_URL=postgresql://... SLACK_SIGNING_SECRET=... \
        WEB_CONCURRENCY=2 .venv/bin/python -m bench.bare_app
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.app.base import BaseApplication
from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.authorization import AuthorizeResult
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, Text, func

from storage.db import create_db_engine

metadata = MetaData()
rows = Table(
    "bare_rows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", String(32)),
    Column("text", Text),
    Column("created_at", DateTime(timezone=True), server_default=func.now()),
)


def build(engine: Engine, secret: str, token: str) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: POST /slack/events through bolt, GET /healthz."""

    def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    app = App(
        signing_secret=secret,
        authorize=authorize,
        process_before_response=True,
        request_verification_enabled=True,
    )

    @app.command("/consult")
    def consult(ack: Ack, command: dict[str, Any]) -> None:
        with engine.begin() as conn:
            conn.execute(rows.insert().values(user_id=command["user_id"], text=command["text"]))
        ack(text="ok")

    @app.action(re.compile(".*"))
    def press(ack: Ack, body: dict[str, Any]) -> None:
        value = str((body.get("actions") or [{}])[0].get("value") or "0")
        row = int(value.rsplit("-", 1)[-1] or 0)
        with engine.begin() as conn:
            conn.execute(rows.update().where(rows.c.id == row).values(text="acknowledged"))
        ack()

    @app.view(re.compile(".*"))
    def submit(ack: Ack, view: dict[str, Any]) -> None:
        row = int(str(view.get("private_metadata") or "0").rsplit("-", 1)[-1] or 0)
        with engine.begin() as conn:
            conn.execute(rows.update().where(rows.c.id == row).values(text="answered"))
        ack()

    handler = SlackRequestHandler(app, path="/slack/events")

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        return handler(environ, start_response)

    return wsgi


class BareServer(BaseApplication):
    """Same gunicorn settings as bot.server.CareLoopServer."""

    def __init__(self) -> None:
        self.env = os.environ
        super().__init__()

    def load_config(self) -> None:
        assert self.cfg is not None
        config: dict[str, Any] = {
            "bind": f"{self.env.get('HOST', '127.0.0.1')}:{self.env.get('PORT', '3001')}",
            "workers": int(self.env.get("WEB_CONCURRENCY") or 2),
            "worker_class": "gthread",
            "threads": int(self.env.get("WEB_THREADS") or 8),
            "timeout": 30,
            "graceful_timeout": 20,
            "keepalive": 0,
            "worker_connections": int(self.env.get("WEB_THREADS") or 8),
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
        }
        if "control_socket_disable" in self.cfg.settings:
            config["control_socket_disable"] = True
        for key, value in config.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        engine = create_db_engine(self.env["DATABASE_URL"])  # after fork: one pool per worker
        return build(engine, self.env["SLACK_SIGNING_SECRET"], self.env["SLACK_BOT_TOKEN"])


def main() -> None:
    engine = create_db_engine(os.environ["DATABASE_URL"])
    metadata.create_all(engine)
    engine.dispose()
    BareServer().run()


if __name__ == "__main__":
    main()
