"""Command line: `serve`, `migrate`, `db up|down|env`.

`serve` validates the settings before anything starts (a bad value stops the process with
one line naming the variable), starts the embedded cluster in development when there is no
`DATABASE_URL`, applies migrations there, and runs granian as a child process so that the
cluster it started is stopped again after Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from app.config import ConfigError, Settings
from app.ops.multiproc import multiprocess_dir
from app.redact import redact_text

DATA_DIR = Path(os.environ.get("APP_DATA_DIR", Path(__file__).resolve().parent.parent / ".data"))
CLUSTER_DIR = DATA_DIR / "pg"
ENV_FILE = DATA_DIR / "postgres.env"


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _settings(environ: Mapping[str, str]) -> Settings:
    return Settings.from_env(environ)


def _start_embedded(replicas: int = 1) -> tuple[dict[str, str], bool]:
    """Start (or reuse) the cluster under .data/; returns its URLs and whether we started it."""
    from app.db.embedded import EmbeddedCluster  # dev dependency; never imported in production

    cluster = EmbeddedCluster(CLUSTER_DIR, replicas=replicas)
    was_running = cluster.is_running()
    cluster.start()
    ENV_FILE.write_text(cluster.env_lines())
    urls = {
        "DATABASE_URL": cluster.primary_url,
        "DATABASE_REPLICA_URLS": ",".join(cluster.replica_urls),
    }
    print(
        f"embedded PostgreSQL {'reused' if was_running else 'started'}: {ENV_FILE}", file=sys.stderr
    )
    return urls, not was_running


def _stop_embedded() -> None:
    from app.db.embedded import EmbeddedCluster

    EmbeddedCluster(CLUSTER_DIR, replicas=1).stop()
    print("embedded PostgreSQL stopped", file=sys.stderr)


def _kill_timeout_s(settings: Settings) -> int:
    """Room for the slowest in-flight request (pool wait + statement) and then the disposal."""
    request_s = (settings.pool_timeout_ms + settings.statement_timeout_ms) / 1000
    return math.ceil(request_s + settings.shutdown_timeout_s + 1)


def serve(environ: dict[str, str]) -> int:
    """Validate, prepare the database, then run granian until it exits."""
    settings = _settings(environ)
    started_cluster = False
    if settings.database_url is None:
        urls, started_cluster = _start_embedded()
        environ.update(urls)
        settings = _settings(environ)
        from app.migrations import upgrade

        assert settings.database_url is not None
        upgrade(settings.database_url)
    command = [
        sys.executable, "-m", "granian",
        "--interface", "asgi",
        "--host", settings.host,
        "--port", str(settings.port),
        "--workers", str(settings.workers),
        "--loop", "uvloop",
        "--no-ws",
        "--workers-kill-timeout", str(_kill_timeout_s(settings)),
        "app.asgi:app",
    ]  # fmt: skip
    with multiprocess_dir(environ, settings.workers):
        child = subprocess.Popen(command, env=environ)
        # Ctrl-C reaches granian too (same process group); let it drain, then clean up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
        code = child.wait()
    if started_cluster:
        _stop_embedded()
    return code if code >= 0 else 0


def migrate(environ: dict[str, str], revision: str) -> int:
    """Apply migrations to DATABASE_URL (the embedded primary when unset in development)."""
    settings = _settings(environ)
    url = settings.database_url
    if url is None:
        urls, _ = _start_embedded()
        url = urls["DATABASE_URL"]
    from app.migrations import upgrade

    upgrade(url, revision)
    print(f"migrated to {revision}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the API with granian")
    migrate_parser = sub.add_parser("migrate", help="apply Alembic migrations")
    migrate_parser.add_argument("revision", nargs="?", default="head")
    db = sub.add_parser("db", help="the embedded development cluster")
    db.add_argument("action", choices=["up", "down", "env"])
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    try:
        if args.command == "serve":
            return serve(environ)
        if args.command == "migrate":
            return migrate(environ, args.revision)
        if args.action == "up":
            _start_embedded()
            print(ENV_FILE.read_text(), end="")
        elif args.action == "down":
            _stop_embedded()
        else:
            print(ENV_FILE.read_text() if ENV_FILE.exists() else "", end="")
        return 0
    except ConfigError as error:
        return _fail(str(error))
    except Exception as error:  # one clear line, never a traceback with a DSN in it
        return _fail(redact_text(f"{type(error).__name__}: {error}"))
