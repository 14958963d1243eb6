"""The fake Slack's HTTP plumbing: a threading server on loopback whose handler passes
each request to a :class:`Responder` (the :class:`~bot.dev.fakeslack.webapi.FakeSlack`)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from bot.dev.fakeslack.calls import Outcome


class Responder(Protocol):
    """What answers the requests: `handle` them; `stopping` is set when the server stops."""

    stopping: threading.Event

    def handle(self, verb: str, target: str, headers: Any, body: bytes) -> Outcome: ...


class Server(ThreadingHTTPServer):
    """A quiet threading HTTP server that does not wait for hanging requests on close."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet
        pass

    def server_activate(self) -> None:
        """Listen with a timeout on `accept`, so a connection gone between the poll and the
        accept never blocks the serve loop (and `shutdown`) for good."""
        super().server_activate()
        self.socket.settimeout(1.0)


def make_server(responder: Responder, host: str, port: int) -> Server:
    """A server on (`host`, `port`) (0 = any free port) answering through `responder`."""
    handler = type("_BoundHandler", (_Handler,), {"responder": responder})
    return Server((host, port), handler)


class _Handler(BaseHTTPRequestHandler):
    responder: Responder
    server_version = "devslack/1"
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet server
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            out = self.responder.handle(self.command, self.path, self.headers, body)
        except Exception as exc:  # a bug in the fake: answer, do not kill the thread
            out = Outcome(500, {"ok": False, "error": f"devslack_bug: {exc!r}"})
        if out.delay and self.responder.stopping.wait(out.delay):
            return
        if isinstance(out.body, dict):
            payload = json.dumps(out.body).encode()
            ctype = "application/json; charset=utf-8"
        else:
            payload = out.body
            ctype = "text/plain; charset=utf-8"
        try:
            self.send_response(out.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in out.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout) - nothing to do
            pass
