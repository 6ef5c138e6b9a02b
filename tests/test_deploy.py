"""The deployment files: Kustomize renders valid Kubernetes, the Dockerfile and compose
file follow the rules operators rely on. (No cluster and no Docker engine needed.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OVERLAYS = ["dev", "local", "prod"]


def render(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_and_validates_against_the_kubernetes_schemas(
    overlay: str, tmp_path: Path
) -> None:
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(render(overlay)))

    result = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(manifest)],
        capture_output=True, text=True,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_drainer_deployment_is_locked_down_and_probed(overlay: str) -> None:
    docs = render(overlay)
    [deployment] = [d for d in by_kind(docs, "Deployment") if "drainer" in d["metadata"]["name"]]
    [config] = [c for c in by_kind(docs, "ConfigMap") if "drainer" in c["metadata"]["name"]]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]

    grace = float(config["data"]["DRAINER_SHUTDOWN_GRACE"])
    assert pod["terminationGracePeriodSeconds"] > grace
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"requests", "limits"} <= container["resources"].keys()
    assert by_kind(docs, "PodDisruptionBudget") and by_kind(docs, "ServiceAccount")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_drainer_config_names_only_variables_the_drainer_reads(overlay: str) -> None:
    from cypherstream.drainer.cli import run
    from cypherstream.drainer.settings import DrainerSettings

    docs = render(overlay)
    [config] = [c for c in by_kind(docs, "ConfigMap") if "drainer" in c["metadata"]["name"]]
    read = {f"DRAINER_{name.upper()}" for name in DrainerSettings.model_fields}
    read |= {param.envvar for param in run.params if isinstance(param.envvar, str)}
    named = {key for key in config["data"] if key.startswith("DRAINER_")}

    assert named and not named - read  # a misspelt one would be ignored silently


def test_dev_runs_redis_with_aof_and_noeviction() -> None:
    [redis] = [s for s in by_kind(render("dev"), "StatefulSet") if "redis" in s["metadata"]["name"]]
    args = " ".join(redis["spec"]["template"]["spec"]["containers"][0]["args"])

    assert "--appendonly yes" in args
    assert "--maxmemory-policy noeviction" in args


def test_prod_scales_on_the_exported_backlog() -> None:
    [hpa] = by_kind(render("prod"), "HorizontalPodAutoscaler")

    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "cypherstream_backlog_entries"


def test_the_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)

    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert bases and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", bases[0])
    assert "latest" not in text
    assert users and not users[-1].startswith(("root", "0"))
    assert 'ENTRYPOINT ["drainer"]' in text
    assert 'CMD ["run"]' in text
    assert "org.opencontainers.image.title" in text


def test_compose_runs_redis_with_aof_neo4j_and_two_drainers() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]

    assert "--appendonly" in services["redis"]["command"]
    assert services["neo4j"]["image"].startswith("neo4j:5")
    assert services["drainer"]["deploy"]["replicas"] == 2
    assert all(":" in s["image"] and "latest" not in s["image"] for s in services.values())
