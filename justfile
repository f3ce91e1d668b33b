# The project's interface. `just --list` shows every recipe; docs/development.md explains them.
# uv picks a Python that satisfies `requires-python` (3.11 or newer) from what is installed.
set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := false

# Show the recipes
default:
    @just --list

# Precompiled (with PYTHONDONTWRITEBYTECODE set, every start would otherwise recompile Litestar
# and SQLAlchemy: 3 s instead of 1 s).
# Install the locked dependencies and the project itself (editable) into .venv
sync:
    uv sync --locked --compile-bytecode --quiet

# Install the runtime and the development cluster only (no test or lint tools); `--inexact`
# keeps what `just sync` added, so `just run` and `just test` do not undo each other.
[private]
sync-run:
    uv sync --locked --inexact --no-dev --group cluster --compile-bytecode --quiet

# Serve the API on http://127.0.0.1:8000 (embedded PostgreSQL primary + replica when DATABASE_URL is unset)
run: sync-run
    exec uv run --no-sync messenger serve

# The command line, installed in .venv (also `.venv/bin/messenger ...`): `just messenger --help`
messenger *ARGS: sync-run
    exec uv run --no-sync messenger {{ARGS}}

# Litestar's own command line on this app: `just litestar routes`, `just litestar schema openapi`
litestar *ARGS: sync-run
    LITESTAR_APP=app.tooling:create_app exec uv run --no-sync litestar {{ARGS}}

# The fast suite: tests/unit, tests/integration and the fault tests not marked slow
test *ARGS: sync
    uv run --locked pytest -m "not slow" {{ARGS}}

# Everything, tests/process and the slow fault tests included (what CI runs)
test-all *ARGS: sync
    uv run --locked pytest {{ARGS}}

# ruff, ruff format --check, mypy strict, the import contracts (lint-imports), hadolint
lint: sync
    uv run --locked ruff check app tests
    uv run --locked ruff format --check app tests
    uv run --locked mypy
    uv run --locked lint-imports
    uv run --locked hadolint Containerfile

# Format the code and apply ruff's safe fixes
fmt: sync
    uv run --locked ruff check --fix app tests
    uv run --locked ruff format app tests

# Apply migrations to DATABASE_URL (the embedded primary when unset)
migrate REVISION="head": sync-run
    uv run --no-sync messenger migrate {{REVISION}}

# Start the embedded cluster and print its URLs (it keeps running)
db-up: sync-run
    uv run --no-sync messenger db up

# Stop the embedded cluster
db-down: sync-run
    uv run --no-sync messenger db down

# Stop the embedded cluster and delete its data wherever it lives (as root: /var/lib/messenger-pg/clusters/ too); asks first unless --yes
db-destroy *ARGS: sync-run
    uv run --no-sync messenger db destroy {{ARGS}}

# Switch the embedded cluster over: stop its primary (fast) and promote a standby
db-failover: sync-run
    uv run --no-sync messenger db failover

# Rebuild the embedded cluster's old primary as a standby of the new one
db-rejoin: sync-run
    uv run --no-sync messenger db rejoin

# A Patroni cluster (three members, etcd, HAProxy on Patroni's REST checks) under .data/patroni, in the background; prints its URLs
db-up-ha: sync
    uv run --locked python -m tests.support.patroni up

# Stop the Patroni cluster, etcd and HAProxy (the data stays for the next db-up-ha)
db-down-ha: sync
    uv run --locked python -m tests.support.patroni down

# Two instances (WORKERS=2 each) on the embedded cluster behind HAProxy (deploy/haproxy/) on :8080; `kill -HUP` the runner for a rolling restart
fleet: sync fleet-haproxy
    uv run --locked python -m tests.support.fleet

# Install HAProxy from Debian's packages when it is missing (for `just fleet`)
[private]
fleet-haproxy:
    command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { \
        if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq haproxy; \
        else sudo apt-get update -qq && sudo apt-get install -y -qq haproxy; fi; }

# Benchmark against a bare Litestar + asyncpg baseline: MODE full (~7 min), quick (~2.5 min) or profile (py-spy, ~2 min); writes tests/bench/results/
bench MODE="full": sync bench-wrk
    uv run --locked python -m tests.bench {{MODE}}

# Real-time delivery: 1,000 SSE streams while 100 messages/s are sent for SECONDS; writes tests/bench/results/events.*
bench-events SECONDS="30":
    uv run --locked python -m tests.bench.events {{SECONDS}}

# Install wrk from Debian's packages when it is missing (for `just bench`)
[private]
bench-wrk:
    command -v wrk >/dev/null || { \
        if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; \
        else sudo apt-get update -qq && sudo apt-get install -y -qq wrk; fi; }
