"""OpenTelemetry, where it is installed and a span is active: the one place that knows.

A submit made inside an active span carries that span's W3C trace context in its
entry (`traceparent`, signed with the rest); the drainer's span for the transaction
that applies it links to it, so a trace of an agent's turn reaches the commit. With
OpenTelemetry absent, or no span active (no SDK configured), nothing is carried and
each hook is one check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

try:  # the optional extra: cypherstream[otel]
    from opentelemetry import trace as _otel
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - exercised where OpenTelemetry is absent
    _otel = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.trace import Span

Attributes = Mapping[str, str | int | float | bool]

#: The instrumentation scope of every span cypherstream opens.
SCOPE = "cypherstream"


def recording() -> bool:
    """Whether a span opened now would be recorded: OpenTelemetry is installed and a
    tracer provider (an SDK) is set. Without one, work for a span's attributes and
    links is wasted, so callers skip it."""
    if _otel is None:
        return False
    return not isinstance(
        _otel.get_tracer_provider(), (_otel.ProxyTracerProvider, _otel.NoOpTracerProvider)
    )


def current_trace_context() -> str | None:
    """The active span's `traceparent`, for a submit to carry; None without one."""
    if _otel is None or not _otel.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def span(
    name: str,
    attributes: Attributes | None = None,
    links: Sequence[tuple[str, Attributes]] = (),
) -> Iterator[Span | None]:
    """A span named `name`, linked to each (traceparent, attributes) of `links`; None
    (and nothing recorded) without OpenTelemetry. An exception marks it failed."""
    if _otel is None:
        yield None
        return
    tracer = _otel.get_tracer(SCOPE)
    linked = [
        _otel.Link(context, dict(link_attributes))
        for parent, link_attributes in links
        if (context := _span_context(parent)) is not None
    ]
    with tracer.start_as_current_span(name, attributes=attributes, links=linked) as opened:
        yield opened


def _span_context(traceparent: str) -> _otel.SpanContext | None:
    assert _otel is not None
    context = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    found = _otel.get_current_span(context).get_span_context()
    return found if found.is_valid else None
