"""App assembly: builds the services (database, domain, outbox, scheduler) and the bolt App
with its handlers, and a WSGI entry point with `/healthz` (liveness), `/readyz` (readiness),
`/metrics` (Prometheus) and a request-size limit."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot import guard, metrics, probes
from bot.domain.catalogue import Catalogue
from bot.domain.catalogue_load import load_catalogue
from bot.domain.clock import Clock, SystemClock
from bot.flows.compose import Composer
from bot.flows.consults.service import ConsultService
from bot.flows.critical import CriticalService
from bot.flows.followups import FollowUpService
from bot.flows.outbox import Outbox
from bot.flows.schedules import ScheduleBook
from bot.services import Services
from bot.settings import Settings
from bot.slack.delivery.dispatcher import Dispatcher
from bot.slack.delivery.pacing import ChannelPacer
from bot.slack.delivery.transport import MeteredClient
from bot.slack.membership import ChannelMembers
from bot.slack.people import People
from handlers import register_all
from handlers.middleware import request_key
from storage.db import SessionLock, create_db_engine, migrate, session_factory

log = logging.getLogger("careloop.app")

REQUEST_PATH = "/slack/events"
# Calls made while Slack waits for our answer (views.open needs the 3-second trigger_id):
# short timeout and no retries, so the ack is never late.
REQUEST_PATH_TIMEOUT = 2.0
# The PostgreSQL advisory lock whose holder delivers the outbox (any constant shared by
# CareLoop processes; storage.db and storage.repo use 0x0CA2E100 and 0x0CA2E101).
DELIVERY_LOCK_ID = 0x0CA2E102


def build_services(
    settings: Settings,
    *,
    catalogue: Catalogue | None = None,
    clock: Clock | None = None,
    outbox_clock: Clock | None = None,
    run_migrations: bool = True,
) -> Services:
    """Wire the domain to the database and Slack according to settings."""
    catalogue = catalogue or load_catalogue(settings.consult_config)
    clock = clock or SystemClock()
    engine = create_db_engine(settings.database_url)
    if run_migrations:
        migrate(engine)
    sessions = session_factory(engine)
    outbox = Outbox()
    quick_client = MeteredClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=int(REQUEST_PATH_TIMEOUT),
        retry_handlers=[],
    )
    members = ChannelMembers(quick_client)
    schedules = build_schedules(settings, catalogue, clock, quick_client)
    consults = ConsultService(
        catalogue=catalogue, sessions=sessions, clock=clock, outbox=outbox, members=members,
        schedules=schedules, people=People(quick_client),
    )  # fmt: skip
    dispatcher = _build_dispatcher(
        settings, engine, sessions, catalogue, outbox, outbox_clock or SystemClock(), schedules,
        on_call_clock=clock,
    )  # fmt: skip
    crit = CriticalService(consults.ctx, consults.permissions)
    owed = FollowUpService(consults.ctx, consults.permissions)
    return Services(
        settings, catalogue, clock, engine, sessions, outbox, consults, dispatcher,
        quick_client, members, crit, owed,
    )  # fmt: skip


def build_schedules(
    settings: Settings, catalogue: Catalogue, clock: Clock, client: WebClient | None
) -> ScheduleBook | None:
    """The services' on-call schedules, loaded now (files relative to the catalogue);
    a broken one → CatalogueError naming it. None when no service has a schedule."""
    if not any(s.schedule or s.backup_schedule for s in catalogue.services):
        return None
    book = ScheduleBook(
        catalogue,
        base_dir=os.path.dirname(os.path.abspath(settings.consult_config)),
        clock_now=clock.now,
        lookup_email=(lambda email: lookup_email(client, email)) if client else None,
    )
    book.load_all(settings.consult_config)
    return book


def lookup_email(client: WebClient, email: str) -> str | None:
    """The Slack user with this e-mail (`users.lookupByEmail`); None when there is none.
    Other failures raise OSError, so the address is asked again at the next refresh."""
    try:
        return str(client.users_lookupByEmail(email=email)["user"]["id"])
    except SlackApiError as exc:
        if (exc.response or {}).get("error") == "users_not_found":
            return None
        raise OSError(f"users.lookupByEmail failed: {exc.response.get('error')}") from None
    except (TimeoutError, ValueError) as exc:
        raise OSError(str(exc)) from None


def _build_dispatcher(
    settings: Settings,
    engine: Engine,
    sessions: sessionmaker[Session],
    catalogue: Catalogue,
    outbox: Outbox,
    clock: Clock,
    schedules: ScheduleBook | None = None,
    *,
    on_call_clock: Clock | None = None,
) -> Dispatcher:
    """The outbox dispatcher on its own Slack client, with flows composing its messages
    and hearing what became of them."""
    delivery_client = MeteredClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=int(max(settings.slack_timeout, 1)),
        retry_handlers=[],  # the dispatcher schedules its own retries; never sleep on a thread
    )
    composer = Composer(
        sessions=sessions, catalogue=catalogue, clock=clock, outbox=outbox, schedules=schedules,
        on_call_clock=on_call_clock,
    )  # fmt: skip
    return Dispatcher(
        sessions=sessions,
        client=delivery_client,
        compose=composer.compose,
        on_result=composer.record,
        wakeup=outbox.wakeup,
        clock=clock,
        pacer=ChannelPacer(interval=catalogue.post_interval.total_seconds()),
        # Several processes share the outbox only on PostgreSQL; SQLite serves one process.
        leadership=(
            SessionLock(engine, DELIVERY_LOCK_ID) if engine.dialect.name == "postgresql" else None
        ),
    )


class CareLoopApp(App):
    """bolt's App with each request timed and counted for `/metrics`, in both modes."""

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        return metrics.time_request(req, super().dispatch)  # type: ignore[no-any-return]


def build_app(services: Services, *, socket_mode: bool = False) -> App:
    """The bolt App with every handler registered; requests are always signature-checked."""
    settings = services.settings

    def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
        # Static: no auth.test on the request path, so acks never wait on Slack's API.
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_token=settings.slack_bot_token,
            bot_user_id=services.extras.get("bot_user_id"),
            bot_id=services.extras.get("bot_id"),
        )

    # bolt warns at construction that SLACK_BOT_TOKEN is unused with `authorize`: expected.
    bolt_log = logging.getLogger("slack_bolt.App")
    previous = bolt_log.level
    bolt_log.setLevel(logging.ERROR)
    app = CareLoopApp(
        authorize=authorize,
        signing_secret=settings.slack_signing_secret or ("socket-mode" if socket_mode else None),
        client=services.quick_client,
        process_before_response=True,
        request_verification_enabled=not socket_mode,
        ignoring_self_events_enabled=True,
        ssl_check_enabled=True,
        url_verification_enabled=True,
    )
    bolt_log.setLevel(previous)

    # One middleware for both (each bolt middleware costs a kwargs injection per request).
    @app.middleware
    def inject_services(
        body: dict[str, Any],
        context: dict[str, Any],
        next: Callable[[], Any],  # noqa: A002
    ) -> Any:
        context["careloop"] = services
        return request_key(body, context, next)

    register_all(app)

    @app.error
    def on_error(error: Exception, body: dict[str, Any], context: dict[str, Any]) -> BoltResponse:
        context[metrics.FAILED] = True
        log.error(
            "unhandled error in a Slack handler",
            extra={"error": type(error).__name__},
            exc_info=error,
        )
        return _error_response(error, body)

    return app


def bolt_request(environ: dict[str, Any], text: str, data: dict[str, Any]) -> BoltRequest:
    """The `BoltRequest` bolt's WSGI adapter makes of this request (`BoltRequest(body=text,
    …)` in HTTP mode), given `data`, the body as bolt parses it (`guard.parse`): HTTP mode
    accepts only the text, which it would parse again, so it is built from the parsed body
    and then given the text and the mode (what bolt's signature check and listeners read)."""
    http = WsgiHttpRequest(environ)
    request = BoltRequest(
        body=data, query=http.query_string, headers=http.get_headers(), mode="socket_mode"
    )
    request.raw_body = text
    request.mode = "http"
    return request


class WsgiApp:
    """`POST /slack/events` for Slack; `GET /healthz`, `/readyz` and `/metrics` for
    orchestrators and Prometheus; bodies over the limit get 413 before anything parses them."""

    def __init__(self, app: App, services: Services) -> None:
        self.handler = SlackRequestHandler(app, path=REQUEST_PATH)
        self.services = services
        self.max_body = services.settings.max_body_bytes
        self.secret = services.settings.slack_signing_secret or ""

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path in PROBES:
            return PROBES[path](self, start_response)
        if path != REQUEST_PATH:
            return _refused(start_response, "404 Not Found", "not found")
        if method != "POST":
            return _refused(start_response, "405 Method Not Allowed", "POST only")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _refused(start_response, "400 Bad Request", "bad content length")
        if length < 0:
            return _refused(start_response, "400 Bad Request", "bad content length")
        if length > self.max_body:
            return _refused(start_response, "413 Payload Too Large", "request body too large")
        stamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP")
        if stamp is not None and not guard.valid_timestamp(stamp):
            return _refused(start_response, "401 Unauthorized", "invalid request")
        ctype = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
        if ctype not in ("application/json", "application/x-www-form-urlencoded"):
            return _refused(
                start_response, "415 Unsupported Media Type", "unsupported content type"
            )
        # Verify before parsing anything (bolt parses first), then refuse shapes bolt cannot
        # handle with a 400 instead of a crash; bolt verifies the signature again.
        body = environ["wsgi.input"].read(length) if length else b""
        signature = environ.get("HTTP_X_SLACK_SIGNATURE")
        if not guard.signature_ok(self.secret, body, stamp, signature):
            log.warning("request refused: invalid or stale signature")
            return _refused(start_response, "401 Unauthorized", "invalid request")
        data, problem = guard.parse(body, ctype)
        if problem:
            log.warning("request refused: malformed", extra={"error": problem})
            return _refused(start_response, "400 Bad Request", "malformed request")
        try:
            return self._dispatch(environ, body, data, start_response)
        except Exception as exc:  # noqa: BLE001 - bolt choked on a signed request: 400, not 500
            log.error("request could not be handled", extra={"error": type(exc).__name__})
            return _refused(start_response, "400 Bad Request", "malformed request")

    def _dispatch(
        self, environ: dict[str, Any], body: bytes, data: dict[str, Any], start_response: Any
    ) -> Iterable[bytes]:
        """What bolt's WSGI adapter does, with the body as the guard parsed it: bolt does not
        parse it a second time (`bolt_request`)."""
        if not environ.get("SERVER_PROTOCOL", "").startswith("HTTP"):
            return _refused(start_response, "400 Bad Request", "Bad Request")
        request = bolt_request(environ, body.decode("utf-8"), data)
        response = self.handler.app.dispatch(request)
        out = WsgiHttpResponse(status=response.status, headers=response.headers, body=response.body)
        start_response(out.status, out.get_headers())
        return out.get_body()

    def healthz(self, start_response: Callable[..., Any]) -> list[bytes]:
        """Liveness: the process serves (the database is readiness's business)."""
        return _plain(start_response, "200 OK", "ok")

    def readyz(self, start_response: Callable[..., Any]) -> list[bytes]:
        """Readiness: database, schema and outbox (`bot.probes.readiness`), as one JSON line."""
        services = self.services
        reason = probes.readiness(
            engine=services.engine,
            sessions=services.sessions,
            clock=services.clock,
            max_age=services.settings.ready_outbox_max_age,
        )
        status = "200 OK" if reason is None else "503 Service Unavailable"
        return _answer(start_response, status, probes.ready_body(reason), "application/json")

    def metrics(self, start_response: Callable[..., Any]) -> list[bytes]:
        """Prometheus text: every worker's counters and the database's gauges."""
        gauges = probes.DatabaseGauges(sessions=self.services.sessions, clock=self.services.clock)
        body = metrics.exposition(gauges).decode()
        return _answer(start_response, "200 OK", body, metrics.CONTENT_TYPE)


PROBES: dict[str, Callable[[WsgiApp, Callable[..., Any]], list[bytes]]] = {
    "/healthz": WsgiApp.healthz,
    "/readyz": WsgiApp.readyz,
    "/metrics": WsgiApp.metrics,
}


def _error_response(error: Exception, body: Any) -> BoltResponse:
    """What the person sees when a handler failed: whether it was saved, and what to do."""
    if isinstance(error, SQLAlchemyError):
        # The unit of work rolled back: nothing of this request was stored.
        text = "Sorry, the database did not answer, so this was not saved. Please try again."
    else:
        text = (
            "Sorry, something went wrong on our side and this may not have been saved. "
            "Check `/consult list`, then try again."
        )
    payload: dict[str, Any] = {"response_type": "ephemeral", "text": text}
    if isinstance(body, dict) and body.get("type") == "view_submission":
        # Shown in the still-open modal, next to its first input; what was typed stays.
        blocks = (body.get("view") or {}).get("blocks") or []
        first = next(
            (
                b["block_id"]
                for b in blocks
                if isinstance(b, dict) and b.get("type") == "input" and b.get("block_id")
            ),
            None,
        )
        if first:
            payload = {"response_action": "errors", "errors": {first: text}}
    return BoltResponse(
        status=200, body=json.dumps(payload), headers={"content-type": "application/json"}
    )


def _refused(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    """A request turned away before bolt saw it, counted by its HTTP status."""
    metrics.add(metrics.REFUSED, status.split(" ", 1)[0])
    return _plain(start_response, status, text)


def _plain(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    return _answer(start_response, status, text, "text/plain; charset=utf-8")


def _answer(
    start_response: Callable[..., Any], status: str, text: str, content_type: str
) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def build_wsgi(services: Services) -> WsgiApp:
    """The WSGI application served in HTTP mode."""
    return WsgiApp(build_app(services), services)
