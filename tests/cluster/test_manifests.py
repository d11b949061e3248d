"""Structural checks of deploy/compose.yaml and deploy/k8s/ without a Docker engine or a Kubernetes API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.cli.main import SERVICES
from services.common.settings import ModelSettings, Settings
from services.simulator.settings import SimulatorSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HTTP_SERVICES = {"gateway", "api"}
EXTRA_VARIABLES = {"TURNLOG_HOST", "TURNLOG_LOG_LEVEL", "TURNLOG_API_URL"}
"""Variables read outside the settings classes: the HTTP bind address, the log level and the CLI's API URL."""


def known_variables() -> set[str]:
    names = {f"TURNLOG_{name.upper()}" for name in Settings.model_fields}
    names |= {name.upper() for name in ModelSettings.model_fields}
    names |= {f"TURNLOG_SIM_{name.upper()}" for name in SimulatorSettings.model_fields}
    return names | EXTRA_VARIABLES


def load_all(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [document for document in yaml.safe_load_all(handle) if document]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    documents = load_all(DEPLOY / "compose.yaml")
    assert len(documents) == 1
    return documents[0]


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    kustomization = load_all(DEPLOY / "k8s" / "kustomization.yaml")[0]
    documents: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        documents += load_all(DEPLOY / "k8s" / resource)
    return documents


def test_compose_runs_every_service(compose: dict[str, Any]) -> None:
    commands = {name: service.get("command", []) for name, service in compose["services"].items()}
    served = {command[1] for command in commands.values() if command[:1] == ["serve"]}
    assert served == set(SERVICES)
    for name, command in commands.items():
        if command[:1] == ["serve"]:
            assert command[1] == name


def test_compose_nats_cluster(compose: dict[str, Any]) -> None:
    nodes = {name: service for name, service in compose["services"].items() if name.startswith("nats-")}
    assert len(nodes) == 3
    names, clusters, routes = set(), set(), set()
    for service in nodes.values():
        command = service["command"]
        names.add(command[command.index("--server_name") + 1])
        clusters.add(command[command.index("--cluster_name") + 1])
        routes.add(command[command.index("--routes") + 1])
        assert "--jetstream" in command
        assert service["volumes"][0].endswith(":/data")
    assert names == set(nodes)
    assert len(clusters) == 1
    assert routes == {",".join(f"nats://{name}:6222" for name in sorted(nodes))}


def test_compose_environment_is_real_settings(compose: dict[str, Any]) -> None:
    known = known_variables()
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            assert variable in known, f"{name}: {variable} is not a turnlog setting"
    environment = compose["services"]["runner"]["environment"]
    assert environment["TURNLOG_REPLICAS"] == "3"
    assert len(environment["TURNLOG_NATS_URL"].split(",")) == 3


def test_compose_http_services_check_ready(compose: dict[str, Any]) -> None:
    for name in HTTP_SERVICES:
        service = compose["services"][name]
        assert "/ready" in " ".join(service["healthcheck"]["test"])
        assert service["command"][-2:] == ["--port", "3000"]


def test_k8s_deployment_per_service(k8s: list[dict[str, Any]]) -> None:
    deployments = [document for document in k8s if document["kind"] == "Deployment"]
    served = {}
    for deployment in deployments:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][0] == "serve"
        served[container["args"][1]] = deployment
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert set(served) == set(SERVICES)
    assert served["runner"]["spec"]["replicas"] >= 2


def test_k8s_probes_and_resources(k8s: list[dict[str, Any]]) -> None:
    for document in k8s:
        if document["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= requests.keys(), container["name"]
            if document["kind"] == "Deployment" and container["args"][1] in HTTP_SERVICES:
                ports = {port["name"]: port["containerPort"] for port in container["ports"]}
                assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
                assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
                assert ports["http"] == int(container["args"][container["args"].index("--port") + 1])


def test_k8s_environment_references_exist(k8s: list[dict[str, Any]]) -> None:
    known = known_variables()
    secrets = {doc["metadata"]["name"]: doc["stringData"] for doc in k8s if doc["kind"] == "Secret"}
    configs = {doc["metadata"]["name"]: doc["data"] for doc in k8s if doc["kind"] == "ConfigMap"}
    assert set(secrets["turnlog-secrets"]) == {"TURNLOG_WEBHOOK_SECRET", "TURNLOG_API_TOKEN", "ANTHROPIC_API_KEY"}
    for variable in configs["turnlog-config"]:
        assert variable in known, f"turnlog-config: {variable} is not a turnlog setting"
    for document in k8s:
        if document["kind"] != "Deployment":
            continue
        container = document["spec"]["template"]["spec"]["containers"][0]
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in configs
        for variable in container.get("env", []):
            reference = variable["valueFrom"]["secretKeyRef"]
            assert variable["name"] in known
            assert reference["key"] in secrets[reference["name"]]


def test_k8s_nats_statefulset(k8s: list[dict[str, Any]]) -> None:
    statefulset = next(doc for doc in k8s if doc["kind"] == "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    mounts = statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in mounts
    config = next(doc for doc in k8s if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "nats-config")
    text = config["data"]["nats.conf"]
    assert "store_dir: /data" in text
    for index in range(3):
        assert f"nats://nats-{index}.{statefulset['spec']['serviceName']}:6222" in text
    servers = next(doc for doc in k8s if doc["metadata"]["name"] == "turnlog-config")["data"]["TURNLOG_NATS_URL"]
    assert len(servers.split(",")) == 3


def test_k8s_runner_mounts_repositories(k8s: list[dict[str, Any]]) -> None:
    runner = next(doc for doc in k8s if doc["metadata"]["name"] == "turnlog-runner")
    pod = runner["spec"]["template"]["spec"]
    claims = {doc["metadata"]["name"] for doc in k8s if doc["kind"] == "PersistentVolumeClaim"}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    repos_dir = next(doc for doc in k8s if doc["metadata"]["name"] == "turnlog-config")["data"]["TURNLOG_REPOS_DIR"]
    mount = next(mount for mount in pod["containers"][0]["volumeMounts"] if mount["mountPath"] == repos_dir)
    assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] in claims
