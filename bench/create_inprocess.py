"""One consult create at a time, in process: the bot's WSGI app (as `serve` builds it, no
dispatcher) called directly with signed `/consult cards stat MRN <n>: …` slash commands on a
fresh PostgreSQL database (or SQLite). Prints the SQL statements of one create and the wall
and CPU time per create; `--profile` adds a cProfile summary.

    .venv/bin/python bench/create_inprocess.py [--creates 1000] [--sqlite] [--profile]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event  # noqa: E402

from bench.timing import measure  # noqa: E402
from bot.app import build_wsgi  # noqa: E402
from bot.dev.fakeslack import FakeSlack  # noqa: E402
from bot.dev.fakeslack.requests import sign  # noqa: E402
from storage.db import create_db_engine, migrate  # noqa: E402
from tests.harness import SECRET, start_bot  # noqa: E402
from tests.procs import fresh_postgres  # noqa: E402


def run(url: str, creates: int, profile: bool) -> None:
    engine = create_db_engine(url)
    migrate(engine)
    engine.dispose()
    with FakeSlack() as slack:
        bot = start_bot(url, slack, dispatcher=False)
        app = build_wsgi(bot.services)
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            statements.append(" ".join(sql.split())[:90])

        event.listen(bot.services.engine, "before_cursor_execute", seen)

        def create(n: int) -> None:
            fields = {
                "token": "x",
                "team_id": "T0001",
                "team_domain": "t",
                "channel_id": "C0GENERAL",
                "channel_name": "general",
                "user_id": f"UREQ{n % 200:03d}",
                "user_name": "u",
                "command": "/consult",
                "text": f"cards stat MRN {n}: chest pain, troponin rising?",
                "api_app_id": "A0001",
                "response_url": "http://127.0.0.1:9/none",
                "trigger_id": f"trig-{n}-{uuid.uuid4().hex[:8]}",
            }
            body = urlencode(fields).encode()
            signed = sign(SECRET, body)
            environ = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/slack/events",
                "QUERY_STRING": "",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "SERVER_NAME": "localhost",
                "SERVER_PORT": "80",
                "CONTENT_TYPE": "application/x-www-form-urlencoded",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_SLACK_REQUEST_TIMESTAMP": signed["X-Slack-Request-Timestamp"],
                "HTTP_X_SLACK_SIGNATURE": signed["X-Slack-Signature"],
                "wsgi.input": io.BytesIO(body),
                "wsgi.url_scheme": "http",
                "wsgi.errors": sys.stderr,
            }
            status: list[str] = []
            out = b"".join(app(environ, lambda s, h, *a: status.append(s)))
            assert status[0].startswith("200") and b"received" in out, (status, out[:300])

        for n in range(50):  # warm-up
            create(n)
        statements.clear()
        create(10_000)
        # PostgreSQL runs the create in autocommit (no BEGIN/COMMIT); SQLite's BEGIN IMMEDIATE
        # is in the list and its COMMIT is not.
        print(f"SQL statements of one create: {len(statements)}")
        for sql in statements:
            print("   ", sql)

        def creates_timed() -> None:
            for n in range(100, 100 + creates):
                create(n)

        measure(f"{creates} creates", creates, "create", creates_timed, profile, "tottime", 30)
        bot.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--profile", action="store_true")
    opts = parser.parse_args()
    if opts.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.db", opts.creates, opts.profile)
    else:
        with fresh_postgres("careloop_bench_inproc") as url:
            run(url, opts.creates, opts.profile)


if __name__ == "__main__":
    main()
