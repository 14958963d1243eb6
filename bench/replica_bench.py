"""Memory and replicas (issue 15, target 7), on PostgreSQL.

With 100,000 open consults stored (one bulk INSERT), one `python -m bot serve` (2 gunicorn
workers × 8 threads, as bench/create_bench.py) gets the create load and then the
Acknowledge load of create_bench (50 signed-request clients), while its process tree's
memory is sampled from /proc: peak of the summed RSS and PSS, and the sum of each
process's own peak (VmHWM). Then a second `serve` on the same database (another port)
joins, and the same load is split between the two (half the clients each); then the first
runs alone again. Prints the throughput of each process and of the pair against one
process (its faster run). Then, with the outbox drained: each consult's card posted once,
each outbox message (direct messages included) delivered once, reference numbers unique,
one consult per answered create, no consult acknowledged twice — also when the same
press (a Slack retry) and a second press of the same button reach both processes at once.

    .venv/bin/python bench/replica_bench.py [--stored 100000] [--requests 1000]
        [--acks 500] [--concurrency 50] [--services 60] [--memory-only] [--quick]

`--quick`: 2,000 stored, 100 requests, 10 clients (a smoke run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, text  # noqa: E402

from bench import workload  # noqa: E402
from bench.create_bench import KeepAliveSender, Result, load  # noqa: E402
from bot.dev.fakeslack import FakeSlack  # noqa: E402
from bot.dev.fakeslack.requests import Response, SlackSender  # noqa: E402
from bot.slack.ids import ActionId  # noqa: E402
from storage.db import create_db_engine, migrate  # noqa: E402
from tests.procs import SECRET, BotProcess, Procs, bot_env, fresh_postgres  # noqa: E402


def creates(sender: SlackSender, wide: list[workload.Service]) -> Callable[[int], Response]:
    def send(n: int) -> Response:
        service = wide[n % len(wide)]
        return sender.command(
            f"{service.key} stat MRN {n}: chest pain, troponin rising?", user=f"UREQ{n % 200:03d}"
        )

    return send


def presses(sender: SlackSender, targets: list[tuple[int, str, str]]) -> Callable[[int], Response]:
    def send(n: int) -> Response:
        _, ref, channel = targets[n]
        return sender.block_action(
            ActionId.ACKNOWLEDGE, user=workload.ON_CALL, value=ref, channel=channel
        )

    return send


class Bench:
    """The database, the fake Slack and the running processes of one run."""

    def __init__(self, opts: argparse.Namespace, procs: Procs, slack: FakeSlack, url: str):
        self.opts, self.procs, self.slack = opts, procs, slack
        self.wide = workload.services(opts.services)
        catalogue = workload.write_catalogue(procs.workdir / "consult.toml", self.wide)
        self.env = bot_env(
            url, slack.url, catalogue, WEB_CONCURRENCY=str(opts.workers), WEB_THREADS=opts.threads
        )
        self.engine: Engine = create_db_engine(url, pool_size=2)
        self.next_n = 0
        self.last_id = 0
        self.errors = 0

    def serve(self, name: str) -> BotProcess:
        proc = self.procs.serve(self.env, name=name)
        proc.wait_healthy(60)
        return proc

    def numbers(self, count: int) -> int:
        first, self.next_n = self.next_n, self.next_n + count
        return first

    def split(
        self, name: str, senders: list[SlackSender], make: Callable[..., Callable[[int], Response]]
    ) -> list[Result]:
        """`make(sender)` loads over `senders` at once, the requests and clients split evenly."""
        share = self.opts.requests // len(senders)
        clients = max(self.opts.concurrency // len(senders), 1)
        results: list[Result | None] = [None] * len(senders)

        def run(k: int) -> None:
            first = self.numbers(share)
            results[k] = load(
                f"{name} via {k + 1}",
                make(senders[k]),
                total=share,
                concurrency=clients,
                first=first,
            )

        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(senders))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = [r for r in results if r is not None]
        self.errors += sum(r.errors for r in done)
        return done

    def phase(self, label: str, senders: list[SlackSender]) -> tuple[list[Result], list[Result]]:
        """Creates over `senders`, then Acknowledge presses on consults they created."""
        made = self.split(f"{label} create", senders, lambda s: creates(s, self.wide))
        fresh = workload.created(self.engine, after=self.last_id)
        self.last_id = fresh[-1][0] if fresh else self.last_id
        targets = fresh[: self.opts.acks]
        share = len(targets) // len(senders)
        acked: list[Result | None] = [None] * len(senders)

        def run(k: int) -> None:
            mine = targets[k * share : (k + 1) * share]
            acked[k] = load(
                f"{label} acknowledge via {k + 1}",
                presses(senders[k], mine),
                total=len(mine),
                concurrency=max(self.opts.concurrency // len(senders), 1),
            )

        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(senders))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = [r for r in acked if r is not None]
        self.errors += sum(r.errors for r in done)
        return made, done

    def double_presses(self, senders: list[SlackSender], count: int) -> list[int]:
        """Open `count` consults, then press each one's Acknowledge four times at once: one
        press sent to both processes (as Slack retrying it would), and a second press (a
        double click) to both. Returns the consult ids."""
        first = self.numbers(count)
        send = creates(senders[0], self.wide)
        for n in range(first, first + count):
            send(n)
        fresh = workload.created(self.engine, after=self.last_id)
        self.last_id = fresh[-1][0] if fresh else self.last_id
        for _, ref, channel in fresh:
            trigger = f"retry-{ref}"
            calls = [
                (s, trig) for s in senders for trig in (trigger, None)
            ]  # same trigger twice (a retry), plus one fresh press per process
            threads = [
                threading.Thread(
                    target=s.block_action,
                    args=(ActionId.ACKNOWLEDGE,),
                    kwargs={
                        "user": workload.ON_CALL,
                        "value": ref,
                        "channel": channel,
                        "trigger_id": trig,
                    },
                )
                for s, trig in calls
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return [i for i, _, _ in fresh]


class HomeOpens:
    """The on-call (on call for every service, so every unacknowledged consult is theirs to
    see) opens App Home every `every` seconds while a phase runs."""

    def __init__(self, sender: SlackSender, slack: FakeSlack, every: float = 2.0) -> None:
        self.sender, self.slack, self.every = sender, slack, every
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HomeOpens:
        self._before = len(self.slack.calls_to("views.publish"))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            event = {"type": "app_home_opened", "user": workload.ON_CALL, "tab": "home"}
            self.sender.event(event | {"channel": "DHOME"})
            self.sent += 1

    def summary(self) -> str:
        published = len(self.slack.calls_to("views.publish")) - self._before
        return f"App Home of the on-call opened {self.sent} times meanwhile, published {published}"


def check(bench: Bench, answered: int, doubled_ids: list[int]) -> list[str]:
    """Every duplicated effect found after the outbox drained (empty: none)."""
    engine, problems = bench.engine, []
    drained = workload.wait_delivered(engine, bench.opts.drain, "outbox after the last request")
    if drained is None:
        problems.append(f"outbox not drained within {bench.opts.drain} s")
    consults = [i for i, _, _ in workload.created(engine)]
    with engine.connect() as conn:
        refs = conn.execute(
            text("SELECT count(*) - count(DISTINCT ref) FROM consults WHERE origin_key IS NOT NULL")
        ).scalar_one()
        twice = conn.execute(
            text(
                "SELECT consult_id FROM audit_events WHERE action = 'acknowledge' "
                "GROUP BY consult_id HAVING count(*) > 1"
            )
        ).all()
        acked = conn.execute(
            text(
                "SELECT count(DISTINCT consult_id) FROM audit_events WHERE action = 'acknowledge' "
                "AND consult_id = ANY(:ids)"
            ),
            {"ids": doubled_ids},
        ).scalar_one()
    if len(consults) != answered:
        problems.append(f"{answered} creates answered but {len(consults)} consults stored")
    if refs:
        problems.append(f"{refs} reference numbers used twice")
    if twice:
        problems.append(f"{len(twice)} consults acknowledged twice")
    if acked != len(doubled_ids):
        problems.append(f"only {acked} of {len(doubled_ids)} double-pressed consults acknowledged")
    problems += workload.delivery(engine, bench.slack).problems(consults)
    print(
        f"checked: {len(consults)} consults, {answered} creates answered, "
        f"{len(doubled_ids)} consults pressed 4 times across both processes"
    )
    return problems


def report(one: list[tuple[list[Result], list[Result]]], two: tuple[list[Result], list[Result]]):
    print(
        f"\n{'':34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>6} "
        f"{'load':>5}"
    )
    for made, acked in [one[0], two, one[1]]:
        for r in [*made, *acked]:
            print(
                f"{r.name:34} {r.rps:8.1f} {r.p50_ms:8.1f} {r.p99_ms:8.1f} {r.max_ms:8.1f} "
                f"{r.errors:6d} {r.load_before:5.2f}"
            )
    for what, index in (("create", 0), ("acknowledge", 1)):
        best = max(run[index][0].rps for run in one)
        pair = two[index]
        total = sum(r.requests for r in pair) / max(r.seconds for r in pair)
        each = ", ".join(f"{r.rps:.1f}" for r in pair)
        print(
            f"two processes, {what}: {total:.1f} req/s together ({each} each) = "
            f"{total / best:.2f}x one process ({best:.1f} req/s, its faster run)"
        )


def run(opts: argparse.Namespace, procs: Procs, slack: FakeSlack, url: str) -> int:
    bench = Bench(opts, procs, slack, url)
    migrate(bench.engine)
    loaded = workload.bulk_load(bench.engine, opts.stored, bench.wide)
    print(f"{opts.stored} open consults stored in {loaded:.1f} s across {opts.services} services")
    a = bench.serve("a")
    sender_a = KeepAliveSender(a.events_url, SECRET)
    warm = load("warm-up", creates(sender_a, bench.wide), total=opts.warmup, concurrency=10)
    bench.numbers(opts.warmup)
    bench.last_id = workload.created(bench.engine)[-1][0]
    with workload.MemorySampler(a.pid) as idle:
        pass
    whole = workload.MemorySampler(a.pid).__enter__()  # until its outbox is drained
    with workload.MemorySampler(a.pid) as memory, HomeOpens(sender_a, slack) as homes:
        first = bench.phase("one process (1)", [sender_a])
    print(
        f"memory of one serve ({memory.processes} processes: master + workers), "
        f"{opts.stored} open consults stored, under create + acknowledge load: "
        f"{memory.describe()} (idle after warm-up: {idle.describe()})"
    )
    if opts.memory_only:
        workload.wait_delivered(bench.engine, opts.drain, "outbox after the load")
        whole.__exit__()
        print(f"{homes.summary()}; memory until its outbox was drained: {whole.describe()}")
        a.terminate(60)
        return 0
    b = bench.serve("b")
    sender_b = KeepAliveSender(b.events_url, SECRET)
    load("warm-up b", creates(sender_b, bench.wide), total=opts.warmup // 2, concurrency=10)
    bench.numbers(opts.warmup // 2)
    bench.last_id = workload.created(bench.engine)[-1][0]
    pair = bench.phase("two processes", [sender_a, sender_b])
    doubled = bench.double_presses([sender_a, sender_b], opts.doubles)
    b.terminate(60)
    second = bench.phase("one process (2)", [sender_a])
    report([first, second], pair)
    answered = opts.warmup + opts.warmup // 2 + opts.doubles
    answered += sum(r.requests - r.errors for r in [*first[0], *pair[0], *second[0]])
    problems = check(bench, answered, doubled)
    whole.__exit__()
    print(f"{homes.summary()}; memory of the first serve all along: {whole.describe()}")
    a.terminate(60)
    bench.engine.dispose()
    assert warm.errors == 0, a.tail()
    if bench.errors:
        problems.append(f"{bench.errors} requests failed")
    for p in problems:
        print("PROBLEM:", p)
    print(f"no duplicated effect: {not problems}")
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--acks", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--doubles", type=int, default=50)
    parser.add_argument("--services", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", default="8")
    parser.add_argument("--drain", type=float, default=900.0, help="seconds to wait for Slack")
    parser.add_argument("--memory-only", action="store_true", help="stop after one process")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    opts = parser.parse_args()
    if opts.quick:
        opts.stored, opts.requests, opts.acks, opts.concurrency = 2_000, 100, 100, 10
        opts.warmup, opts.doubles = 20, 5
    with (
        fresh_postgres("careloop_bench_replica") as url,
        tempfile.TemporaryDirectory() as tmp,
        FakeSlack() as slack,
        Procs(Path(tmp)) as procs,
    ):
        code = run(opts, procs, slack, url)
    sys.exit(code)


if __name__ == "__main__":
    main()
