"""Acknowledge presses one at a time, in process: the bot's WSGI app (as `serve` builds it,
no dispatcher) called directly with signed `block_actions` payloads (the card's Acknowledge
button, pressed by the on-call) on a fresh PostgreSQL database (or SQLite). Prints the SQL
statements of one press (as the driver gets them, with the transaction's BEGIN and COMMIT)
and the wall and CPU time per press; `--profile` adds a cProfile summary; `--quick`
presses 100 cards (a smoke run well under a minute). `--all` also runs the other presses
of `bench/create_bench.py` after the acknowledges, each on its own cards as there: the
answer modal submitted (acknowledged cards), the Hand off button (the bot opens the modal
on the fake Slack) and the hand-off modal submitted (open cards).

    .venv/bin/python bench/press_inprocess.py [--presses 500] [--sqlite] [--profile] [--quick]
    .venv/bin/python bench/press_inprocess.py --all --bare [--presses 300]

`--bare` first runs the bare app's button press and form submit the same way (the
baseline of `bench/create_bench.py`, on its own database), for CPU per press side by side.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_app import build as build_bare  # noqa: E402
from bench.bare_app import metadata as bare_tables  # noqa: E402
from bench.create_bench import (  # noqa: E402
    acknowledge,
    answer_submit,
    handoff_button,
    handoff_submit,
)
from bench.timing import measure, slack_environ  # noqa: E402
from bot.app import build_wsgi  # noqa: E402
from bot.dev.fakeslack import FakeSlack  # noqa: E402
from bot.dev.fakeslack.requests import Response, SlackSender  # noqa: E402
from bot.slack.ids import ActionId  # noqa: E402
from storage.db import create_db_engine, migrate  # noqa: E402
from tests.harness import CARD_CHANNEL, SECRET, start_bot  # noqa: E402
from tests.procs import fresh_postgres  # noqa: E402
from tests.statements import statements  # noqa: E402

ON_CALL = "UCARDON"


class InProcessSender(SlackSender):
    """Slack's requests, handed to a WSGI app in this process instead of over HTTP."""

    def __init__(self, app: Any) -> None:
        super().__init__("http://in-process/slack/events", SECRET)
        self.app = app

    def _send(self, body: bytes, headers: dict[str, str]) -> Response:
        environ = slack_environ(body, headers)
        status: list[str] = []
        out = b"".join(self.app(environ, lambda s, h, *a: status.append(s)))
        return Response(int(status[0].split()[0]), out, {}, None, 0.0)


def run(url: str, presses: int, profile: bool, every: bool) -> None:
    engine = create_db_engine(url)
    migrate(engine)
    engine.dispose()
    with FakeSlack() as slack:
        bot = start_bot(url, slack, dispatcher=False)
        sender = InProcessSender(build_wsgi(bot.services))
        total = presses + 51
        for n in range(total * (2 if every else 1)):
            resp = sender.command(f"cards stat MRN {n}: chest pain?", user=f"UREQ{n % 50:03d}")
            assert resp.status == 200, resp.body[:200]
        refs = [c.ref for c in bot.consults()][:total]

        def press(ref: str) -> None:
            resp = sender.block_action(
                ActionId.ACKNOWLEDGE, user=ON_CALL, value=ref, channel=CARD_CHANNEL, message_ts="1"
            )
            assert resp.status == 200, resp.body[:300]

        for ref in refs[:50]:  # warm-up
            press(ref)
        show("acknowledge press", bot.services.engine, lambda: press(refs[50]))

        def presses_timed() -> None:
            for ref in refs[51:]:
                press(ref)

        label = f"{presses} acknowledge presses ({engine.dialect.name})"
        measure(label, presses, "press", presses_timed, profile)
        acked = sum(1 for c in bot.consults() if c.assignee == ON_CALL)
        assert acked == total, (acked, total)
        if every:
            others(sender, bot.services.engine, presses, total, profile)
        bot.stop()


def show(name: str, engine: Any, press: Any) -> None:
    """The round trips of one press (on PostgreSQL, statements pipelined together share
    a line, joined by "; ") and their statements, cut short."""
    with statements(engine) as seen:
        press()
    print(f"Round trips to the database of one {name}: {len(seen)}")
    for sql in seen:
        print("   ", "; ".join(s[:70] for s in sql.split("; ")))


def others(sender: SlackSender, engine: Any, presses: int, total: int, profile: bool) -> None:
    """The answer submit on the acknowledged cards, the Hand off button and submit on the
    open ones (`CARD-n` as `bench/create_bench.py` numbers them), each: its statements on
    its first card, then CPU and wall time per press over the rest."""
    for name, make, first in (
        ("answer submit", answer_submit, 1),
        ("hand-off button", handoff_button, total + 1),
        ("hand-off submit", handoff_submit, total + 1),
    ):
        send = make(sender)

        def one(n: int, send: Any = send) -> None:
            resp = send(n)
            assert resp.status == 200 and b"errors" not in resp.body, resp.body[:300]

        show(name, engine, lambda one=one, first=first: one(first))

        def presses_timed(first: int = first, one: Any = one) -> None:
            for n in range(first + 1, first + 1 + presses):
                one(n)

        measure(f"{presses} presses of {name}", presses, "press", presses_timed, profile)


def bare(url: str, presses: int) -> None:
    """The baseline in the same run: the bare bolt app of `bench/create_bench.py` (one
    `UPDATE` per button press or form submitted), the same signed requests, in process."""
    engine = create_db_engine(url)
    bare_tables.create_all(engine)
    sender = InProcessSender(build_bare(engine, SECRET, "xoxb-bench"))
    for n in range(presses + 51):
        assert sender.command(f"cards stat MRN {n}: chest pain?", user="UREQ").status == 200
    for name, make in (("press (button)", acknowledge), ("submit (form)", answer_submit)):
        send = make(sender)
        for n in range(1, 51):  # warm-up
            send(n)

        def loop(send: Any = send) -> None:
            for n in range(51, 51 + presses):
                assert send(n).status == 200

        measure(f"{presses} bare {name}", presses, "press", loop)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=500)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="100 presses")
    parser.add_argument("--all", action="store_true", help="also the other three presses")
    parser.add_argument(
        "--bare", action="store_true", help="first the bare app's press and submit (PostgreSQL)"
    )
    opts = parser.parse_args()
    presses = 100 if opts.quick else opts.presses
    if opts.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.db", presses, opts.profile, opts.all)
    else:
        if opts.bare:
            with fresh_postgres("careloop_bench_bare") as url:
                bare(url, presses)
        with fresh_postgres("careloop_bench_press") as url:
            run(url, presses, opts.profile, opts.all)


if __name__ == "__main__":
    main()
