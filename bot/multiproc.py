"""The directory where gunicorn's workers share their Prometheus values (prometheus_client's
multiprocess mode), so that a scrape of any worker adds up all of them.

Standard library only, and used before anything imports prometheus_client: the client
decides at import time whether values live in memory or in that directory. When the
operator sets `PROMETHEUS_MULTIPROC_DIR`, that directory is used as it is (empty it before
each start, e.g. with systemd's `RuntimeDirectory=`); otherwise a private temporary
directory is made for this `serve` and removed when it ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """Set `PROMETHEUS_MULTIPROC_DIR` for this process and its workers while the block runs."""
    given = os.environ.get(VARIABLE)
    if given:
        os.makedirs(given, exist_ok=True)
        yield given
        return
    path = tempfile.mkdtemp(prefix="careloop-metrics-")
    os.environ[VARIABLE] = path
    try:
        yield path
    finally:
        os.environ.pop(VARIABLE, None)
        shutil.rmtree(path, ignore_errors=True)
