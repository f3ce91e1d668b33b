"""Real-time delivery: the commit-ordered event stream of `GET /events` (docs/events.md)."""
