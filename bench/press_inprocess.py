"""Acknowledge presses one at a time, in process: the bot's WSGI app (as `serve` builds it,
no dispatcher) called directly with signed `block_actions` payloads (the card's Acknowledge
button, pressed by the on-call) on a fresh PostgreSQL database (or SQLite). Prints the SQL
statements of one press and the wall and CPU time per press; `--profile` adds a cProfile
summary; `--quick` presses 100 cards (a smoke run well under a minute).

    .venv/bin/python bench/press_inprocess.py [--presses 500] [--sqlite] [--profile] [--quick]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event  # noqa: E402

from bench.timing import print_profile, timed  # noqa: E402
from bot.app import build_wsgi  # noqa: E402
from bot.dev.fakeslack import FakeSlack  # noqa: E402
from bot.dev.fakeslack.requests import Response, SlackSender  # noqa: E402
from bot.slack.ids import ActionId  # noqa: E402
from storage.db import create_db_engine, migrate  # noqa: E402
from tests.harness import CARD_CHANNEL, SECRET, start_bot  # noqa: E402
from tests.procs import fresh_postgres  # noqa: E402

ON_CALL = "UCARDON"


class InProcessSender(SlackSender):
    """Slack's requests, handed to a WSGI app in this process instead of over HTTP."""

    def __init__(self, app: Any) -> None:
        super().__init__("http://in-process/slack/events", SECRET)
        self.app = app

    def _send(self, body: bytes, headers: dict[str, str]) -> Response:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/slack/events",
            "QUERY_STRING": "",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "CONTENT_TYPE": headers["Content-Type"],
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        for name, value in headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        status: list[str] = []
        out = b"".join(self.app(environ, lambda s, h, *a: status.append(s)))
        return Response(int(status[0].split()[0]), out, {}, None, 0.0)


def run(url: str, presses: int, profile: bool) -> None:
    engine = create_db_engine(url)
    migrate(engine)
    engine.dispose()
    with FakeSlack() as slack:
        bot = start_bot(url, slack, dispatcher=False)
        sender = InProcessSender(build_wsgi(bot.services))
        total = presses + 51
        for n in range(total):
            resp = sender.command(f"cards stat MRN {n}: chest pain?", user=f"UREQ{n % 50:03d}")
            assert resp.status == 200, resp.body[:200]
        refs = [c.ref for c in bot.consults()]
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            statements.append(" ".join(sql.split())[:100])

        def press(ref: str) -> None:
            resp = sender.block_action(
                ActionId.ACKNOWLEDGE, user=ON_CALL, value=ref, channel=CARD_CHANNEL, message_ts="1"
            )
            assert resp.status == 200, resp.body[:300]

        for ref in refs[:50]:  # warm-up
            press(ref)
        event.listen(bot.services.engine, "before_cursor_execute", seen)
        press(refs[50])
        event.remove(bot.services.engine, "before_cursor_execute", seen)
        print(f"SQL statements of one acknowledge press: {len(statements)}")
        for sql in statements:
            print("   ", sql)

        def presses_timed() -> None:
            for ref in refs[51:]:
                press(ref)

        wall, cpu, prof = timed(presses_timed, profile)
        acked = sum(1 for c in bot.consults() if c.assignee == ON_CALL)
        assert acked == total, (acked, total)
        print(
            f"{presses} acknowledge presses ({engine.dialect.name}): "
            f"{wall / presses * 1000:.2f} ms wall, {cpu / presses * 1000:.2f} ms CPU per press"
        )
        print_profile(prof, "cumulative", 40)
        bot.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=500)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="100 presses")
    opts = parser.parse_args()
    presses = 100 if opts.quick else opts.presses
    if opts.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.db", presses, opts.profile)
    else:
        with fresh_postgres("careloop_bench_press") as url:
            run(url, presses, opts.profile)


if __name__ == "__main__":
    main()
