"""The whole OpenAPI surface fuzzed with schemathesis against a real granian process.

Every check schemathesis has (`--checks all`): no 5xx; responses, their headers, status codes
and content types as documented; data the document calls valid accepted and invalid data
refused; undocumented methods answered 405 with `Allow`; `OPTIONS` listing exactly the
documented methods; a route that needs a token refuses the call without it (`ignored_auth`).
Every call carries the access token of a user registered for the run, so the routes answer
as they do for a signed-in user: another user's status or chat list is a documented 403, a
chat the user is not in a documented 404. The liberties: bodies carry whole numbers as
integer literals (`schemathesis_hooks.py` says why), and the document it reads has no
`X-Consistency-Token` request header (`CONSISTENCY_TOKEN` says why). The run is bounded
(`--max-examples` per operation, a fixed seed so CI is reproducible; `SCHEMATHESIS_SEED`
overrides it) and runs in a temporary directory so nothing is left in the work tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import register
from tests.support.cluster import TestDatabase
from tests.support.server import ServerProcess

CHECKS = "all"
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
MAX_EXAMPLES = "40"
# A token is state (a WAL position the service handed out after a write): one made up to the
# documented pattern is ahead of the database, refused with the documented 400 by design, which
# the fuzzer would report as valid data rejected (and with that parameter present its coverage
# phase also fuzzes unknown query keys, which the service ignores). So the fuzzer gets the
# service's own document less that request header; the responses' `X-Consistency-Token` is
# still checked, and the request header's parsing and refusals are tested in
# tests/integration/test_token_reads.py.
CONSISTENCY_TOKEN = "X-Consistency-Token"


def test_the_openapi_surface_survives_fuzzing(database: TestDatabase) -> None:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("schemathesis is not installed (a dev dependency: uv sync)")
    seed = os.environ.get("SCHEMATHESIS_SEED", "20261128")
    with ServerProcess(database) as server, tempfile.TemporaryDirectory() as workdir:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            user = register(client)
            document = client.get("/schema/openapi.json").json()
        schema = Path(workdir) / "openapi.json"
        schema.write_text(json.dumps(_without_request_token(document)))
        result = subprocess.run(
            [
                str(st), "run", str(schema), "--url", server.url,
                "--header", f"Authorization: Bearer {user.access_token}",
                "--checks", CHECKS,
                "--phases", "examples,coverage,fuzzing",
                "--max-examples", MAX_EXAMPLES,
                "--seed", seed,
                # One worker: with threads, hypothesis' source parsing can hit CPython 3.11's
                # "AST constructor recursion depth mismatch" (a SystemError in the runner).
                "--workers", "1",
                "--request-timeout", "10",
                "--generation-database", "none",
                # An event stream never ends: each call would wait out the request timeout.
                # Its answers before the stream (400, 401, 429) are tested in
                # tests/integration/test_events_api.py and tests/process/test_events.py.
                "--exclude-path", "/events",
                "--no-color",
            ],
            cwd=workdir,
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )  # fmt: skip
        server_errors = [line for line in server.logs().splitlines() if "unhandled error" in line]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert not server_errors, server_errors[:5]
    summary = [line for line in result.stdout.splitlines() if "generated" in line]
    print(f"\n[schemathesis] seed {seed}: {' '.join(summary).strip()}")


def _without_request_token(document: dict[str, Any]) -> dict[str, Any]:
    for item in document["paths"].values():
        for operation in item.values():
            parameters = operation.get("parameters")
            if parameters:
                operation["parameters"] = [
                    parameter for parameter in parameters if parameter["name"] != CONSISTENCY_TOKEN
                ]
    return document
