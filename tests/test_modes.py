"""The seed's API behaves the same in sync, embedded (in process) and Redis mode,
through `MemoryClient` and through the blocking `SyncMemoryClient`."""

from __future__ import annotations

from typing import Any

import pytest


async def test_flush_makes_every_submitted_write_visible(
    mode: str, make_settings: Any, graph: Any, open_client: Any
) -> None:
    async with open_client(make_settings(mode)) as client:
        for i in range(50):
            await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})
        await client.flush()

        assert await graph.count() == 50
        assert client.write_errors == []


async def test_writes_of_one_session_apply_in_submission_order(
    mode: str, make_settings: Any, graph: Any, open_client: Any
) -> None:
    async with open_client(make_settings(mode)) as client:
        await client.buffered.submit(f"CREATE (:{graph.label} {{id: 'c', value: -1}})")
        for i in range(100):
            await client.buffered.submit(
                f"MATCH (c:{graph.label} {{id: 'c'}}) WHERE c.value = $i - 1 SET c.value = $i",
                {"i": i},
            )
        await client.wait_for_pending()

    assert await graph.query("MATCH (c:$$ {id: 'c'}) RETURN c.value AS v") == [{"v": 99}]


async def test_leaving_async_with_drains_even_when_the_body_raised(
    mode: str, make_settings: Any, graph: Any, open_client: Any
) -> None:
    with pytest.raises(RuntimeError, match="agent failed"):
        async with open_client(make_settings(mode)) as client:
            for i in range(20):
                await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})
            raise RuntimeError("agent failed")

    assert await graph.count() == 20


async def test_close_drains_before_disconnecting(
    mode: str, make_settings: Any, graph: Any, open_client: Any
) -> None:
    client = open_client(make_settings(mode))
    await client.open()
    for i in range(20):
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: $i}})", {"i": i})

    await client.close()

    assert await graph.count() == 20


async def test_parameters_reach_neo4j_unchanged(
    mode: str, make_settings: Any, graph: Any, open_client: Any
) -> None:
    import datetime as dt

    values = {
        "big": 2**62,
        "text": "'}) DETACH DELETE n //",
        "floats": [0.25] * 384,
        "when": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc),
        "day": dt.date(2024, 5, 1),
        "raw": b"\x00\xff",
    }
    async with open_client(make_settings(mode)) as client:
        await client.buffered.submit(f"CREATE (n:{graph.label}) SET n = $props", {"props": values})
        await client.flush()

    rows = await graph.query("MATCH (n:$$) RETURN properties(n) AS p")
    stored = rows[0]["p"]
    assert stored["big"] == values["big"]
    assert stored["text"] == values["text"]
    assert stored["floats"] == values["floats"]
    assert stored["when"].to_native() == values["when"]
    assert stored["day"].to_native() == values["day"]
    assert stored["raw"] == values["raw"]
