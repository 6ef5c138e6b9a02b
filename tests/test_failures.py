"""Telling a passing failure from a permanent one (a pure function: no servers)."""

from __future__ import annotations

import pytest
from neo4j import exceptions as nx

from cypherstream.shared.dispositions import Disposition, classify
from tests.helpers import neo4j_error


@pytest.mark.parametrize(
    "code",
    [
        "Neo.TransientError.General.DatabaseUnavailable",
        "Neo.TransientError.Cluster.ReplicationFailure",
        "Neo.ClientError.Cluster.NotALeader",
        "Neo.ClientError.Security.Unauthorized",
        "Neo.ClientError.Security.TokenExpired",
        "Neo.ClientError.Database.DatabaseNotFound",
        "Neo.TransientError.Transaction.Terminated",
    ],
)
def test_errors_about_the_server_or_cluster_are_retried_for_ever(code: str) -> None:
    assert classify(neo4j_error(code)) is Disposition.RETRY


@pytest.mark.parametrize(
    "code",
    [
        "Neo.TransientError.Transaction.DeadlockDetected",
        "Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration",
        "Neo.ClientError.Transaction.TransactionTimedOut",
        "Neo.TransientError.General.TransactionMemoryLimit",
        "Neo.TransientError.General.MemoryPoolOutOfMemoryError",
        "Neo.TransientError.Transaction.ConstraintsChanged",
    ],
)
def test_passing_failures_of_the_write_itself_are_retried_within_a_budget(code: str) -> None:
    assert classify(neo4j_error(code)) is Disposition.RETRY_BUDGETED


@pytest.mark.parametrize(
    "code",
    [
        "Neo.ClientError.Statement.SyntaxError",
        "Neo.ClientError.Schema.ConstraintValidationFailed",
        "Neo.ClientError.Statement.TypeError",
        "Neo.ClientError.Statement.ParameterMissing",
        "Neo.ClientError.Security.Forbidden",
    ],
)
def test_errors_about_the_write_itself_are_dead_lettered(code: str) -> None:
    assert classify(neo4j_error(code)) is Disposition.DEAD_LETTER


@pytest.mark.parametrize(
    "error",
    [
        nx.ServiceUnavailable("down"),
        nx.SessionExpired("gone"),
        nx.AuthError("expired"),
        ConnectionRefusedError(),
        TimeoutError(),
    ],
)
def test_connection_failures_are_retried(error: BaseException) -> None:
    assert classify(error) is Disposition.RETRY


def test_a_bad_parameter_is_dead_lettered() -> None:
    assert classify(TypeError("cannot send")) is Disposition.DEAD_LETTER
