"""Key names: safe session ids, one hash slot per session, stable partitions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from cypherstream.shared.errors import InvalidSessionId
from cypherstream.shared.keys import Keyspace, validate_session_id

keys = Keyspace("cs", 16)
session_ids = st.from_regex(r"[A-Za-z0-9._:@/+=-]{1,64}", fullmatch=True)


@given(session_ids, st.text(alphabet="0123456789abcdef", min_size=1, max_size=16))
def test_every_key_of_a_session_and_its_ready_set_share_one_slot(session: str, client: str) -> None:
    partition = keys.partition_of(session)
    names = [
        keys.stream(session),
        keys.lease(session),
        keys.errors(session, client),
        keys.ready(partition),
        keys.ack(partition, "token"),
    ]

    assert len({key_slot(name.encode()) for name in names}) == 1


@given(session_ids)
def test_the_session_is_recovered_from_its_stream_key(session: str) -> None:
    assert keys.session_of_stream(keys.stream(session)) == session


def test_partitions_are_stable_across_processes() -> None:
    # crc32, not Python's randomised hash(): every producer and drainer agrees.
    assert Keyspace("cs", 16).partition_of("agent-42") == 13


@pytest.mark.parametrize(
    "bad",
    ["", "a b", "{tag}", "x*", "a?b", "[a]", "naïve", "x" * 257, None, 42],
)
def test_unsafe_session_ids_are_refused(bad: object) -> None:
    with pytest.raises(InvalidSessionId):
        validate_session_id(bad)


def test_ordinary_session_ids_are_accepted() -> None:
    for good in ["agent-1", "user@example.com/chat:7", "3f2a9c1e-uuid", "a" * 256]:
        assert validate_session_id(good) == good
