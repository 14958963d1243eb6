"""Serving: HTTP mode on gunicorn (threaded workers, each running its own background work)
and Socket Mode for hospitals that cannot expose a public URL (with an optional health
endpoint on HEALTH_PORT, `bot/health.py`). Both stop cleanly on SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.app import build_app, build_schedules, build_services, build_wsgi
from bot.domain.catalogue import Catalogue
from bot.domain.catalogue_load import load_catalogue
from bot.domain.clock import SystemClock
from bot.health import HealthServer, start_health_server
from bot.runtime import Runtime
from bot.settings import Settings
from storage import repo
from storage.db import create_db_engine, migrate, ping

log = logging.getLogger("careloop.server")


def prepare_database(settings: Settings, catalogue: Catalogue | None = None) -> None:
    """Bring the database to the current schema before any worker starts; with a
    catalogue, also refuse to start while it lacks a service key still in use
    (`check_services_in_use`)."""
    engine = create_db_engine(settings.database_url)
    try:
        migrate(engine)
        if catalogue is not None:
            check_services_in_use(settings, catalogue, engine)
    finally:
        engine.dispose()


# How many references of each orphaned service the start-up refusal names.
ORPHAN_SAMPLE = 5


def check_services_in_use(settings: Settings, catalogue: Catalogue, engine: Engine) -> None:
    """Refuse to start (SystemExit, one line) while unfinished consults belong to a service
    key the catalogue no longer has: the sweep could not nudge them, and nobody could act
    on them. Runs after migration, before serving, in both modes."""
    with Session(engine) as s:
        orphans = repo.unfinished_outside(
            session=s, services=[svc.key for svc in catalogue.services], sample=ORPHAN_SAMPLE
        )
    if orphans:
        raise SystemExit(orphan_message(str(settings.consult_config), orphans))


def orphan_message(path: str, orphans: dict[str, tuple[int, list[str]]]) -> str:
    """The one start-up line naming each missing service key, its count and some references
    (references only: never patient or question text)."""
    parts = []
    for key, (count, refs) in orphans.items():
        shown = ", ".join(" ".join(ref.split()) for ref in refs)
        more = ", …" if count > len(refs) else ""
        noun = "consult" if count == 1 else "consults"
        parts.append(f"{key!r} ({count} unfinished {noun}: {shown}{more})")
    keys = "service keys" if len(orphans) > 1 else "a service key"
    return (
        f"configuration error: {path}: unfinished consults belong to {keys} no "
        f"longer in the catalogue: {'; '.join(parts)}. Put each service back under "
        "[[services]] with the same key (its name, channel, on_call and the rest may "
        "change) and keep it until those consults are closed or cancelled."
    )


class CareLoopServer(BaseApplication):
    """gunicorn, embedded: `python -m bot serve` needs no separate gunicorn command line."""

    def __init__(self, settings: Settings, *, port: int, host: str) -> None:
        self.settings = settings
        self.bind = f"{host}:{port}"
        super().__init__()

    def load_config(self) -> None:
        assert self.cfg is not None
        settings = self.settings
        config: dict[str, Any] = {
            "bind": self.bind,
            "workers": settings.workers(),
            "worker_class": "gthread",
            "threads": settings.web_threads,
            "timeout": 30,
            "graceful_timeout": 20,
            # One request per connection, and a worker takes a connection only when one of
            # its threads is free: waiting requests queue in the kernel's listen backlog,
            # shared by every worker, so none waits behind a busy worker while another is
            # idle (kept-alive connections stick to the worker that accepted them; at a
            # peak that doubled the p99). A TLS proxy in front opens a connection per
            # request by default anyway.
            "keepalive": 0,
            "worker_connections": settings.web_threads,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": settings.log_level.lower(),
            "proc_name": "careloop",
            "post_worker_init": _start_worker,
            "worker_exit": _stop_worker,
            "limit_request_line": 8190,
        }
        # gunicorn >= 25.1 opens a control socket at one fixed per-user path; an embedded
        # server has no use for it, and a second bot on the same host would take it over.
        if "control_socket_disable" in self.cfg.settings:
            config["control_socket_disable"] = True
        for key, value in config.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in each worker after fork: every process has its own engine and threads.
        services = build_services(self.settings, run_migrations=False)
        wsgi = build_wsgi(services)
        wsgi.runtime = Runtime(services)  # type: ignore[attr-defined]
        return wsgi


def _start_worker(worker: Any) -> None:
    runtime = getattr(worker.wsgi, "runtime", None)
    if runtime is not None:
        runtime.start()


def _stop_worker(server: Any, worker: Any) -> None:
    runtime = getattr(getattr(worker, "wsgi", None), "runtime", None)
    if runtime is not None:
        runtime.stop()
        runtime.services.engine.dispose()


def serve(settings: Settings, *, port: int | None = None) -> None:
    """HTTP mode: Slack requests at POST /slack/events, health at GET /healthz."""
    if not settings.slack_signing_secret:
        raise SystemExit(
            "SLACK_SIGNING_SECRET is required for HTTP mode (or set SLACK_APP_TOKEN "
            "and use `python -m bot socket`)."
        )
    catalogue = load_catalogue(settings.consult_config)  # fail before forking, in one line
    build_schedules(settings, catalogue, SystemClock(), None)  # a broken schedule too
    prepare_database(settings, catalogue)
    bind_port = settings.port if port is None else port  # --port 0: any free port
    log.info("serving HTTP", extra={"path": f"{settings.host}:{bind_port}"})
    CareLoopServer(settings, port=bind_port, host=settings.host).run()


def socket(settings: Settings) -> None:
    """Socket Mode: no public URL; Slack connects out over a websocket."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler  # noqa: PLC0415

    if not settings.slack_app_token:
        raise SystemExit("SLACK_APP_TOKEN (xapp-…) is required for Socket Mode.")
    services = build_services(settings)
    try:
        check_services_in_use(settings, services.catalogue, services.engine)
    except BaseException:
        services.engine.dispose()
        raise
    app = build_app(services, socket_mode=True)
    runtime = Runtime(services)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    handler = SocketModeHandler(app, settings.slack_app_token)
    handler.client.web_client.base_url = settings.slack_api_url
    health: HealthServer | None = None
    try:
        # Up before connecting: a probe during start-up hears "slack connection down".
        health = _start_health(settings, services.engine, handler.client.is_connected)
        _connect(handler, settings)
        runtime.start()  # only once connected: a refused token starts no background work
        if handler.client.is_connected():
            log.info("connected in Socket Mode")
        else:  # slack_sdk logs a failed websocket handshake and retries; it does not raise
            log.warning("Socket Mode websocket not connected yet; retrying")
        stop.wait()
    finally:
        if health is not None:
            health.stop()
        handler.close()
        runtime.stop()
        services.engine.dispose()


def _start_health(
    settings: Settings, engine: Engine, connected: Callable[[], bool]
) -> HealthServer | None:
    """Socket Mode's `GET /healthz` on HOST:HEALTH_PORT (None when HEALTH_PORT is unset):
    503 while the Socket Mode connection is down or the database does not answer."""
    if settings.health_port is None:
        return None

    def problems() -> list[str]:
        found = []
        if not ping(engine):
            found.append("database unreachable")
        if not connected():
            found.append("slack connection down")
        return found

    try:
        server = start_health_server(settings.host, settings.health_port, problems)
    except OSError as exc:
        detail = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
        raise SystemExit(
            f"HEALTH_PORT: cannot listen on {settings.host}:{settings.health_port}: {detail}"
        ) from None
    log.info("health checks at /healthz", extra={"path": f"{settings.host}:{server.port}"})
    return server


def _connect(handler: Any, settings: Settings) -> None:
    """Open the Socket Mode connection, or stop start-up with one line saying why."""
    try:
        handler.connect()
    except SlackApiError as exc:
        data = exc.response.data if isinstance(exc.response.data, dict) else {}
        error = data.get("error") or f"HTTP {exc.response.status_code}"
        raise SystemExit(
            f"Socket Mode: Slack refused apps.connections.open ({error}); SLACK_APP_TOKEN must "
            "be an app-level token (xapp-…) with the connections:write scope."
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure to connect ends start-up cleanly
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise SystemExit(
            f"Socket Mode: could not connect to Slack at {settings.slack_api_url}: {detail}"
        ) from None
