"""Build the drainer image, and stand-in images of Redis and Neo4j, with podman or docker.

Used two ways:

* ``python deploy/local/images.py drainer`` (``make image``): build ``deploy/Dockerfile``
  as ``cypherstream-drainer:<version>`` and print its size;
  ``python deploy/local/images.py stand-ins`` builds the Redis and Neo4j stand-ins.
* ``tests/test_image.py`` imports it to build the same images and run them.

The engine is podman where it is installed (installed from Debian when we are root and
no Docker daemon answers), else docker where a daemon answers. Podman gets this
project's engine settings (``deploy/local/containers/``) through ``CONTAINERS_CONF`` and
``CONTAINERS_STORAGE_CONF``; nothing in /etc is changed.

Base images: the Dockerfile's upstream ``python`` image where it can be pulled; where no
registry answers, a stand-in built from the Debian mirror with ``mmdebstrap`` and
``podman import`` (cached, rebuilt only when its recipe changes). Redis and Neo4j
stand-ins are built the same way (Debian's ``redis-server``; our Neo4j launcher on
Debian's Java) and answer to the environment the official images read, so
``deploy/compose.yaml`` and testcontainers can run them.

Only the standard library is used, so this runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import services

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_DIR = ROOT / "deploy" / "local" / "containers"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

#: Debian release and mirror the stand-in images are made from.
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("CYPHERSTREAM_DEBIAN_MIRROR", "http://deb.debian.org/debian")

#: Stand-in images, used where no registry answers.
PYTHON_STAND_IN = "localhost/cypherstream-python:3.11-bookworm"
REDIS_STAND_IN = "localhost/cypherstream-redis:7.0-bookworm"
NEO4J_STAND_IN = "localhost/cypherstream-neo4j:5.26-bookworm"

#: How long a pull of the upstream base image may take before we build the stand-in.
PULL_TIMEOUT = 120.0

#: Files a build may need to reach PyPI through an intercepting proxy: mounted read-only
#: into podman builds where they exist, never copied into an image.
BUILD_MOUNTS = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf")

#: Leave out of every stand-in what a container never reads.
_DPKG_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/locale/*",
    "/usr/share/info/*",
)


class ImageError(RuntimeError):
    """An image could not be built, or no container engine is available."""


def version() -> str:
    """cypherstream's version, as ``cypherstream/__init__.py`` states it."""
    text = (ROOT / "cypherstream" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not found:
        raise ImageError("no __version__ in cypherstream/__init__.py")
    return found.group(1)


def drainer_tag() -> str:
    return f"cypherstream-drainer:{version()}"


@dataclass(frozen=True)
class Engine:
    """A container engine command line (podman or docker) and the environment it needs."""

    name: str
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        return [self.name, *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args), env=self.env, capture_output=True, timeout=timeout,
            input=stdin, text=True,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise ImageError(
                f"{self.name} {shlex.join(args)} failed: {result.stderr.strip()[-2000:]}"
            )
        return result

    def has_image(self, image: str) -> bool:
        return self.run("image", "inspect", image, check=False).returncode == 0

    def labels(self, image: str) -> dict[str, str]:
        out = self.run("image", "inspect", "--format", "{{json .Config.Labels}}", image).stdout
        return dict(json.loads(out) or {})

    def image_size(self, image: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())

    def pull(self, image: str) -> bool:
        try:
            return self.run("pull", "-q", image, check=False, timeout=PULL_TIMEOUT).returncode == 0
        except subprocess.TimeoutExpired:
            return False


def _daemon_answers(docker: str) -> bool:
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _apt_install(*packages: str) -> None:
    print(f"installing Debian's {', '.join(packages)}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *packages], check=False, env=env, capture_output=True
    )


def _can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def podman_env() -> dict[str, str]:
    """This process's environment plus the project's podman settings (where not set)."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_DIR / "containers.conf"))
    if os.geteuid() == 0:  # rootless podman keeps its own storage under $HOME
        env.setdefault("CONTAINERS_STORAGE_CONF", str(CONTAINERS_DIR / "storage.conf"))
    return env


def find_engine(*, install: bool = True) -> Engine:
    """Podman where installed, else docker where its daemon answers, else podman installed
    from Debian (as root). Raises ImageError saying what to install otherwise."""
    if not shutil.which("podman"):
        docker = shutil.which("docker")
        if docker and _daemon_answers(docker):
            return Engine("docker", dict(os.environ))
        if install and _can_install():
            _apt_install("podman", "runc", "slirp4netns", "uidmap")
    if shutil.which("podman"):
        return Engine("podman", podman_env())
    raise ImageError(
        "no container engine: install podman (apt-get install podman runc) or start a "
        "Docker daemon, then run make image again"
    )


def _recipe_hash(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            for path in sorted([part] if part.is_file() else part.rglob("*")):
                if path.is_file():
                    digest.update(str(path.relative_to(part.parent)).encode())
                    digest.update(path.read_bytes())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()[:16]


def _install_entrypoint(script: Path) -> str:
    """A customize hook that installs `script` as the image's docker-entrypoint.sh."""
    return f'install -m 0755 {shlex.quote(str(script))} "$1/usr/local/bin/docker-entrypoint.sh"'


@dataclass(frozen=True)
class StandIn:
    """An image made from the Debian mirror: packages, hooks run on its root folder, and
    the image config (``import --change``) that makes it act like the image it stands in for."""

    tag: str
    packages: tuple[str, ...]
    hooks: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()
    inputs: tuple[Path, ...] = ()

    def recipe(self) -> str:
        return _recipe_hash(DEBIAN_SUITE, self.packages, self.hooks, self.changes, *self.inputs)


def python_stand_in() -> StandIn:
    return StandIn(
        PYTHON_STAND_IN,
        packages=("python3", "python3-venv", "ca-certificates"),
        changes=('CMD ["python3"]',),
    )


def redis_stand_in() -> StandIn:
    entrypoint = CONTAINERS_DIR / "redis-entrypoint.sh"
    return StandIn(
        REDIS_STAND_IN,
        packages=("redis-server",),
        hooks=(
            'mkdir -p "$1/data"',
            _install_entrypoint(entrypoint),
        ),
        changes=(
            "WORKDIR /data",
            'ENTRYPOINT ["docker-entrypoint.sh"]',
            'CMD ["redis-server"]',
            "EXPOSE 6379",
        ),
        inputs=(entrypoint,),
    )


def neo4j_stand_in() -> StandIn:
    _, jar = services.ensure_launcher()
    entrypoint = CONTAINERS_DIR / "neo4j-entrypoint.sh"
    launcher = shlex.quote(str(jar.parent))
    return StandIn(
        NEO4J_STAND_IN,
        packages=("openjdk-17-jre-headless",),
        hooks=(
            'mkdir -p "$1/data" "$1/opt/neo4j-local"',
            f'cp {shlex.quote(str(jar))} "$1/opt/neo4j-local/neo4j-local.jar"',
            f'cp -r {launcher}/lib "$1/opt/neo4j-local/lib"',
            _install_entrypoint(entrypoint),
        ),
        changes=('ENTRYPOINT ["docker-entrypoint.sh"]', "EXPOSE 7687"),
        inputs=(entrypoint, jar),
    )


def ensure_stand_in(engine: Engine, stand_in: StandIn) -> str:
    """The stand-in image, built from the Debian mirror unless one of this recipe exists."""
    recipe = stand_in.recipe()
    if (
        engine.has_image(stand_in.tag)
        and engine.labels(stand_in.tag).get("cypherstream.recipe") == recipe
    ):
        return stand_in.tag
    mmdebstrap = shutil.which("mmdebstrap")
    if not mmdebstrap and _can_install():
        _apt_install("mmdebstrap")
        mmdebstrap = shutil.which("mmdebstrap")
    if not mmdebstrap:
        raise ImageError(
            f"no registry answers and mmdebstrap is missing, so {stand_in.tag} cannot be "
            "built: apt-get install mmdebstrap, or make the upstream image pullable"
        )
    print(f"building {stand_in.tag} from {DEBIAN_MIRROR}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="cypherstream-image-") as work:
        rootfs = Path(work) / "rootfs.tar"
        strap = [
            mmdebstrap, "--quiet", "--variant=essential",
            f"--include={','.join(stand_in.packages)}",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            *(f"--dpkgopt=path-exclude={glob}" for glob in _DPKG_EXCLUDES),
            # update-alternatives links man pages (java's) into this folder; keep it.
            '--setup-hook=mkdir -p "$1/usr/share/man/man1"',
            *(f"--customize-hook={hook}" for hook in stand_in.hooks),
            '--customize-hook=rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*',
            DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR,
        ]  # fmt: skip
        strapped = subprocess.run(strap, capture_output=True, text=True)
        if strapped.returncode != 0:
            raise ImageError(
                f"mmdebstrap for {stand_in.tag} failed: {strapped.stderr.strip()[-2000:]}"
            )
        changes = [*stand_in.changes, "ENV LANG=C.UTF-8", f"LABEL cypherstream.recipe={recipe}"]
        engine.run("import", *(f"--change={c}" for c in changes), str(rootfs), stand_in.tag)
    return stand_in.tag


def upstream_python_image() -> str:
    """The ``PYTHON_IMAGE`` default in deploy/Dockerfile."""
    found = re.search(r"^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text(), re.M)
    if not found:
        raise ImageError("deploy/Dockerfile has no ARG PYTHON_IMAGE default")
    return found.group(1)


def python_base(engine: Engine) -> str:
    """The upstream python image where it is here or can be pulled, else the stand-in."""
    upstream = upstream_python_image()
    if engine.has_image(upstream) or engine.pull(upstream):
        return upstream
    return ensure_stand_in(engine, python_stand_in())


def build_drainer(engine: Engine, tag: str | None = None) -> str:
    """Build deploy/Dockerfile; returns the tag."""
    tag = tag or drainer_tag()
    args = ["build", "-q", "-f", str(DOCKERFILE), "-t", tag]
    args += ["--build-arg", f"PYTHON_IMAGE={python_base(engine)}"]
    if engine.name == "podman":
        args += [f"--volume={path}:{path}:ro" for path in BUILD_MOUNTS if Path(path).is_file()]
    engine.run(*args, str(ROOT), timeout=1800)
    return tag


def split_secrets(
    docs: Sequence[dict[str, object]],
) -> tuple[list[dict[str, object]], dict[str, str]]:
    """Kubernetes documents without their Secrets, and each Secret as podman secret data.

    ``podman kube play`` (4.3) stores a Secret document in a form its own ``secretRef``
    cannot read back, so Secrets are created with ``podman secret create`` first, in the
    JSON form it reads: each key's value base64-encoded."""
    rest: list[dict[str, object]] = []
    secrets: dict[str, str] = {}
    for doc in docs:
        if doc.get("kind") != "Secret":
            rest.append(doc)
            continue
        data, string_data = doc.get("data") or {}, doc.get("stringData") or {}
        assert isinstance(data, dict) and isinstance(string_data, dict)
        values = {k: base64.b64decode(v).decode() for k, v in data.items()}
        values.update(string_data)
        encoded = {k: base64.b64encode(str(v).encode()).decode() for k, v in values.items()}
        metadata = doc.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        secrets[str(name)] = json.dumps(encoded)
    return rest, secrets


#: ``podman kube play``'s network for the ``local`` overlay: user-mode, with the host's
#: loopback reachable at 10.0.2.2 and container ports published on the host.
KUBE_NETWORK = "slirp4netns:allow_host_loopback=true"


def kube_play(engine: Engine, manifest: Path, secrets: dict[str, str]) -> None:
    """Run Kubernetes YAML with ``podman kube play``, its Secrets created first."""
    for name, data in secrets.items():
        engine.run("secret", "rm", name, check=False)
        engine.run("secret", "create", name, "-", stdin=data)
    engine.run("kube", "play", f"--network={KUBE_NETWORK}", str(manifest), timeout=300)


def kube_down(engine: Engine, manifest: Path, secrets: dict[str, str]) -> None:
    engine.run("kube", "down", str(manifest), check=False, timeout=120)
    for name in secrets:
        engine.run("secret", "rm", name, check=False)


def serve_docker_api(engine: Engine, socket: Path) -> subprocess.Popen[bytes]:
    """``podman system service`` on a unix socket: a Docker-compatible API for
    testcontainers, docker CLI and compose. The caller stops the process."""
    proc = subprocess.Popen(
        engine.command("system", "service", "--time=0", f"unix://{socket}"),
        env=engine.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise ImageError(f"podman system service did not open {socket}")
        time.sleep(0.05)
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["drainer", "stand-ins"], nargs="?", default="drainer")
    args = parser.parse_args(argv)
    try:
        engine = find_engine()
        if args.what == "drainer":
            tag = build_drainer(engine)
            print(f"{tag}: {engine.image_size(tag) / 1e6:.0f} MB ({engine.name})")
        else:
            for stand_in in (redis_stand_in(), neo4j_stand_in()):
                tag = ensure_stand_in(engine, stand_in)
                print(f"{tag}: {engine.image_size(tag) / 1e6:.0f} MB ({engine.name})")
    except (ImageError, services.MissingPrerequisite) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except subprocess.TimeoutExpired as exc:
        print(
            f"error: {shlex.join(map(str, exc.cmd))} took over {exc.timeout:.0f}s", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
