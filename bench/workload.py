"""Shared parts of bench/replica_bench.py and bench/fault_bench.py: a catalogue with many
services (one channel each, so Slack's per-channel pace of one post a second does not make
a backlog of thousands of cards take an hour to drain), the bulk load of open consults, the
peak memory of a gunicorn process tree read from /proc, and the after-the-fact check of
what reached the fake Slack: every outbox message delivered, none twice, each consult's
card before its later messages and each place's messages in order.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bot.dev.fakeslack import FakeSlack
from bot.domain.vocabulary import INFORMATIONAL

ON_CALL = "UCARDON"
REF = re.compile(r"\b([A-Z]{1,6}-\d+)\b")


@dataclass(frozen=True)
class Service:
    key: str
    prefix: str
    channel: str


def services(n: int) -> list[Service]:
    """`n` services: keys svcaa, svcab, …, prefixes SAA, SAB, …, channels CSAA, CSAB, …"""
    out = []
    for i in range(n):
        letters = chr(65 + i // 26) + chr(65 + i % 26)
        out.append(Service(f"svc{letters.lower()}", f"S{letters}", f"CS{letters}"))
    return out


def write_catalogue(path: Path, wide: list[Service], *, sweep_interval: str = "1m") -> Path:
    """A catalogue of the given services, all with UCARDON on call, default SLA clocks
    (15 minutes to acknowledge: nothing is nudged during a bench)."""
    lines = [
        f'sweep_interval = "{sweep_interval}"',
        "storm_threshold = 50",
        'post_interval = "1s"',
        'admins = ["UADMIN"]',
        "",
        "[digest]",
        "enabled = false",
    ]
    for s in wide:
        lines += [
            "",
            "[[services]]",
            f'key = "{s.key}"',
            f'name = "Service {s.prefix}"',
            f'prefix = "{s.prefix}"',
            f'channel = "{s.channel}"',
            f'on_call = "{ON_CALL}"',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


# n open consults spread over the services, none due for a month, no card posted.
_BULK = """
INSERT INTO consults (ref, service, seq, urgency, patient, patient_key, question, requester,
    on_call, status, channel, created_at, acknowledge_due_at, answer_due_at, next_nudge_at,
    nudge_phase, waiting_seconds, nudge_level, nudges_at_level, nudge_count,
    escalation_count, reopened_count, handoff_count, version, intake)
SELECT 'BULK-' || i, s.key, i, 'routine', 'BULK ' || i, 'bulk ' || i, 'stored for the bench?',
    'UBULK' || (i % 500), :on_call, 'open', s.channel,
    CAST(:now AS timestamptz) - make_interval(secs => i),
    CAST(:now AS timestamptz) + interval '30 days', CAST(:now AS timestamptz) + interval '30 days',
    CAST(:now AS timestamptz) + interval '30 days', 'acknowledge', 0, 0, 0, 0, 0, 0, 0, 1, '{}'
FROM generate_series(1, CAST(:n AS bigint)) AS i
JOIN (SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:channels AS text[]))
      WITH ORDINALITY AS t(key, channel, k)) AS s
  ON s.k = (i % CAST(:services AS bigint)) + 1
"""


def bulk_load(engine: Engine, n: int, wide: list[Service]) -> float:
    """Store `n` open consults in one statement; seconds it took."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text(_BULK),
            {
                "n": n,
                "now": datetime.now(UTC),
                "on_call": ON_CALL,
                "keys": [s.key for s in wide],
                "channels": [s.channel for s in wide],
                "services": len(wide),
            },
        )
        conn.execute(text("ANALYZE consults"))
    return time.perf_counter() - started


def created(engine: Engine, after: int = 0) -> list[tuple[int, str, str]]:
    """(id, ref, channel) of consults opened through Slack (not bulk-loaded) after id `after`."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, ref, channel FROM consults WHERE origin_key IS NOT NULL AND id > :a "
                "ORDER BY id"
            ),
            {"a": after},
        ).all()
    return [(int(i), str(r), str(c)) for i, r, c in rows]


# ------------------------------------------------------------------------- memory
def _tree(root: int) -> list[int]:
    """`root` and every process whose parent chain leads to it (gunicorn's master and workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in tree and pid not in tree}
        tree |= more
        grew = bool(more)
    return sorted(tree)


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler:
    """Samples the RSS and PSS of a process tree every `interval` seconds on a thread; at
    the end, the sum of each process's own peak (VmHWM)."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self.root = root
        self.interval = interval
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self.processes = 0
        self._hwm: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        pids = _tree(self.root)
        self.processes = max(self.processes, len(pids))
        self.peak_rss_kb = max(self.peak_rss_kb, sum(_status_kb(p, "VmRSS") for p in pids))
        self.peak_pss_kb = max(self.peak_pss_kb, sum(_pss_kb(p) for p in pids))
        for pid in pids:
            self._hwm[pid] = max(self._hwm.get(pid, 0), _status_kb(pid, "VmHWM"))

    def describe(self) -> str:
        """The peaks, in MiB."""
        return (
            f"peak RSS {self.peak_rss_kb / 1024:.0f} MiB (summed), sum of VmHWM "
            f"{self.hwm_kb / 1024:.0f} MiB, peak PSS {self.peak_pss_kb / 1024:.0f} MiB"
        )

    @property
    def hwm_kb(self) -> int:
        """Sum over the processes of each one's peak resident set (VmHWM)."""
        return sum(self._hwm.values())


# ------------------------------------------------------------------------- delivery
@dataclass
class Delivery:
    """What the fake Slack received of the outbox, checked against the outbox rows."""

    messages: int = 0
    unsent: dict[str, int] = field(default_factory=dict)  # status -> count, not sent
    doubled: list[int] = field(default_factory=list)  # outbox ids posted more than once
    cards: Counter[int] = field(default_factory=Counter)  # consult id -> cards landed
    out_of_order: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # kind: last error, of failed messages

    def problems(self, consults: list[int]) -> list[str]:
        """Every way this delivery falls short, for the given consults (empty: all good)."""
        found = []
        if self.unsent:
            found.append(f"not delivered: {self.unsent} {Counter(self.failed).most_common(3)}")
        if self.doubled:
            found.append(f"posted twice: outbox ids {self.doubled[:10]}")
        missing = [c for c in consults if self.cards[c] == 0]
        twice = [c for c in consults if self.cards[c] > 1]
        if missing:
            found.append(f"{len(missing)} consults without a card, e.g. {missing[:5]}")
        if twice:
            found.append(f"{len(twice)} consults with two cards, e.g. {twice[:5]}")
        if self.out_of_order:
            found.append(f"out of order: {self.out_of_order[:5]}")
        return found


_POSTING = ("post", "thread", "dm", "channel")
_LATER_OK = {t.value for t in INFORMATIONAL}  # may be overtaken in its thread by design


def outbox_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id, kind, consult_id, status, payload, last_error FROM outbox "
                    "ORDER BY id"
                )
            ).all()
        )


def delivery(engine: Engine, slack: FakeSlack) -> Delivery:
    """Compare the outbox with the successful posts the fake Slack recorded."""
    rows = outbox_rows(engine)
    with slack._lock:  # noqa: SLF001 - a consistent copy while the server runs
        calls = list(slack.calls)
    landed: list[int] = []
    for call in calls:
        if call.method == "chat.postMessage" and call.status == 200 and call.ok:
            meta = (call.args.get("metadata") or {}).get("event_payload") or {}
            if "outbox_id" in meta:
                landed.append(int(meta["outbox_id"]))
    result = Delivery(messages=len(rows))
    result.unsent = dict(Counter(r.status for r in rows if r.status not in ("sent", "superseded")))
    result.failed = [f"{r.kind}: {r.last_error}" for r in rows if r.status == "failed"]
    times = Counter(landed)
    result.doubled = sorted(i for i, n in times.items() if n > 1)
    position = {i: n for n, i in reversed(list(enumerate(landed)))}
    lanes: dict[tuple[int, str], list[int]] = defaultdict(list)
    card_at: dict[int, int] = {}
    for r in rows:
        if r.kind not in _POSTING or r.consult_id is None or r.id not in position:
            continue
        if r.kind == "post":
            result.cards[r.consult_id] += times[r.id]
            card_at[r.consult_id] = position[r.id]
            continue
        payload = r.payload or {}
        if r.kind == "dm":
            lanes[(r.consult_id, "dm:" + str(payload.get("user")))].append(r.id)
        elif payload.get("template") not in _LATER_OK:
            lanes[(r.consult_id, "channel")].append(r.id)
    for (consult, lane), ids in lanes.items():
        order = [position[i] for i in ids]
        if order != sorted(order):
            result.out_of_order.append(f"consult {consult} {lane}: {ids}")
        if consult in card_at and min(order) < card_at[consult]:
            result.out_of_order.append(f"consult {consult}: {lane} before its card")
    return result


def waiting(engine: Engine) -> int:
    """Outbox messages not delivered yet (pending or being sent)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')")
            ).scalar_one()
        )


def wait_delivered(engine: Engine, timeout: float, label: str = "outbox") -> float | None:
    """Seconds until no outbox message is pending or being sent (None after `timeout`);
    prints how many were waiting and the rate they went out at."""
    started = time.monotonic()
    left = first = waiting(engine)
    while left and time.monotonic() - started < timeout:
        time.sleep(0.5)
        left = waiting(engine)
    seconds = time.monotonic() - started
    rate = (first - left) / seconds if seconds > 0 else 0.0
    state = "empty" if not left else f"still {left} waiting"
    print(f"{label}: {first} messages waiting, {state} after {seconds:.1f} s ({rate:.1f}/s)")
    return None if left else seconds
