"""`bench/report_bench.py` loaded as a module, for the tests that load its realistic
consults and hops (`load_postgres`, `load_sqlite`, its catalogue) or check its helpers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench" / "report_bench.py"
NAME = "report_bench_under_test"


def report_bench() -> ModuleType:
    """The bench module (loaded once per process: it imports its sibling bench modules)."""
    loaded = sys.modules.get(NAME)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(NAME, BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)
    return module
