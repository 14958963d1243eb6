"""What Slack itself would refuse or turn live, checked on every call the fake recorded.

The fake accepts any Block Kit; Slack answers `invalid_blocks` (a message lost for good)
when a limit is broken, and turns `<!channel>`, `<@U…>`, `<#C…>` and `<url|label>` in
mrkdwn into live mentions and links. These helpers find both in recorded calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from bot.dev.fakeslack.calls import Call

MESSAGE_METHODS = ("chat.postMessage", "chat.update", "chat.postEphemeral")
VIEW_METHODS = ("views.open", "views.update", "views.push", "views.publish")

# Anything Slack would parse as a control sequence: <!…>, <@…>, <#…>, <http…>, <mailto:…>.
LIVE = re.compile(r"<(?:!|@|#|https?:|mailto:)[^>]*>")


def view_of(call: Call) -> dict[str, Any]:
    view = call.args.get("view")
    return json.loads(view) if isinstance(view, str) else dict(view or {})


def mrkdwn_texts(call: Call) -> Iterator[str]:
    """Every string Slack reads as mrkdwn in a message call: `text` and mrkdwn objects."""
    if call.method in MESSAGE_METHODS and isinstance(call.args.get("text"), str):
        yield call.args["text"]
    roots: list[Any] = [call.args.get("blocks") or []]
    if call.method in VIEW_METHODS:
        roots.append(view_of(call).get("blocks") or [])
    stack = list(roots)
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
                yield node["text"]
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))


def live_tokens(
    calls: list[Call], allowed: set[str], users: set[str] | None = None
) -> list[tuple[str, str]]:
    """(method, token) for each live mention or link not in `allowed`; with `users`, a
    user mention counts as the bot's own only for one of those users."""
    found = []
    for call in calls:
        if call.method not in MESSAGE_METHODS + VIEW_METHODS:
            continue
        for text in mrkdwn_texts(call):
            for token in LIVE.findall(text):
                if token in allowed:
                    continue
                mentioned = re.fullmatch(r"<@([A-Z0-9]+)>", token)
                if users is not None and mentioned and mentioned.group(1) not in users:
                    found.append((call.method, token))
                elif not ours(token):
                    found.append((call.method, token))
    return found


def ours(token: str) -> bool:
    """Mentions, channels, dates and permalinks the bot itself writes."""
    return re.fullmatch(
        r"<@U[A-Z0-9]+>|<#C[A-Z0-9]+>|<!date\^\d+\^[^>]*>", token
    ) is not None or token.startswith("<https://careloop-test.slack.com/")


# ---------------------------------------------------------------------------- limits
def limit_problems(calls: list[Call]) -> list[str]:
    """Block Kit and message limits broken by any recorded call (Slack would refuse it)."""
    problems: list[str] = []
    for call in calls:
        if call.method in MESSAGE_METHODS:
            text = call.args.get("text") or ""
            if len(text) > 40_000:
                problems.append(f"{call.method}: text is {len(text)} characters")
            problems += _blocks(call.method, call.args.get("blocks") or [], 50)
        elif call.method in VIEW_METHODS:
            view = view_of(call)
            problems += _view(call.method, view)
    return problems


def _view(method: str, view: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("title", "submit", "close"):
        text = (view.get(key) or {}).get("text", "")
        if len(text) > 24:
            problems.append(f"{method}: {key} is {len(text)} characters")
    if len(view.get("private_metadata") or "") > 3000:
        problems.append(f"{method}: private_metadata over 3000")
    return problems + _blocks(method, view.get("blocks") or [], 100)


def _text_len(obj: Any) -> int:
    return len(obj.get("text", "")) if isinstance(obj, dict) else 0


def _blocks(method: str, blocks: list[dict[str, Any]], most: int) -> list[str]:
    problems = []
    if len(blocks) > most:
        problems.append(f"{method}: {len(blocks)} blocks")
    for b in blocks:
        kind = b.get("type")
        if len(b.get("block_id") or "") > 255:
            problems.append(f"{method}: block_id over 255")
        if kind == "section":
            if _text_len(b.get("text")) > 3000:
                problems.append(f"{method}: section text is {_text_len(b.get('text'))} characters")
            fields = b.get("fields") or []
            if len(fields) > 10 or any(_text_len(f) > 2000 for f in fields):
                problems.append(f"{method}: section fields over their limits")
        elif kind == "header" and _text_len(b.get("text")) > 150:
            problems.append(f"{method}: header over 150")
        elif kind == "context":
            elements = b.get("elements") or []
            if len(elements) > 10 or any(_text_len(e) > 3000 for e in elements):
                problems.append(f"{method}: context over its limits")
        elif kind == "actions":
            elements = b.get("elements") or []
            if len(elements) > 25:
                problems.append(f"{method}: {len(elements)} actions")
            for e in elements:
                if _text_len(e.get("text")) > 75 or len(e.get("value") or "") > 2000:
                    problems.append(f"{method}: button over its limits")
        elif kind == "input":
            element = b.get("element") or {}
            if _text_len(b.get("label")) > 2000:
                problems.append(f"{method}: input label over 2000")
            initial = element.get("initial_value") or ""
            if len(initial) > int(element.get("max_length") or 3000):
                problems.append(f"{method}: initial value over max_length")
    return problems
