"""The Kubernetes manifests (deploy/kubernetes/) against a pinned Kubernetes schema (offline,
kubernetes-validate) and against the service itself: every environment variable is one the
service reads and parses, probe paths are its routes, the port is the one it listens on, and
the grace period covers the drain and stop bounds it computes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import structlog
import yaml

from app.cli import _kill_timeout_s
from app.config import Settings
from app.main import create_app
from app.ops.readiness import CHECK_TIMEOUT_S
from app.process.multiproc import MULTIPROC_ENV

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"  # the oldest release the manifests target (preStop sleep: 1.30)
# Variables read by the libraries the service configures through the environment.
LIBRARY_PREFIXES = ("OTEL_", "GRANIAN_")


class _Recording(Mapping[str, str]):
    """The environment `Settings.from_env` sees, noting every name it asks for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        self.asked.add(name)
        return self._values.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _documents() -> dict[str, dict[str, Any]]:
    """Every resource by `kind/name` (the Kustomization aside)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["kind"] != "Kustomization":
                found[f"{document['kind']}/{document['metadata']['name']}"] = document
    return found


def _container(kind_name: str) -> dict[str, Any]:
    containers = _documents()[kind_name]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _environment() -> dict[str, str]:
    """What the Deployment's container sees: the ConfigMap and the Secret's keys."""
    docs = _documents()
    env = dict(docs["ConfigMap/messenger-config"]["data"])
    env.update(docs["Secret/messenger-secrets"]["stringData"])
    return env


def _settings() -> tuple[Settings, set[str]]:
    recording = _Recording(_environment())
    return Settings.from_env(recording), recording.asked


def test_every_manifest_is_valid_for_the_pinned_kubernetes() -> None:
    docs = _documents()
    assert {
        "ConfigMap/messenger-config",
        "Secret/messenger-secrets",
        "Deployment/messenger",
        "Service/messenger",
        "PodDisruptionBudget/messenger",
        "Job/messenger-migrate",
    } <= set(docs)
    for name, document in docs.items():
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {error.message} at {list(error.path)}")


def test_a_misspelt_field_fails_the_validation() -> None:
    deployment = _documents()["Deployment/messenger"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_the_service_resources() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "pdb.yaml",
    }


def test_the_configuration_parses_and_names_only_variables_the_service_reads() -> None:
    settings, asked = _settings()
    assert settings.app_env == "production"
    assert settings.server.host == "0.0.0.0"  # noqa: S104 - a pod listens on its own address
    assert settings.database.members, "the example names the cluster as a host list"
    readable = asked | {MULTIPROC_ENV}
    for kind_name in ("Deployment/messenger", "Job/messenger-migrate"):
        container = _container(kind_name)
        names = set(_environment()) | {item["name"] for item in container.get("env", [])}
        unknown = {
            name for name in names if name not in readable and not name.startswith(LIBRARY_PREFIXES)
        }
        assert unknown == set(), f"{kind_name}: the service does not read {sorted(unknown)}"
        assert container["envFrom"] == [
            {"configMapRef": {"name": "messenger-config"}},
            {"secretRef": {"name": "messenger-secrets"}},
        ]


def test_probes_use_the_services_routes_and_port() -> None:
    settings, _ = _settings()
    app = create_app(settings)  # pools open in the lifespan, not here
    # A production app caches each logger on first use; tests that run after this one
    # capture logs (structlog.testing) only through loggers that are not cached.
    structlog.configure(cache_logger_on_first_use=False)
    paths = {route.path for route in app.routes}
    container = _container("Deployment/messenger")
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": settings.server.port}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        action = container[probe]["httpGet"]
        assert action["path"] in paths, f"{probe}: {action['path']} is not a route"
        assert action["port"] == "http"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    # Readiness answers within its per-check deadline; the probe must wait longer than that.
    assert container["readinessProbe"]["timeoutSeconds"] > CHECK_TIMEOUT_S
    startup = container["startupProbe"]
    startup_s = startup["periodSeconds"] * startup["failureThreshold"]
    assert startup_s > settings.database.wait_for_primary_s + 10  # and the warm-up
    service = _documents()["Service/messenger"]
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
    annotations = _documents()["Deployment/messenger"]["spec"]["template"]["metadata"]
    assert annotations["annotations"]["prometheus.io/path"] in paths
    assert annotations["annotations"]["prometheus.io/port"] == str(settings.server.port)


def test_the_grace_period_covers_prestop_drain_and_stop() -> None:
    settings, _ = _settings()
    pod = _documents()["Deployment/messenger"]["spec"]["template"]["spec"]
    container = _container("Deployment/messenger")
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # granian kills workers at _kill_timeout_s (drain delay, slowest request, shutdown limit).
    assert pod["terminationGracePeriodSeconds"] > pre_stop + _kill_timeout_s(settings)


def test_the_pod_runs_unprivileged_on_a_read_only_root() -> None:
    settings, _ = _settings()
    for kind_name in ("Deployment/messenger", "Job/messenger-migrate"):
        pod = _documents()[kind_name]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        container = _container(kind_name)
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert "limits" in container["resources"]
        assert "requests" in container["resources"]
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
        assert mounts["/tmp"] in empty_dirs  # noqa: S108 - the pod's own emptyDir
    # The workers' shared metrics directory is a writable emptyDir.
    metrics_dir = _environment()[MULTIPROC_ENV]
    mounts = {m["mountPath"]: m["name"] for m in _container("Deployment/messenger")["volumeMounts"]}
    assert metrics_dir in mounts
    assert settings.server.workers > 1
    assert _container("Job/messenger-migrate")["args"] == ["migrate"]
    assert _container("Deployment/messenger")["args"] == ["serve"]
