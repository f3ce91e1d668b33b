"""The benchmark run: cluster, servers, scenarios, results.

Every comparison is measured in the same run with the targets interleaved (A B B A ...), so
the noise of a shared machine falls on both sides of a ratio alike.
"""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from app.dev.cluster import Node
from tests.bench import report
from tests.bench.auth import BenchAuth
from tests.bench.load import Result, Run, ensure_wrk, run_wrk
from tests.bench.seed import BenchCluster, DataSet
from tests.bench.servers import RssSampler, Server, cpu_used, http
from tests.bench.tail import difference, tail_counters


def _token_reads(exposition: str) -> dict[str, int]:
    """`db_consistency_token_reads_total` by `served_by`."""
    return {served_by: int(float(n)) for served_by, n in TOKEN_READS.findall(exposition)}


DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR") or tempfile.gettempdir()) / "messenger-bench"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCENARIOS = ("sends", "pages", "ryw", "sends_c1000", "lag", "users", "sweep")
PROBE = "/chats/1/messages?limit=1"
PROBE_USER = 1  # a member of chat 1 (tests/bench/seed.py)
TOKEN_READS = re.compile(
    r'^db_consistency_token_reads_total\{served_by="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE
)


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Config:
    """What to run and for how long; every field can be set by a `BENCH_*` variable."""

    mode: str
    duration_s: float  # one saturating run
    users_duration_s: float  # one run of the original's workload
    sweep_duration_s: float  # one run of a pool size
    rounds: int  # interleaved rounds per comparison
    sweep_rounds: int
    connections: int  # saturating scenarios
    user_connections: int  # the original's workload
    think_ms: int
    workers: int
    server_cpus: str | None
    load_cpus: str | None  # wrk and PostgreSQL
    users_workers: int  # the original's workload runs as production would: see `users`
    users_server_cpus: str | None
    users_load_cpus: str  # "" = not pinned
    wrk_threads: int
    pool_min: int
    pool_max: int
    pool_sizes: tuple[int, ...]
    scenarios: tuple[str, ...]
    keep_cluster: bool

    @classmethod
    def from_env(cls, mode: str) -> Config:
        quick = mode == "quick"
        pin = _env("BENCH_PIN", "1") not in {"0", "false", "no"}
        users_pin = _env("BENCH_USERS_PIN", "0") not in {"0", "false", "no"}
        scenarios = tuple(
            name.strip() for name in _env("BENCH_SCENARIOS", ",".join(SCENARIOS)).split(",")
        )
        unknown = set(scenarios) - set(SCENARIOS)
        if unknown:
            raise SystemExit(f"BENCH_SCENARIOS: unknown {sorted(unknown)}; known {SCENARIOS}")
        return cls(
            mode=mode,
            duration_s=float(_env("BENCH_DURATION_S", "3" if quick else "8")),
            users_duration_s=float(_env("BENCH_USERS_DURATION_S", "8" if quick else "15")),
            sweep_duration_s=float(_env("BENCH_SWEEP_DURATION_S", "3")),
            rounds=int(_env("BENCH_ROUNDS", "1" if quick else "2")),
            sweep_rounds=int(_env("BENCH_SWEEP_ROUNDS", "1" if quick else "4")),
            connections=int(_env("BENCH_CONNECTIONS", "64")),
            user_connections=int(_env("BENCH_USER_CONNECTIONS", "1000")),
            think_ms=int(_env("BENCH_THINK_MS", "1000")),
            workers=int(_env("BENCH_WORKERS", "1")),
            server_cpus=_env("BENCH_SERVER_CPUS", "0") if pin else None,
            load_cpus=_env("BENCH_LOAD_CPUS", "1") if pin else None,
            users_workers=int(_env("BENCH_USERS_WORKERS", "2")),
            users_server_cpus=_env("BENCH_SERVER_CPUS", "0") if users_pin else None,
            users_load_cpus=_env("BENCH_LOAD_CPUS", "1") if users_pin else "",
            wrk_threads=int(_env("BENCH_WRK_THREADS", "1")),
            pool_min=int(_env("BENCH_POOL_MIN", "4")),
            pool_max=int(_env("BENCH_POOL_MAX", "32")),
            pool_sizes=tuple(
                int(size)
                for size in _env("BENCH_POOL_SIZES", "2,8,32" if quick else "2,4,8,16,32").split(
                    ","
                )
            ),
            scenarios=scenarios,
            keep_cluster=_env("BENCH_KEEP_CLUSTER", "0") == "1",
        )


class Bench:
    """Owns the cluster and the servers of one run."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data = DataSet()
        self.cluster = BenchCluster(DATA_DIR / "cluster", self.data)
        self.nonce = secrets.token_hex(4)
        # Access tokens for every seeded user, minted before any load (a client caches its own).
        self.auth = BenchAuth()
        self.tokens_path = DATA_DIR / "tokens.txt"
        self.tokens = self.auth.write_tokens(self.data.users, self.tokens_path)

    def bearer(self, user_id: int) -> dict[str, str]:
        """The `Authorization` header of `user_id`."""
        return {"authorization": f"Bearer {self.tokens[user_id - 1]}"}

    def forget_tokens(self) -> None:
        self.tokens_path.unlink(missing_ok=True)

    # -- servers ---------------------------------------------------------------------------

    def service_env(self, pool_min: int, pool_max: int) -> dict[str, str]:
        """Production settings, pools as given for the writer and the replica."""
        return {
            "APP_ENV": "production",
            "DATABASE_URL": self.cluster.cluster.primary_url,
            "DATABASE_REPLICA_URLS": ",".join(self.cluster.cluster.replica_urls),
            "DB_SSLMODE": "disable",
            "DB_POOL_MIN": str(pool_min),
            "DB_POOL_MAX": str(pool_max),
            "DB_REPLICA_POOL_MIN": str(pool_min),
            "DB_REPLICA_POOL_MAX": str(pool_max),
            "AUTH_JWT_KEYS": self.auth.jwt_keys,
            "METRICS_TOKEN": self.auth.metrics_token,
            # A few wrk connections send for many users as fast as they can: the per-user
            # limits still run (their cost is measured) but never refuse.
            "SEND_LIMIT": "10000000",
            "CHAT_CREATE_LIMIT": "10000000",
            "REGISTER_LIMIT_PER_ADDRESS": "1000000",
            "REGISTER_LIMIT_GLOBAL": "10000000",
            "AUTH_LOGIN_LIMIT_PER_ADDRESS": "1000000",
        }

    def baseline_env(self, pool_min: int, pool_max: int) -> dict[str, str]:
        return {
            "BASELINE_DATABASE_URL": self.cluster.cluster.primary_url,
            "BASELINE_REPLICA_URL": self.cluster.cluster.replica_urls[0],
            "BASELINE_POOL_MIN": str(pool_min),
            "BASELINE_POOL_MAX": str(pool_max),
            "BASELINE_REPLICA_POOL_MIN": str(pool_min),
            "BASELINE_REPLICA_POOL_MAX": str(pool_max),
            "BASELINE_JWT_KEYS": self.auth.jwt_keys,
        }

    def start_service(self, pool_min: int, pool_max: int, *, users: bool = False) -> Server:
        """The service; `users`: in the layout of the original's workload."""
        env = self.service_env(pool_min, pool_max)
        workers, cpus = self._layout(users)
        return Server.service(env, workers, cpus).start(PROBE, self.bearer(PROBE_USER))

    def start_baseline(self, pool_min: int, pool_max: int, *, users: bool = False) -> Server:
        env = self.baseline_env(pool_min, pool_max)
        workers, cpus = self._layout(users)
        return Server.baseline(env, workers, cpus).start(PROBE, self.bearer(PROBE_USER))

    def _layout(self, users: bool) -> tuple[int, str | None]:
        config = self.config
        if users:
            return config.users_workers, config.users_server_cpus
        return config.workers, config.server_cpus

    def pin_postgres(self, cpus: str | None) -> None:
        """PostgreSQL on `cpus` (all of them when None)."""
        spec = cpus or f"0-{(os.cpu_count() or 1) - 1}"
        self.cluster.pin(list(_cpus(spec)))

    # -- load ------------------------------------------------------------------------------

    def wrk(
        self,
        server: Server,
        script: str,
        *,
        connections: int,
        duration_s: float,
        env: dict[str, str] | None = None,
        count_sends: bool = False,
        load_cpus: str | None = None,
    ) -> Run:
        """One wrk run with the server's RSS, CPU and SQL statements measured, and where
        the service served the reads that carried a consistency token."""
        wrk_env = {
            **self.wrk_env(),
            "BENCH_NONCE": f"{self.nonce}-{time.monotonic_ns()}",
            **(env or {}),
        }
        before = self.max_message_id() if count_sends else 0
        scrape_before = self.scrape(server)
        self.cluster.reset_statement_stats()
        server_before, pg_before = server.cpu_snapshot(), self.cluster.cpu_snapshot()
        with RssSampler(server) as rss:
            run = run_wrk(
                server.url,
                script,
                connections=connections,
                duration_s=duration_s,
                threads=self.config.wrk_threads,
                cpus=self.config.load_cpus if load_cpus is None else load_cpus,
                env=wrk_env,
            )
        cpu_server = cpu_used(server_before, server.cpu_snapshot())
        cpu_pg = cpu_used(pg_before, self.cluster.cpu_snapshot())
        if scrape_before is not None:
            scrape_after = self.scrape(server) or ""
            token_reads = _token_reads(scrape_before)
            for served_by, count in _token_reads(scrape_after).items():
                counted = count - token_reads.get(served_by, 0)
                if counted:
                    run.counts[f"token_reads_{served_by}"] = counted
            run.counts.update(difference(tail_counters(scrape_after), tail_counters(scrape_before)))
        for node, calls in self.cluster.page_reads().items():
            if calls:
                run.counts[f"page_reads_{node}"] = calls
        run.rss_total_mb = rss.peak_total / 2**20
        run.rss_worker_mb = rss.peak_worker / 2**20
        statements, exec_ms, by_statement = self.cluster.statement_stats()
        if run.requests:
            run.extra["db_statements_per_req"] = statements / run.requests
            run.extra["db_exec_us_per_req"] = exec_ms * 1000 / run.requests
            run.statements = {
                query: round(calls / run.requests, 3)
                for query, calls in by_statement.items()
                if calls / run.requests >= 0.01
            }
            run.extra["server_cpu_us_per_req"] = cpu_server / run.requests * 1e6
            run.extra["pg_cpu_us_per_req"] = cpu_pg / run.requests * 1e6
        run.extra["server_cpu_cores"] = cpu_server / run.duration_s
        if count_sends:
            run.extra["sends_per_s"] = (self.max_message_id() - before) / run.duration_s
        return run

    def wrk_env(self) -> dict[str, str]:
        """What every wrk script reads: the data set, the tokens, the think time."""
        return {
            **self.data.env(),
            "BENCH_TOKENS_FILE": str(self.tokens_path),
            "BENCH_THINK_MS": str(self.config.think_ms),
        }

    def scrape(self, server: Server) -> str | None:
        """The service's `/metrics` (with the operator's token); None for the baseline."""
        if server.name != "service":
            return None
        return http(f"{server.url}/metrics", headers=self.auth.metrics_headers())[2].decode()

    def interleave(
        self,
        targets: dict[str, tuple[Server, str, dict[str, str]]],
        *,
        connections: int,
        duration_s: float,
        count_sends: bool = False,
        load_cpus: str | None = None,
        rounds: int | None = None,
    ) -> dict[str, Result]:
        """Each target once per round, the order reversed every other round (A B, B A)."""
        results = {name: Result() for name in targets}
        names = list(targets)
        for round_no in range(self.config.rounds if rounds is None else rounds):
            order = names if round_no % 2 == 0 else names[::-1]
            for name in order:
                server, script, env = targets[name]
                run = self.wrk(
                    server,
                    script,
                    connections=connections,
                    duration_s=duration_s,
                    env=env,
                    count_sends=count_sends,
                    load_cpus=load_cpus,
                )
                results[name].runs.append(run)
                _log(f"  {name:<16} {_line(run)}")
        return results

    def warm_up(self, *servers: Server, load_cpus: str | None = None) -> None:
        """Fill caches and prepared statements; not measured."""
        for server in servers:
            for script in ("send", "page"):
                self.wrk(server, script, connections=50, duration_s=2, load_cpus=load_cpus)

    def max_message_id(self) -> int:
        return int(self.cluster.primary.psql("SELECT coalesce(max(id), 0) FROM messages"))

    # -- scenarios -------------------------------------------------------------------------

    def run(self) -> dict[str, object]:
        """Everything the configuration asks for; returns the report's data."""
        config = self.config
        started = time.monotonic()
        load_start = os.getloadavg()
        fingerprint = report.app_fingerprint()
        _log(f"bench ({config.mode}): seeding a fresh cluster under {DATA_DIR / 'cluster'}")
        seed_s = self.cluster.start()
        pg_version = self.cluster.server_version()
        self.pin_postgres(config.load_cpus)
        _log(f"  seeded {self.data} in {seed_s:.1f}s")
        scenarios: dict[str, dict[str, Result]] = {}
        extra: dict[str, object] = {}
        try:
            with ExitStack() as stack:
                service = stack.enter_context(self.start_service(config.pool_min, config.pool_max))
                baseline = stack.enter_context(
                    self.start_baseline(config.pool_min, config.pool_max)
                )
                extra["same_json"] = same_json(service, baseline, self.bearer(SAME_JSON_USER))
                self.warm_up(service, baseline)
                if "sends" in config.scenarios:
                    _log("sends: saturating POST /chats/{id}/messages")
                    scenarios["sends"] = self.interleave(
                        {
                            "service": (service, "send", {}),
                            "baseline": (baseline, "send", {}),
                            "baseline+token": (baseline, "send", {"BENCH_PREFIX": "/t"}),
                        },
                        connections=config.connections,
                        duration_s=config.duration_s,
                    )
                if "pages" in config.scenarios:
                    _log("pages: saturating GET /chats/{id}/messages?limit=50")
                    scenarios["pages"] = self.interleave(
                        {
                            "service": (service, "page", {"BENCH_LIMIT": "50"}),
                            "baseline": (baseline, "page", {"BENCH_LIMIT": "50"}),
                        },
                        connections=config.connections,
                        duration_s=config.duration_s,
                    )
                if "ryw" in config.scenarios:
                    _log(
                        "ryw: send, then read the same chat with the send's consistency token"
                        " (and the same mix without it)"
                    )
                    scenarios["ryw"] = self.interleave(
                        {
                            "service": (service, "ryw", {}),
                            "service, no token": (service, "ryw", {"BENCH_RYW_TOKEN": "0"}),
                            "baseline": (baseline, "ryw", {"BENCH_PREFIX": "/t"}),
                            "baseline, no token": (
                                baseline,
                                "ryw",
                                {"BENCH_PREFIX": "/t", "BENCH_RYW_TOKEN": "0"},
                            ),
                        },
                        connections=config.connections,
                        duration_s=config.duration_s,
                    )
                if "sends_c1000" in config.scenarios:
                    _log(
                        f"sends_c1000: sends from {config.user_connections} connections at once"
                        " (one worker: memory per worker, overload)"
                    )
                    scenarios["sends_c1000"] = self.interleave(
                        {
                            "service": (service, "send", {}),
                            "baseline": (baseline, "send", {}),
                        },
                        connections=config.user_connections,
                        duration_s=config.duration_s,
                        rounds=1,
                    )
                if "lag" in config.scenarios:
                    _log("lag: replica replay paused, pages of 50 with a consistency token")
                    scenarios["lag"], extra["lag"] = self.lagging_replica(service, baseline)
            if "users" in config.scenarios:
                scenarios["users"] = self.users()
            if "sweep" in config.scenarios:
                _log(f"sweep: pool sizes {config.pool_sizes} (min = max, writer and replica)")
                scenarios.update(self.sweep())
        finally:
            self.forget_tokens()
            if config.keep_cluster:
                _log(f"cluster kept under {DATA_DIR / 'cluster'}")
            else:
                self.cluster.destroy()
        extra["app_fingerprint"] = fingerprint
        extra["app_fingerprint_end"] = report.app_fingerprint()
        extra["app_changed_during_run"] = extra["app_fingerprint_end"] != fingerprint
        extra["seed_s"] = round(seed_s, 1)
        extra["runtime_s"] = round(time.monotonic() - started, 1)
        extra["loadavg_start"] = [round(x, 2) for x in load_start]
        extra["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        return {
            "config": asdict(self.config),
            "data_set": asdict(self.data),
            "machine": report.machine(pg_version),
            "scenarios": {
                scenario: {name: result.summary() for name, result in targets.items()}
                for scenario, targets in scenarios.items()
            },
            "extra": extra,
        }

    def lagging_replica(
        self, service: Server, baseline: Server
    ) -> tuple[dict[str, Result], dict[str, object]]:
        """Pause replay on the replica; reads that carry a fresh token must use the writer."""
        replica = self.cluster.replica
        replica.psql("SELECT pg_wal_replay_pause()")
        info: dict[str, object] = {}
        try:
            _wait_paused(replica)
            auth = self.bearer(PROBE_USER)
            token, message_id = _send(service.url, auth)
            body = _get(f"{service.url}/chats/1/messages?limit=5", auth, token)
            info["read_your_writes"] = f'"id":{message_id},' in body
            results = self.interleave(
                {
                    "service": (service, "page", {"BENCH_LIMIT": "50", "BENCH_TOKEN": token}),
                    "baseline": (baseline, "page", {"BENCH_LIMIT": "50", "BENCH_TOKEN": token}),
                },
                connections=self.config.connections,
                duration_s=self.config.duration_s,
            )
            behind = self.cluster.primary.psql(
                "SELECT pg_current_wal_lsn() - replay_lsn FROM pg_stat_replication"
            )
            info["replica_behind_bytes"] = int(float(behind or 0))
        finally:
            replica.psql("SELECT pg_wal_replay_resume()")
            self.cluster.cluster.wait_streaming()
        _log(f"  read-your-writes with the replica paused: {info['read_your_writes']}")
        return results, info

    def users(self) -> dict[str, Result]:
        """The original's workload, in its own layout (default: 2 workers, nothing pinned,
        as production on this 2-core box would run; one pinned core is not enough for
        1,000 users even for the baseline)."""
        config = self.config
        pinned = f"on CPU {config.users_server_cpus}" if config.users_server_cpus else "unpinned"
        _log(
            f"users: {config.user_connections} users, think {config.think_ms} ms, 10% sends,"
            f" pages of 20; {config.users_workers} worker(s) {pinned}"
        )
        self.pin_postgres(config.users_load_cpus)
        try:
            with (
                self.start_service(config.pool_min, config.pool_max, users=True) as service,
                self.start_baseline(config.pool_min, config.pool_max, users=True) as baseline,
            ):
                self.warm_up(service, baseline, load_cpus=config.users_load_cpus)
                return self.interleave(
                    {
                        "service": (service, "users", {}),
                        "baseline": (baseline, "users", {}),
                    },
                    connections=config.user_connections,
                    duration_s=config.users_duration_s,
                    count_sends=True,
                    load_cpus=config.users_load_cpus,
                )
        finally:
            self.pin_postgres(config.load_cpus)

    def sweep(self) -> dict[str, dict[str, Result]]:
        """One service per pool size, all started at once, measured interleaved."""
        config = self.config
        sends: dict[str, Result] = {}
        pages: dict[str, Result] = {}
        with ExitStack() as stack:
            servers = {
                size: stack.enter_context(self.start_service(size, size))
                for size in config.pool_sizes
            }
            self.warm_up(*servers.values())
            sizes = list(config.pool_sizes)
            for round_no in range(config.sweep_rounds):
                # Rotated and reversed by turns, so no size keeps a place in time: the machine's
                # other load drifts, and a fixed order would turn that drift into a trend.
                shift = (round_no // 2) % len(sizes)
                order = sizes[shift:] + sizes[:shift]
                for size in order if round_no % 2 == 0 else order[::-1]:
                    name = f"pool {size}"
                    for script, results, env in (
                        ("send", sends, {}),
                        ("page", pages, {"BENCH_LIMIT": "50"}),
                    ):
                        run = self.wrk(
                            servers[size],
                            script,
                            connections=config.connections,
                            duration_s=config.sweep_duration_s,
                            env=env,
                        )
                        results.setdefault(name, Result()).runs.append(run)
                        _log(f"  {name:<8} {script:<5} {_line(run)}")
        return {"sweep_sends": sends, "sweep_pages": pages}


SAME_JSON_USER = 61  # a member of chat 7 (tests/bench/seed.py)


def same_json(service: Server, baseline: Server, auth: dict[str, str]) -> bool:
    """Whether both servers answer the same page to the same member with the same bytes."""
    path = "/chats/7/messages?limit=20&before=90000"
    return _get(service.url + path, auth) == _get(baseline.url + path, auth)


def _send(url: str, auth: dict[str, str]) -> tuple[str, int]:
    """Send one message to chat 1 through the service as `auth`'s user (a member); its
    consistency token and id."""
    body = json.dumps({"body": "read your writes", "client_msg_id": None})
    _, headers, answer = http(
        f"{url}/chats/1/messages",
        body=body.encode(),
        headers={"content-type": "application/json", **auth},
    )
    return headers["x-consistency-token"], int(json.loads(answer)["id"])


def _get(url: str, auth: dict[str, str], token: str | None = None) -> str:
    headers = {**auth, "x-consistency-token": token} if token else auth
    return http(url, headers=headers)[2].decode()


def _wait_paused(node: Node, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while node.psql("SELECT pg_get_wal_replay_pause_state()") != "paused":
        if time.monotonic() > deadline:
            raise RuntimeError("replica replay did not pause")
        time.sleep(0.05)


def _cpus(spec: str) -> Iterator[int]:
    for part in spec.split(","):
        low, _, high = part.partition("-")
        yield from range(int(low), int(high or low) + 1)


def _line(run: Run) -> str:
    q = run.quantiles_ms
    errors = sum(run.errors.values())
    return (
        f"{run.rps:8.0f} req/s  p50 {q.get(50.0, 0):7.1f}  p99 {q.get(99.0, 0):7.1f} ms"
        f"  errors {errors}  rss {run.rss_worker_mb:.0f} MB"
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def _raised_fd_limit() -> Iterator[None]:
    """1,000 connections need more descriptors than a default soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def main(argv: list[str]) -> int:
    """`python -m tests.bench [full|quick|profile]`."""
    mode = argv[0] if argv else "full"
    if mode not in {"full", "quick", "profile"}:
        print("usage: python -m tests.bench [full|quick|profile]", file=sys.stderr)
        return 2
    ensure_wrk()
    config = Config.from_env(mode)
    with _raised_fd_limit():
        if mode == "profile":
            from tests.bench.profile import run_profile

            return run_profile(Bench(config), RESULTS_DIR)
        data = Bench(config).run()
    report.write(data, RESULTS_DIR)
    _log(f"wrote {RESULTS_DIR / 'latest.md'} and latest.json")
    return 0
