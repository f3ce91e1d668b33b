"""The container's security properties, read from the Containerfile and the Kubernetes snippet
of docs/operations.md: base images pinned by digest, the application owned by root and
read-only for the runtime user, and a pod that runs non-root on a read-only root filesystem.
(`just lint` runs hadolint on the same file.)"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
OPERATIONS = ROOT / "docs" / "operations.md"
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_ARG_DIGEST = re.compile(r"@\$\{?(?P<arg>[A-Z_][A-Z0-9_]*)\}?$")
_RUNTIME_UID = "10001"


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    return lines


def _parse() -> tuple[dict[str, str | None], list[Stage]]:
    """Global ARGs (name -> default) and the stages, in order."""
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for line in _logical_lines(CONTAINERFILE.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = [word for word in rest.split() if not word.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages and keyword == "ARG":
            arg, equals, default = rest.strip().partition("=")
            global_args[arg] = default if equals else None
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


def _pinned(reference: str, global_args: dict[str, str | None]) -> bool:
    """A digest in the file, or a digest the build must be given (an ARG with no default)."""
    if _DIGEST.search(reference):
        return True
    match = _ARG_DIGEST.search(reference)
    return match is not None and match["arg"] in global_args and global_args[match["arg"]] is None


def test_every_base_image_is_pinned_by_digest() -> None:
    global_args, stages = _parse()
    names = set()
    for stage in stages:
        if stage.image not in names:
            assert _pinned(stage.image, global_args), f"FROM {stage.image}: not pinned by digest"
        if stage.name:
            names.add(stage.name)
        for keyword, rest in stage.instructions:
            source = re.search(r"--from=(\S+)", rest) if keyword == "COPY" else None
            if source and source[1] not in names:
                assert _pinned(source[1], global_args), f"COPY --from={source[1]}: not pinned"


def test_the_runtime_runs_as_a_numeric_non_root_user() -> None:
    _, stages = _parse()
    users = [rest.strip() for keyword, rest in stages[-1].instructions if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid == _RUNTIME_UID, users[-1]
    assert gid == _RUNTIME_UID, users[-1]


def test_the_application_is_owned_by_root_and_not_writable_by_the_runtime_user() -> None:
    _, stages = _parse()
    runtime = stages[-1]
    for keyword, rest in runtime.instructions:
        if keyword in ("COPY", "ADD"):
            chown = re.search(r"--chown=(\S+)", rest)
            assert chown is None or chown[1] in ("root", "root:root", "0", "0:0"), (
                f"{keyword} {rest}: the runtime user must not own the application"
            )
        if keyword == "RUN":
            assert "chown" not in rest, f"RUN {rest}"
            assert "chmod" not in rest, f"RUN {rest}"
    build = next(stage for stage in stages if stage.name == "build")
    runs = " ".join(rest for keyword, rest in build.instructions if keyword == "RUN")
    assert "chmod -R go-w /opt/venv" in runs, "the virtualenv must be made read-only first"
    copied = [rest for keyword, rest in runtime.instructions if keyword == "COPY"]
    assert any("/opt/venv" in rest for rest in copied)


def _kubernetes_pod() -> dict[str, Any]:
    text = OPERATIONS.read_text()
    section = text.split("\n## Kubernetes\n", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("\n```", 1)[0]
    document = yaml.safe_load(block)
    assert isinstance(document, dict)
    spec = document["spec"]
    assert isinstance(spec, dict)
    return spec


def test_the_documented_pod_is_locked_down() -> None:
    spec = _kubernetes_pod()
    pod_context = spec.get("securityContext", {})
    container = spec["containers"][0]
    context = {**pod_context, **container.get("securityContext", {})}
    assert context.get("runAsNonRoot") is True
    assert str(context.get("runAsUser")) == _RUNTIME_UID
    assert context.get("readOnlyRootFilesystem") is True
    assert context.get("allowPrivilegeEscalation") is False
    assert context.get("capabilities", {}).get("drop") == ["ALL"]
    assert not context.get("capabilities", {}).get("add")
    assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault"


def test_the_documented_pod_has_writable_scratch_for_tmp_and_the_metrics_files() -> None:
    spec = _kubernetes_pod()
    container = spec["containers"][0]
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
    for path in ("/tmp", env["PROMETHEUS_MULTIPROC_DIR"]):  # noqa: S108 - a mount point
        assert path in mounts, f"nothing writable mounted at {path}"
        assert "emptyDir" in volumes[mounts[path]], volumes[mounts[path]]
    assert not any(mount.get("readOnly") for mount in container["volumeMounts"])


def test_the_entrypoint_needs_no_shell() -> None:
    _, stages = _parse()
    entry = [rest for keyword, rest in stages[-1].instructions if keyword == "ENTRYPOINT"]
    assert entry, "no ENTRYPOINT"
    # The exec form (a JSON list): signals reach messenger directly, no shell in between.
    assert json.loads(entry[-1])[0] == "messenger"


def test_the_build_context_is_an_allowlist() -> None:
    """Only what the Containerfile copies reaches the builder (no .env, no .data/)."""
    patterns = [
        line.strip()
        for line in (ROOT / ".containerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    included = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert included == {"pyproject.toml", "uv.lock", "README.md", "LICENSE", "alembic.ini", "app"}
