"""`SyncMemoryClient` from plain threads (what `test_modes` cannot say through one body)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from cypherstream import SyncMemoryClient
from cypherstream.shared.errors import ClientClosed

CHAIN = "MATCH (c:$label {id: $session}) WHERE c.value = $i - 1 SET c.value = $i"


def _chain(client: SyncMemoryClient, label: str, session: str, length: int) -> None:
    client.buffered.submit(
        f"CREATE (:{label} {{id: $session, value: -1}})", {"session": session}, session_id=session
    )
    for i in range(length):
        client.buffered.submit(
            CHAIN.replace("$label", label), {"session": session, "i": i}, session_id=session
        )


async def test_threads_sharing_one_client_keep_each_sessions_order(
    drainer: Any, make_settings: Any, graph: Any
) -> None:
    def agents() -> None:
        with SyncMemoryClient(make_settings("redis")) as client:
            threads = [
                threading.Thread(target=_chain, args=(client, graph.label, f"agent-{n}", 50))
                for n in range(8)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            client.flush()
            assert client.write_errors == []

    await asyncio.to_thread(agents)

    rows = await graph.query("MATCH (c:$$) RETURN c.id AS id, c.value AS v ORDER BY id")
    assert rows == [{"id": f"agent-{n}", "v": 49} for n in range(8)]


async def test_a_callback_that_calls_back_into_the_client_gets_an_error_not_a_hang(
    drainer: Any, make_settings: Any
) -> None:
    raised: list[BaseException] = []
    clients: list[SyncMemoryClient] = []

    def on_error(_: Any) -> None:
        try:
            clients[0].flush()
        except RuntimeError as exc:
            raised.append(exc)

    def agent() -> None:
        with SyncMemoryClient(make_settings("redis"), on_error=on_error) as client:
            clients.append(client)
            client.buffered.submit("THIS IS NOT CYPHER")
            client.flush()

    await asyncio.wait_for(asyncio.to_thread(agent), 60)

    assert len(raised) == 1
    assert "own thread" in str(raised[0])


def test_a_client_that_is_not_open_says_how_to_open_it(make_settings: Any) -> None:
    client = SyncMemoryClient(make_settings("sync"))

    with pytest.raises(ClientClosed, match="with SyncMemoryClient"):
        client.buffered.submit("CREATE (:Never)")


def test_a_closed_client_refuses_writes_and_closing_twice_is_harmless(make_settings: Any) -> None:
    client = SyncMemoryClient(make_settings("sync"))
    client.open()
    client.close()
    client.close()

    with pytest.raises(ClientClosed):
        client.buffered.submit("CREATE (:Never)")
