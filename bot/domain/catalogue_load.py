"""Reading the catalogue: TOML text or file → a validated `Catalogue`, and every problem
turned into one `CatalogueError` line naming the file, the dotted key path and what is
wrong (with a suggestion for a mistyped key)."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from bot.domain.catalogue import Catalogue
from bot.domain.catalogue_schema import AtKey


class CatalogueError(Exception):
    """A catalogue problem; ``str()`` is one line: ``<file>: <key path>: <problem>``.

    `problems` lists every (key, problem) pydantic found; the message shows the first.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        key: str | None,
        problem: str,
        problems: list[tuple[str | None, str]] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.key = key.replace("\n", "\\n") if key else key
        # Keep the message on one line whatever the source (tomllib, pydantic, regex errors).
        self.problem = " ".join(str(problem).split())
        self.problems = problems or [(key, self.problem)]
        super().__init__(self.path, key, self.problem)

    def __str__(self) -> str:
        parts = [self.path, self.key, self.problem] if self.key else [self.path, self.problem]
        return ": ".join(parts)


# ---------------------------------------------------------------------- loading
def load_catalogue(path: str | os.PathLike[str]) -> Catalogue:
    """Read and validate the catalogue file at `path`; any problem → CatalogueError."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise CatalogueError(path, None, "file not found") from None
    except OSError as exc:
        raise CatalogueError(path, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogueError(path, None, f"not UTF-8 text (byte {exc.start})") from None
    return parse_catalogue(text, os.fspath(path))


def parse_catalogue(text: str, source: str = "<string>") -> Catalogue:
    """Validate catalogue TOML given as a string; `source` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        key, problem = _toml_location(str(exc), text)
        raise CatalogueError(source, key, problem) from None
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors(include_url=False)]
        key, problem = problems[0]
        raise CatalogueError(source, key, problem, problems) from None


_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def _toml_location(message: str, text: str) -> tuple[str | None, str]:
    """tomllib's "Invalid value (at line 2, column 5)" → ("line 2", "Invalid value …")."""
    match = _TOML_AT.search(message)
    if match:
        return f"line {match[1]}", f"{message[: match.start()]} (column {match[2]})"
    match = _TOML_END.search(message)
    if match:
        return (
            f"line {max(text.count(chr(10)) + 1, 1)}",
            f"{message[: match.start()]} at end of file",
        )
    return None, message


def _describe(error: Mapping[str, Any]) -> tuple[str | None, str]:
    loc = tuple(error.get("loc") or ())
    ctx = error.get("ctx") or {}
    kind = error.get("type", "")
    cause = ctx.get("error")
    if isinstance(cause, AtKey):
        loc = loc + cause.where
    key = _key_path(loc) or None
    if kind == "too_short" and loc == ("services",):
        return key, "at least one [[services]] table is required"
    if kind == "missing":
        return key, "field required"
    if kind == "extra_forbidden":
        return key, _unknown_key(loc)
    if kind in ("value_error", "assertion_error") and cause is not None:
        return key, str(cause)
    try:
        problem = _MESSAGES.get(kind, "").format(**ctx)
    except (KeyError, IndexError):
        problem = ""
    return key, problem or _lower_first(str(error.get("msg", "")))


_MESSAGES = {
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "bool_type": "must be true or false",
    "list_type": 'must be a list, e.g. ["a", "b"]',
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
}


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _unknown_key(loc: tuple[Any, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None or not loc:
        return "unknown key"
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class validating the table at `loc`, to suggest the key a typo meant."""
    current: Any = Catalogue
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is list and isinstance(part, int):
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(tp) if a is not type(None)]
            if len(options) != 1:
                return tp
            tp = options[0]
        else:
            return tp
