"""wrk runs and their results: requests/s, latency quantiles (mergeable across runs), errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.servers import taskset

LUA_DIR = Path(__file__).resolve().parent / "lua"


def ensure_wrk() -> str:
    """Path of wrk (the recipe installs Debian's package when it is missing)."""
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk (`just bench` does it)")
    return path


@dataclass
class Run:
    """One wrk run against one server."""

    requests: int
    duration_s: float
    errors: dict[str, int]
    mean_ms: float
    quantiles_ms: dict[float, float]  # percent -> latency; 100.0 is the maximum
    statuses: dict[str, int] = field(default_factory=dict)  # non-2xx answers by status
    error_sample: str = ""
    statements: dict[str, float] = field(default_factory=dict)  # per request, by node: text
    rss_total_mb: float = 0.0
    rss_worker_mb: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)  # rates: averaged over runs
    counts: dict[str, int] = field(default_factory=dict)  # events: added up over runs

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


@dataclass
class Result:
    """One target in one scenario: its runs merged (rounds interleaved with other targets)."""

    runs: list[Run] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(run.requests for run in self.runs)

    @property
    def rps(self) -> float:
        seconds = sum(run.duration_s for run in self.runs)
        return self.requests / seconds if seconds else 0.0

    @property
    def errors(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for run in self.runs:
            for kind, count in run.errors.items():
                total[kind] = total.get(kind, 0) + count
        return total

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def statuses(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for run in self.runs:
            for status, count in run.statuses.items():
                total[status] = total.get(status, 0) + count
        return total

    @property
    def counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for run in self.runs:
            for name, count in run.counts.items():
                total[name] = total.get(name, 0) + count
        return total

    @property
    def mean_ms(self) -> float:
        if not self.requests:
            return 0.0
        return sum(run.mean_ms * run.requests for run in self.runs) / self.requests

    def percentile(self, percent: float) -> float:
        """Latency at `percent` over all runs, from each run's quantiles weighted by its count."""
        points: list[tuple[float, float]] = []  # (latency, weight)
        for run in self.runs:
            previous = 0.0
            for q in sorted(run.quantiles_ms):
                points.append((run.quantiles_ms[q], (q - previous) / 100 * run.requests))
                previous = q
        if not points:
            return 0.0
        points.sort()
        total = sum(weight for _, weight in points)
        target = percent / 100 * total
        seen = 0.0
        for latency, weight in points:
            seen += weight
            if seen >= target * (1 - 1e-9):
                return latency
        return points[-1][0]

    @property
    def max_ms(self) -> float:
        return max((run.quantiles_ms.get(100.0, 0.0) for run in self.runs), default=0.0)

    @property
    def rss_total_mb(self) -> float:
        return max((run.rss_total_mb for run in self.runs), default=0.0)

    @property
    def rss_worker_mb(self) -> float:
        return max((run.rss_worker_mb for run in self.runs), default=0.0)

    def summary(self) -> dict[str, object]:
        """The numbers the report shows."""
        return {
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "mean_ms": round(self.mean_ms, 2),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(self.max_ms, 2),
            "errors": self.error_count,
            "error_kinds": {kind: n for kind, n in self.errors.items() if n},
            "statuses": self.statuses,
            "counts": self.counts,
            "error_sample": next((run.error_sample for run in self.runs if run.error_sample), ""),
            "rss_total_mb": round(self.rss_total_mb, 1),
            "rss_worker_mb": round(self.rss_worker_mb, 1),
            "statements_per_req": self.runs[-1].statements if self.runs else {},
            "runs": len(self.runs),
            "rps_per_run": [round(run.rps, 1) for run in self.runs],
            **{k: round(v, 2) for k, v in self._extra().items()},
        }

    def _extra(self) -> dict[str, float]:
        keys = {key for run in self.runs for key in run.extra}
        seconds = sum(run.duration_s for run in self.runs) or 1.0
        return {
            key: sum(run.extra.get(key, 0.0) * run.duration_s for run in self.runs) / seconds
            for key in keys
        }


def run_wrk(
    url: str,
    script: str,
    *,
    connections: int,
    duration_s: float,
    threads: int,
    cpus: str | None,
    env: dict[str, str],
    timeout_s: int = 10,
) -> Run:
    """Run `lua/<script>.lua` against `url` and parse what its `done` wrote."""
    with tempfile.NamedTemporaryFile(prefix="bench-wrk-", suffix=".json", delete=False) as out:
        out_path = Path(out.name)
    command = [
        *taskset(cpus), ensure_wrk(),
        f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s}s", "-s", str(LUA_DIR / f"{script}.lua"), url,
    ]  # fmt: skip
    wrk_env = {**os.environ, **env, "BENCH_LUA_DIR": str(LUA_DIR), "BENCH_OUT": str(out_path)}
    try:
        completed = subprocess.run(
            command,
            env=wrk_env,
            capture_output=True,
            text=True,
            timeout=duration_s + 60,
            check=False,
        )
        if completed.returncode != 0 or out_path.stat().st_size == 0:
            raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr[-2000:]}")
        data = json.loads(out_path.read_text())
    finally:
        out_path.unlink(missing_ok=True)
    return Run(
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        errors={kind: int(n) for kind, n in data["errors"].items()},
        mean_ms=float(data["latency_mean_us"]) / 1000,
        quantiles_ms={float(q): int(us) / 1000 for q, us in data["quantiles_us"].items()},
        statuses={str(status): int(n) for status, n in data["statuses"].items()},
        error_sample=str(data["error_sample"]),
        counts={str(name): int(n) for name, n in data.get("counts", {}).items()},
    )
