"""`python -m tests.bench.ab NAME=TREE ...`: copies of the tree against each other, concurrently.

Sequential runs on a shared 2-core machine move by +-10% in CPU per request, more than most
single changes save. Here every variant (a copy of the checkout with one change, e.g. from
`git worktree add`) and the baseline are served at once, all on the server CPU, and loaded
at once by one wrk each for every round, so the machine's other load falls on each alike.
Each server then runs at a fraction of its saturating rate, which inflates every
per-request cost: read the result as shares of the first variant's CPU per request.

Each variant's `python -m app serve` runs from its own directory with this interpreter (the
current directory comes first on `sys.path`, before the editable install of the checkout).
Knobs: `AB_ROUNDS` (6), `AB_DURATION_S` (6), `AB_CONNECTIONS` (32 per server),
`AB_SCRIPTS` (`send,page,ryw`).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from tests.bench.load import ensure_wrk, run_wrk
from tests.bench.runner import PROBE, PROBE_USER, Bench, Config, _raised_fd_limit
from tests.bench.servers import Server


def _load(bench: Bench, server: Server, script: str, env: dict[str, str], out: list[float]) -> None:
    """One wrk run against `server`; appends its server CPU us/req and req/s to `out`."""
    connections = int(os.environ.get("AB_CONNECTIONS", "32"))
    before = server.cpu_seconds()
    run = run_wrk(
        server.url,
        script,
        connections=connections,
        duration_s=float(os.environ.get("AB_DURATION_S", "6")),
        threads=1,
        cpus=bench.config.load_cpus,
        env={**bench.wrk_env(), "BENCH_NONCE": f"{bench.nonce}-{time.monotonic_ns()}", **env},
    )
    out += [(server.cpu_seconds() - before) / max(run.requests, 1) * 1e6, run.rps]


def compare(bench: Bench, variants: dict[str, Path], scripts: list[str], rounds: int) -> str:
    """Every round loads every server at once; the median CPU us/req per target and script,
    and each variant's median paired difference to the first, in % of the first's."""
    lines = []
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                Server.service(bench.service_env(4, 32), 1, bench.config.server_cpus, tree).start(
                    PROBE, bench.bearer(PROBE_USER)
                )
            )
            for name, tree in variants.items()
        }
        servers["baseline"] = stack.enter_context(bench.start_baseline(4, 32))
        bench.warm_up(*servers.values())
        first = next(iter(variants))
        for script in scripts:
            env = {"BENCH_LIMIT": "50"} if script == "page" else {}
            cpu: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(rounds):
                results: dict[str, list[float]] = {name: [] for name in servers}
                threads = [
                    threading.Thread(
                        target=_load,
                        args=(
                            bench,
                            server,
                            script,
                            # The baseline's sends with the token round trip, as the service's.
                            {**env, "BENCH_PREFIX": "/t"} if name == "baseline" else env,
                            results[name],
                        ),
                    )
                    for name, server in servers.items()
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                for name in servers:
                    cpu[name].append(results[name][0])
            reference = statistics.median(cpu[first])
            for name, values in cpu.items():
                paired = statistics.median(a - b for a, b in zip(values, cpu[first], strict=True))
                lines.append(
                    f"{script:5} {name:16} CPU/req median {statistics.median(values):6.0f} us"
                    f"  vs {first}: {100 * paired / reference:+5.1f}%"
                    f"  rounds {[round(v) for v in values]}"
                )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or any("=" not in arg for arg in argv):
        print("usage: python -m tests.bench.ab NAME=TREE [NAME=TREE ...]", file=sys.stderr)
        return 2
    variants = {name: Path(tree).resolve() for name, _, tree in (a.partition("=") for a in argv)}
    ensure_wrk()
    scripts = os.environ.get("AB_SCRIPTS", "send,page,ryw").split(",")
    rounds = int(os.environ.get("AB_ROUNDS", "6"))
    bench = Bench(Config.from_env("quick"))
    with _raised_fd_limit():
        bench.cluster.start()
        bench.pin_postgres(bench.config.load_cpus)
        try:
            print(compare(bench, variants, scripts, rounds))
        finally:
            bench.forget_tokens()
            bench.cluster.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
