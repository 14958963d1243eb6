"""Command line: `python -m bot [serve|socket|migrate|report|purge|demo]`.

Plain `python -m bot` picks Socket Mode when SLACK_APP_TOKEN is set, else HTTP mode."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bot.domain.catalogue_load import CatalogueError
from bot.logs import setup_logging
from bot.settings import Settings


def _settings() -> Settings:
    try:
        return Settings()  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SystemExit(f"configuration error: {problems}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="HTTP mode (gunicorn) at POST /slack/events")
    serve.add_argument("--port", type=int, default=None, help="port (default: $PORT or 3000)")
    sub.add_parser("socket", help="Socket Mode (needs SLACK_APP_TOKEN)")
    sub.add_parser("migrate", help="bring the database to the current schema and exit")
    report = sub.add_parser("report", help="response-time figures for the quality office")
    report.add_argument("--since", default="30d", help="period, e.g. 7d, 30d, 90d (default 30d)")
    report.add_argument("--service", default=None, help="one service key")
    report.add_argument("--format", choices=("json", "csv", "table"), default="table")
    purge = sub.add_parser("purge", help="remove patient data from old closed consults")
    purge.add_argument("--older-than", required=True, help="e.g. 365d")
    demo = sub.add_parser("demo", help="play a clinical day against a local Slack stand-in")
    demo.add_argument("--speed", type=float, default=1.0, help="compress time further (>1)")
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.add_argument("--keep", action="store_true", help="keep the demo database")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    command = args.command
    try:
        if command == "demo":
            from bot.dev.demo import run_demo  # noqa: PLC0415

            return run_demo(speed=args.speed, as_json=args.json, keep=args.keep)
        settings = _settings()
        setup_logging(settings.log_level, settings.log_format)
        if command is None:  # SLACK_APP_TOKEN may come from the environment or from .env
            command = "socket" if settings.slack_app_token else "serve"
        if command == "serve":
            from bot.multiproc import shared_metrics_dir  # noqa: PLC0415

            with shared_metrics_dir():  # before prometheus_client is imported
                from bot.server import serve  # noqa: PLC0415

                serve(settings, port=getattr(args, "port", None))
        elif command == "socket":
            from bot.server import socket  # noqa: PLC0415

            socket(settings)
        elif command == "migrate":
            from bot.server import prepare_database  # noqa: PLC0415

            prepare_database(settings)
            print("database schema is current")
        elif command == "report":
            from bot.reports.cli import report_cli  # noqa: PLC0415

            return report_cli(settings, since=args.since, service=args.service, fmt=args.format)
        elif command == "purge":
            from bot.flows.retention import purge_cli  # noqa: PLC0415

            return purge_cli(settings, older_than=args.older_than)
    except CatalogueError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        # Unreachable or refusing database at start-up: one line, not a driver traceback.
        print(f"database error: {_db_problem(exc)}", file=sys.stderr)
        return 3
    return 0


def _db_problem(exc: OperationalError) -> str:
    detail = " ".join(str(exc.orig or exc).split())[:300]
    try:
        url = make_url(os.environ.get("DATABASE_URL", "")).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL we cannot parse is simply not shown
        url = ""
    return f"{detail} (DATABASE_URL {url})" if url else detail


if __name__ == "__main__":
    sys.exit(main())
