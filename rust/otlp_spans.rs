//! The borrowed decoder of an `ExportTraceServiceRequest`: walks the request on the wire,
//! validating every field of every message as prost does (the attribute and resource walkers
//! are the metrics decoder's), and keeps of each span its bytes as the client sent them plus
//! the few fields staging reads. Spans then go into their trace's frame as those bytes'
//! fields (in another order: `trace_ingest::write_span`), with no decoding into owned
//! messages and no encoding again.
//!
//! A singular message that occurs twice (a second `resource`, `scope` or `status`, which
//! protobuf merges) and a request the walker refuses both go to prost: it names what is
//! wrong with a malformed request, and it resolves merges by decoding, after which its
//! encoding (each field once) is walked instead. So what is accepted is exactly what prost
//! accepts.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::error::CoreError;
use crate::otlp_decode::{each_resource, Decoder, Fail, Res};
use crate::otlp_view::{AnyView, KeyValueView, ScopeView, Span};
use crate::wire::Reader;

/// One span: its encoding as sent, and what staging reads of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpanView<'a> {
    pub bytes: &'a [u8],
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub name: &'a str,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    /// `Status.code` (0 when there is no status).
    pub status_code: i32,
    /// Into [`SpansView::kvs`].
    pub attributes: Span,
}

/// A `ScopeSpans`: the encoded scope (absent: `None`), its schema URL and its spans.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScopeSpansView<'a> {
    pub scope: Option<&'a [u8]>,
    pub schema_url: &'a str,
    /// Into [`SpansView::spans`].
    pub spans: Span,
}

/// A `ResourceSpans`: the encoded resource (absent: `None`), its `service.name` (empty when
/// it has none), its schema URL and its scopes.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResourceSpansView<'a> {
    pub resource: Option<&'a [u8]>,
    pub service: &'a str,
    pub schema_url: &'a str,
    /// Into [`SpansView::scopes`].
    pub scopes: Span,
}

/// The whole request.
#[derive(Debug, Default)]
pub struct SpansView<'a> {
    pub resources: Vec<ResourceSpansView<'a>>,
    pub scopes: Vec<ScopeSpansView<'a>>,
    pub spans: Vec<SpanView<'a>>,
    /// Span attributes (resource, scope, event and link attributes are validated only).
    pub kvs: Vec<KeyValueView<'a>>,
}

/// Decodes a request; `spare` holds prost's encoding of it when the walker cannot take the
/// bytes as they are (see the module docs), and the view then borrows it.
pub fn decode_spans<'a>(
    bytes: &'a [u8],
    spare: &'a mut Vec<u8>,
) -> Result<SpansView<'a>, CoreError> {
    if let Ok(view) = walk_spans(bytes) {
        return Ok(view);
    }
    let request = ExportTraceServiceRequest::decode(bytes)
        .map_err(|e| CoreError::TraceDecode(e.to_string()))?;
    *spare = request.encode_to_vec();
    walk_spans(spare).map_err(|fail| {
        // prost encodes every field once and decodes what it wrote: not reached.
        CoreError::TraceDecode(match fail {
            Fail::Wire(e) => e.to_string(),
            Fail::Merge => "a singular message occurs twice".to_owned(),
        })
    })
}

/// The walker alone: `Fail::Merge` for a merged singular message, `Fail::Wire` for bytes it
/// refuses.
pub(crate) fn walk_spans(bytes: &[u8]) -> Res<SpansView<'_>> {
    SpanDecoder::default().request(bytes)
}

#[derive(Default)]
struct SpanDecoder<'a> {
    view: SpansView<'a>,
    /// Validates (and holds) the attributes of everything but spans.
    attributes: Decoder<'a>,
}

impl<'a> SpanDecoder<'a> {
    fn request(mut self, bytes: &'a [u8]) -> Res<SpansView<'a>> {
        // About 300 bytes and 6 attributes per span in the benchmark's requests.
        self.view.spans.reserve(bytes.len() / 256);
        self.view.kvs.reserve(bytes.len() / 32);
        each_resource(bytes, |msg, ctx| self.resource_spans(msg, ctx))?;
        Ok(self.view)
    }

    fn resource_spans(&mut self, bytes: &'a [u8], ctx: u32) -> Res<()> {
        let mut resource = ResourceSpansView {
            scopes: Span::to_end(self.view.scopes.len(), &self.view.scopes),
            ..ResourceSpansView::default()
        };
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    if resource.resource.replace(msg).is_some() {
                        return Err(Fail::Merge);
                    }
                    let attributes = self.attributes.resource(msg, inner)?;
                    resource.service = string_of(attributes.of(&self.attributes.view.kvs));
                }
                (2, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    self.scope_spans(msg, inner)?;
                }
                (3, t) => resource.schema_url = r.string(t)?,
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        resource.scopes.end = self.view.scopes.len() as u32;
        self.view.resources.push(resource);
        Ok(())
    }

    fn scope_spans(&mut self, bytes: &'a [u8], ctx: u32) -> Res<()> {
        let mut scope = ScopeSpansView {
            spans: Span::to_end(self.view.spans.len(), &self.view.spans),
            ..ScopeSpansView::default()
        };
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    if scope.scope.replace(msg).is_some() {
                        return Err(Fail::Merge);
                    }
                    let mut validated = ScopeView::default();
                    self.attributes
                        .instrumentation_scope(msg, inner, &mut validated)?;
                }
                (2, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    let span = self.span(msg, inner)?;
                    self.view.spans.push(span);
                }
                (3, t) => scope.schema_url = r.string(t)?,
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        scope.spans.end = self.view.spans.len() as u32;
        self.view.scopes.push(scope);
        Ok(())
    }

    fn span(&mut self, bytes: &'a [u8], ctx: u32) -> Res<SpanView<'a>> {
        let mut span = SpanView {
            bytes,
            ..SpanView::default()
        };
        let start = self.view.kvs.len();
        let mut seen_status = false;
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => span.trace_id = r.bytes(t)?,
                (2, t) => span.span_id = r.bytes(t)?,
                (3, t) => drop(r.string(t)?), // trace_state
                (4, t) => span.parent_span_id = r.bytes(t)?,
                (5, t) => span.name = r.string(t)?,
                (6 | 10 | 12 | 14, t) => drop(r.varint_field(t)?), // kind, dropped counts
                (7, t) => span.start_time_unix_nano = r.fixed64_field(t)?,
                (8, t) => span.end_time_unix_nano = r.fixed64_field(t)?,
                (9, t) => {
                    let kv = self.attributes.key_value(&mut r, t, ctx)?;
                    self.view.kvs.push(kv);
                }
                (11, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    self.event(msg, inner)?;
                }
                (13, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    self.link(msg, inner)?;
                }
                (15, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    if std::mem::replace(&mut seen_status, true) {
                        return Err(Fail::Merge);
                    }
                    span.status_code = status_code(msg, inner)?;
                }
                (16, t) => drop(r.fixed32_field(t)?), // flags
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        span.attributes = Span::to_end(start, &self.view.kvs);
        Ok(span)
    }

    /// Validates a `Span.Event`.
    fn event(&mut self, bytes: &'a [u8], ctx: u32) -> Res<()> {
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => drop(r.fixed64_field(t)?),
                (2, t) => drop(r.string(t)?),
                (3, t) => drop(self.attributes.key_value(&mut r, t, ctx)?),
                (4, t) => drop(r.varint_field(t)?),
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        Ok(())
    }

    /// Validates a `Span.Link`.
    fn link(&mut self, bytes: &'a [u8], ctx: u32) -> Res<()> {
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1 | 2, t) => drop(r.bytes(t)?),
                (3, t) => drop(r.string(t)?),
                (4, t) => drop(self.attributes.key_value(&mut r, t, ctx)?),
                (5, t) => drop(r.varint_field(t)?),
                (6, t) => drop(r.fixed32_field(t)?),
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        Ok(())
    }
}

/// A `Status`'s code (its message is validated only).
fn status_code(bytes: &[u8], ctx: u32) -> Res<i32> {
    let mut code = 0;
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        match r.key()? {
            (2, t) => drop(r.string(t)?),
            (3, t) => code = r.varint_field(t)? as i32,
            (tag, t) => r.skip(tag, t, ctx)?,
        }
    }
    Ok(code)
}

/// The string value of the first `service.name` attribute ("" when absent or not a string).
fn string_of<'a>(kvs: &[KeyValueView<'a>]) -> &'a str {
    match kvs.iter().find(|kv| kv.key == "service.name") {
        Some(KeyValueView {
            value: AnyView::Str(s),
            ..
        }) => s,
        _ => "",
    }
}
