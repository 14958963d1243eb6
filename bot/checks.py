"""Checks an operator runs before going live (`python -m bot check`) and that `serve` and
`socket` repeat at start-up: the environment, the catalogue, the database (reachable, schema
current) and the bot token (`auth.test`, and its scopes against `bot.slack.scopes`).

`check` prints one line per check (`ok` or `FAIL`, what, and what to do) and exits 0 when
all pass, 2 otherwise. At start-up a refused token stops the process (ConfigError, exit 2);
a Slack that cannot be reached is only a warning (the outbox keeps every message until it
can deliver), and so are missing scopes (`check` names them)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bot.domain.catalogue_load import CatalogueError, load_catalogue
from bot.settings import ConfigError, Settings, load_settings
from bot.slack.scopes import BOT_SCOPES, missing_scopes
from storage.db import create_db_engine, known_revisions, normalize_url, schema_revisions

log = logging.getLogger("careloop.checks")

# How long the start-up and `check` auth.test may take (no retries: Slack down is a warning).
TOKEN_CHECK_TIMEOUT = 5
# Slack errors that say "try later", not "this token is wrong".
_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable"}
FIX_TOKEN = (
    "copy the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page into "
    "SLACK_BOT_TOKEN (reinstall the app to the workspace if the token was revoked)"
)


@dataclass(frozen=True)
class TokenCheck:
    """What `auth.test` said: `state` is ok, refused or unreachable; `detail` one line;
    `missing` the needed scopes the token lacks (None when Slack did not list them)."""

    state: str
    detail: str
    missing: list[str] | None = None


def check_token(settings: Settings) -> TokenCheck:
    """Call `auth.test` once with the bot token and compare the granted scopes."""
    client = WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=TOKEN_CHECK_TIMEOUT,
        retry_handlers=[],
    )
    try:
        resp = client.auth_test()
    except SlackApiError as exc:
        data = exc.response.data if isinstance(exc.response.data, dict) else {}
        error = str(data.get("error") or f"HTTP {exc.response.status_code}")
        if exc.response.status_code == 200 and error not in _TRANSIENT:
            return TokenCheck("refused", f"Slack refused SLACK_BOT_TOKEN ({error}): {FIX_TOKEN}")
        return TokenCheck("unreachable", f"Slack answered auth.test with {error}")
    except Exception as exc:  # noqa: BLE001 - any transport failure: Slack not reachable
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        return TokenCheck("unreachable", f"Slack at {settings.slack_api_url}: {detail}")
    headers = {key.lower(): value for key, value in (resp.headers or {}).items()}
    scopes = headers.get("x-oauth-scopes")
    who = f"workspace {resp.get('team')!r}, bot user {resp.get('user_id')}"
    return TokenCheck("ok", who, missing_scopes(scopes if isinstance(scopes, str) else None))


def scopes_line(missing: list[str]) -> str:
    """One line naming the missing scopes and what to do."""
    return (
        f"the bot token lacks {', '.join(missing)}: add them under OAuth & Permissions "
        "(manifest.yml requests them all) and reinstall the app"
    )


def token_at_start_up(settings: Settings) -> None:
    """`serve` and `socket` before anything starts: ConfigError on a refused token; a
    warning when Slack cannot be reached or scopes are missing."""
    result = check_token(settings)
    if result.state == "refused":
        raise ConfigError(result.detail)
    if result.state == "unreachable":
        log.warning(
            "Slack not reachable at start-up; messages wait in the outbox",
            extra={"error": result.detail},
        )
    elif result.missing:
        log.warning("bot token lacks scopes", extra={"error": scopes_line(result.missing)})
    else:
        log.info("bot token accepted by Slack")


def db_problem(exc: OperationalError, url: str) -> str:
    """One line for a database that cannot be reached (the password never shown)."""
    detail = " ".join(str(exc.orig or exc).split())[:300]
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL we cannot parse is simply not shown
        shown = ""
    return f"{detail} (DATABASE_URL {shown})" if shown else detail


def newer_schema(revision: str) -> str:
    """What to do when the database is at a revision these migrations do not know."""
    return (
        f"schema at revision {revision}, which this version does not know: a newer CareLoop "
        "migrated it; run that version, or restore the backup taken before the upgrade "
        "(docs/admin.md, Upgrade and roll back)"
    )


def check_command(*, slack: bool, say: Callable[[str], None] = print) -> int:
    """`python -m bot check [--no-slack]`: one line per check; 0 if all pass, else 2."""
    failed = False

    def report(ok: bool, what: str) -> None:
        nonlocal failed
        failed = failed or not ok
        say(f"{'ok  ' if ok else 'FAIL'}  {what}")

    try:
        settings = load_settings()
        if slack:
            settings.require_slack("SLACK_BOT_TOKEN")
    except ConfigError as exc:
        report(False, f"environment: {exc}")
        return 2
    report(True, "environment")
    for ok, what in (_catalogue(settings), _database(settings)):
        report(ok, what)
    if slack:
        for ok, what in _slack(settings):
            report(ok, what)
    return 2 if failed else 0


def _catalogue(settings: Settings) -> tuple[bool, str]:
    try:
        catalogue = load_catalogue(settings.consult_config)
    except CatalogueError as exc:
        return False, f"catalogue: {exc}"
    return True, f"catalogue: {settings.consult_config}, {len(catalogue.services)} services"


def _database(settings: Settings) -> tuple[bool, str]:
    path = make_url(normalize_url(settings.database_url)).database
    if settings.is_sqlite and path and path != ":memory:" and not Path(path).exists():
        return False, f"database: {path} does not exist yet: run `python -m bot migrate`"
    engine = create_db_engine(settings.database_url, pool_size=1)
    try:
        current, heads = schema_revisions(engine)
    except OperationalError as exc:
        return False, f"database: cannot be reached: {db_problem(exc, settings.database_url)}"
    finally:
        engine.dispose()
    if current != heads and not set(current) <= set(known_revisions(settings.database_url)):
        return False, f"database: {newer_schema(', '.join(current))}"
    if current != heads:
        at = ", ".join(current) or "empty"
        return False, (
            f"database: schema at {at}, this version needs {', '.join(heads)}: "
            "run `python -m bot migrate` (serve and socket also migrate at start)"
        )
    return True, f"database: reachable, schema current ({', '.join(heads)})"


def _slack(settings: Settings) -> list[tuple[bool, str]]:
    result = check_token(settings)
    if result.state != "ok":
        return [(False, f"slack token: {result.detail}")]
    lines = [(True, f"slack token: {result.detail}")]
    if result.missing is None:
        lines.append((False, "slack scopes: Slack did not list the token's scopes"))
    elif result.missing:
        lines.append((False, f"slack scopes: {scopes_line(result.missing)}"))
    else:
        lines.append((True, f"slack scopes: all {len(BOT_SCOPES)} granted"))
    return lines
