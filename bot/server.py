"""Serving: HTTP mode on gunicorn (threaded workers, each running its own background work,
gunicorn's log lines through CareLoop's logging, metrics shared between workers) and Socket
Mode for hospitals that cannot expose a public URL (with optional probes and metrics on
HEALTH_PORT, `bot/health.py`). Both stop cleanly on SIGTERM."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger
from prometheus_client import multiprocess
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot import metrics, probes
from bot.app import build_app, build_schedules, build_services, build_wsgi
from bot.checks import token_at_start_up
from bot.domain.catalogue import Catalogue
from bot.domain.catalogue_load import load_catalogue
from bot.domain.clock import SystemClock
from bot.health import Answer, HealthServer, start_health_server
from bot.runtime import Runtime
from bot.services import Services
from bot.settings import ConfigError, Settings
from storage import repo
from storage.db import create_db_engine, migrate

log = logging.getLogger("careloop.server")

TEXT, JSON = "text/plain; charset=utf-8", "application/json"


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
    """Refuse to start (ConfigError, one line) while unfinished consults belong to a service
    key the catalogue no longer has: the sweep could not nudge them, and nobody could act
    on them. Runs after migration, before serving, in both modes."""
    with Session(engine) as s:
        orphans = repo.unfinished_outside(
            session=s, services=[svc.key for svc in catalogue.services], sample=ORPHAN_SAMPLE
        )
    if orphans:
        raise ConfigError(orphan_message(str(settings.consult_config), orphans))


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
        f"{path}: unfinished consults belong to {keys} no "
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
            "accesslog": "-",  # one JSON line per Slack request, through CareLoop's logging
            "errorlog": "-",
            "logger_class": CareLoopGunicornLogger,
            "loglevel": settings.log_level.lower(),
            "proc_name": "careloop",
            "post_worker_init": _start_worker,
            "worker_exit": _stop_worker,
            "child_exit": _worker_gone,
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


# Paths an access line may name; anything else is logged as "other" (no free text in logs).
LOGGED_PATHS = {"/slack/events"}
# Polled every few seconds by orchestrators and Prometheus: not worth a line each.
QUIET_PATHS = {"/healthz", "/readyz", "/metrics"}


class CareLoopGunicornLogger(GunicornLogger):
    """gunicorn's error and access lines through CareLoop's root handler (JSON or text, with
    the PHI filter, `bot.logs`), instead of gunicorn's own plain-text handlers."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        path = environ.get("PATH_INFO", "")
        if path in QUIET_PATHS:
            return
        shown = path if path in LOGGED_PATHS else "other"
        method = str(environ.get("REQUEST_METHOD", ""))[:10]
        status = (
            getattr(resp, "status_code", None) or str(getattr(resp, "status", "")).split(" ")[0]
        )
        self.access_log.info(
            "%s %s %s",
            method,
            shown,
            status,
            extra={
                "path": shown,
                "status": status,
                "seconds": round(request_time.total_seconds(), 4),
            },
        )


def _worker_gone(server: Any, worker: Any) -> None:
    """A worker exited: its live gauges (the delivery-lock holder) leave the shared values."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


def _start_worker(worker: Any) -> None:
    runtime = getattr(worker.wsgi, "runtime", None)
    if runtime is not None:
        runtime.start()
    freeze_startup_objects()


def freeze_startup_objects() -> None:
    """Once a worker is built: collect its start-up garbage, then move every object left
    (modules, the app, SQLAlchemy's mappers, bolt's listeners: ~130k) out of the cyclic
    garbage collector's reach (`gc.freeze`). Nothing is freed or kept differently; a full
    collection no longer walks them: under `bench/create_bench.py` a worker ran one or two
    full collections of 80-140 ms, the GIL held (each of its threads stalled), and 1-10 ms
    ones after this."""
    gc.collect()
    gc.freeze()


def _stop_worker(server: Any, worker: Any) -> None:
    runtime = getattr(getattr(worker, "wsgi", None), "runtime", None)
    if runtime is not None:
        runtime.stop()
        runtime.services.engine.dispose()


def serve(settings: Settings, *, port: int | None = None) -> None:
    """HTTP mode: Slack requests at POST /slack/events, health at GET /healthz."""
    settings.require_slack("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    catalogue = load_catalogue(settings.consult_config)  # fail before forking, in one line
    build_schedules(settings, catalogue, SystemClock(), None)  # a broken schedule too
    prepare_database(settings, catalogue)
    token_at_start_up(settings)
    bind_port = settings.port if port is None else port  # --port 0: any free port
    log.info("serving HTTP", extra={"path": f"{settings.host}:{bind_port}"})
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # gunicorn's master serves nothing and holds no lock: the live gauges it made at
        # import are no process's values (each worker makes its own after the fork).
        multiprocess.mark_process_dead(os.getpid())
    CareLoopServer(settings, port=bind_port, host=settings.host).run()


def socket(settings: Settings) -> None:
    """Socket Mode: no public URL; Slack connects out over a websocket."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler  # noqa: PLC0415

    settings.require_slack("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")
    services = build_services(settings)
    try:
        check_services_in_use(settings, services.catalogue, services.engine)
        token_at_start_up(settings)
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
        health = _start_health(services, handler.client.is_connected)
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


def _start_health(services: Services, connected: Callable[[], bool]) -> HealthServer | None:
    """Socket Mode's probes on HOST:HEALTH_PORT (None when HEALTH_PORT is unset): `/healthz`
    (the process serves), `/readyz` (as in HTTP mode, and 503 while the Socket Mode
    connection is down) and `/metrics`."""
    settings = services.settings
    if settings.health_port is None:
        return None

    def ready() -> Answer:
        reason = probes.readiness(
            engine=services.engine,
            sessions=services.sessions,
            clock=services.clock,
            max_age=settings.ready_outbox_max_age,
        )
        if reason is None and not connected():
            reason = "slack connection down"
        return (200 if reason is None else 503), probes.ready_body(reason), JSON

    def scrape() -> Answer:
        gauges = probes.DatabaseGauges(sessions=services.sessions, clock=services.clock)
        return 200, metrics.exposition(gauges).decode(), metrics.CONTENT_TYPE

    routes = {"/healthz": lambda: (200, "ok", TEXT), "/readyz": ready, "/metrics": scrape}
    try:
        server = start_health_server(settings.host, settings.health_port, routes)
    except OSError as exc:
        detail = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(
            f"HEALTH_PORT: cannot listen on {settings.host}:{settings.health_port}: {detail}"
        ) from None
    log.info(
        "probes at /healthz, /readyz and /metrics", extra={"path": f"{settings.host}:{server.port}"}
    )
    return server


def _connect(handler: Any, settings: Settings) -> None:
    """Open the Socket Mode connection, or stop start-up with one line saying why."""
    try:
        handler.connect()
    except SlackApiError as exc:
        data = exc.response.data if isinstance(exc.response.data, dict) else {}
        error = data.get("error") or f"HTTP {exc.response.status_code}"
        raise ConfigError(
            f"Socket Mode: Slack refused apps.connections.open ({error}); SLACK_APP_TOKEN must "
            "be an app-level token (xapp-…) with the connections:write scope."
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure to connect ends start-up cleanly
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise SystemExit(
            f"Socket Mode: could not connect to Slack at {settings.slack_api_url}: {detail}"
        ) from None
