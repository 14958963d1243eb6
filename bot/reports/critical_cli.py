"""`python -m bot critical-log --since 30d [--service KEY] [--format csv|json]`: one row per
critical result, the record a quality office hands to a surveyor. It contains patient
references and read-backs: it runs on the server, with database access, for authorised
operators only."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any

from bot.domain.clock import SystemClock
from bot.reports.cli import database, read_scope
from bot.reports.critical import LOG_COLUMNS, critical_log
from bot.settings import Settings

HELP = (
    "one row per critical result (who sent what to whom, delivered, acknowledged, "
    "read-back). CONTAINS PATIENT REFERENCES: for authorised operators only"
)


def log_csv(rows: list[dict[str, Any]]) -> str:
    """CSV: lists joined with spaces, `delivered` as ``user=time`` pairs."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        for key in ("recipients", "forwarded_to", "escalated_to"):
            flat[key] = " ".join(row[key])
        flat["delivered"] = " ".join(f"{u}={t}" for u, t in row["delivered"].items())
        writer.writerow({k: "" if v is None else v for k, v in flat.items()})
    return out.getvalue()


def critical_log_cli(settings: Settings, *, since: str, service: str | None, fmt: str) -> int:
    """Print the log of critical results sent in the last `since`; 2 on bad arguments."""
    scope = read_scope(settings, since, service)
    if scope is None:
        return 2
    _, period, keys = scope
    now = SystemClock().now()
    with database(settings) as session:
        rows = critical_log(session, since=now - period, until=now, services=keys)
    sys.stdout.write(json.dumps(rows, indent=2) + "\n" if fmt == "json" else log_csv(rows))
    return 0
