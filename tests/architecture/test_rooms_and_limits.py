"""The shape of the code, checked from its source: imports flow one way with no circle
(imports inside functions count), the domain stays pure, each room imports only what it
may, and no product module or function grows past its limit."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "handlers", "storage")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
MIGRATIONS = ROOT / "storage" / "migrations" / "versions"


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> Iterator[str]:
    """Every module named by an import anywhere in the file (in functions too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        graph[name] = {target for target in _imports(path) if target in MODULES} - {name}
    return graph


def _external(name: str) -> set[str]:
    return {target.split(".")[0] for target in _imports(MODULES[name])}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_circle():
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _in(name: str, room: str) -> bool:
    return name == room or name.startswith(room + ".")


# What each room may not import (module prefixes and third-party top-level packages).
FORBIDDEN = {
    "bot.domain": (
        "sqlalchemy", "slack_sdk", "slack_bolt", "storage", "handlers", "bot.flows", "bot.slack",
        "bot.reports", "bot.dev", "bot.app", "bot.services", "bot.server", "bot.runtime",
    ),
    "storage": ("bot", "handlers", "slack_sdk", "slack_bolt"),
    "handlers": ("sqlalchemy", "storage"),
    "bot.flows": ("handlers", "bot.app", "bot.services", "bot.runtime", "bot.server", "bot.dev"),
    "bot.reports": ("handlers", "bot.app", "bot.services", "bot.runtime", "bot.server"),
    "bot.slack.render": ("sqlalchemy", "storage.repo", "storage.db", "bot.flows", "bot.reports",
                         "handlers", "bot.services"),
    "bot.slack.delivery": ("bot.flows", "bot.reports", "bot.slack.render", "handlers"),
}  # fmt: skip


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_each_room_imports_only_what_it_may(room: str):
    wrong = []
    for name, path in MODULES.items():
        if not _in(name, room):
            continue
        targets = set(_imports(path)) | _external(name)
        for target in sorted(targets):
            if any(_in(target, banned) for banned in FORBIDDEN[room]):
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_the_room_rules_catch_a_domain_module_that_imports_sqlalchemy(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from sqlalchemy import select\n")
    assert any(_in(t, "sqlalchemy") for t in _imports(module))


def _product_files() -> list[Path]:
    return [p for p in MODULES.values() if MIGRATIONS not in p.parents]


def test_no_product_module_is_over_the_line_limit():
    long = {
        str(p.relative_to(ROOT)): n
        for p in _product_files()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_product_function_is_over_the_line_limit():
    long = {}
    for path in _product_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = length
    assert long == {}


def test_every_product_module_says_what_it_is_for():
    missing = [
        str(p.relative_to(ROOT))
        for p in _product_files()
        if p.read_text(encoding="utf-8").strip()
        and ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) is None
    ]
    assert missing == []
