"""Benchmark consult creation over HTTP (issue 2 §6): `python -m bot serve` against a bare
bolt app under the same load, same gunicorn settings, same machine, same run.

For each app: a fresh PostgreSQL database (127.0.0.1:5432, user postgres, dropped after),
the app started as a real process (WEB_CONCURRENCY workers, gthread), the fake Slack Web
API running in this process, and C client threads sending signed `/consult cards stat
MRN <n>: <question>` slash commands until N requests were answered (after a warm-up). A
client keeps its connection open when the server allows it; both apps are served like
`serve`, which closes each connection after its response. The bare app runs before and
after CareLoop; CareLoop is compared with its faster run. CareLoop then gets the same load
of Acknowledge button presses on the consults it created. Prints throughput and latency
percentiles; no asserts.

    .venv/bin/python bench/create_bench.py [--requests 5000] [--concurrency 50]
        [--acks 2000] [--workers 2] [--threads 8] [--rate 0] [--json] [--quick]

`--quick` (a smoke run well under a minute: 200 requests, 10 clients) prints the same lines.

`--rate R` paces the clients to R requests/s in total (open loop) instead of as fast as
they can (closed loop): latency at a given load rather than at saturation.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.dev.fakeslack import FakeSlack  # noqa: E402
from bot.dev.fakeslack.requests import Response, SlackSender  # noqa: E402
from bot.slack.ids import ActionId  # noqa: E402
from tests.procs import (  # noqa: E402
    ON_CALL,
    SECRET,
    BotProcess,
    Procs,
    bot_env,
    fresh_postgres,
    write_catalogue,
)


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


def start(procs: Procs, args: list[str], env: dict[str, str], name: str) -> BotProcess:
    proc = procs.start(args, env, name=name)
    proc.wait_healthy(60)
    return proc


def bench_careloop(opts: argparse.Namespace, procs: Procs, slack: FakeSlack) -> list[Result]:
    catalogue = write_catalogue(procs.workdir / "consult.toml")
    with fresh_postgres("careloop_bench") as url:
        env = bot_env(
            url, slack.url, catalogue, WEB_CONCURRENCY=str(opts.workers), WEB_THREADS=opts.threads
        )
        bot = start(procs, ["-m", "bot", "serve"], env, "careloop")
        sender = KeepAliveSender(bot.events_url, SECRET)
        warm = load("warm-up", create(sender), total=opts.warmup, concurrency=opts.concurrency)
        n = opts.warmup
        creates = load(
            "careloop create",
            create(sender),
            total=opts.requests,
            concurrency=opts.concurrency,
            first=n,
            rate=opts.rate,
        )
        acks = load(
            "careloop acknowledge",
            acknowledge(sender),
            total=min(opts.acks, opts.warmup + opts.requests),
            concurrency=opts.concurrency,
            first=1,
            rate=opts.rate,
        )
        bot.terminate(60)
        assert warm.errors == 0, bot.tail()
        return [creates, acks]


def bench_bare(
    opts: argparse.Namespace, procs: Procs, slack: FakeSlack, name: str
) -> tuple[Result, Result]:
    with fresh_postgres("careloop_bench_bare") as url:
        env = bot_env(
            url, slack.url, None, WEB_CONCURRENCY=str(opts.workers), WEB_THREADS=opts.threads
        )
        bare = start(procs, ["-m", "bench.bare_app"], env, "bare")
        sender = KeepAliveSender(bare.events_url, SECRET)
        load("warm-up", create(sender), total=opts.warmup, concurrency=opts.concurrency)
        result = load(
            name,
            create(sender),
            total=opts.requests,
            concurrency=opts.concurrency,
            first=opts.warmup,
            rate=opts.rate,
        )
        presses = load(
            name.replace("create", "press"),
            acknowledge(sender),
            total=min(opts.acks, opts.warmup + opts.requests),
            concurrency=opts.concurrency,
            first=1,
            rate=opts.rate,
        )
        bare.terminate(60)
        return result, presses


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
        "--quick", action="store_true", help="smoke run: 200 requests, 50 warm-up, 10 clients"
    )
    opts = parser.parse_args()
    if opts.quick:
        opts.requests, opts.warmup, opts.acks, opts.concurrency = 200, 50, 200, 10

    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as slack, Procs(Path(tmp)) as procs:
        # The bare app runs before and after CareLoop, and CareLoop is compared with the
        # faster of the two: a machine that got busier during the run must not flatter it.
        bare_before, presses_before = bench_bare(opts, procs, slack, "bare bolt create (1)")
        careloop, acks = bench_careloop(opts, procs, slack)
        bare_after, presses_after = bench_bare(opts, procs, slack, "bare bolt create (2)")
    results = [bare_before, presses_before, careloop, acks, bare_after, presses_after]
    bare = max(bare_before, bare_after, key=lambda r: r.rps)
    bare_press = max(presses_before, presses_after, key=lambda r: r.rps)
    ratio = careloop.rps / bare.rps
    press_ratio = acks.rps / bare_press.rps
    if opts.json:
        figures = {"ratio": ratio, "press_ratio": press_ratio}
        print(json.dumps({"results": [asdict(r) for r in results], **figures}, indent=2))
        return
    mode = f"{opts.rate:g} req/s open loop" if opts.rate else "closed loop"
    print(
        f"{opts.requests} requests, {opts.concurrency} clients ({mode}), "
        f"{opts.workers} workers x {opts.threads} threads, PostgreSQL\n"
    )
    print(
        f"{'':22} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'errors':>6} {'load':>5}"
    )
    for r in results:
        print(
            f"{r.name:22} {r.rps:8.1f} {r.p50_ms:8.1f} {r.p90_ms:8.1f} {r.p99_ms:8.1f} "
            f"{r.max_ms:8.1f} {r.errors:6d} {r.load_before:5.2f}"
        )
    print("(load: the machine's 1-minute load average as the phase began; 2 cores)")
    p99 = "met" if careloop.p99_ms < 100 else "MISSED"
    if opts.rate:  # every app keeps up with a paced load: only latency is comparable
        print(f"\ntarget: create p99 < 100 ms at {opts.rate:g} req/s ({p99})")
        return
    print(f"\nCareLoop create throughput = {ratio:.0%} of the bare bolt app (its faster run)")
    print(
        f"CareLoop acknowledge throughput = {press_ratio:.0%} of the bare app's one-UPDATE "
        f"button (its faster run); p99 {acks.p99_ms:.0f} ms vs {bare_press.p99_ms:.0f} ms "
        f"= {acks.p99_ms / bare_press.p99_ms:.2f}x"
    )
    print(
        f"target: create p99 < 100 ms ({p99}), "
        f"throughput >= 50% of bare ({'met' if ratio >= 0.5 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
