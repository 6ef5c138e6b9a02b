"""One trace from submit to commit: with OpenTelemetry's SDK (its in-memory exporter), a
write submitted in a span is linked from the drainer's transaction span."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cypherstream import MemoryClient
from cypherstream.shared.entry import WriteEntry, parse_flat, write_fields
from cypherstream.shared.signing import Signer
from cypherstream.shared.tracing import current_trace_context
from tests.helpers import as_read

pytest.importorskip("opentelemetry.sdk", reason="the otel test extra is not installed")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

KEY = "k" * 32


@pytest.fixture(scope="session")
def exporter() -> InMemorySpanExporter:
    """The process's tracer provider (OpenTelemetry allows one), exporting to memory."""
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    trace.set_tracer_provider(provider)
    return exported


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


def _named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def _linked_to(span: ReadableSpan, context: Any) -> bool:
    return any(
        link.context.trace_id == context.trace_id and link.context.span_id == context.span_id
        for link in span.links
    )


async def test_the_transaction_that_applies_a_write_links_to_the_span_it_was_submitted_in(
    drainer: Any, client: MemoryClient, graph: Any, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("agent")
    with tracer.start_as_current_span("agent turn") as turn:
        await client.buffered.submit(f"CREATE (:{graph.label} {{i: 1}})")
        await client.flush()
    context = turn.get_span_context()

    [applied] = [s for s in _named(spans, "cypherstream.transaction") if _linked_to(s, context)]
    link = next(link for link in applied.links if link.context.span_id == context.span_id)
    assert link.attributes is not None and link.attributes["cypherstream.entry_id"]
    assert link.attributes["cypherstream.lag_ms"] >= 0
    assert applied.attributes is not None and applied.attributes["cypherstream.applied"] == 1
    [flush] = _named(spans, "cypherstream.flush")
    assert flush.context.trace_id == context.trace_id  # the flush is part of the turn


async def test_a_dead_lettered_write_is_a_span_linked_to_its_submit(
    drainer: Any, client: MemoryClient, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("agent").start_as_current_span("agent turn") as turn:
        await client.buffered.submit("CREAT broken")
        await client.flush()

    [dead] = _named(spans, "cypherstream.dead_letter")
    assert _linked_to(dead, turn.get_span_context())
    assert dead.attributes is not None
    assert dead.attributes["cypherstream.code"] == "Neo.ClientError.Statement.SyntaxError"


def test_nothing_is_carried_outside_a_span(spans: InMemorySpanExporter) -> None:
    assert current_trace_context() is None
    with trace.get_tracer("agent").start_as_current_span("agent turn") as turn:
        traceparent = current_trace_context()
    context = turn.get_span_context()

    assert traceparent is not None
    assert traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    for version in (1, 2):
        traced = write_fields("CREATE ()", b"", "c", 1, trace=traceparent, version=version)
        entry = parse_flat("1-0", as_read(traced))
        assert isinstance(entry, WriteEntry) and entry.trace == traceparent
        plain = parse_flat("1-0", as_read(write_fields("CREATE ()", b"", "c", 1, version=version)))
        assert isinstance(plain, WriteEntry) and plain.trace is None


def test_a_signature_covers_the_trace_context() -> None:
    signer = Signer([KEY.encode()])
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    signature = signer.sign("s", "CREATE ()", False, b"", "c", 1, traceparent)
    honest = WriteEntry("1-0", "CREATE ()", b"", "c", 1, None, signature, traceparent)
    moved = WriteEntry("1-0", "CREATE ()", b"", "c", 1, None, signature, traceparent[:-1] + "0")

    assert signer.verify("s", honest) and not signer.verify("s", moved)
