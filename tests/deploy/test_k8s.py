"""deploy/k8s: every overlay renders with `kubectl kustomize` (offline) and each document validates
against the Kubernetes schema (kubernetes-validate, strict); and what the gateway needs of its pods
holds: probes, a grace period covering the drain, an unprivileged read-only container, secrets only
by reference, the GPU engine in local-gpu."""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from gateway.config import parse_config
from gateway.settings import Settings
from local_backend.cli import add_local_commands

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod", "local-gpu")
# The oldest Kubernetes these manifests are written for (autoscaling/v2 and policy/v1 are GA there).
KUBERNETES_VERSION = "1.29"
KEYS = {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-y", "GEMINI_API_KEY": "g"}

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")

Doc = dict[str, Any]


@cache
def _render(overlay: str) -> tuple[Doc, ...]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _one(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _container(workload: Doc) -> Doc:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def _image_uid() -> int:
    users = re.findall(r"^USER (\d+)", (ROOT / "deploy" / "Dockerfile").read_text(), re.M)
    assert users and len(set(users)) == 1
    return int(users[0])


def test_there_is_an_overlay_for_each_target() -> None:
    assert sorted(p.name for p in (K8S / "overlays").iterdir()) == sorted(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_document_validates(overlay: str) -> None:
    docs = _render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "ConfigMap",
        "ServiceAccount",
    } <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert doc["metadata"].get("namespace") == docs[0]["metadata"]["namespace"]


def test_the_validation_catches_a_misspelt_field() -> None:
    deployment = copy.deepcopy(_one(_render("prod"), "Deployment", "switchyard"))
    _container(deployment)["readinesProbe"] = _container(deployment).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_probes_and_grace_period_match_the_gateway(overlay: str) -> None:
    deployment = _one(_render(overlay), "Deployment", "switchyard")
    pod = deployment["spec"]["template"]["spec"]
    gateway = _container(deployment)
    env = _env(gateway)
    assert gateway["args"] == ["serve"]
    (port,) = gateway["ports"]
    assert port["containerPort"] == int(env["SWITCHYARD_PORT"]["value"])
    assert env["SWITCHYARD_HOST"]["value"] == "0.0.0.0"
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": port["name"]}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": port["name"]}
    # Kubernetes sends SIGTERM after preStop; the gateway then drains for up to the drain setting
    # and flushes the request log. The grace period must cover all of it, with room for the flush.
    command = gateway["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = Settings(_env_file=None, shutdown_drain_s=env["SWITCHYARD_SHUTDOWN_DRAIN_S"]["value"])
    assert pod["terminationGracePeriodSeconds"] >= int(command[1]) + drain.shutdown_drain_s + 5
    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_unprivileged_on_a_read_only_root(overlay: str) -> None:
    workloads = [d for d in _render(overlay) if d["kind"] in ("Deployment", "Job")]
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == _image_uid()
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            # A read-only root needs somewhere to write temporary files (the CPU kernels, torch).
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_committed(overlay: str) -> None:
    docs = _render(overlay)
    assert not [d for d in docs if d["kind"] == "Secret"]
    for workload in (d for d in docs if d["kind"] in ("Deployment", "Job")):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for name, entry in _env(container).items():
                if re.search(r"KEY|URL|PASSWORD|TOKEN", name):
                    assert "value" not in entry, f"{name} is written into the manifest"
                    assert entry["valueFrom"]["secretKeyRef"]["name"].startswith("switchyard-")
    gateway = _env(_container(_one(docs, "Deployment", "switchyard")))
    for required in ("SWITCHYARD_DATABASE_URL", "SWITCHYARD_REDIS_URL", "SWITCHYARD_MASTER_KEY"):
        assert not gateway[required]["valueFrom"]["secretKeyRef"].get("optional", False)
    for provider in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        assert gateway[provider]["valueFrom"]["secretKeyRef"]["optional"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_hpa_pdb_and_migration_job_point_at_the_gateway(overlay: str) -> None:
    docs = _render(overlay)
    deployment = _one(docs, "Deployment", "switchyard")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _one(docs, "Service", "switchyard")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == _container(deployment)["ports"][0]["name"]
    hpa = _one(docs, "HorizontalPodAutoscaler", "switchyard")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "switchyard",
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    pdb = _one(docs, "PodDisruptionBudget", "switchyard")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # A node drain must be able to proceed: the budget leaves at least one pod evictable.
    assert pdb["spec"].get("minAvailable", 0) < hpa["spec"]["minReplicas"]
    job = _one(docs, "Job", "switchyard-migrate")
    migrate = _container(job)
    assert migrate["args"] == ["migrate"] and migrate["image"] == _container(deployment)["image"]
    assert _env(migrate)["SWITCHYARD_DATABASE_URL"] == _env(_container(deployment))["SWITCHYARD_DATABASE_URL"]


def test_overlays_size_the_gateway_for_their_use() -> None:
    sizes = {}
    for overlay in ("dev", "prod"):
        docs = _render(overlay)
        hpa = _one(docs, "HorizontalPodAutoscaler", "switchyard")["spec"]
        pdb = _one(docs, "PodDisruptionBudget", "switchyard")["spec"]
        replicas = _one(docs, "Deployment", "switchyard")["spec"]["replicas"]
        sizes[overlay] = (replicas, hpa["minReplicas"], hpa["maxReplicas"], pdb)
    assert sizes["dev"] == (1, 1, 2, {"maxUnavailable": 1, "selector": sizes["dev"][3]["selector"]})
    assert sizes["prod"][:3] == (3, 3, 20) and sizes["prod"][3]["minAvailable"] == 2


def _mounted_config(docs: tuple[Doc, ...]) -> Doc:
    """The routing config the gateway reads: SWITCHYARD_CONFIG's file, in the ConfigMap mounted at
    its directory."""
    deployment = _one(docs, "Deployment", "switchyard")
    path = Path(_env(_container(deployment))["SWITCHYARD_CONFIG"]["value"])
    (mount,) = [m for m in _container(deployment)["volumeMounts"] if m["mountPath"] == str(path.parent)]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    config_map = _one(docs, "ConfigMap", volume["configMap"]["name"])
    return yaml.safe_load(config_map["data"][path.name])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_mounted_routing_config_is_one_the_gateway_loads(overlay: str) -> None:
    config = parse_config(_mounted_config(_render(overlay)), KEYS)
    assert config.models and "auto" in config.routes


def test_local_gpu_runs_the_engine_on_a_gpu_behind_its_own_service() -> None:
    docs = _render("local-gpu")
    engine_deployment = _one(docs, "Deployment", "switchyard-engine")
    engine = _container(engine_deployment)
    assert engine["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert engine["command"] == ["python", "-m", "local_backend", "serve"]
    # The arguments are ones the engine's own command line accepts.
    parser = argparse.ArgumentParser()
    add_local_commands(parser.add_subparsers())
    args = parser.parse_args(["local", "serve", *engine["args"]])
    assert (args.host, args.device) == ("0.0.0.0", "cuda")
    assert engine["ports"][0]["containerPort"] == args.port
    for probe in ("startupProbe", "readinessProbe"):
        assert engine[probe]["httpGet"]["path"] == "/health"
    service = _one(docs, "Service", "switchyard-engine")
    assert (
        service["spec"]["selector"].items()
        <= engine_deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    # The gateway reaches it as an OpenAI-compatible deployment at that Service.
    config = parse_config(_mounted_config(docs), KEYS)
    (local,) = [m for m in config.models if m.tier == "local"]
    assert local.provider == "openai_compatible"
    url = urlsplit(local.api_base)
    assert (url.hostname, url.port, url.path) == (
        "switchyard-engine",
        service["spec"]["ports"][0]["port"],
        "/v1",
    )
    assert local.name in config.routes["auto"].candidates
    # Only the gateway's pods may reach the engine, which has no authentication.
    policy = _one(docs, "NetworkPolicy", "switchyard-engine")
    (rule,) = policy["spec"]["ingress"]
    gateway_labels = _one(docs, "Deployment", "switchyard")["spec"]["template"]["metadata"]["labels"]
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    for overlay in ("dev", "prod"):
        assert not [d for d in _render(overlay) if "engine" in d["metadata"]["name"]]
