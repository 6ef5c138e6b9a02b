"""`drainer dlq list | replay | purge` as an operator uses them."""

from __future__ import annotations

import json
from typing import Any

from cypherstream import MemoryClient
from tests.helpers import DRAINER, run_to_end


async def dlq(env: dict[str, str], *args: str, stdin: bytes = b"") -> tuple[int, str]:
    ended = await run_to_end(*DRAINER, "dlq", *args, env=env, stdin=stdin)
    return ended.code, ended.stdout + ended.stderr


async def test_list_shows_each_dead_letter_with_its_code_and_session(
    drainer: Any, client: MemoryClient, env: dict[str, str]
) -> None:
    await client.buffered.submit("CREAT broken", {"a": 1})
    await client.flush()

    code, out = await dlq(env, "list", "--json")

    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [(r["session"], r["code"], r["query"]) for r in rows] == [
        (client.session_id, "Neo.ClientError.Statement.SyntaxError", "CREAT broken")
    ]


async def test_replay_requeues_in_order_to_the_original_session(
    drainer: Any, client: MemoryClient, env: dict[str, str], graph: Any
) -> None:
    anchor = f"MATCH (a:{graph.label} {{id: 'anchor'}}) "
    await client.buffered.submit(f"CREATE (:{graph.label} {{id: 'anchor'}})")
    for value in (1, 2):  # fail while the anchor is not ok
        await client.buffered.submit(
            anchor + "SET a.seen = coalesce(a.seen, []) + $v "
            "WITH a WHERE a.ok IS NULL RETURN 1 / 0",
            {"v": value},
        )
    await client.flush()
    assert [e.code for e in client.write_errors] == [
        "Neo.ClientError.Statement.ArithmeticError"
    ] * 2
    await client.buffered.submit(anchor + "SET a.ok = true")

    code, out = await dlq(env, "replay", "--session", client.session_id)
    await client.buffered.submit(anchor + "SET a.replayed = true")  # queued behind the replay
    await client.flush()

    assert code == 0, out
    assert "replayed 2" in out
    rows = await graph.query("MATCH (a:$$ {id: 'anchor'}) RETURN a.seen AS seen, a.replayed AS r")
    assert rows == [{"seen": [1, 2], "r": True}]
    assert "0 dead letters" in (await dlq(env, "list"))[1]


async def test_purge_asks_first_and_deletes_when_told(
    drainer: Any, client: MemoryClient, env: dict[str, str]
) -> None:
    await client.buffered.submit("CREAT broken")
    await client.flush()

    code, out = await dlq(env, "purge", stdin=b"n\n")
    assert code == 1 and "Aborted" in out
    assert "1 dead letters" in (await dlq(env, "list"))[1]

    code, out = await dlq(env, "purge", "--yes")
    assert code == 0 and "purged 1" in out
    assert "0 dead letters" in (await dlq(env, "list"))[1]
