# The project's interface. `just --list` shows every recipe.
set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := false

export UV_PYTHON := "3.11"

# Show the recipes
default:
    @just --list

# Install the locked dependencies into .venv, precompiled: with PYTHONDONTWRITEBYTECODE set (as
# on these machines) every start would otherwise recompile Litestar and SQLAlchemy (3 s, not 1 s)
sync:
    uv sync --locked --compile-bytecode --quiet

# Serve the API on http://127.0.0.1:8000 (embedded PostgreSQL primary + replica when DATABASE_URL is unset)
run: sync
    uv run --locked python -m app serve

# The fast suite (unit + integration against a real primary and two replicas)
test *ARGS: sync
    uv run --locked pytest -m "not slow" {{ARGS}}

# Everything, the slow fault and process tests included (what CI runs)
test-all *ARGS: sync
    uv run --locked pytest {{ARGS}}

# ruff, ruff format --check, mypy strict on app/, hadolint on the Containerfile
lint: sync
    uv run --locked ruff check app tests alembic
    uv run --locked ruff format --check app tests alembic
    uv run --locked mypy
    uv run --locked hadolint Containerfile

# Format the code
fmt: sync
    uv run --locked ruff check --fix app tests alembic
    uv run --locked ruff format app tests alembic

# Apply migrations to DATABASE_URL (the embedded primary when unset)
migrate REVISION="head": sync
    uv run --locked python -m app migrate {{REVISION}}

# Start the embedded cluster and print its URLs (it keeps running)
db-up: sync
    uv run --locked python -m app db up

# Stop the embedded cluster
db-down: sync
    uv run --locked python -m app db down

# Benchmark against a bare Litestar + asyncpg baseline: MODE full (~7 min), quick (~2.5 min) or profile (py-spy, ~2 min); writes tests/bench/results/
bench MODE="full": sync bench-wrk
    uv run --locked python -m tests.bench {{MODE}}

# Install wrk from Debian's packages when it is missing (for `just bench`)
[private]
bench-wrk:
    command -v wrk >/dev/null || { \
        if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; \
        else sudo apt-get update -qq && sudo apt-get install -y -qq wrk; fi; }
