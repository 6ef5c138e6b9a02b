"""Servers for the suite: real Redis and real Neo4j over the network.

Taken in this order: REDIS_URL / NEO4J_URI from the environment; testcontainers
when a Docker API answers (images redis:7 and neo4j:5, or CYPHERSTREAM_TEST_REDIS_IMAGE /
CYPHERSTREAM_TEST_NEO4J_IMAGE); otherwise local processes from deploy/local/,
started once per test session on free ports and stopped at the end. Tests
isolate by unique key prefixes and graph labels, never by restarting servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from neo4j import AsyncDriver, AsyncGraphDatabase, GraphDatabase
from redis import asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import services  # noqa: E402  (deploy/local/services.py, stdlib only)

from cypherstream import MemoryClient, MemorySettings  # noqa: E402
from cypherstream.drainer.settings import DrainerSettings  # noqa: E402
from cypherstream.drainer.worker import Drainer  # noqa: E402
from cypherstream.shared.settings import Neo4jSettings, RedisSettings, StreamSettings  # noqa: E402
from tests.helpers import FlakyProxy  # noqa: E402


@dataclass(frozen=True)
class Neo4jTarget:
    uri: str
    username: str
    password: str


def _docker_answers() -> bool:
    """Whether a Docker API answers (DOCKER_HOST, or the default socket): Docker's own,
    or podman's `podman system service`."""
    if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
        return False
    try:
        import docker  # testcontainers' client

        return bool(docker.from_env(timeout=10).ping())
    except Exception:  # any failure means: no usable Docker API
        return False


@pytest.fixture(scope="session")
def tmp_services(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def redis_server(tmp_services: Path) -> Iterator[services.RedisServer | None]:
    """The local redis-server this session started, or None when Redis is external."""
    if os.environ.get("REDIS_URL") or _docker_answers():
        yield None
        return
    server = services.RedisServer(tmp_services / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: services.RedisServer | None) -> Iterator[str]:
    if redis_server is not None:
        yield redis_server.url
    elif os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
    else:
        from testcontainers.community.redis import RedisContainer

        with RedisContainer(
            os.environ.get("CYPHERSTREAM_TEST_REDIS_IMAGE", "redis:7")
        ) as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"


@pytest.fixture(scope="session")
def neo4j_server(tmp_services: Path) -> Iterator[services.Neo4jServer | None]:
    """The local Neo4j this session started, or None when Neo4j is external."""
    if os.environ.get("NEO4J_URI") or _docker_answers():
        yield None
        return
    server = services.Neo4jServer(tmp_services / "neo4j").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def neo4j_target(neo4j_server: services.Neo4jServer | None) -> Iterator[Neo4jTarget]:
    if neo4j_server is not None:
        yield Neo4jTarget(neo4j_server.uri, "neo4j", neo4j_server.password)
    elif os.environ.get("NEO4J_URI"):
        yield Neo4jTarget(
            os.environ["NEO4J_URI"],
            os.environ.get("NEO4J_USERNAME", "neo4j"),
            os.environ.get("NEO4J_PASSWORD", ""),
        )
    else:
        from testcontainers.community.neo4j import Neo4jContainer

        image = os.environ.get("CYPHERSTREAM_TEST_NEO4J_IMAGE", "neo4j:5")
        with Neo4jContainer(image) as container:
            yield Neo4jTarget(container.get_connection_url(), "neo4j", container.password)


@pytest.fixture(scope="session")
def agent_memory_server(tmp_services: Path, neo4j_target: Neo4jTarget) -> Iterator[Neo4jTarget]:
    """A Neo4j of its own for neo4j-agent-memory's client, whose schema set-up (its
    constraints and indexes on Message, Entity, ...) would otherwise change the schema
    every other test relies on. An external Neo4j (NEO4J_URI) is shared."""
    if os.environ.get("NEO4J_URI") or _docker_answers():
        yield neo4j_target
        return
    server = services.Neo4jServer(tmp_services / "neo4j-agent-memory").start()
    try:
        yield Neo4jTarget(server.uri, "neo4j", server.password)
    finally:
        server.stop()


@pytest.fixture
def agent_memory_neo4j(
    agent_memory_server: Neo4jTarget, neo4j_target: Neo4jTarget
) -> Iterator[Neo4jTarget]:
    """The Neo4j for one test's neo4j-agent-memory clients. Where it is the suite's own
    (an external one), the constraints and indexes the test created are dropped after
    it: the library's index on :Entity(name) would keep the typed records' uniqueness
    constraint from being created in every test after it."""
    if agent_memory_server != neo4j_target:
        yield agent_memory_server
        return
    with GraphDatabase.driver(
        neo4j_target.uri, auth=(neo4j_target.username, neo4j_target.password)
    ) as driver:
        before = _schema_rules(driver)
        yield neo4j_target
        constraints, indexes = _schema_rules(driver)
        for name in constraints - before[0]:
            driver.execute_query(f"DROP CONSTRAINT `{name}` IF EXISTS")
        for name in indexes - before[1]:
            driver.execute_query(f"DROP INDEX `{name}` IF EXISTS")


def _schema_rules(driver: Any) -> tuple[set[str], set[str]]:
    """The names of a database's constraints and of its indexes no constraint owns,
    other than cypherstream's own (drainers create those again as they start)."""
    constraints = driver.execute_query("SHOW CONSTRAINTS YIELD name").records
    indexes = driver.execute_query(
        "SHOW INDEXES YIELD name, owningConstraint WHERE owningConstraint IS NULL RETURN name"
    ).records
    return _not_ours(constraints), _not_ours(indexes)


def _not_ours(rows: list[Any]) -> set[str]:
    return {row["name"] for row in rows if not row["name"].startswith("cypherstream_")}


@pytest.fixture(scope="module")
def latest_neo4j(tmp_services: Path) -> Iterator[Neo4jTarget]:
    """A local Neo4j of the newest release (`services.LATEST_NEO4J`) whose database's
    default language is Cypher 25, as Neo4j 2026.02+ and new Aura instances create
    them: what a user of a current Neo4j meets. Skipped where no Java 21 is installed;
    stopped after the module that uses it, so no third JVM runs under later tests."""
    try:
        server = services.Neo4jServer(
            tmp_services / "neo4j-latest", version=services.LATEST_NEO4J
        ).start()
    except services.MissingPrerequisite as exc:
        pytest.skip(f"no Neo4j {services.LATEST_NEO4J} here: {exc}")
    try:
        target = Neo4jTarget(server.uri, "neo4j", server.password)
        _default_language(target, "CYPHER 25")
        yield target
    finally:
        server.stop()


def _default_language(target: Neo4jTarget, language: str) -> None:
    with GraphDatabase.driver(target.uri, auth=(target.username, target.password)) as driver:
        driver.execute_query(
            f"ALTER DATABASE neo4j SET DEFAULT LANGUAGE {language}", database_="system"
        )
        rows, _, _ = driver.execute_query(
            "SHOW DATABASE neo4j YIELD defaultLanguage", database_="system"
        )
        assert rows[0]["defaultLanguage"] == language, rows


@pytest_asyncio.fixture(scope="session")
async def neo4j(neo4j_target: Neo4jTarget) -> AsyncIterator[AsyncDriver]:
    driver = AsyncGraphDatabase.driver(
        neo4j_target.uri,
        auth=(neo4j_target.username, neo4j_target.password),
        notifications_min_severity="OFF",
    )
    await driver.verify_connectivity()
    yield driver
    await driver.close()


@pytest_asyncio.fixture(scope="session")
async def redis(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def proxy(redis_url: str) -> AsyncIterator[FlakyProxy]:
    """A TCP proxy to the test Redis that tests can cut and restore."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    flaky = await FlakyProxy(port).start()
    yield flaky
    await flaky.stop()


#: maxmemory of `small_redis`: about 3 MiB above what an empty Redis uses.
SMALL_REDIS_MAXMEMORY = 4 * 1024 * 1024


OwnRedis = Callable[..., services.RedisServer]
"""`own_redis(name, *args)`: start a redis-server of the test's own with `args`."""


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """Redis servers of this test's own, each started with its own arguments (a small
    maxmemory, a replica's primary, a command renamed away); all stopped at the end,
    the last started first."""
    started: list[services.RedisServer] = []

    def start(name: str, *args: str) -> services.RedisServer:
        server = services.RedisServer(tmp_path / name, extra_args=list(args)).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def small_redis(own_redis: OwnRedis) -> services.RedisServer:
    """A redis-server of its own with a small maxmemory (noeviction), to fill up."""
    return own_redis("small-redis", "--maxmemory", str(SMALL_REDIS_MAXMEMORY))


@pytest.fixture(scope="session")
def redis_cluster(tmp_services: Path) -> Iterator[services.RedisClusterServers]:
    """A 3-master Redis Cluster of local processes (started on first use)."""
    cluster = services.RedisClusterServers(tmp_services / "cluster", masters=3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def failover_cluster(tmp_path: Path) -> Iterator[services.RedisClusterServers]:
    """A 3-master cluster with a replica per master that takes over within about a
    second, configured as the README recommends with WAIT (a master without a replica
    in sync refuses writes); one per test, because tests kill its nodes."""
    cluster = services.RedisClusterServers(
        tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=1000,
        min_replicas_to_write=1,
    ).start()  # fmt: skip
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest_asyncio.fixture
async def cluster(redis_cluster: services.RedisClusterServers) -> AsyncIterator[Any]:
    """A RedisCluster client of the test cluster, and its settings as `.settings`."""
    settings = RedisSettings(url=redis_cluster.url, cluster=True)
    client = settings.client()
    await client.initialize()  # learn the slot map now, not at the first command
    client.settings = settings
    yield client
    await client.aclose()


# ACL users of the secured Redis: the producer role may only touch cypherstream's keys
# under the `secure` prefix (the rules the README recommends); `outsider` has other keys.
SECURE_PREFIX = "secure"
ACL_USERS = {
    "producer": "producer-secret-1",
    "drainer": "drainer-secret-22",
    "outsider": "outsider-secret-333",
}


@dataclass(frozen=True)
class SecureRedis:
    """A redis-server with TLS (clients use `url`) and ACL users."""

    url: str
    ca: Path
    prefix: str = SECURE_PREFIX

    def settings(self, user: str, password: str | None = None) -> RedisSettings:
        return RedisSettings(
            url=self.url,
            username=user,
            password=password if password is not None else ACL_USERS[user],
            ssl_ca_certs=self.ca,
        )


@pytest.fixture(scope="session")
def secure_redis(tmp_services: Path) -> Iterator[SecureRedis]:
    """TLS (a CA made here) and ACLs; the plain port answers PING only, for readiness."""
    from tests.helpers import make_tls_files

    folder = tmp_services / "secure-redis"
    tls = make_tls_files(folder / "tls")
    p = SECURE_PREFIX
    acl = folder / "users.acl"
    acl.write_text(
        "user default on nopass -@all +ping\n"
        f"user producer on >{ACL_USERS['producer']} resetkeys "
        f"~{{{p}:p* ~{{{p}}}:* resetchannels &{{{p}}}:room +@all -@dangerous -@admin\n"
        f"user drainer on >{ACL_USERS['drainer']} ~* &* +@all\n"
        f"user outsider on >{ACL_USERS['outsider']} resetkeys ~other:* +@all -@dangerous\n"
    )
    tls_port = services.free_port()
    server = services.RedisServer(
        folder / "data",
        extra_args=[
            "--tls-port", str(tls_port), "--tls-cert-file", str(tls.cert),
            "--tls-key-file", str(tls.key), "--tls-ca-cert-file", str(tls.ca),
            "--tls-auth-clients", "no", "--aclfile", str(acl),
        ],
    )  # fmt: skip
    server.start()
    try:
        yield SecureRedis(f"rediss://127.0.0.1:{tls_port}/0", tls.ca)
    finally:
        server.stop()


# -- per test -------------------------------------------------------------------------------


@pytest.fixture
def tag() -> str:
    """A token unique to this test, for key prefixes and graph labels."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def streams(tag: str) -> StreamSettings:
    return StreamSettings(key_prefix=tag, partitions=4)


@pytest.fixture
def env(redis_url: str, neo4j_target: Neo4jTarget, streams: StreamSettings) -> dict[str, str]:
    """Environment for child processes (drainers, producers) of this test."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "NEO4J_URI": neo4j_target.uri,
        "NEO4J_USERNAME": neo4j_target.username,
        "NEO4J_PASSWORD": neo4j_target.password,
        "CYPHERSTREAM_KEY_PREFIX": streams.key_prefix,
        "CYPHERSTREAM_PARTITIONS": str(streams.partitions),
    }


@pytest.fixture
def neo4j_settings(neo4j_target: Neo4jTarget) -> Neo4jSettings:
    return Neo4jSettings(
        uri=neo4j_target.uri, username=neo4j_target.username, password=neo4j_target.password
    )


@pytest.fixture
def make_settings(redis_url: str, neo4j_settings: Neo4jSettings, streams: StreamSettings) -> Any:
    """Build `MemorySettings` for one of the modes: sync, embedded, redis."""

    def build(mode: str = "redis", **memory: Any) -> MemorySettings:
        settings = MemorySettings(
            neo4j=neo4j_settings,
            redis=RedisSettings(url=redis_url if mode == "redis" else None),
            streams=streams,
        )
        settings.memory.write_mode = "sync" if mode == "sync" else "buffered"
        settings.memory.flush_timeout = 60
        for name, value in memory.items():
            setattr(settings.memory, name, value)
        return settings

    return build


@pytest.fixture
def drainer_settings(redis_url: str, neo4j_settings: Neo4jSettings, streams: StreamSettings) -> Any:
    def build(**overrides: Any) -> DrainerSettings:
        params: dict[str, Any] = {
            "redis": RedisSettings(url=redis_url),
            "neo4j": neo4j_settings,
            "streams": streams,
            "poll_interval": 0.02,
            "lease_ttl": 5.0,
        }
        return DrainerSettings(**{**params, **overrides})

    return build


@pytest_asyncio.fixture
async def start_drainer(drainer_settings: Any) -> AsyncIterator[Any]:
    """Start in-process drainers (`await start_drainer(**settings)`); all stop at the end."""
    running: list[tuple[Drainer, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> Drainer:
        drainer = Drainer(drainer_settings(**overrides))
        task = asyncio.create_task(drainer.run())
        ready = asyncio.create_task(drainer.ready.wait())
        await asyncio.wait([task, ready], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what went wrong
        assert drainer.ready.is_set(), "drainer did not start within 60s"
        running.append((drainer, task))
        return drainer

    yield start
    for drainer, _ in running:
        drainer.stop()
    for _, task in running:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)


@pytest_asyncio.fixture
async def drainer(start_drainer: Any) -> Drainer:
    """One in-process drainer on this test's prefix."""
    return await start_drainer()  # type: ignore[no-any-return]


@pytest.fixture(params=["sync", "embedded", "redis"])
def mode(request: pytest.FixtureRequest) -> str:
    """Runs a test once per write mode; redis mode also starts a drainer."""
    if request.param == "redis":
        request.getfixturevalue("drainer")
    return str(request.param)


@pytest.fixture(params=["async", "blocking"])
def open_client(request: pytest.FixtureRequest) -> Any:
    """`MemoryClient`, then `SyncMemoryClient` driven from threads: one body, both APIs."""
    from tests.helpers import ThreadedClient

    return MemoryClient if request.param == "async" else ThreadedClient


@pytest_asyncio.fixture
async def graph(neo4j: AsyncDriver, tag: str) -> AsyncIterator[Any]:
    """Query helper for this test's nodes (label `tag`), removed afterwards."""
    from tests.helpers import Graph

    helper = Graph(neo4j, tag)
    yield helper
    await helper.cleanup()


@pytest_asyncio.fixture
async def client(make_settings: Any) -> AsyncIterator[MemoryClient]:
    """A buffered Redis-mode client on this test's prefix."""
    async with MemoryClient(make_settings("redis")) as opened:
        yield opened


@pytest_asyncio.fixture
async def spawn_drainer(
    env: dict[str, str], redis: Any, streams: StreamSettings
) -> AsyncIterator[Any]:
    """Start `drainer run` processes for this test; each is SIGTERMed (then killed) at the end."""
    from tests.helpers import DrainerProcess

    started: list[DrainerProcess] = []

    async def spawn(
        *args: str, wait_ready: bool = True, redis_client: Any = None, **env_overrides: str
    ) -> DrainerProcess:
        """`redis_client` (and REDIS_URL among the overrides) for a drainer on another Redis."""
        proc = DrainerProcess(
            {**env, **env_overrides}, list(args), redis_client or redis, streams.keyspace()
        )
        started.append(proc)
        if wait_ready:
            await proc.wait_ready()
        return proc

    yield spawn
    for proc in started:
        proc.terminate()
