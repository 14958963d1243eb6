"""A tiny probe endpoint for Socket Mode, which otherwise listens on no port at all.

`HealthServer` answers `GET` (and `HEAD`) on the paths of its `routes` (`/healthz`,
`/readyz`, `/metrics` in `bot.server`), each a function returning the status, the body and
its content type; every other path or method gets 404. Standard library only
(`ThreadingHTTPServer` on a daemon thread), one request per connection, no access log: only
errors are logged. HTTP mode does not use it: gunicorn serves the same paths (`bot/app.py`).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("careloop.health")

# What a path answers: (HTTP status, body, content type).
Answer = tuple[int, str, str]
Routes = dict[str, Callable[[], Answer]]


class HealthServer:
    """`GET` of each route on `host:port`, served from a daemon thread until `stop()`."""

    def __init__(self, host: str, port: int, routes: Routes) -> None:
        self._server = _Server((host, port), _Handler, routes)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="careloop-health",
            daemon=True,
        )

    @property
    def port(self) -> int:
        """The port listened on (the one asked for, or the OS's pick for port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the listening socket (requests in flight may finish)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def start_health_server(host: str, port: int, routes: Routes) -> HealthServer:
    """Listen on `host:port` and answer probes from a daemon thread. Raises OSError
    when the address cannot be bound (port taken, host not local)."""
    return HealthServer(host, port, routes).start()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never holds up the process's exit
    allow_reuse_address = True  # a quick restart can bind again at once

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        routes: Routes,
    ) -> None:
        self.routes = routes
        if ":" in address[0]:  # an IPv6 HOST such as "::"
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a checker that hung up before its answer: nothing to report
        log.error("health check failed", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5  # seconds a client may take to send its request
    error_content_type = "text/plain; charset=utf-8"  # for http.server's own 400s
    error_message_format = "%(code)d %(message)s\n"

    def version_string(self) -> str:
        return "careloop"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._answer(body=False)

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD>: every other method gets 404 too, not 501.
        if name.startswith("do_"):
            return self._not_found
        raise AttributeError(name)

    def _answer(self, *, body: bool) -> None:
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._send(404, "not found", body=body)
            return
        status, text, content_type = route()
        self._send(status, text, body=body, content_type=content_type)

    def _not_found(self) -> None:
        self._send(404, "not found", body=True)

    def _send(
        self, status: int, text: str, *, body: bool, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # no access log

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server naming
        # http.server's own errors (a malformed request, a client that sent nothing).
        log.warning("health endpoint: %s", (format % args)[:200])
