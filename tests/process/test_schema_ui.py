"""`/schema` renders with no outside network: Debian's headless Chromium, every host but
127.0.0.1 unresolvable, loads the page from a real granian and runs Swagger UI; the DOM it
dumps lists the operations and the sign-in steps. Skipped (with the reason) when Chromium is
not installed (`.ci/run` installs Debian's `chromium`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest

from tests.support.cluster import TestDatabase
from tests.support.server import ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OFFLINE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--disable-quic",
    # No outside network: any name but the test server's address fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--virtual-time-budget=15000",
)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_schema_page_renders_offline_with_the_operations_and_sign_in(
    database: TestDatabase,
) -> None:
    assert CHROMIUM is not None
    with ServerProcess(database) as server, tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, *OFFLINE_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
             f"{server.url}/schema/swagger"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )  # fmt: skip
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'class="swagger-ui' in dom, dom[:2000]
    # Rendered by the script (not in the served HTML): the operations and the description.
    for operation in ("/users/{user_id}", "/chats/{chat_id}/messages", "/auth/token"):
        assert f'data-path="{operation}"' in dom, operation
    assert dom.count('class="opblock opblock-') >= 10
    assert "Authorize" in dom
    assert "Signing in" in dom
