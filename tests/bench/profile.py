"""`just bench profile`: where a worker's CPU goes under saturating sends, pages and the
read-your-writes mix (a send, then a read with its consistency token).

py-spy (a dev dependency) samples the granian worker of the service, and of the baseline for
comparison, while wrk saturates it, without pausing it (`--nonblocking`: pausing a worker
with many threads for every sample slowed the service four times more than the baseline).
Python runs on the main thread; other threads' samples (a thread pool, if the app hands work
to one) are counted too and shown apart. Each sample is charged twice:

- to a component of a request (`COMPONENTS`): the first component, in their order, with a
  frame anywhere on the stack (an entry such as `authenticate_request`), or else whose own
  code the innermost non-stdlib frame is; the rest by layer. Components are chosen to exist
  on both servers (the bearer check, pool checkout, statements, ...), so the difference per
  request reads off the table;
- to a layer: the innermost non-stdlib frame's (stdlib frames such as contextlib or asyncio
  are charged to their caller).

The worker's measured CPU time per request turns shares into microseconds. Raw stacks
(collapsed format, for speedscope or flamegraph.pl) are kept under `results/profile/`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tests.bench import report
from tests.bench.load import LUA_DIR, ensure_wrk
from tests.bench.servers import Server, taskset

if TYPE_CHECKING:
    from tests.bench.runner import Bench

NATIVE = "event loop and I/O: uvloop, granian (native code under the loop)"
# (layer, pattern on the frame's file): the innermost non-stdlib frame decides.
LAYERS: list[tuple[str, str]] = [
    ("asyncpg (driver, protocol)", "asyncpg/"),
    ("SQLAlchemy Core: execute, results, greenlet bridge", "sqlalchemy/engine/"),
    ("SQLAlchemy Core: execute, results, greenlet bridge", "sqlalchemy/sql/"),
    ("SQLAlchemy Core: execute, results, greenlet bridge", "sqlalchemy/util/"),
    ("SQLAlchemy Core: execute, results, greenlet bridge", "sqlalchemy/ext/"),
    ("SQLAlchemy Core: execute, results, greenlet bridge", "sqlalchemy/dialects/"),
    ("SQLAlchemy pool: checkout, checkin, events", "sqlalchemy/pool/"),
    ("SQLAlchemy pool: checkout, checkin, events", "sqlalchemy/event/"),
    ("retry wrapper (stamina, tenacity)", "stamina/"),
    ("retry wrapper (stamina, tenacity)", "tenacity/"),
    ("metrics (prometheus_client, HTTP metrics middleware)", "prometheus_client/"),
    ("metrics (prometheus_client, HTTP metrics middleware)", "litestar/plugins/prometheus/"),
    ("metrics (prometheus_client, HTTP metrics middleware)", "app/ops/http_metrics.py"),
    ("logging (structlog)", "structlog/"),
    ("anyio task groups (Litestar's DI of 2+ dependencies)", "anyio/"),
    ("anyio task groups (Litestar's DI of 2+ dependencies)", "sniffio/"),
    ("thread pool handoff (concurrent.futures)", "concurrent/futures/"),
    # Authentication: Litestar's JWT middleware and Token before PyJWT (its path has jwt/ too).
    ("auth: Litestar JWT middleware, Token, app's key ring", "litestar/security/"),
    ("auth: Litestar JWT middleware, Token, app's key ring", "litestar/middleware/authentication"),
    ("auth: Litestar JWT middleware, Token, app's key ring", "app/security/"),
    ("auth: Litestar JWT middleware, Token, app's key ring", "app/api/auth.py"),
    ("auth: PyJWT (decode, verify)", "jwt/"),
    ("app: strict input (app/api/inputs.py)", "app/api/inputs.py"),
    ("app: data layer (session, pool wrapper, routing)", "app/db/"),
    ("app: repositories and records", "app/domain/"),
    ("app: API, DI providers, middleware, hooks", "app/api/"),
    ("app: API, DI providers, middleware, hooks", "app/ops/"),
    ("app: API, DI providers, middleware, hooks", "app/"),
    ("baseline app", "tests/bench/"),
    ("Litestar: DI and parameter parsing", "litestar/_kwargs/"),
    ("Litestar: DI and parameter parsing", "litestar/_signature/"),
    ("Litestar: DI and parameter parsing", "litestar/di.py"),
    ("Litestar: response building and encoding", "litestar/response/"),
    ("Litestar: response building and encoding", "litestar/serialization/"),
    ("Litestar: response building and encoding", "litestar/handlers/"),
    ("Litestar: routing, middleware, request objects", "litestar/"),
    (NATIVE, "granian/"),
    ("uvloop", "uvloop/"),
]
THREAD_HOP = "auth: a sync `retrieve_user_handler` run in a worker thread (the handoff)"
# A request's components, in priority order: (name, frames that put a sample in it wherever
# they are on the stack, frames that do so only as the innermost non-stdlib frame). Entries
# must not wrap the rest of the request (a middleware's __call__ does: own-code only).
COMPONENTS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (
        "token round trip after a write (pg_current_wal_lsn)",
        ("_record_position (", "_wal_position (tests/bench/baseline.py"),
        (),
    ),
    (
        "token read: asking the replica whether it replayed (replay_position)",
        ("replay_position (",),
        (),
    ),
    (
        THREAD_HOP,
        ("AsyncCallable.__call__ (", "sync_to_thread (", "_run_sync_asyncio ("),
        ("(concurrent/futures/",),
    ),
    (
        "auth: bearer token check (middleware, PyJWT, token object)",
        (
            "authenticate_request (litestar/",
            "(jwt/",
            "(litestar/security/",
            "caller (tests/bench/baseline.py",
            "(app/api/auth.py",
            "(app/security/",
        ),
        ("AbstractAuthenticationMiddleware.__call__ (", "should_bypass_middleware ("),
    ),
    ("strict input (app/api/inputs.py)", ("(app/api/inputs.py",), ()),
    (
        # Litestar resolves two or more independent dependencies in an anyio task group (a
        # task each); one is awaited directly.
        "DI: dependencies (a task group when two or more), providers",
        (
            "resolve_dependencies (",
            "resolve_dependency (",
            "(app/api/dependencies.py",
            "(litestar/di.py",
            "(litestar/_kwargs/dependencies.py",
            "(anyio/",
            "(sniffio/",
        ),
        (),
    ),
    (
        "parameters and body (Litestar kwargs and signature model)",
        ("(litestar/_kwargs/", "(litestar/_signature/", "Request.body (", "Request.stream ("),
        (),
    ),
    (
        # SQLAlchemy's pool runs in greenlets (`greenlet_spawn`), whose stacks do not show the
        # `Pool.acquire` that spawned them: the service uses SQLAlchemy for its pool only.
        "pool: checkout and return",
        ("Pool.acquire (app/db/pool.py", "(asyncpg/pool.py", "(sqlalchemy/", "(app/db/engine.py"),
        (),
    ),
    (
        "SQL statements (asyncpg) and rows to structs",
        ("(asyncpg/", "(app/db/connection.py", "<listcomp> (tests/bench/baseline.py"),
        (),
    ),
    (
        "response: building and JSON encoding",
        ("to_asgi_response (", "encode_json (", "ASGIResponse.__init__ (", "Response.__init__ ("),
        (),
    ),
    ("consistency header (before_send hook)", ("add_consistency_token (",), ()),
    (
        "HTTP metrics (middleware, prometheus_client)",
        (),
        ("(app/ops/http_metrics.py", "(prometheus_client/"),
    ),
]
# Questions asked of the profile: the share of samples with a matching frame anywhere.
MARKERS: list[tuple[str, tuple[str, ...]]] = [
    ("auth: PyJWT", ("(jwt/",)),
    ("auth: Litestar's Token object after PyJWT (Token.decode)", ("Token.decode (",)),
    (
        "SQLAlchemy execute incl. driver",
        ("AsyncConnection.execute (", "Connection.execute (sqlalchemy"),
    ),
    ("asyncpg driver (all)", ("asyncpg/",)),
    (
        "connection checkout + return (Pool.acquire, engine.connect, close)",
        (
            "Pool.acquire (app/db/pool.py",
            "AsyncConnection.start (",
            "Engine.connect (",
            "AsyncConnection.close (",
            "Connection.close (sqlalchemy",
        ),
    ),
    ("  of which pool events (app/db/engine.py)", ("(app/db/engine.py",)),
    (
        "greenlet bridge (greenlet_spawn, await_only)",
        ("greenlet_spawn (", "await_only (", "_AsyncIoGreenlet"),
    ),
    ("retry wrapper (stamina/tenacity)", ("stamina/", "tenacity/")),
    ("row decoding (rows to structs)", ("decode (app/db/connection.py", "<listcomp> (")),
    ("prometheus_client (metric updates)", ("prometheus_client/",)),
    ("structlog", ("structlog/",)),
]
STDLIB = re.compile(
    r"\((<frozen [^>]+>|asyncio/|contextlib\.py|weakref\.py|typing\.py|inspect\.py|abc\.py|"
    r"functools\.py|enum\.py|collections/|_collections_abc|dataclasses\.py|threading\.py|"
    r"logging/|json/|re/|copy\.py|random\.py|datetime\.py|uuid\.py|types\.py|ssl\.py)"
)
FRAME_FILE = re.compile(r"\(([^:()]+)(?::\d+)?\)$")


@dataclass
class Profile:
    """One profiled run: samples by layer and by marker, and the measured CPU per request."""

    name: str
    rps: float
    cpu_us_per_req: float
    samples: int = 0
    components: Counter[str] = field(default_factory=Counter)
    layers: Counter[str] = field(default_factory=Counter)
    markers: Counter[str] = field(default_factory=Counter)
    functions: Counter[str] = field(default_factory=Counter)


def analyse(path: Path, profile: Profile) -> Profile:
    """Fold py-spy's raw (collapsed) stacks of the main thread into `profile`.

    Other threads are left out: granian's Rust threads show no Python frames, and a thread
    pool's workers (if any) were sampled idle in `_worker` nearly always; what handing work to
    them costs shows on the main thread (`THREAD_HOP`)."""
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or "MainThread" not in frames[0]:
            continue
        count = int(count_text)
        frames = frames[1:]
        profile.samples += count
        layer, function = _layer(frames)
        profile.layers[layer] += count
        profile.functions[function] += count
        text = ";".join(frames)
        profile.components[_component(text, function) or f"rest: {layer}"] += count
        for marker, patterns in MARKERS:
            if any(pattern in text for pattern in patterns):
                profile.markers[marker] += count
    return profile


def _component(text: str, innermost: str) -> str | None:
    """The first component with an entry frame in the stack `text` or whose own code
    `innermost` (the innermost non-stdlib frame) is."""
    for name, entries, own in COMPONENTS:
        if any(entry in text for entry in entries) or any(o in innermost for o in own):
            return name
    return None


def _layer(frames: list[str]) -> tuple[str, str]:
    """The layer and function of the innermost non-stdlib frame."""
    for frame in reversed(frames):
        if STDLIB.search(frame):
            continue
        match = FRAME_FILE.search(frame)
        file = match.group(1) if match else ""
        function = re.sub(r":\d+\)$", ")", frame)
        for layer, pattern in LAYERS:
            if file.startswith(pattern) or f"/{pattern}" in file:
                return layer, function
        return "other", function
    return NATIVE, "(no Python frame)"


def record(
    bench: Bench,
    server: Server,
    script: str,
    *,
    name: str,
    env: dict[str, str],
    out: Path,
    seconds: float,
) -> Profile:
    """Saturate `server` with wrk while py-spy samples its worker's main thread."""
    config = bench.config
    worker = server.workers()[0]
    wrk_env = {
        **bench.wrk_env(),
        "BENCH_LUA_DIR": str(LUA_DIR),
        "BENCH_NONCE": f"{bench.nonce}-profile-{time.monotonic_ns()}",
        "BENCH_OUT": str(out.with_suffix(".wrk.json")),
        **env,
    }
    wrk_command = [
        *taskset(config.load_cpus), ensure_wrk(), f"-t{config.wrk_threads}",
        f"-c{config.connections}", f"-d{round(seconds) + 3}s", "--timeout=10s",
        "-s", str(LUA_DIR / f"{script}.lua"), server.url,
    ]  # fmt: skip
    wrk = subprocess.Popen(
        wrk_command,
        env={**os.environ, **wrk_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)
        cpu_before = worker.cpu_times()
        started = time.monotonic()
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        py_spy_command = [
            *taskset(config.load_cpus), py_spy, "record", "--pid", str(worker.pid),
            "--duration", str(round(seconds)), "--rate", "250", "--threads", "--nonblocking",
            "--format", "raw", "--output", str(out),
        ]  # fmt: skip
        subprocess.run(
            py_spy_command,
            check=True,
            capture_output=True,
            timeout=seconds + 60,
        )
        elapsed = time.monotonic() - started
        cpu_after = worker.cpu_times()
    finally:
        wrk.wait(timeout=seconds + 30)
    data = json.loads(out.with_suffix(".wrk.json").read_text())
    out.with_suffix(".wrk.json").unlink()
    rps = data["requests"] / (data["duration_us"] / 1e6)
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    profile = Profile(name=name, rps=rps, cpu_us_per_req=cpu / (rps * elapsed) * 1e6)
    return analyse(out, profile)


def markdown(profiles: list[Profile], code: str = "") -> str:
    """Tables: layers, markers and top functions, in % of samples and in us per request."""
    lines = [
        "# Profile: where a worker's CPU goes",
        "",
        code,
        "",
        "py-spy at 250 Hz on the granian worker's main thread, without pausing it "
        "(`--nonblocking`), while wrk saturates it; each sample is charged to a component of "
        "the request and to the layer of its innermost non-stdlib frame (`tests/bench/"
        "profile.py`). us/req = share x the worker's measured CPU per request (under the "
        "profiler). Regenerate with `just bench profile`. What the components are and what "
        "would close each gap: docs/performance.md (Where the difference goes).",
        "",
        "| run | req/s | worker CPU us/req | samples |",
        "|---|---:|---:|---:|",
    ]
    for p in profiles:
        lines.append(f"| {p.name} | {p.rps:.0f} | {p.cpu_us_per_req:.0f} | {p.samples} |")
    lines += _components(profiles)
    names = [p.name for p in profiles]
    header = "| " + " | ".join(["layer (exclusive)", *names]) + " |"
    lines += ["", "## By layer (% of samples, us/req)", "", header]
    lines.append("|---|" + "---:|" * len(profiles))
    layers = sorted(
        {layer for p in profiles for layer in p.layers},
        key=lambda layer: -sum(p.layers[layer] / max(p.samples, 1) for p in profiles),
    )
    for layer in layers:
        lines.append(
            f"| {layer} | " + " | ".join(_cell(p, p.layers[layer]) for p in profiles) + " |"
        )
    lines += ["", "## Questions (% of samples with such a frame; they overlap)", ""]
    lines.append("| " + " | ".join(["frames matching", *names]) + " |")
    lines.append("|---|" + "---:|" * len(profiles))
    for marker, _ in MARKERS:
        lines.append(
            f"| {marker} | " + " | ".join(_cell(p, p.markers[marker]) for p in profiles) + " |"
        )
    for p in profiles:
        lines += [
            "",
            f"## Top functions by own time: {p.name}",
            "",
            "| % | function |",
            "|---:|---|",
        ]
        for function, count in p.functions.most_common(15):
            lines.append(f"| {100 * count / max(p.samples, 1):.1f} | `{function}` |")
    return "\n".join(lines) + "\n"


def _components(profiles: list[Profile]) -> list[str]:
    """Per component, each service run next to the baseline run after it and the difference."""
    pairs = [
        (service, baseline)
        for service, baseline in itertools.pairwise(profiles)
        if service.name.startswith("service") and baseline.name.startswith("baseline")
    ]
    if not pairs:
        return []

    def us(profile: Profile, name: str) -> float:
        return profile.components[name] / max(profile.samples, 1) * profile.cpu_us_per_req

    named = [name for name, _, _ in COMPONENTS]
    rest = sorted(
        {name for p in profiles for name in p.components if name not in named},
        key=lambda name: -sum(us(p, name) for p in profiles),
    )
    header = ["component (exclusive, us/req)"]
    for service, baseline in pairs:
        header += [service.name, baseline.name, "difference"]
    lines = [
        "",
        "## By component (us/req; the service next to the baseline)",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|---:|---:|" * len(pairs),
    ]
    for name in [*named, *rest]:
        cells = []
        for service, baseline in pairs:
            a, b = us(service, name), us(baseline, name)
            cells += [f"{a:.0f}", f"{b:.0f}", f"{a - b:+.0f}"]
        if any(cell not in {"0", "+0", "-0"} for cell in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = []
    for service, baseline in pairs:
        a, b = service.cpu_us_per_req, baseline.cpu_us_per_req
        totals += [f"{a:.0f}", f"{b:.0f}", f"{a - b:+.0f}"]
    lines.append("| **total (worker CPU)** | " + " | ".join(totals) + " |")
    return lines


def _cell(profile: Profile, count: int) -> str:
    share = count / max(profile.samples, 1)
    return f"{100 * share:.1f}% ({share * profile.cpu_us_per_req:.0f})"


def run_profile(bench: Bench, results_dir: Path) -> int:
    """Seed, start both servers, profile sends, pages and the read-your-writes mix on each;
    write profile.md."""
    config = bench.config
    seconds = float(config.duration_s) if config.duration_s >= 5 else 10.0
    out_dir = results_dir / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ".gitignore").write_text("*\n")
    bench.cluster.start()
    bench.pin_postgres(config.load_cpus)
    profiles: list[Profile] = []
    try:
        with (
            bench.start_service(config.pool_min, config.pool_max) as service,
            bench.start_baseline(config.pool_min, config.pool_max) as baseline,
        ):
            bench.warm_up(service, baseline)
            # The baseline sends with the token's round trip (`/t`), as the service does.
            token = {"BENCH_PREFIX": "/t"}
            runs = [  # each pair back to back: the machine's other load falls on both
                (service, "service sends", "send", {}),
                (baseline, "baseline+token sends", "send", token),
                (service, "service pages", "page", {"BENCH_LIMIT": "50"}),
                (baseline, "baseline pages", "page", {"BENCH_LIMIT": "50"}),
                (service, "service ryw", "ryw", {}),
                (baseline, "baseline ryw", "ryw", token),
            ]
            for server, name, script, env in runs:
                out = out_dir / f"{name.replace(' ', '-').replace('+', '-')}.txt"
                profile = record(
                    bench, server, script, name=name, env=env, out=out, seconds=seconds
                )
                profiles.append(profile)
                print(
                    f"  {profile.name}: {profile.rps:.0f} req/s, "
                    f"{profile.cpu_us_per_req:.0f} us CPU/req, {profile.samples} samples",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        bench.forget_tokens()
        if not config.keep_cluster:
            bench.cluster.destroy()
    code = (
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, commit {report.git_commit()}"
        + (" with uncommitted changes under app/" if report.app_modified() else "")
        + f", app/ fingerprint {report.app_fingerprint()}; pools {config.pool_min}/"
        f"{config.pool_max}, {config.connections} connections, {config.workers} worker(s) "
        f"(the first one profiled), granian on CPU {config.server_cpus or 'any'}."
    )
    (results_dir / "profile.md").write_text(markdown(profiles, code))
    print(f"wrote {results_dir / 'profile.md'}; raw stacks in {out_dir}", file=sys.stderr)
    return 0
