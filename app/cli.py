"""Command line (`messenger`, or `python -m app`): `serve`, `migrate`, `db up|down|env|
failover|rejoin|destroy`, `user set-password`.

`serve` validates the settings before anything starts (a bad value stops the process with
one line naming the variable), starts the development cluster when there is no
`DATABASE_URL` (outside production), applies migrations there, and runs granian as a child
process so that the cluster it started is stopped again after Ctrl-C.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress

from app.config import ConfigError, Settings
from app.dsn import parse_host_list
from app.process.multiproc import multiprocess_dir
from app.redact import redact_text


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _settings(environ: Mapping[str, str]) -> Settings:
    return Settings.from_env(environ)


def _kill_timeout_s(settings: Settings) -> int:
    """Room for the drain delay, the slowest in-flight request (its body, then pool wait +
    statement; or a connection still sending headers) and then the stop."""
    limits = settings.requests
    pool = settings.writer_pool
    request_s = max(
        limits.header_timeout_s, limits.body_timeout_s + pool.timeout_s + pool.statement_timeout_s
    )
    server = settings.server
    return math.ceil(server.drain_delay_s + request_s + server.shutdown_timeout_s + 1)


def granian_command(settings: Settings) -> list[str]:
    """How granian is started for `settings` (one process per worker, uvloop, no websockets).

    `--backpressure` is set, not left to granian's default (backlog / workers, which changes
    with WORKERS): each worker holds `WORKER_CONNECTIONS` connections, idle keep-alive ones
    included. `--http1-header-read-timeout` bounds the headers (and idle keep-alive); the body
    is bounded in the application (`app.ops.request_bounds`), which granian does not do.
    """
    limits = settings.requests
    server = settings.server
    return [
        sys.executable, "-m", "granian",
        "--interface", "asgi",
        "--host", server.host,
        "--port", str(server.port),
        "--workers", str(server.workers),
        "--loop", "uvloop",
        "--no-ws",
        "--backpressure", str(limits.worker_connections),
        "--http1-header-read-timeout", str(round(limits.header_timeout_s * 1000)),
        *_http_versions(settings),
        "--workers-kill-timeout", str(_kill_timeout_s(settings)),
        "app.asgi:app",
    ]  # fmt: skip


def _http_versions(settings: Settings) -> list[str]:
    """HTTP/1.1 only (granian's default, `auto`, also takes cleartext HTTP/2 with prior
    knowledge, which `--http1-header-read-timeout` does not bound), unless `HTTP2_ENABLED`.

    granian has no header or idle timeout for HTTP/2; the nearest bound is its keep-alive
    ping: sent after half the header timeout, the connection closed when the peer has not
    answered within the other half. So a peer that sends the preface and SETTINGS and then
    nothing is dropped within `REQUEST_HEADER_TIMEOUT_S`, as on HTTP/1. Header blocks are
    bounded like HTTP/1's buffer (granian's HTTP/2 default is 16 MiB).
    """
    if not settings.server.http2:
        return ["--http", "1"]
    half_s = settings.requests.header_timeout_s / 2
    return [
        "--http", "auto",
        "--http2-keep-alive-interval", str(max(1, round(half_s * 1000))),
        "--http2-keep-alive-timeout", str(max(1, math.ceil(half_s))),
        "--http2-max-headers-size", str(HTTP2_MAX_HEADERS_BYTES),
    ]  # fmt: skip


HTTP2_MAX_HEADERS_BYTES = 417_792
"""granian's HTTP/1 buffer (`--http1-buffer-size`'s default), which bounds HTTP/1 headers."""


def port_in_use(host: str, port: int) -> str | None:
    """Why `host:port` cannot be served now (None: it can).

    granian binds with `SO_REUSEPORT`, so a second server on a port already served would
    start and silently share its connections. This probe binds without it (with
    `SO_REUSEADDR`, as servers do, so a closed server's TIME_WAIT connections do not count),
    which fails while any socket listens there.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as error:
        return f"HOST {host!r} does not resolve ({error.strerror or error})"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return (
                    f"{host}:{port} is already in use (another `messenger serve`?):"
                    " stop it, or set PORT"
                )
            return f"cannot listen on {host}:{port}: {error.strerror or error}"
    return None


@contextmanager
def terminal_foreground() -> Iterator[None]:
    """Take the terminal's foreground for this process group while serving.

    Ctrl-C signals the terminal's whole foreground group. Under `just run` (or `uv run`) that
    group holds the runner too, which then reports `error: interrupted by SIGINT` and exits
    130 however cleanly the service stopped. In a group of its own in the foreground, Ctrl-C
    reaches only this process and granian (its child); the runner sees a plain exit 0. The
    foreground goes back to the runner's group afterwards. Nothing changes without a
    terminal, in the background, or when this process already leads its group (started by
    an interactive shell). Ctrl-Z is ignored meanwhile (below).
    """
    try:
        terminal = sys.stdin.fileno()
        runner_group = os.tcgetpgrp(terminal)
    except (OSError, ValueError):
        yield
        return
    if runner_group != os.getpgrp() or os.getpgrp() == os.getpid():
        yield
        return
    with _quiet_sigttou():
        os.setpgid(0, 0)
        os.tcsetpgrp(terminal, os.getpgrp())
    # Ctrl-Z would stop this group while the runner's shell waits on its own: the terminal
    # would hang. Ignored here (and so in granian, which inherits it): Ctrl-C stops a run.
    suspend = signal.signal(signal.SIGTSTP, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTSTP, suspend)
        with _quiet_sigttou(), suppress(OSError):
            os.tcsetpgrp(terminal, runner_group)


@contextmanager
def _quiet_sigttou() -> Iterator[None]:
    """Changing the foreground from a background group raises SIGTTOU (which would stop us)."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTTOU, previous)


def serve(environ: dict[str, str]) -> int:
    """Validate, prepare the database, then run granian until it exits."""
    with terminal_foreground():
        return _serve(environ)


def _serve(environ: dict[str, str]) -> int:
    settings = _settings(environ)
    busy = port_in_use(settings.server.host, settings.server.port)
    if busy is not None:
        return _fail(busy)
    if not settings.auth.jwt_keys and settings.app_env != "production":
        from app.dev import keys  # development only: production requires AUTH_JWT_KEYS

        environ["AUTH_JWT_KEYS"] = keys.jwt_keys()  # one key for every worker and restart
        settings = _settings(environ)
    started_cluster = False
    if settings.database.url is not None:
        unreachable = database_unreachable(settings)
        if unreachable is not None:
            return _fail(unreachable)
    if settings.database.url is None:
        from app.dev import local  # development only: production has a DATABASE_URL
        from app.schema.migrate import upgrade

        urls, started_cluster = local.start()
        environ.update(urls)
        settings = _settings(environ)
        upgrade(urls["DATABASE_URL"], sslmode=settings.database.sslmode)
    with multiprocess_dir(environ, settings.server.workers):
        child = subprocess.Popen(granian_command(settings), env=environ)
        # Ctrl-C reaches granian too (same process group); let it drain, then clean up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
        code = child.wait()
    if started_cluster:
        from app.dev import local

        local.stop()
    return code if code >= 0 else 0


def database_unreachable(settings: Settings) -> str | None:
    """Why the database cannot be reached now, in one line (None: a member answered).

    Checked once, here, before granian starts: otherwise every worker finds out on its own,
    and its error lands among granian's exit lines, once per worker. Each member of
    `DATABASE_URL` is tried with a real connection (TLS as `DB_SSLMODE` says, credentials
    checked) for `DB_CONNECT_TIMEOUT_MS`, again every half second for `DB_WAIT_FOR_PRIMARY_S`.
    Which member is the primary is still the workers' business (`app.db`).
    """
    import asyncio
    import time

    database = settings.database
    assert database.url is not None
    members = parse_host_list(database.url).members
    deadline = time.monotonic() + database.wait_for_primary_s
    while True:
        errors = asyncio.run(_connect_each(settings, [member.url for member in members]))
        if any(error is None for error in errors):
            return None
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    reasons = "; ".join(
        f"{member.name}: {redact_text(_reason(error))}"
        for member, error in zip(members, errors, strict=True)
        if error is not None
    )
    waited = f" after {database.wait_for_primary_s:g} s" if database.wait_for_primary_s else ""
    return (
        f"the database is unreachable{waited} ({reasons}): check DATABASE_URL and DB_SSLMODE,"
        " or set DB_WAIT_FOR_PRIMARY_S to wait for it"
    )


async def _connect_each(settings: Settings, urls: list[str]) -> list[BaseException | None]:
    import asyncio

    import asyncpg

    from app.schema.migrate import ssl_context

    timeout_s = settings.writer_pool.connect_timeout_s
    context = ssl_context(settings.database.sslmode)

    async def attempt(url: str) -> BaseException | None:
        rest = url.partition("://")[2]
        plain = f"postgresql://{rest.partition('?')[0]}"  # the libpq-only options stay out
        try:
            connection = await asyncpg.connect(plain, timeout=timeout_s, ssl=context)
        except Exception as error:  # any failure is the reason given
            return error
        await connection.close(timeout=timeout_s)
        return None

    return list(await asyncio.gather(*(attempt(url) for url in urls)))


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, TimeoutError):
        return "TimeoutError: no answer within DB_CONNECT_TIMEOUT_MS"
    if isinstance(error, OSError) and error.errno is not None:
        return type(error).__name__  # ConnectionRefusedError says it all
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def migrate(environ: dict[str, str], revision: str) -> int:
    """Apply migrations to DATABASE_URL (the development cluster's primary when unset), over
    TLS as `DB_SSLMODE` says, exactly as the pools connect."""
    from app.schema.migrate import MigrationConnectError, upgrade

    settings = _settings(environ)
    url = settings.database.url
    if url is None:
        from app.dev import local

        urls, _ = local.start()
        url = urls["DATABASE_URL"]
    try:
        upgrade(url, revision, sslmode=settings.database.sslmode)
    except MigrationConnectError as error:
        return _fail(f"not migrated: {error}")
    print(f"migrated to {revision}", file=sys.stderr)
    return 0


def destroy_cluster(*, yes: bool) -> int:
    """`db destroy`: stop the development cluster and delete its data wherever it lives
    (as root, outside the checkout too), after a confirmation or with `--yes`."""
    from app.dev import local

    paths = local.cluster_paths()
    if not paths:
        print(f"nothing to destroy: no embedded cluster under {local.CLUSTER_DIR}", file=sys.stderr)
        return 0
    listing = ", ".join(str(path) for path in paths)
    if not yes:
        if not sys.stdin.isatty():
            return _fail(f"`db destroy` deletes {listing}; confirm with --yes")
        answer = input(f"stop the embedded cluster and delete {listing}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1
    local.destroy()
    print(f"embedded PostgreSQL destroyed: deleted {listing}", file=sys.stderr)
    return 0


def database(action: str, *, yes: bool = False) -> int:
    """`db up|down|env|failover|rejoin|destroy`: the development cluster."""
    from app.dev import local

    if action == "destroy":
        return destroy_cluster(yes=yes)
    if action == "up":
        local.start()
        print(local.env_text(), end="")
    elif action == "down":
        local.stop()
    elif action == "failover":
        print(local.failover(), file=sys.stderr)
    elif action == "rejoin":
        print(local.rejoin(), file=sys.stderr)
    else:
        print(local.env_text(), end="")
    return 0


def set_password(environ: dict[str, str], username: str) -> int:
    """`user set-password USERNAME`: read a password from standard input (never from the
    command line, where `ps` would show it), hash it and store it on the primary."""
    import asyncio
    import getpass

    settings = _settings(environ)
    if settings.database.url is None:
        from app.dev import local

        urls, _ = local.start()
        environ.update(urls)
        settings = _settings(environ)
    if sys.stdin.isatty():
        password = getpass.getpass(f"new password for {username}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    from app.security.passwords import MAX_LENGTH, MIN_LENGTH

    if not MIN_LENGTH <= len(password) <= MAX_LENGTH or "\x00" in password:
        return _fail(f"a password has {MIN_LENGTH} to {MAX_LENGTH} characters and no NUL")
    if not asyncio.run(_store_password(settings, username, password)):
        return _fail(f"no user named {username!r}")
    print(f"password set for {username}", file=sys.stderr)
    return 0


async def _store_password(settings: Settings, username: str, password: str) -> bool:
    from app.db.cluster import Database
    from app.db.session import DbSession
    from app.domain.accounts import AccountRepository
    from app.security.passwords import Passwords

    database = Database(settings)
    await database.start()
    try:
        password_hash = await Passwords().hash(password)
        accounts = AccountRepository(DbSession(database))
        return await accounts.set_password_of(username, password_hash)
    finally:
        await database.stop()


def settings_help() -> str:
    """Every setting, from the field docstrings of `app.config` (the one place they are
    written): `VARIABLE  what it does`, grouped as the settings are."""
    import ast
    import inspect
    import itertools
    import re
    import textwrap

    import app.config

    group = re.compile(r"\s*\((`[A-Z][A-Z0-9_]{2,}\*?`[^()]*)\)")
    variable = re.compile(r"`([A-Z][A-Z0-9_]{2,}\*?)`(?:[,;:]\s*)?")
    lines = ["settings (environment variables; README.md's configuration table has each default):"]
    tree = ast.parse(inspect.getsource(app.config))
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or not node.name.endswith(("Settings", "Limits")):
            continue
        entries: list[tuple[str, str]] = []
        for field, doc in itertools.pairwise(node.body):
            if not (isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr)):
                continue
            if not isinstance(doc.value, ast.Constant) or not isinstance(doc.value.value, str):
                continue
            text = " ".join(doc.value.value.split())
            named = group.search(text)
            if named is None:
                continue
            names = variable.findall(named.group(1))
            rest = variable.sub("", named.group(1)).strip(" ,;")
            text = text[: named.start()] + (f" ({rest})" if rest else "") + text[named.end() :]
            entries.append((", ".join(names), text))
        if not entries:
            continue
        summary = " ".join((ast.get_docstring(node) or node.name).split("\n\n")[0].split())
        lines.append(f"\n{summary}")
        for listed, text in entries:
            wrapped = textwrap.wrap(text, 100 - 6)
            lines.append(f"  {listed}")
            lines.extend(f"      {line}" for line in wrapped)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="messenger", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "serve",
        help="serve the API with granian",
        description="Serve the API with granian on HOST:PORT. Without DATABASE_URL (outside"
        " production) a development cluster is started and migrated first.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate_parser = sub.add_parser("migrate", help="apply Alembic migrations")
    migrate_parser.add_argument("revision", nargs="?", default="head")
    db = sub.add_parser("db", help="the embedded development cluster")
    db.add_argument("action", choices=["up", "down", "env", "failover", "rejoin", "destroy"])
    db.add_argument("--yes", action="store_true", help="destroy: do not ask for confirmation")
    user = sub.add_parser("user", help="accounts: set a password (read from standard input)")
    user.add_argument("action", choices=["set-password"])
    user.add_argument("username")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    try:
        if args.command == "serve":
            return serve(environ)
        if args.command == "migrate":
            return migrate(environ, args.revision)
        if args.command == "user":
            return set_password(environ, args.username)
        return database(args.action, yes=args.yes)
    except ConfigError as error:
        return _fail(str(error))
    except Exception as error:  # one clear line, never a traceback with a DSN in it
        return _fail(redact_text(f"{type(error).__name__}: {error}"))
