"""One consult create at a time, in process: the bot's WSGI app (as `serve` builds it, no
dispatcher) called directly with signed `/consult cards stat MRN <n>: …` slash commands on a
fresh PostgreSQL database (or SQLite). Prints the round trips of one create and the wall and
CPU time per create (the requests are built and signed before the clock starts); on a local
PostgreSQL also the CPU its backends spent per create. `--bare` first runs the bare app of
`bench/create_bench.py` (one INSERT per /consult) the same way; `--profile` adds a cProfile
summary. `--dispatcher` runs the outbox dispatcher on its thread as `serve` does (its poll
interval too), delivering to the fake Slack in this process: its CPU and its database work
under a burst of creates for one paced channel then count in the figures, as they do in
`bench/create_bench.py`.

    .venv/bin/python bench/create_inprocess.py [--creates 1000] [--sqlite] [--profile] [--bare]
        [--dispatcher]
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine  # noqa: E402

from bench.bare_app import build as build_bare  # noqa: E402
from bench.bare_app import metadata as bare_tables  # noqa: E402
from bench.timing import backend_cpu, measure, slack_environ  # noqa: E402
from bot.app import build_wsgi  # noqa: E402
from bot.dev.fakeslack import FakeSlack  # noqa: E402
from bot.dev.fakeslack.requests import sign  # noqa: E402
from bot.slack.delivery.dispatcher import Dispatcher  # noqa: E402
from storage.db import create_db_engine, migrate  # noqa: E402
from tests.harness import SECRET, start_bot  # noqa: E402
from tests.procs import fresh_postgres  # noqa: E402
from tests.statements import statements  # noqa: E402

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def environ_for(n: int) -> dict[str, Any]:
    """The signed WSGI request of `/consult cards stat MRN <n>: …`."""
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
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(SECRET, body)}
    return slack_environ(body, headers)


def call(app: App, environ: dict[str, Any]) -> bytes:
    status: list[str] = []
    out = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    assert status[0].startswith("200"), (status, out[:300])
    return out


def backends_cpu(engine: Engine) -> float | None:
    """CPU seconds spent so far by the PostgreSQL backends of this database (from /proc:
    a local server only); None elsewhere."""
    if engine.dialect.name != "postgresql":
        return None
    return sum(backend_cpu(engine).values())


def timed_creates(label: str, app: App, engine: Engine, creates: int, profile: bool) -> None:
    """`creates` signed creates through `app`, then the database's CPU per create."""
    requests = [environ_for(n) for n in range(100, 100 + creates)]

    def loop() -> None:
        for environ in requests:
            call(app, environ)

    before = backends_cpu(engine)
    measure(label, creates, "create", loop, profile, "tottime", 30)
    after = backends_cpu(engine)
    if before is not None and after is not None:
        print(f"    PostgreSQL backends: {(after - before) / creates * 1000:.2f} ms CPU per create")


def run(url: str, creates: int, profile: bool, dispatcher: bool = False) -> None:
    engine = create_db_engine(url)
    migrate(engine)
    engine.dispose()
    with FakeSlack() as slack:
        bot = start_bot(url, slack, dispatcher=False)
        if dispatcher:
            delivery = bot.services.dispatcher
            # The harness polls every 50 ms for the tests; serve keeps the default.
            delivery.poll_interval = (
                inspect.signature(Dispatcher).parameters["poll_interval"].default
            )
            delivery.start()
        app = build_wsgi(bot.services)
        for n in range(50):  # warm-up
            assert b"received" in call(app, environ_for(n))
        with statements(bot.services.engine) as seen:
            call(app, environ_for(10_000))
        # PostgreSQL runs the create in autocommit (no BEGIN/COMMIT); SQLite's BEGIN IMMEDIATE
        # is in the list and its COMMIT is not.
        print(f"Round trips to the database of one create: {len(seen)}")
        for sql in seen:
            print("   ", sql[:90])
        label = f"{creates} creates ({engine.dialect.name}{', dispatcher' if dispatcher else ''})"
        timed_creates(label, app, bot.services.engine, creates, profile)
        bot.stop()


def bare(url: str, creates: int) -> None:
    """The baseline in the same run: the bare app's one-INSERT /consult, in process."""
    engine = create_db_engine(url)
    bare_tables.create_all(engine)
    app = build_bare(engine, SECRET, "xoxb-bench")
    for n in range(50):
        call(app, environ_for(n))
    timed_creates(f"{creates} bare creates", app, engine, creates, False)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--bare", action="store_true", help="first the bare app's create")
    parser.add_argument("--dispatcher", action="store_true", help="deliver as serve does")
    opts = parser.parse_args()
    if opts.bare:
        with fresh_postgres("careloop_bench_bare") as url:
            bare(url, opts.creates)
    if opts.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.db", opts.creates, opts.profile, opts.dispatcher)
    else:
        with fresh_postgres("careloop_bench_inproc") as url:
            run(url, opts.creates, opts.profile, opts.dispatcher)


if __name__ == "__main__":
    main()
