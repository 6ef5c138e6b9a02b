"""One agent process of the fleet demo: many conversations at once, each turn recorded.

A turn is what an agent records per exchange: the user's message, the tool call it
made, its answer, and the entity the question mentioned. The agent runs its sessions
in sync mode (each write awaited) or in buffered mode, and reports how long the
recording kept each turn waiting.

Reads REDIS_URL, NEO4J_* and CYPHERSTREAM_KEY_PREFIX from the environment. Writes
one line per progress step to stdout (`progress <turns>`) and a last line
`result <json>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from typing import Any

from cypherstream import MemoryClient, MemorySettings

ENTITIES = ("Anthem", "Neo4j", "Redis", "Kubernetes", "Python", "Lisbon", "Ada Lovelace")


def turn_tracer() -> Any:
    """A tracer for the agent's turns when OpenTelemetry's SDK is installed (else None):
    each turn is a span, and its writes carry its trace context to the drainer."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return None
    trace.set_tracer_provider(TracerProvider())  # an exporter would go here
    return trace.get_tracer("agent-fleet")


async def turn(client: MemoryClient, session: str, n: int, tracer: Any) -> tuple[float, str]:
    """Record one turn; the seconds the agent waited for the recording, and the turn's
    trace id (empty without OpenTelemetry)."""
    traced = tracer.start_as_current_span("agent turn") if tracer else contextlib.nullcontext()
    with traced as span:
        waited = await record(client, session, n)
    trace_id = f"{span.get_span_context().trace_id:032x}" if span is not None else ""
    return waited, trace_id


async def record(client: MemoryClient, session: str, n: int) -> float:
    entity = ENTITIES[n % len(ENTITIES)]
    started = time.perf_counter()
    buffered = client.buffered
    asked = await buffered.add_message(session, "user", f"Turn {n}: what is new with {entity}?")
    await buffered.record_tool_call(
        session,
        "search",
        {"query": entity, "limit": 3},
        result={"hits": 3},
        duration_ms=12.5,
        message_id=asked.id,
    )
    await buffered.add_message(session, "assistant", f"Three things are new with {entity}.")
    await buffered.link_mention(session, asked.id, entity, "topic")
    return time.perf_counter() - started


async def conversation(
    client: MemoryClient, session: str, turns: int, think: float, tracer: Any
) -> tuple[list[float], str]:
    """The session's turns: the waits, and the trace id of its first turn."""
    waits, first_trace = [], ""
    rng = random.Random(session)
    for n in range(turns):
        # The model "thinks" between turns, so conversations interleave as real ones do.
        await asyncio.sleep(think * rng.uniform(0.5, 1.5))
        waited, trace_id = await turn(client, session, n, tracer)
        waits.append(waited)
        first_trace = first_trace or trace_id
        print("progress 1", flush=True)
    return waits, first_trace


async def run_sessions(
    mode: str, sessions: list[str], turns: int, think: float
) -> tuple[list[float], int, str]:
    settings = MemorySettings()
    settings.memory.write_mode = mode  # type: ignore[assignment]
    tracer = turn_tracer()
    async with MemoryClient(settings) as client:
        per_session = await asyncio.gather(
            *(conversation(client, s, turns, think, tracer) for s in sessions)
        )
        await client.flush()
        errors = len(client.write_errors)
    waits = [wait for session_waits, _ in per_session for wait in session_waits]
    return waits, errors, per_session[0][1] if per_session else ""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="prefix of this agent's session ids")
    parser.add_argument("--mode", choices=["sync", "buffered"], default="buffered")
    parser.add_argument("--sessions", type=int, default=25)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--think-ms", type=float, default=500, help="model time per turn")
    args = parser.parse_args()

    sessions = [f"{args.name}-{args.mode}-{i}" for i in range(args.sessions)]
    waits, errors, trace_id = await run_sessions(
        args.mode, sessions, args.turns, args.think_ms / 1000
    )
    result = {"waits": waits, "errors": errors, "trace": trace_id, "session": sessions[0]}
    print("result " + json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
