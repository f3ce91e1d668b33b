"""`results/latest.md` and `latest.json`: the numbers, the machine, ratios and targets."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tests.bench.servers import ROOT

PACKAGES = ("granian", "litestar", "sqlalchemy", "asyncpg", "msgspec", "uvloop")
SCENARIO_TITLES = {
    "sends": "saturating sends (POST /chats/{id}/messages)",
    "pages": "saturating pages of 50 (GET /chats/{id}/messages?limit=50)",
    "ryw": "read-your-writes: a send, then a page of 20 of the same chat with the send's "
    "consistency token (`no token`: the same mix without it)",
    "sends_c1000": "sends from 1,000 connections at once on one worker (memory, overload)",
    "users": "the original's workload: 1,000 users thinking ~1 s, 10% sends, pages of 20",
    "lag": "pages of 50 with a fresh consistency token while the replica's replay is paused",
    "sweep_sends": "Pool-size sweep: sends",
    "sweep_pages": "Pool-size sweep: pages of 50",
}


def machine(pg_version: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "?"
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "wrk": _output(["wrk", "-v"]).splitlines()[0] if _output(["wrk", "-v"]) else "?",
        "packages": packages,
        "commit": git_commit(),
        "app_modified": app_modified(),
    }


def app_fingerprint() -> str:
    """A short hash of the service's code (app/), to tie numbers to the code they measured."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "app").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def app_modified() -> bool:
    """Whether app/ differs from the checked-out commit (others may be working in the tree)."""
    return bool(_output(["git", "status", "--porcelain", "--", "app"]).strip())


def git_commit() -> str:
    """The checked-out commit (short), read-only."""
    return _output(["git", "rev-parse", "--short", "HEAD"]).strip()


def _output(command: list[str]) -> str:
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, cwd=ROOT, timeout=10, check=False
        )
    except OSError:
        return ""
    return completed.stdout or completed.stderr


def targets(data: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, wanted, met) rows; met is None when the scenario did not run."""
    s = data["scenarios"]
    rows: list[tuple[str, str, str, bool | None]] = []

    def get(scenario: str, target: str, key: str) -> float | None:
        value = s.get(scenario, {}).get(target, {}).get(key)
        return None if value is None else float(value)

    def add(name: str, value: float | None, wanted: str, ok: bool | None, fmt: str) -> None:
        shown = "not run" if value is None else fmt.format(value)
        rows.append((name, shown, wanted, None if value is None else ok))

    sends = get("users", "service", "sends_per_s")
    add("original: sustained sends (users workload)", sends, ">= 50 msg/s",
        sends is not None and sends >= 50, "{:.0f} msg/s")  # fmt: skip
    peak = get("sends", "service", "rps")
    add("original: peak sends (saturating)", peak, ">= 100 msg/s",
        peak is not None and peak >= 100, "{:.0f} msg/s")  # fmt: skip
    for key, limit in (("mean_ms", 100), ("p95_ms", 300), ("p99_ms", 500)):
        value = get("users", "service", key)
        add(f"original: {key[:-3]} latency (users workload)", value, f"< {limit} ms",
            value is not None and value < limit, "{:.1f} ms")  # fmt: skip
    for scenario in ("sends", "pages"):
        ratio = _ratio(get(scenario, "service", "rps"), get(scenario, "baseline", "rps"))
        add(f"issue: {scenario} rps vs baseline", ratio, ">= 0.90x",
            ratio is not None and ratio >= 0.9, "{:.2f}x")  # fmt: skip
    p99 = get("users", "service", "p99_ms")
    for name, scenario, reference, most in GOALS:
        ratio = _ratio(
            get(scenario, "service", "server_cpu_us_per_req"),
            get(scenario, reference, "server_cpu_us_per_req"),
        )
        add(name, ratio, f"<= {most:.2f}x", ratio is not None and ratio <= most, "{:.2f}x")
    ratio = _ratio(p99, get("users", "baseline", "p99_ms"))
    add("goal: users p99 vs baseline", ratio, "<= 2.00x",
        ratio is not None and ratio <= 2, "{:.2f}x")  # fmt: skip
    share = replica_share(s.get("ryw", {}).get("service", {}))
    shown = "not run" if share is None else f"{share:.1%}"
    rows.append(("ryw: token reads served by replicas", shown, "(reported)", None))
    missed = None if "ryw" not in s else float(_count(s["ryw"]["service"], "reads_missed_write"))
    add("ryw: token reads that missed their write", missed, "0",
        missed == 0, "{:.0f}")  # fmt: skip
    add("issue: users p99", p99, "< 25 ms", p99 is not None and p99 < 25, "{:.1f} ms")
    errors = get("users", "service", "errors")
    add("issue: users errors", errors, "0", errors == 0, "{:.0f}")
    rss = [
        float(summary["rss_worker_mb"])
        for scenario in ("sends", "pages", "sends_c1000", "lag", "users")
        for name, summary in s.get(scenario, {}).items()
        if name == "service"
    ]
    worst = max(rss) if rss else None
    add("issue: RSS per worker at 1,000 connections", worst, "< 150 MB",
        worst is not None and worst < 150, "{:.0f} MB")  # fmt: skip
    return rows


# (row, scenario, reference target, limit): the service's server CPU per request over the
# reference's, measured in the same run.
GOALS = (
    ("goal: sends CPU/req vs baseline+token", "sends", "baseline+token", 1.3),
    ("goal: pages CPU/req vs baseline", "pages", "baseline", 1.2),
)
TOKEN_SERVED_BY = ("replica", "replica_checked", "primary", "rejected")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _count(summary: dict[str, Any], name: str) -> int:
    return int(summary.get("counts", {}).get(name, 0))


def replica_share(summary: dict[str, Any]) -> float | None:
    """Share of the token reads served by replicas: (replica + replica_checked) / all."""
    counts = {by: _count(summary, f"token_reads_{by}") for by in TOKEN_SERVED_BY}
    total = sum(counts.values())
    return (counts["replica"] + counts["replica_checked"]) / total if total else None


def _page_share(summary: dict[str, Any]) -> float | None:
    """Share of the page statements run on a replica (pg_stat_statements, all reads)."""
    counts = {
        k: int(v) for k, v in summary.get("counts", {}).items() if k.startswith("page_reads_")
    }
    total = sum(counts.values())
    on_replicas = sum(v for k, v in counts.items() if k != "page_reads_primary")
    return on_replicas / total if total else None


def _reference(targets_: dict[str, Any], name: str) -> str:
    """The baseline a target is compared with: `service, no token` with `baseline, no token`."""
    if name.startswith("service"):
        twin = "baseline" + name.removeprefix("service")
        if twin in targets_:
            return twin
    return "baseline"


def _table(data: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario | target | req/s | mean ms | p50 ms | p95 ms | p99 ms | max ms | errors "
        "| RSS granian / worker MB | CPU us/req server / PG | SQL/req | x baseline (req/s, p99) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for scenario, targets_ in data["scenarios"].items():
        for name, r in targets_.items():
            reference = _reference(targets_, name)
            base = targets_.get(reference)
            ratio = ""
            if base and name != reference:
                rps = _ratio(r["rps"], base["rps"])
                p99 = _ratio(r["p99_ms"], base["p99_ms"])
                ratio = f"{rps:.2f}x, {p99:.2f}x" if rps and p99 else ""
            errors = str(r["errors"])
            kinds = {k: v for k, v in r["error_kinds"].items() if k != "status"}
            kinds.update({f"HTTP {k}": v for k, v in r["statuses"].items()})
            if kinds:
                errors += " (" + ", ".join(f"{k}: {v}" for k, v in kinds.items()) + ")"
            extra = f" ({r['sends_per_s']:.0f} msg/s)" if "sends_per_s" in r else ""
            lines.append(
                f"| {scenario} | {name} | {r['rps']:.0f}{extra} | {r['mean_ms']:.1f} "
                f"| {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} "
                f"| {errors} | {r['rss_total_mb']:.0f} / {r['rss_worker_mb']:.0f} "
                f"| {r.get('server_cpu_us_per_req', 0):.0f} / {r.get('pg_cpu_us_per_req', 0):.0f} "
                f"| {r.get('db_statements_per_req', 0):.1f} | {ratio} |"
            )
    return lines


def _gap(data: dict[str, Any]) -> list[str]:
    """Server CPU per request: what a quiet, CPU-bound machine would turn into req/s."""
    lines = [
        "| scenario | service us/req | baseline us/req | difference | service / baseline "
        "| baseline+token us/req | service / baseline+token |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in ("sends", "pages", "ryw", "lag", "users"):
        targets_ = data["scenarios"].get(scenario, {})
        for name in targets_:
            if not name.startswith("service"):
                continue
            reference = _reference(targets_, name)
            service = targets_[name].get("server_cpu_us_per_req")
            baseline = targets_.get(reference, {}).get("server_cpu_us_per_req")
            if not service or not baseline:
                continue
            token = targets_.get("baseline+token", {}).get("server_cpu_us_per_req")
            label = scenario + name.removeprefix("service")
            lines.append(
                f"| {label} | {service:.0f} | {baseline:.0f} | {service - baseline:+.0f} "
                f"| {service / baseline:.2f}x | {f'{token:.0f}' if token else ''} "
                f"| {f'{service / token:.2f}x' if token else ''} |"
            )
    return lines if len(lines) > 2 else []


def _token_reads(data: dict[str, Any]) -> list[str]:
    """Where the reads of the scenarios with consistency tokens were served."""
    lines = [
        "| scenario | target | req/s | p50 ms | p95 ms | p99 ms | CPU us/req server / PG "
        "| token reads: replica / replica_checked / primary / rejected | token reads on replicas "
        "| page statements on replicas | reads that missed their write |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in ("ryw", "lag"):
        for name, r in data["scenarios"].get(scenario, {}).items():
            by = " / ".join(str(_count(r, f"token_reads_{b}")) for b in TOKEN_SERVED_BY)
            share = replica_share(r)
            pages = _page_share(r)
            seen, missed = _count(r, "reads_saw_write"), _count(r, "reads_missed_write")
            checked = f"{missed} of {seen + missed}" if seen + missed else ""
            lines.append(
                f"| {scenario} | {name} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} "
                f"| {r['p99_ms']:.1f} | {r.get('server_cpu_us_per_req', 0):.0f} / "
                f"{r.get('pg_cpu_us_per_req', 0):.0f} "
                f"| {by if name.startswith('service') else 'n/a'} "
                f"| {'' if share is None else f'{share:.1%}'} "
                f"| {'' if pages is None else f'{pages:.1%}'} | {checked} |"
            )
    return lines if len(lines) > 2 else []


def _tail(data: dict[str, Any]) -> list[str]:
    """The users scenario's tail next to the service's own clocks (tests/bench/tail.py)."""
    lines = [
        "| target | requests | p99 ms (client) | server time > 250 / > 500 ms | GC pauses "
        "(full) / > 10 ms / total ms | loop lag samples > 50 / > 250 ms (of) "
        "| pool waits > 100 ms (of) / total ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in data["scenarios"].get("users", {}).items():
        if not name.startswith("service") or not _count(r, "tail_server_requests"):
            continue

        def c(key: str, r: dict[str, Any] = r) -> int:
            return _count(r, f"tail_{key}")

        lines.append(
            f"| {name} | {r['requests']} | {r['p99_ms']:.1f} "
            f"| {c('server_over_250ms')} / {c('server_over_500ms')} "
            f"| {c('gc_pauses')} ({c('gc_full_collections')}) / {c('gc_pauses_over_10ms')} / "
            f"{c('gc_pause_ms')} "
            f"| {c('loop_lag_over_50ms')} / {c('loop_lag_over_250ms')} ({c('loop_lag_samples')}) "
            f"| {c('pool_waits_over_100ms')} ({c('pool_waits')}) / {c('pool_wait_ms')} |"
        )
    return lines if len(lines) > 2 else []


def _sweep(data: dict[str, Any]) -> list[str]:
    sends = data["scenarios"].get("sweep_sends", {})
    pages = data["scenarios"].get("sweep_pages", {})
    if not sends:
        return []
    lines = [
        "| pool min = max | sends req/s | sends p99 ms | sends CPU us/req "
        "| pages req/s | pages p99 ms | pages CPU us/req | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in sends:
        s, p = sends[name], pages.get(name, {})
        lines.append(
            f"| {name.split()[-1]} | {s['rps']:.0f} | {s['p99_ms']:.1f} "
            f"| {s.get('server_cpu_us_per_req', 0):.0f} "
            f"| {p.get('rps', 0):.0f} | {p.get('p99_ms', 0):.1f} "
            f"| {p.get('server_cpu_us_per_req', 0):.0f} "
            f"| {s['errors'] + p.get('errors', 0)} |"
        )
    best_sends = max(sends, key=lambda n: sends[n]["rps"])
    best_pages = max(pages, key=lambda n: pages[n]["rps"]) if pages else best_sends
    lines += [
        "",
        f"Highest throughput: sends at {best_sends}, pages at {best_pages} "
        f"(sizes within a few percent of each other are within this machine's noise).",
    ]
    return lines


def _pinning(server_cpus: str | None, load_cpus: str | None) -> str:
    if not server_cpus:
        return "nothing pinned"
    return f"granian on CPU {server_cpus}, wrk and PostgreSQL on CPU {load_cpus} (taskset)"


def markdown(data: dict[str, Any]) -> str:
    """The report as Markdown."""
    m, c, extra = data["machine"], data["config"], data["extra"]
    pin = _pinning(c["server_cpus"], c["load_cpus"])
    users_pin = _pinning(c["users_server_cpus"], c["users_load_cpus"])
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        "# Benchmark: `just bench`",
        "",
        f"{m['date_utc']} UTC, mode `{c['mode']}`, commit {m['commit']}"
        + (" with uncommitted changes under app/" if m["app_modified"] else "")
        + f" (app/ fingerprint {extra.get('app_fingerprint', '?')}), {extra['runtime_s']:.0f} s."
        + (
            f" **app/ changed during the run (fingerprint {extra.get('app_fingerprint_end')} at "
            "the end): servers started later may have run different code.**"
            if extra.get("app_changed_during_run")
            else ""
        ),
        "",
        "| machine | |",
        "|---|---|",
        f"| nproc | {m['nproc']} |",
        f"| CPU | {m['cpu']} |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| kernel | {m['kernel']} |",
        f"| Python | {m['python']} |",
        f"| PostgreSQL | {m['postgresql']} (embedded, primary + 1 streaming replica) |",
        f"| load generator | {m['wrk']} |",
        f"| packages | {packages} |",
        f"| load average (1/5/15 min) | start {extra['loadavg_start']}, "
        f"end {extra['loadavg_end']} (shared machine) |",
        "",
        "Setup: both servers under granian with `--loop uvloop`, authenticated alike (a "
        "bearer access token per seeded user, minted before the run with a key of the run; "
        "each request carries the token of the user it acts as, and both servers verify it: "
        "HS256 by `kid`), with the same pools "
        f"({c['pool_min']}/{c['pool_max']} min/max, writer and replica). Saturating runs "
        f"(sends, pages, lag, sweep): {c['workers']} worker(s), {pin}, "
        f"{c['connections']} connections x {c['duration_s']:.0f} s; sends_c1000: the same "
        f"layout with {c['user_connections']} connections. The original's workload (users): "
        f"{c['users_workers']} worker(s), {users_pin}, {c['user_connections']} connections x "
        f"{c['users_duration_s']:.0f} s, think time exponential with mean {c['think_ms']} ms. "
        f"{c['rounds']} interleaved round(s) per target (A B, B A). "
        f"Data: {data['data_set']['users']} users, {data['data_set']['chats']} chats of "
        f"{data['data_set']['members']}, {data['data_set']['messages']} messages "
        f"(seeded in {extra['seed_s']:.0f} s). Same JSON from both servers: "
        f"{extra.get('same_json', '?')}.",
        "",
        "## Results",
        "",
        *_table(data),
        "",
        "Scenarios: "
        + "; ".join(
            f"`{name}`: {title}"
            for name, title in SCENARIO_TITLES.items()
            if name in data["scenarios"] and not name.startswith("sweep")
        )
        + ".",
        "",
        "`baseline` is `tests/bench/baseline.py` (bare Litestar + asyncpg, one statement per "
        "request, the bearer token verified with PyJWT in the handler, membership checked in "
        "the statement); `baseline+token` adds the service's second round trip for "
        "`X-Consistency-Token` (`pg_current_wal_lsn()`). Errors are non-2xx answers and "
        "socket errors; RSS is the peak during the run. CPU us/req is the server's (all its "
        "processes) and PostgreSQL's (primary and replica) CPU time per request, the measure "
        "least disturbed by other load on the machine; SQL/req is statements per request "
        "as pg_stat_statements counts them on the primary and the replica (which the bench "
        "loads on its own cluster).",
    ]
    lag = extra.get("lag")
    if isinstance(lag, dict):
        lines += [
            "",
            f"Replica lag scenario: replica behind by {lag.get('replica_behind_bytes')} bytes "
            f"at the end; a read with the token of a write made while replay was paused saw "
            f"that write: {lag.get('read_your_writes')}.",
        ]
    lines += ["", "## Targets", "", "| target | measured | wanted | met |", "|---|---:|---:|---|"]
    for name, measured, wanted, ok in targets(data):
        verdict = "-" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {name} | {measured} | {wanted} | {verdict} |")
    token_reads = _token_reads(data)
    if token_reads:
        lines += [
            "",
            "## Reads with a consistency token",
            "",
            *token_reads,
            "",
            "`ryw`: every wrk thread sends, then reads the newest page of 20 of the same chat as "
            "the same user with the `X-Consistency-Token` the send returned (half sends, half "
            "reads); `no token` is the same mix without the header. Token reads by `served_by` "
            "are the service's `db_consistency_token_reads_total` (scraped from `/metrics` with "
            "`METRICS_TOKEN` before and after each run); on replicas = (replica + "
            "replica_checked) / all. Page statements on replicas: the share of page queries "
            "pg_stat_statements counted on the replica, for every read (the baseline sends its "
            "token reads to the primary). A read missed its write when the page's newest message "
            "is older than the message its send created.",
        ]
    tail = _tail(data)
    if tail:
        lines += [
            "",
            "## Where the users' tail waited",
            "",
            *tail,
            "",
            "The service's own clocks over the users runs, summed over workers "
            "(`tests/bench/tail.py`): requests whose server-side time (routing to the last body "
            "byte) passed 250 or 500 ms; garbage-collector pauses; event-loop lag sampled every "
            "100 ms (a late sample means every ready callback waited that long); waits for a "
            "pool connection. Client latency beyond the server's time was spent before the "
            "application saw the request (accept queue, granian, the load generator's CPU).",
        ]
    gap = _gap(data)
    if gap:
        lines += ["", "## Gap to the baseline in CPU time (less noisy than req/s here)", "", *gap]
    sweep = _sweep(data)
    if sweep:
        lines += ["", "## Pool sizes (service)", "", *sweep]
    lines += [
        "",
        "Reproduce: `just bench` (about 7 minutes) or `just bench quick`; durations and sizes "
        "via `BENCH_*` variables (`tests/bench/runner.py`, `Config`).",
        "",
    ]
    return "\n".join(lines)


def write(data: dict[str, Any], directory: Path) -> None:
    """Write latest.json and latest.md atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("latest.json", json.dumps(data, indent=2) + "\n"),
        ("latest.md", markdown(data)),
    ):
        tmp = directory / f"{name}.tmp"
        tmp.write_text(text)
        tmp.replace(directory / name)
