"""The drainer image and the ways it is deployed, built and run for real.

`make image`'s build of deploy/Dockerfile runs as a drainer against this suite's Redis
and Neo4j; the `local` Kustomize overlay's Deployment runs under `podman kube play`; the
suite's testcontainers fixtures run through podman's Docker API; deploy/compose.yaml comes
up with podman-compose. Skipped, with the reason, where no container engine can be had.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import images
import pytest
import pytest_asyncio
import services
import yaml

from cypherstream import MemoryClient, MemorySettings, __version__
from cypherstream.shared.settings import Neo4jSettings, RedisSettings
from tests.helpers import (
    Graph,
    assert_exactly_once_in_order,
    audit,
    http_get,
    submit_sequenced,
    wait_until,
)

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: Where a container on podman's slirp4netns network (allow_host_loopback) finds the
#: host's loopback, which this suite's Redis and Neo4j listen on (the `local` overlay's too).
HOST_LOOPBACK = "10.0.2.2"
#: NEO4J_AUTH's password in deploy/compose.yaml.
COMPOSE_NEO4J_PASSWORD = "cypherstream-local"
#: The image's non-root user.
IMAGE_USER = "10001:10001"


@pytest.fixture(scope="module")
def engine() -> images.Engine:
    try:
        found = images.find_engine()
    except images.ImageError as exc:
        pytest.skip(str(exc))
    if found.name != "podman":
        pytest.skip("these tests drive podman (slirp4netns, kube play, its Docker API)")
    return found


@pytest.fixture(scope="module")
def drainer_image(engine: images.Engine) -> str:
    return images.build_drainer(engine)


def seen_from_container(url: str) -> str:
    """`url` with its loopback host replaced by the host's address as seen from a container."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (
        parts.netloc.replace(host, HOST_LOOPBACK)
        if host in ("127.0.0.1", "localhost")
        else parts.netloc
    )
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Container:
    engine: images.Engine
    name: str
    metrics_port: int

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.engine.run(*args, check=check, timeout=120)

    def inspect(self, template: str) -> str:
        return self.podman("inspect", "--format", template, self.name).stdout.strip()

    async def ready(self) -> bool:
        try:
            status, _ = await http_get(self.metrics_port, "/readyz")
        except OSError:
            return False
        return status == 200


@pytest_asyncio.fixture
async def container(
    engine: images.Engine, drainer_image: str, env: dict[str, str]
) -> AsyncIterator[Container]:
    """The drainer image run read-only against this test's Redis and Neo4j, its metrics
    port published on the host's loopback."""
    started = Container(engine, f"cs-{uuid.uuid4().hex[:10]}", services.free_port())
    settings = {
        "REDIS_URL": seen_from_container(env["REDIS_URL"]),
        "NEO4J_URI": seen_from_container(env["NEO4J_URI"]),
        "NEO4J_USERNAME": env["NEO4J_USERNAME"],
        "NEO4J_PASSWORD": env["NEO4J_PASSWORD"],
        "CYPHERSTREAM_KEY_PREFIX": env["CYPHERSTREAM_KEY_PREFIX"],
        "CYPHERSTREAM_PARTITIONS": env["CYPHERSTREAM_PARTITIONS"],
        "DRAINER_SHUTDOWN_GRACE": "30",
    }
    started.podman(
        "run", "--detach", "--name", started.name, "--read-only",
        "--network=slirp4netns:allow_host_loopback=true",
        f"--publish=127.0.0.1:{started.metrics_port}:9108",
        *(f"--env={key}={value}" for key, value in settings.items()),
        drainer_image,
    )  # fmt: skip
    try:
        await wait_until(started.ready, timeout=120, what="the container's /readyz")
        yield started
    finally:
        started.podman("rm", "--force", "--time=0", started.name, check=False)


def test_the_image_is_small_labelled_and_runs_as_a_non_root_user(
    engine: images.Engine, drainer_image: str
) -> None:
    size = engine.image_size(drainer_image)
    labels = engine.labels(drainer_image)
    user = engine.run(
        "image", "inspect", "--format", "{{.Config.User}}", drainer_image
    ).stdout.strip()

    print(f"\n{drainer_image}: {size / 1e6:.0f} MB")
    assert size <= 150e6
    assert labels["org.opencontainers.image.title"] == "cypherstream-drainer"
    assert labels["org.opencontainers.image.version"] == __version__
    assert {"description", "licenses", "source"} <= {k.rsplit(".", 1)[-1] for k in labels}
    assert user == IMAGE_USER


def test_the_images_drainer_has_the_compiled_redis_parser_and_bolt_encoder(
    engine: images.Engine, drainer_image: str
) -> None:
    probe = "import hiredis, neo4j._rust, neo4j._codec.packstream.v1 as p; print(p._rust_pack)"

    found = engine.run(
        "run", "--rm", "--entrypoint", "python3", drainer_image, "-c", probe, timeout=120
    ).stdout

    assert found.strip().startswith("<built-in function pack>"), found


async def test_the_container_drains_1000_writes_in_order_from_a_read_only_root_as_non_root(
    container: Container, make_settings: Any, graph: Graph
) -> None:
    async with MemoryClient(make_settings("redis")) as client:
        submitted = await submit_sequenced(client, graph.label, sessions=10, writes=100)
        await client.flush(timeout=120)

    assert_exactly_once_in_order(await audit(graph, submitted))
    assert (await http_get(container.metrics_port, "/healthz"))[0] == 200
    assert container.podman("exec", container.name, "id", "-u").stdout.strip() == "10001"
    assert container.podman("exec", container.name, "touch", "/opt/x", check=False).returncode != 0
    assert container.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"


async def test_stop_with_writes_in_flight_exits_0_and_loses_nothing(
    container: Container, make_settings: Any, graph: Graph
) -> None:
    async with MemoryClient(make_settings("redis", flush_timeout=180)) as client:
        writer = asyncio.create_task(submit_sequenced(client, graph.label, sessions=10, writes=200))

        async def some_applied() -> bool:
            rows = await graph.query("MATCH (s:$$) RETURN count(s) AS n")
            return bool(rows) and rows[0]["n"] > 0

        await wait_until(some_applied, timeout=60, what="the first writes to land")
        stopped = await asyncio.to_thread(container.podman, "stop", "--time=40", container.name)
        exit_code = container.inspect("{{.State.ExitCode}}")
        submitted = await writer
        container.podman("start", container.name)
        await client.flush()

    assert stopped.returncode == 0
    assert exit_code == "0"
    assert_exactly_once_in_order(await audit(graph, submitted))


def test_sigterm_while_waiting_for_a_late_neo4j_exits_0_without_sigkill(
    engine: images.Engine, drainer_image: str, env: dict[str, str]
) -> None:
    name = f"cs-{uuid.uuid4().hex[:10]}"
    nothing_there = f"bolt://{HOST_LOOPBACK}:{services.free_port()}"
    engine.run(
        "run", "--detach", "--name", name, "--read-only",
        "--network=slirp4netns:allow_host_loopback=true",
        f"--env=REDIS_URL={seen_from_container(env['REDIS_URL'])}",
        f"--env=NEO4J_URI={nothing_there}", "--env=NEO4J_PASSWORD=unused",
        drainer_image,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "is not reachable yet" not in (logs := engine.run("logs", name)).stderr + logs.stdout:
            assert time.monotonic() < deadline, "the drainer never started waiting for Neo4j"
            time.sleep(0.05)
        engine.run("stop", "--time=10", name, timeout=60)
        # 0: it exited on SIGTERM; podman's SIGKILL after the 10 s would leave 137.
        assert engine.run("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    finally:
        engine.run("rm", "--force", "--time=0", name, check=False)


@pytest.fixture
def local_deployment(
    engine: images.Engine, drainer_image: str, env: dict[str, str], tmp_path: Path
) -> Iterator[int]:
    """The `local` overlay's rendered Deployment, pointed at this test's Redis and Neo4j,
    run with `podman kube play`; yields the drainer's metrics port."""
    rendered = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / "local")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    port = services.free_port()
    for doc in docs:
        if doc["kind"] == "Secret":
            doc["stringData"].update(
                REDIS_URL=seen_from_container(env["REDIS_URL"]),
                NEO4J_USERNAME=env["NEO4J_USERNAME"],
                NEO4J_PASSWORD=env["NEO4J_PASSWORD"],
            )
        elif doc["kind"] == "ConfigMap":
            doc["data"].update(
                NEO4J_URI=seen_from_container(env["NEO4J_URI"]),
                CYPHERSTREAM_KEY_PREFIX=env["CYPHERSTREAM_KEY_PREFIX"],
                CYPHERSTREAM_PARTITIONS=env["CYPHERSTREAM_PARTITIONS"],
            )
        elif doc["kind"] == "Deployment":
            [drainer] = doc["spec"]["template"]["spec"]["containers"]
            drainer["image"] = drainer_image
            drainer["ports"][0]["hostPort"] = port
    rest, secrets = images.split_secrets(docs)
    manifest = tmp_path / "local.yaml"
    manifest.write_text(yaml.safe_dump_all(rest))
    images.kube_play(engine, manifest, secrets)
    try:
        yield port
    finally:
        images.kube_down(engine, manifest, secrets)


async def test_the_local_overlay_deployment_runs_under_podman_kube_play_and_drains(
    local_deployment: int, make_settings: Any, graph: Graph, engine: images.Engine
) -> None:
    async def ready() -> bool:
        try:
            return (await http_get(local_deployment, "/readyz"))[0] == 200
        except OSError:
            return False

    await wait_until(ready, timeout=120, what="the Deployment's readiness probe")
    async with MemoryClient(make_settings("redis")) as client:
        submitted = await submit_sequenced(client, graph.label, sessions=4, writes=50)
        await client.flush(timeout=120)

    assert_exactly_once_in_order(await audit(graph, submitted))
    assert (await http_get(local_deployment, "/healthz"))[0] == 200
    [pod_container] = [
        c for c in json.loads(engine.run("ps", "--format", "json").stdout)
        if c["Names"][0].startswith("cypherstream-drainer-pod")
    ]  # fmt: skip
    config = json.loads(engine.run("inspect", pod_container["Id"]).stdout)[0]
    assert config["Config"]["User"] == IMAGE_USER
    assert config["HostConfig"]["ReadonlyRootfs"] is True


@pytest.fixture(scope="module")
def stand_ins(engine: images.Engine) -> tuple[str, str]:
    return (
        images.ensure_stand_in(engine, images.redis_stand_in()),
        images.ensure_stand_in(engine, images.neo4j_stand_in()),
    )


@pytest.fixture(scope="module")
def docker_api(engine: images.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """podman's Docker-compatible API on a socket of its own; yields DOCKER_HOST."""
    socket = tmp_path_factory.mktemp("docker-api") / "podman.sock"
    service = images.serve_docker_api(engine, socket)
    try:
        yield f"unix://{socket}"
    finally:
        service.terminate()
        service.wait(timeout=30)


def created_since(engine: images.Engine, since: float, image: str) -> int:
    """How many containers of `image` were created since `since` (epoch seconds)."""
    out = engine.run(
        "events", "--stream=false", f"--since={int(since)}", "--filter=event=create",
        "--format={{.Image}}",
    ).stdout  # fmt: skip
    return out.split().count(image)


@pytest.mark.timeout(900)
def test_the_suites_testcontainers_fixtures_run_the_pipeline_and_fault_tests_on_podman(
    engine: images.Engine, stand_ins: tuple[str, str], docker_api: str
) -> None:
    redis_image, neo4j_image = stand_ins
    child_env = {
        key: value for key, value in os.environ.items()
        if key not in {"REDIS_URL", "NEO4J_URI", "NEO4J_USERNAME", "NEO4J_PASSWORD"}
    }  # fmt: skip
    child_env.update(
        DOCKER_HOST=docker_api,
        # No registry for testcontainers' reaper image; each fixture stops its container.
        TESTCONTAINERS_RYUK_DISABLED="true",
        # Reach published ports on this host, even where /.dockerenv exists.
        TESTCONTAINERS_CONNECTION_MODE="docker_host",
        CYPHERSTREAM_TEST_REDIS_IMAGE=redis_image,
        CYPHERSTREAM_TEST_NEO4J_IMAGE=neo4j_image,
    )
    since = time.time() - 1
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_pipeline.py", "tests/test_faults.py"],
        cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=850,
    )  # fmt: skip

    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout
    assert created_since(engine, since, redis_image) >= 1
    assert created_since(engine, since, neo4j_image) >= 1


@pytest.mark.timeout(600)
async def test_compose_comes_up_with_podman_compose_and_a_write_goes_through(
    engine: images.Engine, drainer_image: str, stand_ins: tuple[str, str], tag: str
) -> None:
    ports = {
        name: services.free_port() for name in ("REDIS_PORT", "NEO4J_BOLT_PORT", "NEO4J_HTTP_PORT")
    }
    compose = [
        str(BIN / "podman-compose"), "-p", tag,
        "-f", str(ROOT / "deploy" / "compose.yaml"),
        "-f", str(ROOT / "deploy" / "compose.local.yaml"),
    ]  # fmt: skip
    compose_env = {**engine.env, **{name: str(port) for name, port in ports.items()}}

    def compose_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, *args], env=compose_env, capture_output=True, text=True, timeout=300
        )

    async def drainer_started() -> bool:
        logs = await asyncio.to_thread(engine.run, "logs", f"{tag}_drainer_1", check=False)
        return '"message": "drainer started"' in logs.stdout + logs.stderr

    up = await asyncio.to_thread(compose_run, "up", "--detach", "--no-build")
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        await wait_until(drainer_started, timeout=240, what="compose's drainer to start")
        settings = MemorySettings(
            redis=RedisSettings(url=f"redis://127.0.0.1:{ports['REDIS_PORT']}/0"),
            neo4j=Neo4jSettings(
                uri=f"bolt://127.0.0.1:{ports['NEO4J_BOLT_PORT']}",
                username="neo4j",
                password=COMPOSE_NEO4J_PASSWORD,
            ),
        )
        settings.memory.flush_timeout = 180
        async with MemoryClient(settings) as client:
            await client.buffered.submit(f"CREATE (:{tag} {{through: 'compose'}})")
            result = await client.flush()
            rows = await client.read(f"MATCH (n:{tag}) RETURN n.through AS through", after=result)
    finally:
        await asyncio.to_thread(compose_run, "down", "--volumes")

    assert rows == [{"through": "compose"}]
