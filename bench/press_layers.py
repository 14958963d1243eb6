"""Where a press's CPU goes, by layer, measured directly: `bench/press_inprocess.py --all
--bare` (PostgreSQL) with the CPU time of this thread (`time.thread_time`) taken around
each layer's entry point, and PostgreSQL's own CPU per press (every `postgres` process's
user + system time from `/proc`: run it on a machine nobody else's database is busy on).
Prints, per kind of press, each layer's CPU per press, inclusive (a layer's line
includes the lines under it); the probes themselves add ~1 µs a call. `--quick`: 100.

    .venv/bin/python bench/press_layers.py [--presses 2000] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import slack_bolt.app.app as bolt_app  # noqa: E402
from slack_bolt.listener.custom_listener import CustomListener  # noqa: E402
from slack_bolt.middleware.request_verification.request_verification import (  # noqa: E402
    RequestVerification,
)

import bench.press_inprocess as inprocess  # noqa: E402
import bot.flows.consults.actions as actions  # noqa: E402
from bench.timing import process_cpu  # noqa: E402
from bot import guard  # noqa: E402
from bot.flows import hops  # noqa: E402
from bot.flows.consults.roles import Permissions  # noqa: E402
from bot.flows.outbox import Outbox  # noqa: E402
from storage import press  # noqa: E402

SPENT: Counter[str] = Counter()

# (owner, attribute, line): the entry points timed, in the order printed.
LAYERS: list[tuple[Any, str, str]] = [
    (inprocess.InProcessSender, "_send", "the app (WSGI: guard, bolt, listener)"),
    (guard, "parse", "  guard: the body parsed once"),
    (bolt_app.App, "dispatch", "  bolt dispatch (middleware, matching, listener)"),
    (RequestVerification, "process", "    bolt's signature check"),
    (CustomListener, "run_ack_function", "    the listener"),
    (press, "unit", "      press.unit: connection, session begin/commit/close"),
    (press, "lock_and_claim", "      press.lock_and_claim (round trip 1)"),
    (press, "_detached", "        the row made an ORM object"),
    (press, "write", "      press.write (round trip 2)"),
    (press, "_json", "        JSON of the write's parameters"),
    (press, "_send", "      psycopg: both round trips (press._send)"),
    (actions, "request_key", "      exactly-once request key"),
    (actions, "apply_transition", "      transition and its audit event"),
    (hops, "settle", "      hops.settle"),
    (Permissions, "check_role", "      roles"),
    (Permissions, "ask_first", "      roles"),
    (Outbox, "add", "      outbox messages queued"),
    (actions.log, "info", "      logging"),
]


def timed(f: Callable[..., Any], line: str) -> Callable[..., Any]:
    @functools.wraps(f)
    def call(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return f(*args, **kwargs)
        finally:
            SPENT[line] += time.thread_time() - start

    return call


def timed_context(f: Callable[..., Any], line: str) -> Callable[..., Any]:
    """A context manager's entry and exit timed, not the block it wraps."""

    @contextlib.contextmanager
    def call(*args: Any, **kwargs: Any) -> Iterator[Any]:
        start = time.thread_time()
        manager = f(*args, **kwargs)
        value = manager.__enter__()
        SPENT[line] += time.thread_time() - start
        try:
            yield value
        except BaseException:
            start = time.thread_time()
            swallowed = manager.__exit__(*sys.exc_info())
            SPENT[line] += time.thread_time() - start
            if not swallowed:
                raise
        else:
            start = time.thread_time()
            manager.__exit__(None, None, None)
            SPENT[line] += time.thread_time() - start

    return call


def postgres_cpu() -> float:
    """Seconds of CPU every `postgres` process on this machine has used so far."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        total += process_cpu(pid) or 0.0
    return total


def measure(label: str, n: int, unit: str, run: Callable[[], None], *_: Any) -> None:
    SPENT.clear()
    before, cpu = postgres_cpu(), time.process_time()
    run()
    cpu, database = time.process_time() - cpu, postgres_cpu() - before
    print(f"{label}: {cpu / n * 1e6:.0f} µs CPU per {unit} in this process, PostgreSQL "
          f"{database / n * 1e6:.0f} µs")  # fmt: skip
    for line in dict.fromkeys(line for _, _, line in LAYERS):
        if SPENT[line]:
            print(f"    {line:58s} {SPENT[line] / n * 1e6:6.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="100 presses")
    opts = parser.parse_args()
    for owner, name, line in LAYERS:
        wrap = timed_context if (owner, name) == (press, "unit") else timed
        setattr(owner, name, wrap(getattr(owner, name), line))
    inprocess.measure = measure
    presses = 100 if opts.quick else opts.presses
    with inprocess.fresh_postgres("careloop_bench_bare") as url:
        inprocess.bare(url, presses)
    with inprocess.fresh_postgres("careloop_bench_press") as url:
        inprocess.run(url, presses, False, True)


if __name__ == "__main__":
    main()
