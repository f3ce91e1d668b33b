"""The multiprocess metrics directory, prepared in the parent before granian starts workers.

Kept free of heavy imports: `python -m app serve` runs it in the parent process, which
should start fast and leave Litestar and SQLAlchemy to the workers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_enabled() -> bool:
    """Whether this process writes its metric samples to the shared directory."""
    return bool(os.environ.get(MULTIPROC_ENV))


@contextlib.contextmanager
def multiprocess_dir(environ: MutableMapping[str, str], workers: int) -> Iterator[Path | None]:
    """In the parent, before the workers start: give them one empty metrics directory.

    A configured `PROMETHEUS_MULTIPROC_DIR` is created if missing and emptied of the sample
    files of earlier runs; with `workers` > 1 and none configured, a temporary one is made
    (and removed afterwards) and set in `environ`. A single worker needs none.
    """
    configured = environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    if workers <= 1:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="messenger-metrics-"))
    environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
