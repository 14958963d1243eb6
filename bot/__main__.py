"""Command line: `python -m bot [serve|socket|check|migrate|report|critical-log|purge|demo]`.

Plain `python -m bot` picks Socket Mode when SLACK_APP_TOKEN is set, else HTTP mode.
Exit codes: 0 done; 2 a configuration problem (environment, catalogue, command line,
database URL, a token Slack refuses, a database schema newer than this version), one line
naming the setting; 3 the database cannot be reached; 1 anything else."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from alembic.util.exc import CommandError
from sqlalchemy.exc import OperationalError

from bot.checks import check_command, db_problem, newer_schema
from bot.domain.catalogue_load import CatalogueError
from bot.logs import setup_logging
from bot.settings import ConfigError, Settings, load_settings


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit 2), without the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"command line: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bot", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="HTTP mode (gunicorn) at POST /slack/events")
    serve.add_argument("--port", type=int, default=None, help="port (default: $PORT or 3000)")
    sub.add_parser("socket", help="Socket Mode (needs SLACK_APP_TOKEN)")
    check = sub.add_parser("check", help="check settings, catalogue, database and token")
    check.add_argument("--no-slack", action="store_true", help="skip the token check")
    sub.add_parser("migrate", help="bring the database to the current schema and exit")
    report = sub.add_parser("report", help="response-time figures for the quality office")
    report.add_argument("--since", default="30d", help="period, e.g. 7d, 30d, 90d (default 30d)")
    report.add_argument("--service", default=None, help="one service key")
    report.add_argument("--format", choices=("json", "csv", "table"), default="table")
    report.add_argument(
        "--fill-days",
        action="store_true",
        help="first store the missing settled days the reports read (PostgreSQL)",
    )
    from bot.reports.critical_cli import HELP as CRITICAL_LOG_HELP  # noqa: PLC0415

    log = sub.add_parser("critical-log", help=CRITICAL_LOG_HELP, description=CRITICAL_LOG_HELP)
    log.add_argument("--since", default="30d", help="period, e.g. 7d, 30d, 90d (default 30d)")
    log.add_argument("--service", default=None, help="one service key")
    log.add_argument("--format", choices=("csv", "json"), default="csv")
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
    settings: Settings | None = None
    try:
        if args.command == "demo":
            from bot.dev.demo import run_demo  # noqa: PLC0415

            return run_demo(speed=args.speed, as_json=args.json, keep=args.keep)
        if args.command == "check":
            return check_command(slack=not args.no_slack)
        settings = load_settings()
        setup_logging(settings.log_level, settings.log_format)
        return _run(args, settings)
    except (ConfigError, CatalogueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        unknown = re.search(r"Can't locate revision identified by '([^']+)'", str(exc))
        if unknown is None:
            raise
        # The database was migrated by a newer version (a rollback without its restore).
        print(f"database error: {newer_schema(unknown.group(1))}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        # Unreachable or refusing database at start-up: one line, not a driver traceback.
        url = settings.database_url if settings is not None else ""
        print(f"database error: {db_problem(exc, url)}", file=sys.stderr)
        return 3


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one command with loaded settings; its exit code."""
    command = args.command
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

        return report_cli(
            settings, since=args.since, service=args.service, fmt=args.format, fill=args.fill_days
        )
    elif command == "critical-log":
        from bot.reports.critical_cli import critical_log_cli  # noqa: PLC0415

        return critical_log_cli(settings, since=args.since, service=args.service, fmt=args.format)
    elif command == "purge":
        from bot.flows.retention import purge_cli  # noqa: PLC0415

        return purge_cli(settings, older_than=args.older_than)
    return 0


if __name__ == "__main__":
    sys.exit(main())
