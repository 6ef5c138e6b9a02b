"""A write awaited inline (sync mode, `execute_write`) that fails raises cypherstream's
own error, saying whether the write was applied, with the driver's exception as its
cause: never the driver's exception itself."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from neo4j import exceptions as nx

from cypherstream import ConfigurationError, MemoryClient, Neo4jUnavailable, WriteFailed
from cypherstream.producer.inline import inline_failure
from cypherstream.shared.settings import Neo4jSettings
from tests.helpers import FlakyProxy, neo4j_error


async def test_a_write_neo4j_cannot_parse_raises_write_failed_with_its_code(
    open_client: Any, make_settings: Any, graph: Any
) -> None:
    async with open_client(make_settings("sync")) as client:
        with pytest.raises(WriteFailed) as raised:
            await client.buffered.submit(f"CREAT (:{graph.label})")

    assert raised.value.code == "Neo.ClientError.Statement.SyntaxError"
    assert "The write was not applied: fix the query or its parameters." in str(raised.value)
    assert isinstance(raised.value.__cause__, nx.CypherSyntaxError)
    assert await graph.count() == 0


async def test_a_write_against_a_uniqueness_constraint_raises_write_failed_for_its_session(
    make_settings: Any, graph: Any
) -> None:
    await graph.query("CREATE CONSTRAINT FOR (n:$$) REQUIRE n.key IS UNIQUE")
    async with MemoryClient(make_settings("sync")) as client:
        await client.buffered.submit(f"CREATE (:{graph.label} {{key: 1}})")
        with pytest.raises(WriteFailed) as raised:
            await client.buffered.submit(f"CREATE (:{graph.label} {{key: 1}})", session_id="s-2")

    assert raised.value.code == "Neo.ClientError.Schema.ConstraintValidationFailed"
    assert raised.value.session_id == "s-2"
    assert await graph.count() == 1


async def test_execute_write_raises_write_failed_in_buffered_mode_too(
    make_settings: Any, graph: Any
) -> None:
    async with MemoryClient(make_settings("embedded")) as client:
        with pytest.raises(WriteFailed, match="ParameterMissing"):
            await client.execute_write(f"CREATE (:{graph.label} {{i: $i}})")


async def test_a_write_whose_commit_went_unanswered_says_it_may_have_been_applied(
    make_settings: Any, neo4j_settings: Neo4jSettings, graph: Any
) -> None:
    proxy, settings = await _through_proxy(make_settings, neo4j_settings)
    async with MemoryClient(settings) as client:
        proxy.drop_reply_with = b"bookmark"  # only a commit's answer holds one

        with pytest.raises(Neo4jUnavailable, match="may or may not have been applied"):
            await client.buffered.submit(f"CREATE (:{graph.label})")

    await proxy.stop()
    assert proxy.dropped == 1
    assert await graph.count() == 1  # it was: the answer alone was lost


async def test_a_write_to_a_neo4j_gone_after_open_raises_neo4j_unavailable(
    make_settings: Any, neo4j_settings: Neo4jSettings, graph: Any
) -> None:
    proxy, settings = await _through_proxy(make_settings, neo4j_settings)
    async with MemoryClient(settings) as client:
        await proxy.stop()  # refuses connections and cuts the open ones

        with pytest.raises(Neo4jUnavailable) as raised:
            # the driver retries a failing transaction for 30 s before it gives up
            await asyncio.wait_for(client.buffered.submit(f"CREATE (:{graph.label})"), 120)

    assert f"cannot reach Neo4j at bolt://127.0.0.1:{proxy.port}" in str(raised.value)
    assert "The write was not applied." in str(raised.value)
    assert isinstance(raised.value.__cause__, nx.DriverError)
    assert await graph.count() == 0


async def _through_proxy(
    make_settings: Any, neo4j_settings: Neo4jSettings
) -> tuple[FlakyProxy, Any]:
    """Sync-mode settings whose Neo4j is reached through a proxy the test can cut."""
    proxy = await FlakyProxy(int(neo4j_settings.uri.rsplit(":", 1)[1])).start()
    settings = make_settings("sync")
    settings.neo4j = neo4j_settings.model_copy(update={"uri": f"bolt://127.0.0.1:{proxy.port}"})
    return proxy, settings


# What only Neo4j's operator or a cluster can cause, named by the pure function itself.

SETTINGS = Neo4jSettings(uri="bolt://graph.example:7687", username="agent")


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("Neo.ClientError.Security.Unauthorized", "Check NEO4J_USERNAME and NEO4J_PASSWORD"),
        ("Neo.ClientError.Security.Forbidden", "refused user 'agent' the write on database"),
        ("Neo.ClientError.Database.DatabaseNotFound", "Check NEO4J_DATABASE"),
    ],
)
def test_a_write_refused_for_what_only_the_operator_can_fix_names_the_setting(
    code: str, says: str
) -> None:
    failure = inline_failure(SETTINGS, neo4j_error(code), "s")

    assert isinstance(failure, ConfigurationError)
    assert says in str(failure)


def test_a_write_that_kept_deadlocking_may_pass_if_tried_again() -> None:
    deadlock = neo4j_error("Neo.TransientError.Transaction.DeadlockDetected", "a\n  deadlock.")

    failure = inline_failure(SETTINGS, deadlock, "s")

    assert isinstance(failure, WriteFailed)
    assert str(failure) == (
        "Neo.TransientError.Transaction.DeadlockDetected: a deadlock. The write was not "
        "applied: it failed on its own (a timeout, a deadlock, the transaction's memory) "
        "and may pass if tried again."
    )


def test_a_cluster_without_a_leader_is_neo4j_unavailable() -> None:
    failure = inline_failure(SETTINGS, neo4j_error("Neo.ClientError.Cluster.NotALeader"), "s")

    assert isinstance(failure, Neo4jUnavailable)
    assert "The write was not applied." in str(failure)
