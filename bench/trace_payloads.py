"""The requests of the trace benchmark: ``ExportTraceServiceRequest`` templates and their ids.

A ``Template`` is a serialized request of 1,000 spans (traces from ``bench.trace_spans``) with
every trace and span id cut out. Spans are grouped the way a collector batches them: one
ResourceSpans per service, one ScopeSpans per instrumentation (http, db). ``Template.stamp``
fills the ids with random bytes drawn from a seed, so request number ``k`` of a run is template
``k % pool`` stamped with ``request_seed(salt, k)``: the ids are unique across the run, and
``Template.trace_ids`` names the traces of any request afterwards without keeping them.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from bench.trace_spans import DB_SCOPE, HTTP_SCOPE, ShopTraces

# Each phase numbers its requests from its own multiple of this.
PHASE_REQUESTS = 1 << 28
# Zero-width, so that overlapping candidates are all seen.
TRACE_ID_TAG = re.compile(rb"(?=\x0a\x10)")
SPAN_ID_TAGS = re.compile(rb"(?=[\x12\x22]\x08)")


@dataclass(frozen=True)
class Template:
    """A serialized request whose ids are cut out: ``segments`` around ``slots``, which are
    (start, end) ranges of an id buffer holding ``traces`` trace ids (16 bytes) and then
    ``spans`` span ids (8 bytes); a span's id and its children's parent ids share a slot."""

    segments: tuple[bytes, ...]
    slots: tuple[tuple[int, int], ...]
    traces: int
    spans: int
    spans_per_trace: int

    @property
    def id_bytes(self) -> int:
        return 16 * self.traces + 8 * self.spans

    def stamp(self, seed: int) -> bytes:
        """The request with fresh random ids drawn from ``seed``."""
        ids = random.Random(seed).randbytes(self.id_bytes)
        parts: list[bytes] = [b""] * (2 * len(self.slots) + 1)
        parts[0::2] = self.segments
        parts[1::2] = [ids[a:b] for a, b in self.slots]
        return b"".join(parts)

    def trace_ids(self, seed: int) -> list[str]:
        """Hex trace ids of ``stamp(seed)``."""
        ids = random.Random(seed).randbytes(self.id_bytes)
        return [ids[16 * i : 16 * i + 16].hex() for i in range(self.traces)]


def request_seed(salt: int, k: int) -> int:
    """The id seed of request number ``k`` of a run."""
    return (salt << 40) | k


@dataclass
class _Planned:
    """A span of a template while it is being built."""

    service: str
    scope: str  # "http" or "db"
    span: Span
    trace: int
    index: int  # in the request
    parent: int | None  # index in the request


class TemplateBuilder:
    """Builds requests of ``traces`` traces of ``spans_per_trace`` (8 or 2) spans."""

    def __init__(self, rng: random.Random, now_ns: int) -> None:
        self.rng = rng
        self.shop = ShopTraces(rng, now_ns)

    def _plan(self, traces: int, spans_per_trace: int) -> list[_Planned]:
        planned: list[_Planned] = []
        for t in range(traces):
            base = len(planned)
            for service, scope, span, parent in self.shop.trace(spans_per_trace):
                planned.append(
                    _Planned(
                        service,
                        scope,
                        span,
                        t,
                        len(planned),
                        None if parent is None else base + parent,
                    )
                )
        return planned

    def _serialize(self, planned: list[_Planned]) -> bytes:
        request = ExportTraceServiceRequest()
        groups: dict[str, dict[str, list[Span]]] = {}
        for p in planned:
            groups.setdefault(p.service, {}).setdefault(p.scope, []).append(p.span)
        for service, scopes in groups.items():
            rs = ResourceSpans(resource=self.shop.resources[service])
            for scope, spans in scopes.items():
                rs.scope_spans.append(
                    ScopeSpans(scope=HTTP_SCOPE if scope == "http" else DB_SCOPE, spans=spans)
                )
            request.resource_spans.append(rs)
        return request.SerializeToString()

    def build(self, spans_per_request: int, spans_per_trace: int) -> Template:
        """One template; its ids are placeholders, located in the serialized bytes."""
        rng = self.rng
        traces = spans_per_request // spans_per_trace
        planned = self._plan(traces, spans_per_trace)
        trace_ids = [rng.randbytes(16) for _ in range(traces)]
        span_ids = [rng.randbytes(8) for _ in planned]
        for p in planned:
            p.span.trace_id = trace_ids[p.trace]
            p.span.span_id = span_ids[p.index]
            if p.parent is not None:
                p.span.parent_span_id = span_ids[p.parent]
        body = self._serialize(planned)
        children = [0] * len(planned)
        for p in planned:
            if p.parent is not None:
                children[p.parent] += 1
        # Where each placeholder occurs (after its field's tag and length byte: trace_id is
        # field 1, span_id 2, parent_span_id 4), and which slot of the id buffer it takes.
        trace_slots = {tid: 16 * t for t, tid in enumerate(trace_ids)}
        span_slots = {sid: 16 * traces + 8 * i for i, sid in enumerate(span_ids)}
        found: list[tuple[int, int, int]] = []  # (position, length, slot start)
        for pattern, slots_of, length in (
            (TRACE_ID_TAG, trace_slots, 16),
            (SPAN_ID_TAGS, span_slots, 8),
        ):
            for match in pattern.finditer(body):
                at = match.start() + 2
                slot = slots_of.get(body[at : at + length])
                if slot is not None:
                    found.append((at, length, slot))
        hits = Counter(slot for _, _, slot in found)
        expected = {slot: spans_per_trace for slot in trace_slots.values()}
        expected.update({slot: 1 + children[i] for i, slot in enumerate(span_slots.values())})
        if hits != expected:
            raise RuntimeError("the ids of a template were not all found where expected")
        found.sort()
        segments, slots, cursor = [], [], 0
        for at, length, start in found:
            if at < cursor:
                raise RuntimeError("overlapping ids in a template")
            segments.append(body[cursor:at])
            slots.append((start, start + length))
            cursor = at + length
        segments.append(body[cursor:])
        template = Template(tuple(segments), tuple(slots), traces, len(planned), spans_per_trace)
        _check_template(template, planned)
        return template


def _check_template(template: Template, planned: list[_Planned]) -> None:
    """A stamped copy decodes to the same spans with every id replaced consistently."""
    seed = 12345
    ids = random.Random(seed).randbytes(template.id_bytes)
    t_ids = [ids[16 * i : 16 * i + 16] for i in range(template.traces)]
    base = 16 * template.traces
    s_ids = [ids[base + 8 * i : base + 8 * i + 8] for i in range(template.spans)]
    expected = {
        (t_ids[p.trace], s_ids[p.index], b"" if p.parent is None else s_ids[p.parent], p.span.name)
        for p in planned
    }
    request = ExportTraceServiceRequest.FromString(template.stamp(seed))
    got = {
        (s.trace_id, s.span_id, s.parent_span_id, s.name)
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    }
    if got != expected or len(got) != template.spans:
        raise RuntimeError("a stamped template does not decode to the planned spans")


def build_templates(count: int, spans_per_trace: int, seed: int) -> list[Template]:
    """``count`` templates of 1,000 spans in traces of ``spans_per_trace`` spans."""
    builder = TemplateBuilder(random.Random(seed * 1000 + spans_per_trace), time.time_ns())
    return [builder.build(1000, spans_per_trace) for _ in range(count)]
