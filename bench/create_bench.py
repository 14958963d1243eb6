"""Benchmark consult creation over HTTP (issue 2 §6): `python -m bot serve` against a bare
bolt app under the same load, same gunicorn settings, same machine, same run.

For each app: a fresh PostgreSQL database (127.0.0.1:5432, user postgres, dropped after),
the app started as a real process (WEB_CONCURRENCY workers, gthread), the fake Slack Web
API running in this process, and C client threads sending signed `/consult cards stat
MRN <n>: <question>` slash commands until N requests were answered (after a warm-up). A
client keeps its connection open when the server allows it; both apps are served like
`serve`, which closes each connection after its response. The bare app runs before and
after CareLoop; CareLoop is compared with its faster run. Then the button paths, on the
consults it created, same clients: *Acknowledge* presses and the *answer modal* submitted
(view_submission) on the first A consults, and the *Hand off* button (the bot opens the
modal: views.open to the fake Slack) and the hand-off modal submitted on the next A. The
bare app's button handler and view handler each run one `UPDATE` and ack; each CareLoop
button phase is compared with the bare handler of its kind (block_actions or
view_submission): throughput ratio and p99 ratio. Prints throughput and latency
percentiles; no asserts.

    .venv/bin/python bench/create_bench.py [--requests 5000] [--concurrency 50]
        [--acks 2000] [--workers 2] [--threads 8] [--rate 0] [--json] [--quick]
        [--py-spy DIR]

`--py-spy DIR` records each CareLoop button phase with py-spy (`PY_SPY` names the binary)
into DIR/<phase>.txt (raw collapsed stacks of the server and its workers).

`--quick` (a smoke run well under a minute: 200 requests, 10 clients) prints the same lines.

`--rate R` paces the clients to R requests/s in total (open loop) instead of as fast as
they can (closed loop): latency at a given load rather than at saturation.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.dev.fakeslack import FakeSlack  # noqa: E402
from bot.dev.fakeslack.requests import Response, SlackSender  # noqa: E402
from bot.slack.ids import ActionId, BlockId, CallbackId  # noqa: E402
from tests.procs import (  # noqa: E402
    ON_CALL,
    SECRET,
    BotProcess,
    Procs,
    bot_env,
    fresh_postgres,
    write_catalogue,
)

ANSWER_TEXT = "Echo shows no effusion; start heparin, repeat troponin in 3 h."
HANDOFF_TO = "UNIGHT"


class KeepAliveSender(SlackSender):
    """SlackSender on one persistent HTTP/1.1 connection per thread."""

    def __init__(self, url: str, secret: str) -> None:
        super().__init__(url, secret, timeout=30)
        self.host, self.port = url.split("//", 1)[1].split("/", 1)[0].split(":")
        self._local = threading.local()

    def _send(self, body: bytes, headers: dict[str, str]) -> Response:
        conn: HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = HTTPConnection(self.host, int(self.port), timeout=30)
        started = time.perf_counter()
        try:
            conn.request("POST", "/slack/events", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError:
            conn.close()
            self._local.conn = None
            raise
        elapsed = time.perf_counter() - started
        if resp.will_close:
            conn.close()
            self._local.conn = None
        return Response(resp.status, data, {}, None, elapsed)

    def _interactive(self, payload: dict[str, Any]) -> Response:
        return self._form({"payload": json.dumps(payload)})  # no `sent` bookkeeping


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    load_before: float  # 1-minute load average of the machine when the phase started


def load(
    name: str,
    send: Callable[[int], Response],
    *,
    total: int,
    concurrency: int,
    first: int = 0,
    rate: float = 0.0,
) -> Result:
    """Call `send(n)` for n in [first, first + total) from `concurrency` threads."""
    load_before = round(os.getloadavg()[0], 2)
    counter = itertools.count(first)
    end = first + total
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start = threading.Barrier(concurrency + 1)
    began = [0.0]

    def client(k: int) -> None:
        start.wait()
        while True:
            n = next(counter)
            if n >= end:
                return
            if rate:
                due = began[0] + (n - first) / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            try:
                resp = send(n)
            except OSError:
                errors[k] += 1
                continue
            if resp.status != 200:
                errors[k] += 1
            latencies[k].append(resp.elapsed)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    began[0] = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began[0]
    flat = sorted(x for per in latencies for x in per)
    q = statistics.quantiles(flat, n=100, method="inclusive")
    return Result(
        name=name,
        requests=total,
        errors=sum(errors),
        seconds=round(seconds, 2),
        rps=round(total / seconds, 1),
        p50_ms=round(q[49] * 1000, 1),
        p90_ms=round(q[89] * 1000, 1),
        p99_ms=round(q[98] * 1000, 1),
        max_ms=round(flat[-1] * 1000, 1),
        load_before=load_before,
    )


def create(sender: SlackSender) -> Callable[[int], Response]:
    def send(n: int) -> Response:
        return sender.command(
            f"cards stat MRN {n}: chest pain, troponin rising?", user=f"UREQ{n % 200:03d}"
        )

    return send


def acknowledge(sender: SlackSender) -> Callable[[int], Response]:
    def send(n: int) -> Response:
        return sender.block_action(
            ActionId.ACKNOWLEDGE, user=ON_CALL, value=f"CARD-{n}", channel="CCARD"
        )

    return send


def answer_submit(sender: SlackSender) -> Callable[[int], Response]:
    """The answer modal submitted (view_submission) by the on-call for CARD-n."""

    def send(n: int) -> Response:
        values = {BlockId.ANSWER: {"value": {"type": "plain_text_input", "value": ANSWER_TEXT}}}
        return sender.view_submission(
            CallbackId.ANSWER, values, user=ON_CALL, private_metadata=f"CARD-{n}"
        )

    return send


def handoff_button(sender: SlackSender) -> Callable[[int], Response]:
    """The card's Hand off button for CARD-n: the bot opens the hand-off modal (views.open)."""

    def send(n: int) -> Response:
        return sender.block_action(
            ActionId.HANDOFF, user=ON_CALL, value=f"CARD-{n}", channel="CCARD", message_ts="1"
        )

    return send


def handoff_submit(sender: SlackSender) -> Callable[[int], Response]:
    """The hand-off modal for CARD-n submitted: to another consultant, with a note."""

    def send(n: int) -> Response:
        values = {
            BlockId.HANDOFF_TO: {"value": {"type": "users_select", "selected_user": HANDOFF_TO}},
            BlockId.NOTE: {"value": {"type": "plain_text_input", "value": "echo pending"}},
        }
        return sender.view_submission(
            CallbackId.HANDOFF, values, user=ON_CALL, private_metadata=f"CARD-{n}"
        )

    return send


def start(procs: Procs, args: list[str], env: dict[str, str], name: str) -> BotProcess:
    proc = procs.start(args, env, name=name)
    proc.wait_healthy(60)
    return proc


Make = Callable[[SlackSender], Callable[[int], Response]]
# CareLoop's button phases: (name, requests, first consult is 1 or A + 1, the bare app's
# handler of the same kind of request: its one-UPDATE button or its one-UPDATE view).
PHASES: list[tuple[str, Make, bool, str, Make]] = [
    ("acknowledge", acknowledge, False, "press", acknowledge),
    ("answer submit", answer_submit, False, "submit", answer_submit),
    ("hand-off button", handoff_button, True, "press", acknowledge),
    ("hand-off submit", handoff_submit, True, "submit", answer_submit),
]


def run_phases(
    opts: argparse.Namespace, bare: BotProcess, careloop: BotProcess
) -> tuple[list[Result], list[tuple[Result, Result]]]:
    """Creates on both apps, then each CareLoop button phase right after a bare phase of the
    same kind of request; whichever app is not measured is frozen (SIGSTOP), so neither's
    background work (CareLoop's dispatcher) lands in the other's figures, and a load change
    on this shared machine hits both sides of each pair alike. Returns the create results
    and the (CareLoop, bare) pairs."""
    bare_send = KeepAliveSender(bare.events_url, SECRET)
    send = KeepAliveSender(careloop.events_url, SECRET)
    n, c, rate = opts.warmup, opts.concurrency, opts.rate
    with frozen(careloop):
        load("warm-up", create(bare_send), total=n, concurrency=c)
        bare_1 = load("bare create (1)", create(bare_send), total=opts.requests, concurrency=c,
                      first=n, rate=rate)  # fmt: skip
    with frozen(bare):
        warm = load("warm-up", create(send), total=n, concurrency=c)
        assert warm.errors == 0, careloop.tail()
        made = load("careloop create", create(send), total=opts.requests, concurrency=c,
                    first=n, rate=rate)  # fmt: skip
    with frozen(careloop):
        bare_2 = load("bare create (2)", create(bare_send), total=opts.requests, concurrency=c,
                      first=n, rate=rate)  # fmt: skip
    presses = min(opts.acks, (n + opts.requests) // 2)
    pairs = []
    for name, make, second_half, kind, bare_make in PHASES:
        first = presses + 1 if second_half else 1
        with frozen(careloop):
            base = load(f"bare {kind} ({name})", bare_make(bare_send), total=presses,
                        concurrency=c, first=first, rate=rate)  # fmt: skip
        with frozen(bare), py_spy(opts.py_spy, careloop.pid, name):
            ours = load(f"careloop {name}", make(send), total=presses, concurrency=c,
                        first=first, rate=rate)  # fmt: skip
        pairs.append((ours, base))
    return [bare_1, made, bare_2], pairs


@contextlib.contextmanager
def frozen(proc: BotProcess) -> Iterator[None]:
    """`proc` and its workers stopped (SIGSTOP to its process group) for the block; kept
    well under gunicorn's 30 s worker timeout by the phases' sizes."""
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGCONT)


@contextlib.contextmanager
def py_spy(spy: str | None, pid: int, name: str) -> Iterator[None]:
    """With `--py-spy DIR` (and a pid): py-spy records the server and its workers (raw
    collapsed stacks, idle threads left out) while the phase runs, into DIR/<phase>.txt."""
    if not spy or not pid:
        yield
        return
    out = Path(spy) / f"{name.replace(' ', '-')}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [os.environ.get("PY_SPY", "py-spy"), "record", "--pid", str(pid), "--subprocesses"]
    cmd += ["--rate", "100", "--format", "raw", "--output", str(out), "--nonblocking"]
    recorder = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the load starts
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(30)


@contextlib.contextmanager
def apps(opts: argparse.Namespace, procs: Procs, slack: FakeSlack) -> Iterator[tuple[Any, Any]]:
    """The bare app and CareLoop, each on a fresh PostgreSQL database, both serving."""
    catalogue = write_catalogue(procs.workdir / "consult.toml")
    sizes = {"WEB_CONCURRENCY": str(opts.workers), "WEB_THREADS": opts.threads}
    with fresh_postgres("careloop_bench_bare") as bare_url, fresh_postgres("careloop_bench") as url:
        bare = start(procs, ["-m", "bench.bare_app"], bot_env(bare_url, slack.url, None, **sizes),
                     "bare")  # fmt: skip
        careloop = start(procs, ["-m", "bot", "serve"], bot_env(url, slack.url, catalogue, **sizes),
                         "careloop")  # fmt: skip
        try:
            yield bare, careloop
        finally:
            careloop.terminate(60)
            bare.terminate(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--acks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", default="8")
    parser.add_argument("--rate", type=float, default=0.0, help="total req/s (0 = flat out)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--py-spy", metavar="DIR", help="record each CareLoop button phase with py-spy into DIR"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 200 requests, 50 warm-up, 10 clients"
    )
    opts = parser.parse_args()
    if opts.quick:
        opts.requests, opts.warmup, opts.acks, opts.concurrency = 200, 50, 100, 10

    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as slack, Procs(Path(tmp)) as procs:
        with apps(opts, procs, slack) as (bare, careloop):
            creates, pairs = run_phases(opts, bare, careloop)
    report(opts, creates, pairs)


def _faster(a: Result, b: Result) -> Result:
    return max(a, b, key=lambda r: r.rps)


def report(
    opts: argparse.Namespace, creates: list[Result], pairs: list[tuple[Result, Result]]
) -> None:
    """Print (or dump as JSON) every phase and CareLoop's ratios to the bare app's: creates
    against the faster bare create run, each button phase against the bare phase just
    before it."""
    bare_1, create, bare_2 = creates
    bare = _faster(bare_1, bare_2)
    ratios = {
        ours.name.removeprefix("careloop "): (ours.rps / base.rps, ours.p99_ms / base.p99_ms, base)
        for ours, base in pairs
    }
    ratio = create.rps / bare.rps
    results = [*creates, *(r for pair in pairs for r in reversed(pair))]
    if opts.json:
        figures = {
            "ratio": ratio,
            "press_ratio": ratios["acknowledge"][0],
            "press_ratios": {k: {"throughput": t, "p99": p} for k, (t, p, _) in ratios.items()},
        }
        print(json.dumps({"results": [asdict(r) for r in results], **figures}, indent=2))
        return
    mode = f"{opts.rate:g} req/s open loop" if opts.rate else "closed loop"
    print(
        f"{opts.requests} requests, {opts.concurrency} clients ({mode}), "
        f"{opts.workers} workers x {opts.threads} threads, PostgreSQL\n"
    )
    print(
        f"{'':30} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'errors':>6} {'load':>5}"
    )
    for r in results:
        print(
            f"{r.name:30} {r.rps:8.1f} {r.p50_ms:8.1f} {r.p90_ms:8.1f} {r.p99_ms:8.1f} "
            f"{r.max_ms:8.1f} {r.errors:6d} {r.load_before:5.2f}"
        )
    print("(load: the machine's 1-minute load average as the phase began; 2 cores)")
    p99 = "met" if create.p99_ms < 100 else "MISSED"
    if opts.rate:  # every app keeps up with a paced load: only latency is comparable
        print(f"\ntarget: create p99 < 100 ms at {opts.rate:g} req/s ({p99})")
        return
    print(f"\nCareLoop create throughput = {ratio:.0%} of the bare bolt app (its faster run)")
    for name, (share, p99_ratio, base) in ratios.items():
        met = "met" if share >= 0.5 and p99_ratio <= 1.5 else "MISSED"
        print(
            f"CareLoop {name} throughput = {share:.0%} of the bare one-UPDATE "
            f"{base.name.split()[1]} just before it; p99 ratio {p99_ratio:.2f}x  "
            f"[target >= 50%, <= 1.5x: {met}]"
        )
    print(
        f"target: create p99 < 100 ms ({p99}), "
        f"throughput >= 50% of bare ({'met' if ratio >= 0.5 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
