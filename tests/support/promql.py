"""What the service exports to Prometheus, and which metrics and labels a PromQL expression
uses: for the tests that keep the alert rules and the dashboard in step with the code."""

from __future__ import annotations

import re
from types import ModuleType

from prometheus_client.metrics import MetricWrapperBase

import app.db.metrics
import app.events.metrics
import app.ops.http_metrics

# Labels Prometheus adds at scrape time, and the histogram bucket label.
SCRAPE_LABELS = frozenset({"job", "instance", "le"})
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count"),
}
_NAME = re.compile(r"\b((?:db|http|events)_[a-z0-9_]+)\b")
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def _metrics_of(module: ModuleType) -> list[MetricWrapperBase]:
    return [value for value in vars(module).values() if isinstance(value, MetricWrapperBase)]


def exported() -> dict[str, frozenset[str]]:
    """Every sample name the service's own instruments expose, with their label names."""
    names: dict[str, frozenset[str]] = {}
    for module in (app.db.metrics, app.ops.http_metrics, app.events.metrics):
        for metric in _metrics_of(module):
            labels = frozenset(metric._labelnames)
            for family in metric.describe():
                for suffix in _SUFFIXES[family.type]:
                    names[family.name + suffix] = labels
    return names


def metric_names(expr: str) -> set[str]:
    """The service's metric names (`db_*`, `http_*`, `events_*`) an expression refers to."""
    return set(_NAME.findall(expr))


def problems(expr: str) -> list[str]:
    """What in `expr` the service does not export: unknown metrics, unknown labels."""
    known = exported()
    found: list[str] = []
    used = metric_names(expr)
    if not used:
        found.append("uses none of the service's metrics")
    for name in sorted(used):
        if name not in known:
            found.append(f"{name}: not a metric the service exports")
    for name, matchers in _SELECTOR.findall(expr):
        if name not in known:
            continue
        for label in _MATCHER.findall(matchers):
            if label not in known[name] | SCRAPE_LABELS:
                found.append(f"{name}: has no label {label!r}")
    available = set(SCRAPE_LABELS).union(*(known.get(name, frozenset()) for name in used))
    for group in _GROUPING.findall(expr):
        for label in (part.strip() for part in group.split(",")):
            if label and label not in available:
                found.append(f"grouping by {label!r}: no metric of the expression has it")
    return found
