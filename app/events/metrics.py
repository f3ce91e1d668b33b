"""Prometheus instruments of the event stream (docs/events.md, docs/operations.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

OPEN_STREAMS = Gauge(
    "events_streams_open",
    "Server-Sent Events streams open now.",
    multiprocess_mode="livesum",
)
EVENTS_DELIVERED = Counter(
    "events_delivered_total",
    "Events written to streams, by kind (message, chat_joined) and phase (catch_up, live).",
    ["kind", "phase"],
)
DELIVERY_LATENCY = Histogram(
    "events_delivery_latency_seconds",
    "From the event's transaction start (created_at, about its commit) to its write to a "
    "live stream.",
    buckets=_LATENCY_BUCKETS,
)
STREAMS_ENDED = Counter(
    "events_streams_ended_total",
    "Streams the service ended, by reason (slow_consumer, token_expired, shutdown, resync, "
    "client).",
    ["reason"],
)
STREAMS_REFUSED = Counter(
    "events_streams_refused_total",
    "Streams refused by a limit (per_user: 429, per_worker or draining: 503).",
    ["limit"],
)
LISTENER_CONNECTED = Gauge(
    "events_listener_connected",
    "1 while the worker's LISTEN connection to the primary is up (0: polling).",
    multiprocess_mode="livemin",
)
HORIZON_AGE = Gauge(
    "events_horizon_lag_transactions",
    "Transactions between the primary's oldest running one and its next: a long-running "
    "transaction holds every stream's delivery back (docs/events.md).",
    multiprocess_mode="livemax",
)
PASSES = Counter(
    "events_hub_passes_total",
    "Passes of the worker's hub, by outcome (events, empty, error; idle: no stream, nothing read).",
    ["outcome"],
)
ANNOUNCEMENTS = Counter(
    "events_announcements_total",
    "Notifications this worker sent to wake the hubs after its writes (one for many writes), "
    "by outcome (sent, error).",
    ["outcome"],
)
