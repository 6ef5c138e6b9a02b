"""deploy/local/services.py: a missing prerequisite is named, with both ways out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_tool_is_named_with_how_to_install_it_or_bring_your_own_servers(
    tmp_path: Path,
) -> None:
    # An empty PATH: no redis-server, no apt-get to install it, no java.
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "local" / "services.py"), "check"],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr.count("error:") == 1
    assert "redis-server is missing" in result.stderr
    assert "apt-get install redis-server" in result.stderr
    assert "REDIS_URL" in result.stderr and "NEO4J_URI" in result.stderr
