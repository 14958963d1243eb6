"""How the fake Slack reads requests: parameters from a query string and a form, JSON or
multipart body (as ``slack_sdk`` sends them), and uploaded file bytes."""

from __future__ import annotations

import email.parser
import email.policy
import json
from urllib.parse import parse_qs, urlsplit

from bot.dev.fakeslack.workspace import Json

# Parameters that slack_sdk may send JSON-encoded inside a form body.
_JSON_FIELDS = ("blocks", "attachments", "metadata", "view", "files", "user_auth_blocks")


def url_path(url: str) -> str:
    """The path part of a URL (``/respond/3`` for ``http://host:1/respond/3``)."""
    return urlsplit(url).path or url


def parse_args(query: str, content_type: str, body: bytes) -> Json:
    """Parameters from the query string and a form, JSON or multipart body."""
    args: Json = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    ctype = content_type.lower()
    if body:
        if "json" in ctype:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("JSON body must be an object")
            args.update(data)
        elif ctype.startswith("multipart/"):
            for name, _filename, value in _multipart(content_type, body):
                args[name] = value if isinstance(value, bytes) and _filename else _text(value)
        else:
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            args.update({k: v[-1] for k, v in form.items()})
    for name in _JSON_FIELDS:
        value = args.get(name)
        if isinstance(value, str):
            try:
                args[name] = json.loads(value)
            except ValueError:
                pass
    return args


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _multipart(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]]:
    """(field name, filename, raw bytes) for each part of a multipart body."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_param("filename", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        parts.append((str(name or ""), str(filename) if filename else None, payload))
    return parts


def file_bytes(content_type: str, body: bytes) -> bytes:
    """The uploaded file: raw body, or the file part of a multipart body."""
    if content_type.lower().startswith("multipart/"):
        parts = _multipart(content_type, body)
        for _name, filename, payload in parts:
            if filename:
                return payload
        if parts:
            return parts[0][2]
    return body
