"""`make bench-ab`: the working tree against an earlier revision, measured in turns.

On a shared machine the speed moves by a factor of two within an hour, so a run
measured now against one measured earlier says little about a change. This runs each
measurement once per side, in pairs, alternating which side goes first, and reports
each side's median and in how many pairs the working tree did better: how issue 19's
rounds decided their changes to the producer and the drainer.

Shapes: `e2e` (one session of 3,000 writes submitted one after the other with
`max_pending` 200 and one drainer running, as `make bench`'s end-to-end target),
`100x20` and `1x2000` (drain only, as `make bench` times it). Each measurement runs
in a process of its own, with the revision's code ahead of the editable install for
the base side; the drainers it starts inherit that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import services  # noqa: E402

#: Pairs of measurements per shape, by default.
PAIRS = 10
#: The figures of each shape, and whether more is better.
FIGURES = {
    "e2e": {"writes_per_s": True, "submit_p50_ms": False, "submit_p99_ms": False,
            "producer_cpu_us": False, "drainer_cpu_us": False, "redis_cpu_us": False},
    "drain": {"writes_per_s": True, "drainer_cpu_us": False, "redis_cpu_us": False,
              "neo4j_cpu_us": False},
}  # fmt: skip
#: Drops the editable install's finder from the base side: consulted after the path,
#: it would fill in any module the revision lacks from the working tree, silently.
_SITECUSTOMIZE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
"""


def revision_tree(revision: str, folder: Path) -> Path:
    """`revision`'s code laid out as the package `cypherstream` under `folder/pkg`
    (for PYTHONPATH), as the wheel lays it out."""
    archived = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True)
    if archived.returncode != 0:
        raise SystemExit(f"no revision {revision!r} to compare with: {archived.stderr.decode()}")
    archive = archived.stdout
    source = folder / "src"
    source.mkdir()
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    package = folder / "pkg" / "cypherstream"
    shutil.copytree(source / "cypherstream", package)
    for part in ("producer", "drainer", "shared"):
        shutil.copytree(source / part, package / part)
    (folder / "pkg" / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return folder / "pkg"


async def measure_e2e() -> dict[str, Any]:
    import bench
    import targets

    run = f"ab{uuid.uuid4().hex[:6]}"
    ours = await targets.ours_end_to_end(run, targets.msg_workload(1, targets.ANCHOR_WRITES))
    await bench.cleanup(run)
    return {
        "writes_per_s": ours["cypherstream_wps"],
        "submit_p50_ms": ours["submit_p50_ms"],
        "submit_p99_ms": ours["submit_p99_ms"],
        "producer_cpu_us": ours["producer_cpu_us_per_submit"],
        "drainer_cpu_us": ours["drainer_cpu_us_per_write"],
        "redis_cpu_us": ours["redis_cpu_us_per_write"],
    }


async def measure_drain(sessions: int, per_session: int) -> dict[str, Any]:
    import bench
    import targets

    run = f"ab{uuid.uuid4().hex[:6]}"
    drained = await bench.drain_only(targets.msg_workload(sessions, sessions * per_session), run, 1)
    await bench.cleanup(run)
    return {
        "writes_per_s": drained.writes_per_s,
        "drainer_cpu_us": drained.drainer_cpu_us_per_write,
        "redis_cpu_us": drained.redis_cpu_us_per_write,
        "neo4j_cpu_us": drained.neo4j_cpu_us_per_write,
    }


def one(shape: str) -> None:
    """Child process: one measurement of `shape`, printed as JSON with the code's path."""
    import cypherstream

    if shape == "e2e":
        figures = asyncio.run(measure_e2e())
    else:
        sessions, per_session = (int(n) for n in shape.split("x"))
        figures = asyncio.run(measure_drain(sessions, per_session))
    print(json.dumps({"code": cypherstream.__file__, **figures}))


def measured(shape: str, package: Path, base: bool) -> dict[str, Any]:
    env = dict(os.environ)
    if base:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package), env.get("PYTHONPATH")]))
    # The drainers start with `python -m`, which puts the working directory first on
    # the path: the base side runs from the revision's folder, the working tree's
    # side from one with no `cypherstream` in it.
    done = subprocess.run(
        [sys.executable, str(HERE / "ab.py"), "--one", shape],
        cwd=package if base else package.parent,
        env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"a {shape} measurement failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    code = figures.pop("code")
    if base and not code.startswith(str(package)):
        raise SystemExit(f"the base side ran {code}, not the revision's code: {package}")
    return figures


def compare(shape: str, package: Path, pairs: int) -> str:
    runs: dict[str, list[dict[str, Any]]] = {"base": [], "tree": []}
    for pair in range(pairs):
        for side in ("base", "tree") if pair % 2 == 0 else ("tree", "base"):
            runs[side].append(measured(shape, package, base=side == "base"))
        print(f"{shape}: pair {pair + 1} of {pairs}", file=sys.stderr)
    lines = [f"| {shape} | base | working tree | working tree better |", "|---|---:|---:|---:|"]
    for name, more_is_better in FIGURES["e2e" if shape == "e2e" else "drain"].items():
        base = [run[name] for run in runs["base"]]
        tree = [run[name] for run in runs["tree"]]
        if None in base or None in tree:  # a figure the server does not report
            continue
        better = sum(t > b if more_is_better else t < b for b, t in zip(base, tree, strict=True))
        lines.append(
            f"| {name} (median) | {statistics.median(base):,.2f} | "
            f"{statistics.median(tree):,.2f} | {better} of {pairs} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the revision to compare with")
    parser.add_argument("--shapes", default="e2e,100x20,1x2000", help="comma-separated")
    parser.add_argument("--pairs", type=int, default=PAIRS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one)
        return
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    shapes = args.shapes.split(",")
    for shape in shapes:
        if shape != "e2e" and not re.fullmatch(r"[1-9]\d*x[1-9]\d*", shape):
            parser.error(f"unknown shape {shape!r}: e2e, or SESSIONSxWRITES such as 100x20")
    services.up_and_export()
    import bench  # this folder is the script's: first on the path

    asyncio.run(bench.ensure_schema())  # and the ballast, once
    with tempfile.TemporaryDirectory(prefix="cypherstream-ab-") as folder:
        package = revision_tree(args.base, Path(folder))
        tables = [compare(shape, package, args.pairs) for shape in shapes]
    print(f"\nWorking tree against {args.base}, {args.pairs} pairs per shape:\n")
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
