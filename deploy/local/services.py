"""Run Redis and Neo4j as local processes, for laptops and CI without Docker.

Used three ways:

* ``python deploy/local/services.py up`` (``make services``): start both if they
  are not running and print ``export REDIS_URL=... NEO4J_URI=...`` lines; state
  lives in ``.local/services.json`` so a second call is instant.
* ``python deploy/local/services.py down`` (``make services-down``): stop them.
* ``tests/conftest.py`` imports :class:`RedisServer` and :class:`Neo4jServer` to
  start private instances for one test session (and to stop and restart them in
  fault-injection tests).

Only the standard library is used, so this runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_DIR = ROOT / "deploy" / "local" / "neo4j"
LAUNCHER_JAR = LAUNCHER_DIR / "target" / "neo4j-local-1.0.0.jar"
STATE_DIR = ROOT / ".local"
STATE_FILE = STATE_DIR / "services.json"
DEFAULT_PASSWORD = "cypherstream-local"
#: The newest Neo4j release the tests also run against, on a database whose default
#: language is Cypher 25, as Neo4j 2026.02 and later create them.
LATEST_NEO4J = "2026.08.1"


class MissingPrerequisite(RuntimeError):
    """A tool needed to run the local services is not installed."""


def _missing(what: str, how: str) -> MissingPrerequisite:
    return MissingPrerequisite(
        f"{what} is missing. Either install it ({how}), or point cypherstream at "
        "servers you already run: export REDIS_URL=redis://host:6379/0 "
        "NEO4J_URI=bolt://host:7687 NEO4J_USERNAME=neo4j NEO4J_PASSWORD=..."
    )


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so nothing is left behind."""
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def ensure_redis_server() -> str:
    """Path of redis-server, installing Debian's package when we are root."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("redis-server not found; installing Debian's redis-server package", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "redis-server", "redis-tools"],
            check=False,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        found = shutil.which("redis-server")
        if found:
            return found
    raise _missing("redis-server", "apt-get install redis-server")


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    # e.g. 'openjdk version "17.0.15" 2025-04-15'
    for token in out.split('"')[1:2]:
        head = token.split(".")[0]
        if head.isdigit():
            return int(head)
    return 0


def _find_java(major: int) -> str | None:
    """A `java` of at least `major`: on the PATH, under JAVA_HOME, or an installed JDK."""
    home = os.environ.get("JAVA_HOME")
    candidates = [
        shutil.which("java"),
        f"{home}/bin/java" if home else None,
        *(str(path) for path in sorted(Path("/usr/lib/jvm").glob("*/bin/java"))),
    ]
    for java in candidates:
        if java and Path(java).exists() and _java_major(java) >= major:
            return java
    return None


def launcher_jar(neo4j_version: str | None = None) -> Path:
    """Where the launcher for `neo4j_version` (None: the pom's, 5.26) is built."""
    build = f"target-{neo4j_version}" if neo4j_version else "target"
    return LAUNCHER_DIR / build / LAUNCHER_JAR.name


def ensure_launcher(neo4j_version: str | None = None) -> tuple[str, Path]:
    """Java and the built Neo4j launcher jar; builds it with Maven when needed.
    `neo4j_version` builds it for another Neo4j release (2025.x and later need Java 21)."""
    need = 21 if neo4j_version else 17
    java = _find_java(need)
    if not java:
        raise _missing(f"Java {need} or newer", f"apt-get install openjdk-{need}-jre-headless")
    jar = launcher_jar(neo4j_version)
    sources = [LAUNCHER_DIR / "pom.xml", *LAUNCHER_DIR.glob("src/**/*.java")]
    newest_source = max(p.stat().st_mtime for p in sources)
    if jar.exists() and jar.stat().st_mtime >= newest_source:
        return java, jar
    mvn = shutil.which("mvn")
    if not mvn:
        raise _missing("Maven (to build the embedded Neo4j launcher)", "apt-get install maven")
    release = f"Neo4j {neo4j_version}" if neo4j_version else "Neo4j"
    print(f"building the embedded {release} launcher with Maven (first time only)",
          file=sys.stderr)  # fmt: skip
    args = [mvn, "-B", "-q", "package", "-DskipTests"]
    if neo4j_version:
        args += [f"-Dneo4j.version={neo4j_version}", f"-Dmaven.compiler.release={need}",
                 f"-Dlauncher.build={jar.parent}"]  # fmt: skip
    # Maven compiles with the JDK it runs on: the one found above.
    env = {**os.environ, "JAVA_HOME": str(Path(java).resolve().parents[1])}
    result = subprocess.run(args, cwd=LAUNCHER_DIR, capture_output=True, text=True, env=env)
    if result.returncode != 0 or not jar.exists():
        raise RuntimeError(f"building the Neo4j launcher failed:\n{result.stdout}{result.stderr}")
    return java, jar


def _wait(condition: object, deadline: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    assert callable(condition)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not become ready in time")


@dataclass
class RedisServer:
    """One redis-server process with AOF on, bound to loopback."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            ensure_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, *, timeout: float = 30.0, tie_to_parent: bool = True) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if tie_to_parent else None,
            start_new_session=not tie_to_parent,
        )
        _wait(self.ping, time.monotonic() + timeout, "redis-server", self.proc)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        _stop(self.proc, sig, timeout)


@dataclass
class RedisClusterServers:
    """A Redis Cluster on loopback: `masters` primaries, each with `replicas` replicas."""

    data_dir: Path
    masters: int = 3
    replicas: int = 0
    node_timeout_ms: int = 2000
    """How long a master may be unreachable before its replica takes over."""
    min_replicas_to_write: int = 0
    """A master with fewer replicas in sync refuses writes (bounds split brain)."""
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A seed node; the client discovers the others."""
        return self.nodes[0].url

    def start(self, *, timeout: float = 60.0) -> RedisClusterServers:
        for n in range(self.masters * (1 + self.replicas)):
            folder = self.data_dir / f"node-{n}"
            node = RedisServer(folder, extra_args=[
                "--cluster-enabled", "yes",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--cluster-config-file", str(folder / "nodes.conf"),
                # An explicit bus port: the default (port + 10000) overflows for high ports.
                "--cluster-port", str(free_port()),
                "--appendfsync", "always",
                "--min-replicas-to-write", str(self.min_replicas_to_write),
            ])  # fmt: skip
            self.nodes.append(node.start())
        redis_cli = shutil.which("redis-cli") or "redis-cli"
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [redis_cli, "--cluster", "create", *addresses, "--cluster-replicas",
             str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            _wait(lambda n=node: self._ready(redis_cli, n), deadline, "redis cluster", node.proc)  # type: ignore[arg-type]
        return self

    @staticmethod
    def _ready(redis_cli: str, node: RedisServer) -> bool:
        """The cluster is up as this node sees it, and a replica is in sync."""

        def info(*command: str) -> str:
            run = [redis_cli, "-p", str(node.port), *command]
            return subprocess.run(run, capture_output=True, text=True).stdout

        if "cluster_state:ok" not in info("cluster", "info"):
            return False
        replication = info("info", "replication")
        return "role:slave" not in replication or "master_link_status:up" in replication

    def node_at(self, port: int) -> RedisServer:
        """The node listening on `port` (to stop it, for instance)."""
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class Neo4jServer:
    """Neo4j Community run embedded with Bolt by the launcher in deploy/local/neo4j."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    password: str = DEFAULT_PASSWORD
    heap: str = "768m"
    #: The Neo4j release to run; None for the launcher's own (5.26).
    version: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 180.0, tie_to_parent: bool = True) -> Neo4jServer:
        java, jar = ensure_launcher(self.version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "launcher.log", "ab")  # noqa: SIM115 - owned by the child
        classpath = f"{jar}:{jar.parent / 'lib'}/*"
        self.proc = subprocess.Popen(
            [
                java, f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-cp", classpath,
                "io.cypherstream.local.Neo4jLocal",
                "--data", str(self.data_dir), "--port", str(self.port),
                "--password", self.password,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if tie_to_parent else None,
            start_new_session=not tie_to_parent,
        )  # fmt: skip
        log.close()
        _wait(self._ready, time.monotonic() + timeout, "Neo4j", self.proc)
        return self

    def _ready(self) -> bool:
        try:
            text = (self.data_dir / "launcher.log").read_text(errors="replace")
        except OSError:
            return False
        return f"BOLT READY bolt://127.0.0.1:{self.port}" in text.split("SHUTTING DOWN")[-1]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        _stop(self.proc, sig, timeout)


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@dataclass
class Drainers:
    """`drainer run` processes for the examples, each serving /metrics on its own port.

    As a context manager: entering starts them and waits until each answers /readyz
    (so a flush finds a live drainer); leaving stops them with SIGTERM.
    """

    count: int
    env: dict[str, str]
    name: str = "drainer"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def __enter__(self) -> Drainers:
        for n in range(self.count):
            port = free_port()
            command = [sys.executable, "-m", "cypherstream.drainer", "run",
                       "--metrics-port", str(port), "--drainer-id", f"{self.name}-{n}"]  # fmt: skip
            self.ports.append(port)
            log = tempfile.NamedTemporaryFile(prefix="drainer-", suffix=".log", delete=False)
            self.logs.append(Path(log.name))
            self.procs.append(subprocess.Popen(command, env=self.env, stderr=log))
        deadline = time.monotonic() + 60
        for proc, port, log_path in zip(self.procs, self.ports, self.logs, strict=True):
            ready = f"http://127.0.0.1:{port}/readyz"
            try:
                _wait(lambda url=ready: _answers(url), deadline, "drainer run", proc)
            except (RuntimeError, TimeoutError) as exc:
                self.__exit__()
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"{exc}; its last words:\n" + "\n".join(tail)) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            _stop(proc, signal.SIGTERM, 60)


# -- `make services` / `make services-down` ----------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _exports(state: dict[str, object]) -> str:
    return (
        f"export REDIS_URL={state['redis_url']} NEO4J_URI={state['neo4j_uri']} "
        f"NEO4J_USERNAME=neo4j NEO4J_PASSWORD={state['neo4j_password']}"
    )


def up() -> dict[str, object]:
    """Start both services unless the recorded ones still run; return their addresses."""
    if os.environ.get("REDIS_URL") and os.environ.get("NEO4J_URI"):
        return {
            "redis_url": os.environ["REDIS_URL"],
            "neo4j_uri": os.environ["NEO4J_URI"],
            "neo4j_password": os.environ.get("NEO4J_PASSWORD", ""),
            "external": True,
        }
    if STATE_FILE.exists():
        state: dict[str, object] = json.loads(STATE_FILE.read_text())
        pids = [int(str(state["redis_pid"])), int(str(state["neo4j_pid"]))]
        if all(_alive(pid) for pid in pids):
            return state
        down()
    STATE_DIR.mkdir(exist_ok=True)
    redis = RedisServer(STATE_DIR / "redis").start(tie_to_parent=False)
    neo4j = Neo4jServer(STATE_DIR / "neo4j").start(tie_to_parent=False)
    assert redis.proc and neo4j.proc
    state = {
        "redis_url": redis.url,
        "redis_pid": redis.proc.pid,
        "neo4j_uri": neo4j.uri,
        "neo4j_pid": neo4j.proc.pid,
        "neo4j_password": neo4j.password,
    }
    STATE_FILE.write_text(json.dumps(state, indent=2))
    return state


def up_and_export() -> dict[str, object]:
    """`up`, then point this process's environment at the services (where not already set)."""
    state = up()
    os.environ.setdefault("REDIS_URL", str(state["redis_url"]))
    os.environ.setdefault("NEO4J_URI", str(state["neo4j_uri"]))
    os.environ.setdefault("NEO4J_USERNAME", "neo4j")
    os.environ.setdefault("NEO4J_PASSWORD", str(state["neo4j_password"]))
    return state


def down() -> None:
    """Stop the services that `up` started, waiting for a clean shutdown."""
    if not STATE_FILE.exists():
        return
    state = json.loads(STATE_FILE.read_text())
    for key in ("redis_pid", "neo4j_pid"):
        pid = int(state[key])
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    STATE_FILE.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "check"])
    args = parser.parse_args(argv)
    try:
        if args.action == "check":
            ensure_redis_server()
            ensure_launcher()
        elif args.action == "down":
            down()
        else:
            print(_exports(up()))
    except MissingPrerequisite as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
