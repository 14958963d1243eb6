"""Slack messages as plain text a person reads in a terminal: mrkdwn without its markup and
Block Kit as lines (buttons as ``[Label]``). Used by the demo (`bot.dev.demo`) only."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Plain = Callable[[str], str]

# Emoji the bot uses, as a terminal can show them (unknown :codes: stay as written).
PLAIN_EMOJI = {
    "red_circle": "🔴",
    "large_orange_circle": "🟠",
    "white_circle": "⚪",
    "white_check_mark": "✅",
    "eyes": "👀",
    "speech_balloon": "💬",
    "question": "❓",
    "rotating_light": "🚨",
    "alarm_clock": "⏰",
    "hourglass": "⌛",
    "bell": "🔔",
    "lock": "🔒",
    "no_entry_sign": "🚫",
    "no_entry": "⛔",
    "arrows_counterclockwise": "🔄",
    "inbox_tray": "📥",
    "leftwards_arrow_with_hook": "↩️",
    "warning": "⚠️",
    "pager": "📟",
    "bar_chart": "📊",
    "chart_with_upwards_trend": "📈",
    "calendar": "📅",
    "clipboard": "📋",
}


def mrkdwn_to_plain(
    text: str,
    *,
    names: dict[str, str] | None = None,
    channels: dict[str, str] | None = None,
    when: Callable[[int], str] | None = None,
    emoji: bool = True,
) -> str:
    """Slack mrkdwn as plain text a person reads.

    ``<@U1>`` becomes ``@<name>`` (from `names`, else the id), ``<#C1>`` ``#<name>``,
    ``<url|label>`` its label, ``<!date^epoch^…|fallback>`` ``when(epoch)`` (else the
    fallback), ``<!here>`` ``@here``; ``*bold*``/``_italic_`` lose their markers; ``&lt;``,
    ``&gt;``, ``&amp;`` come back as ``<``, ``>``, ``&`` (after the control sequences, so
    escaped user text is shown, never interpreted); known ``:emoji:`` become characters.
    """

    names, channels = names or {}, channels or {}

    def control(match: re.Match[str]) -> str:
        body = match.group(1)
        target, _, label = body.partition("|")
        if target.startswith("@"):
            user = target[1:]
            return "@" + names.get(user, label or user)
        if target.startswith("#"):
            channel = target[1:]
            return "#" + channels.get(channel, label or channel)
        if target.startswith("!date^"):
            try:
                epoch = int(target.split("^")[1])
            except (IndexError, ValueError):
                return label or target
            return when(epoch) if when is not None else (label or str(epoch))
        if target.startswith("!subteam^"):
            return "@" + (label or target.split("^", 1)[1])
        if target.startswith("!"):
            return "@" + (label or target[1:])
        return label or target

    out = re.sub(r"<([^<>\n]+)>", control, text)
    out = re.sub(r"`([^`\n]+)`", r"\1", out)
    out = re.sub(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])", r"\1", out)
    out = re.sub(r"(?<![\w_])_(?!\s)([^_\n]+?)(?<!\s)_(?![\w_])", r"\1", out)
    out = re.sub(r"(?<![\w~])~(?!\s)([^~\n]+?)(?<!\s)~(?![\w~])", r"\1", out)
    if emoji:
        out = re.sub(r":([a-z0-9_+-]+):", lambda m: PLAIN_EMOJI.get(m.group(1), m.group(0)), out)
    return out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _plain_element(element: dict[str, Any]) -> str:
    """One interactive element: a button as ``[Label]``, a menu as ``[Choice ▾]``."""
    kind = element.get("type", "")
    label = (
        (element.get("text") or {}).get("text", "") if isinstance(element.get("text"), dict) else ""
    )
    if kind == "button":
        return f"[{label}]"
    if kind.endswith("_select") or kind == "overflow":
        chosen = (element.get("initial_option") or {}).get("text", {}).get("text")
        placeholder = (element.get("placeholder") or {}).get("text", "choose")
        return f"[{chosen or placeholder} ▾]"
    if kind == "datepicker":
        return f"[{element.get('initial_date') or 'pick a date'} ▾]"
    return ""


def _section(block: dict[str, Any], plain: Plain) -> list[str]:
    """Its text, its fields two to a line as ``Label: value``, then its accessory."""
    out: list[str] = []
    if block.get("text"):
        out.append(plain(block["text"].get("text", "")))
    fields = [plain(f.get("text", "")).replace("\n", ": ", 1) for f in block.get("fields") or []]
    for i in range(0, len(fields), 2):
        out.append("   ".join(fields[i : i + 2]))
    accessory = block.get("accessory")
    if isinstance(accessory, dict) and _plain_element(accessory):
        out.append(_plain_element(accessory))
    return out


def _context(block: dict[str, Any], plain: Plain) -> list[str]:
    return [
        " ".join(
            plain(e.get("text", "")) if e.get("type") != "image" else ""
            for e in block.get("elements", [])
        ).strip()
    ]


def _actions(block: dict[str, Any], plain: Plain) -> list[str]:
    return [" ".join(filter(None, map(_plain_element, block.get("elements", []))))]


def _header(block: dict[str, Any], plain: Plain) -> list[str]:
    return [plain(block["text"].get("text", "")).upper()]


def _divider(block: dict[str, Any], plain: Plain) -> list[str]:
    return ["────────"]


def _image(block: dict[str, Any], plain: Plain) -> list[str]:
    return [f"[image: {block.get('alt_text') or block.get('title', {}).get('text', '')}]"]


def _input(block: dict[str, Any], plain: Plain) -> list[str]:
    """A modal input as ``Label: value`` (``____`` when empty)."""
    label = plain((block.get("label") or {}).get("text", ""))
    element = block.get("element") or {}
    if element.get("type") == "plain_text_input":
        value = element.get("initial_value") or "____"
    else:
        value = _plain_element(element) or "____"
    optional = " (optional)" if block.get("optional") and "optional" not in label.lower() else ""
    return [f"{label}{optional}: {value}"]


_BLOCKS: dict[str, Callable[[dict[str, Any], Plain], list[str]]] = {
    "section": _section,
    "context": _context,
    "actions": _actions,
    "header": _header,
    "divider": _divider,
    "image": _image,
    "input": _input,
}


def to_plain_text(
    text: str,
    blocks: list[dict[str, Any]] | None,
    *,
    names: dict[str, str] | None = None,
    channels: dict[str, str] | None = None,
    when: Callable[[int], str] | None = None,
    emoji: bool = True,
) -> str:
    """Render a message (or a modal's blocks) as a clinician would read it; for the demo.

    Buttons show as ``[Label]``, section fields two to a line as ``Label: value``, modal
    inputs as ``Label: value`` (``____`` when empty), and the mrkdwn inside goes through
    `mrkdwn_to_plain` with `names` (user id → display name), `channels` (id → name) and
    `when` (epoch seconds → short time). Without blocks the fallback `text` is rendered.
    """

    def plain(value: str) -> str:
        return mrkdwn_to_plain(value, names=names, channels=channels, when=when, emoji=emoji)

    if not blocks:
        return plain(text or "")
    out: list[str] = []
    for block in blocks:
        render = _BLOCKS.get(block.get("type", ""))
        if render is not None:
            out += render(block, plain)
    return "\n".join(out)
