"""The README's quick start is code that runs."""

from __future__ import annotations

import asyncio
import re
import sys
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


async def test_the_readme_example_runs_and_leaves_its_message_in_neo4j(
    env: dict[str, str], drainer: Any, graph: Any, tmp_path: Path
) -> None:
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S)
    assert example is not None
    script = tmp_path / "example.py"
    script.write_text(example.group(1).replace(":Message", f":{graph.label}"))

    # Not subprocess.run: the in-process drainer needs this event loop to keep running.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, stdout=PIPE, stderr=PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)

    assert proc.returncode == 0, stderr.decode()
    assert b"failed:" not in stdout
    assert await graph.query("MATCH (m:$$) RETURN m.content AS c") == [{"c": "Hello"}]
