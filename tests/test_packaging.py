"""The wheel: one import package, `cypherstream`, that works away from this repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = (
    "from cypherstream import MemoryClient, MemorySettings, SyncMemoryClient, "
    "BackpressureTimeout, ConfigurationError, FlushTimeout, RedisUnavailable, "
    "Neo4jUnavailable, BufferedWriteError; import cypherstream; print(cypherstream.__version__)"
)


def run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


#: What a source distribution of the project holds: the build needs nothing else.
SOURCES = ("pyproject.toml", "README.md", "cypherstream", "producer", "drainer", "shared")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (setuptools builds in place, and
    the repository stays as it was)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            skip = shutil.ignore_patterns("__pycache__")
            shutil.copytree(ROOT / name, source / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "-q", source, "--no-deps", "-w", out)
    (built,) = out.glob("cypherstream-*.whl")
    return built


def test_the_wheel_holds_only_the_cypherstream_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()

    assert {name.split("/")[0] for name in names} == {
        "cypherstream",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    for part in ("producer", "drainer", "shared"):
        assert f"cypherstream/{part}/__init__.py" in names
        assert f"cypherstream/{part}/py.typed" in names
    assert "cypherstream/shared/lua/submit.lua" in names
    assert "cypherstream/py.typed" in names


def test_the_installed_wheel_works_beside_modules_named_like_its_parts(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "-q", wheel)
    app = tmp_path / "app"  # an application with its own shared.py and producer.py
    app.mkdir()
    (app / "shared.py").write_text("raise ImportError('the application shared.py was imported')\n")
    (app / "producer.py").write_text("raise ImportError('the application producer.py')\n")

    version = run(venv / "bin" / "python", "-c", PUBLIC, cwd=app)
    help_text = run(venv / "bin" / "drainer", "--help", cwd=app)
    module_help = run(
        venv / "bin" / "python", "-m", "cypherstream.drainer", "run", "--help", cwd=app
    )

    assert (
        version.strip()
        == run(sys.executable, "-c", "import cypherstream; print(cypherstream.__version__)").strip()
    )
    assert "applies queued writes" in help_text
    assert "env REDIS_URL" in module_help
