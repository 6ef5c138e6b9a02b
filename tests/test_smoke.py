"""Both servers are real: a round trip through each client library."""

from __future__ import annotations

from typing import Any

from neo4j import AsyncDriver


async def test_neo4j_answers_a_write_and_a_read(neo4j: AsyncDriver, graph: Any) -> None:
    await graph.query("CREATE (:$$ {name: $name})", name="smoke")

    rows = await graph.query("MATCH (n:$$) RETURN n.name AS name")

    assert rows == [{"name": "smoke"}]


async def test_redis_streams_deliver_and_acknowledge(redis: Any, tag: str) -> None:
    stream = f"{tag}:smoke"
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    entry_id = await redis.xadd(stream, {"k": "v"})

    delivered = await redis.xreadgroup("g", "c1", {stream: ">"}, count=10)
    acked = await redis.xack(stream, "g", entry_id)

    assert delivered[0][1] == [(entry_id, {b"k": b"v"})]
    assert acked == 1
    assert (await redis.xpending(stream, "g"))["pending"] == 0
    await redis.delete(stream)
