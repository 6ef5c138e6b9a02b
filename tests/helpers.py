"""Helpers the tests share: reading the graph back, waiting on conditions."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from neo4j import AsyncDriver
from neo4j import exceptions as nx

from cypherstream.shared.errors import ConfigurationError
from cypherstream.shared.schema import create_schema


class Graph:
    """Reads and cleans up the nodes of one test, all labelled with the test's tag."""

    def __init__(self, driver: AsyncDriver, label: str) -> None:
        self.driver = driver
        self.label = label

    async def query(self, cypher: str, **params: Any) -> list[dict[str, Any]]:
        records, _, _ = await self.driver.execute_query(cypher.replace("$$", self.label), params)
        return [record.data() for record in records]

    async def count(self, where: str = "true", **params: Any) -> int:
        rows = await self.query(f"MATCH (n:$$) WHERE {where} RETURN count(n) AS c", **params)
        return int(rows[0]["c"])

    async def cleanup(self) -> None:
        await self.query("MATCH (n:$$) DETACH DELETE n")
        await self.query(
            "MATCH (p:CypherstreamProgress) WHERE p.stream STARTS WITH $prefix DELETE p",
            prefix=f"{self.label}:",
        )
        for row in await self.query("SHOW CONSTRAINTS YIELD name, labelsOrTypes"):
            if self.label in (row["labelsOrTypes"] or []):
                await self.query(f"DROP CONSTRAINT {row['name']}")


async def index_in_the_way_is_named(neo4j: AsyncDriver, tag: str) -> None:
    """Creating a uniqueness constraint on `:<tag>(name)` while a plain index on the
    property is in the way raises `ConfigurationError` naming the index; with the index
    gone, the constraint is created."""
    await neo4j.execute_query(f"CREATE INDEX {tag}_name FOR (n:{tag}) ON (n.name)")
    unique = f"CREATE CONSTRAINT {tag}_u IF NOT EXISTS FOR (n:{tag}) REQUIRE n.name IS UNIQUE"
    try:
        with pytest.raises(ConfigurationError, match=rf"'{tag}_name' on the same property"):
            await create_schema(neo4j, None, [unique])

        await neo4j.execute_query(f"DROP INDEX {tag}_name")
        await create_schema(neo4j, None, [unique])  # with the index gone it is created
    finally:
        await neo4j.execute_query(f"DROP INDEX {tag}_name IF EXISTS")
        await neo4j.execute_query(f"DROP CONSTRAINT {tag}_u IF EXISTS")


async def count_is(graph: Graph, count: int) -> bool:
    """Whether the test's graph holds `count` nodes: a condition for `wait_until`."""
    return await graph.count() == count


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    """Wait for `condition()` to hold, checking often, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


DRAINER = (sys.executable, "-m", "cypherstream.drainer")
"""The `drainer` command, run by this interpreter."""


class DrainerProcess:
    """A `drainer run` child process with its output captured to a temporary file."""

    def __init__(self, env: dict[str, str], args: list[str], redis: Any, keys: Any) -> None:
        import subprocess
        import sys
        import tempfile
        import uuid

        self.drainer_id = f"proc-{uuid.uuid4().hex[:8]}"
        self.log = tempfile.NamedTemporaryFile(prefix="drainer-", suffix=".log", delete=False)  # noqa: SIM115
        self._redis = redis
        self._keys = keys
        command = [
            sys.executable,
            "-m",
            "cypherstream.drainer",
            "run",
            "--drainer-id",
            self.drainer_id,
            *args,
        ]
        self.proc = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async def alive() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"drainer exited with {self.proc.returncode}:\n{self.output()}"
                )
            return await self._redis.zscore(self._keys.drainers, self.drainer_id) is not None

        await wait_until(alive, timeout=timeout, what=f"drainer {self.drainer_id} to start")

    def output(self) -> str:
        with open(self.log.name, errors="replace") as handle:
            return handle.read()

    def terminate(self, timeout: float = 60.0) -> int:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


class FlakyProxy:
    """A TCP proxy on loopback that can drop one reply and break its connection,
    or stop answering at all: a connection failing mid-call, made on purpose."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.drop_next_reply = False
        self.drop_reply_with: bytes | None = None
        """Drop the first reply holding these bytes (and break its connection)."""
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0
        """Where it listens (or last listened, once stopped)."""

    async def start(self, port: int = 0) -> FlakyProxy:
        """Listen (again) on `port`, or on a free one."""
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in self._writers:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    marked = self.drop_reply_with is not None and self.drop_reply_with in data
                    if replies and (self.drop_next_reply or marked):
                        self.drop_next_reply, self.drop_reply_with = False, None
                        self.dropped += 1
                        writer.close()
                        up_writer.close()
                        return
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))


@dataclass
class Audit:
    """What became of numbered writes, read back from Neo4j (see `SEQUENCED_WRITE`)."""

    submitted: int = 0
    applied: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    lost: int = 0

    def __str__(self) -> str:
        return (
            f"submitted={self.submitted} applied={self.applied} duplicated={self.duplicated} "
            f"out_of_order={self.out_of_order} lost={self.lost}"
        )


# Appends the write's sequence number to its session's node: duplicates, gaps and
# reordering all show in the list.
SEQUENCED_WRITE = "MERGE (s:{label} {{session: $session}}) SET s.seqs = coalesce(s.seqs, []) + $seq"


def as_read(fields: list[bytes | str]) -> list[bytes]:
    """An entry's field/value pairs as XADD takes them, as a stream read returns them."""
    return [part.encode() if isinstance(part, str) else part for part in fields]


def through(settings: Any, proxy: FlakyProxy) -> Any:
    """`settings` with Redis reached through `proxy`."""
    settings.redis.url = f"redis://127.0.0.1:{proxy.port}/0"
    return settings


async def submit_sequenced(
    client: Any,
    label: str,
    sessions: int,
    writes: int,
    prefix: str = "s",
    first: int = 0,
    acked: list[int] | None = None,
) -> dict[str, int]:
    """Numbered writes `first`.. `first + writes - 1` to each session, all sessions at once;
    returns how many each session has been sent in all (for `audit`). `acked[0]` counts
    the submits that returned, for a test that acts part-way."""
    query = SEQUENCED_WRITE.format(label=label)

    async def one_session(name: str) -> None:
        for seq in range(first, first + writes):
            await client.buffered.submit(query, {"session": name, "seq": seq}, session_id=name)
            if acked is not None:
                acked[0] += 1

    names = [f"{prefix}{i}" for i in range(sessions)]
    await asyncio.gather(*(one_session(name) for name in names))
    return dict.fromkeys(names, first + writes)


async def submit_killing_drainers(
    client: Any,
    label: str,
    drainers: list[Any],
    respawn: Any,
    *,
    rounds: int,
    sessions: int,
    writes: int,
) -> dict[str, int]:
    """Submit `rounds` rounds of sequenced writes; right after each, SIGKILL one drainer
    (it is mid-drain then, whatever the machine's speed) and start a new one."""
    submitted: dict[str, int] = {}
    for round_ in range(rounds):
        submitted = await submit_sequenced(
            client, label, sessions=sessions, writes=writes, first=round_ * writes
        )
        index = round_ % len(drainers)
        drainers[index].proc.kill()
        drainers[index] = await respawn()
    return submitted


async def audit(graph: Graph, submitted: dict[str, int]) -> Audit:
    """Compare each session's applied sequence numbers with the 0..n-1 submitted.

    Numbers beyond n-1 (written but never confirmed to the test) count only if repeated
    or out of order.
    """
    rows = await graph.query("MATCH (s:$$) RETURN s.session AS session, s.seqs AS seqs")
    seen = {row["session"]: row["seqs"] for row in rows}
    result = Audit(submitted=sum(submitted.values()))
    for session, count in submitted.items():
        seqs = seen.get(session, [])
        distinct = set(seqs)
        result.applied += len(distinct & set(range(count)))
        result.duplicated += len(seqs) - len(distinct)
        result.out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
        result.lost += count - len(distinct & set(range(count)))
    print(f"\n[{graph.label}] {result}")
    return result


def assert_exactly_once_in_order(result: Audit) -> None:
    assert (result.duplicated, result.out_of_order, result.lost) == (0, 0, 0), str(result)
    assert result.applied == result.submitted


async def http_get(port: int, path: str) -> tuple[int, str]:
    """GET from a local port: (status code, body)."""
    import urllib.error
    import urllib.request

    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
                return int(reply.status), reply.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()

    return await asyncio.to_thread(fetch)


class _InThreads:
    """Calls the methods of a blocking object from worker threads, as coroutines."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(value, *args, **kwargs)

        return call


class ThreadedClient(_InThreads):
    """A `SyncMemoryClient` driven from threads behind `MemoryClient`'s async surface.

    So one test body specifies both APIs; the blocking calls never run on the test's
    event loop (where in-process drainers live).
    """

    def __init__(self, settings: Any, **kwargs: Any) -> None:
        from cypherstream import SyncMemoryClient

        self.sync = SyncMemoryClient(settings, **kwargs)
        super().__init__(self.sync)
        self.buffered = _InThreads(self.sync.buffered)

    async def __aenter__(self) -> ThreadedClient:
        await asyncio.to_thread(self.sync.open)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.to_thread(self.sync.__exit__, *exc)


@dataclass(frozen=True)
class TlsFiles:
    """A CA and a server certificate for 127.0.0.1 that it signed, as PEM files."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """A throwaway CA and a server certificate (CN localhost, SAN 127.0.0.1), valid 1 day."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("cypherstream test CA"))
        .issuer_name(name("cypherstream test CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    alt = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(alt, critical=False).sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@dataclass(frozen=True)
class Ended:
    """A child process run to its end: its exit code and output."""

    code: int
    stdout: str
    stderr: str


async def run_to_end(
    *command: str, env: dict[str, str], stdin: bytes | None = None, timeout: float = 60
) -> Ended:
    """Run `command` to its end, its output captured. One still running after `timeout`
    seconds is killed and fails the test, so no child outlives it.

    Not subprocess.run: in-process drainers share the test's event loop.
    """
    from asyncio.subprocess import PIPE

    proc = await asyncio.create_subprocess_exec(
        *command, env=env, stdin=PIPE if stdin is not None else None, stdout=PIPE, stderr=PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{' '.join(command)} still ran after {timeout}s: killed") from None
    return Ended(
        int(proc.returncode or 0), out.decode(errors="replace"), err.decode(errors="replace")
    )


async def run_python(script: Path, *args: str, env: dict[str, str], timeout: float = 300) -> str:
    """Run a Python script to the end; its stdout. Fails the test when it exits non-zero."""
    ended = await run_to_end(sys.executable, str(script), *args, env=env, timeout=timeout)
    assert ended.code == 0, ended.stdout + ended.stderr
    return ended.stdout


def neo4j_error(code: str, message: str = "m") -> nx.Neo4jError:
    """The driver's exception for a failure the server reports with `code` (for tests
    of pure functions)."""
    return nx.Neo4jError._hydrate_neo4j(code=code, message=message)  # type: ignore[attr-defined,no-any-return]
