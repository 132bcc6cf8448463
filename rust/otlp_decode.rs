//! The borrowed decoder: walks an `ExportMetricsServiceRequest` on the wire into a
//! [`RequestView`], validating every field of every message like prost does (wire types,
//! UTF-8 of every string, unknown fields, recursion budget), including the parts ingest does
//! not keep (exemplars, metadata, entity refs, schema URLs).
//!
//! The top of the tree is here; data points, attributes and values are in `otlp_points.rs`.
//!
//! # Merged singular messages
//! Protobuf merges a singular message field that occurs more than once (a second `resource`
//! extends the first). That never happens with real encoders, and supporting it in flat
//! arenas would complicate the hot path, so the decoder reports `Fail::Merge` and
//! [`decode_request`] lets prost resolve the request, re-encodes it (each field once) and
//! decodes that instead.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

use crate::error::{DecodeError, WireError};
use crate::key_cache::KEY_CACHE;
use crate::otlp_view::{
    DataKind, LazyAttributes, MetricView, RequestView, ResourceView, ScopeView, Span,
};
use crate::wire::{Reader, RECURSION_LIMIT};

/// Why the borrowed decoder stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    /// The bytes are not a valid request.
    Wire(WireError),
    /// A singular message field occurs twice: let prost merge (see the module docs).
    Merge,
}

impl From<WireError> for Fail {
    fn from(e: WireError) -> Self {
        Fail::Wire(e)
    }
}

pub(crate) type Res<T> = Result<T, Fail>;

/// Decodes a request into a borrowed view. `spare` holds the re-encoded request in the rare
/// merge case (see the module docs); the view then borrows it instead of `bytes`.
pub fn decode_request<'a>(
    bytes: &'a [u8],
    spare: &'a mut Vec<u8>,
) -> Result<RequestView<'a>, DecodeError> {
    decode(bytes, spare, false)
}

/// [`decode_request`], leaving undecoded the attribute fields of every data point whose
/// bytes this thread decoded before (`PointView::lazy`; see `key_cache.rs`): what ingest
/// uses, since staging needs them only for series it has no key of.
pub fn decode_request_lazy<'a>(
    bytes: &'a [u8],
    spare: &'a mut Vec<u8>,
) -> Result<RequestView<'a>, DecodeError> {
    decode(bytes, spare, true)
}

fn decode<'a>(
    bytes: &'a [u8],
    spare: &'a mut Vec<u8>,
    lazy: bool,
) -> Result<RequestView<'a>, DecodeError> {
    let generation = if lazy {
        KEY_CACHE.with_borrow_mut(|c| c.begin_decode())
    } else {
        0
    };
    let decoder = || Decoder {
        lazy,
        ..Decoder::default()
    };
    let mut view = match decoder().request(bytes) {
        Ok(view) => view,
        Err(Fail::Wire(e)) => return Err(e.into()),
        Err(Fail::Merge) => {
            *spare = ExportMetricsServiceRequest::decode(bytes)?.encode_to_vec();
            decoder().request(spare).map_err(|f| match f {
                Fail::Wire(e) => DecodeError::from(e),
                // prost encodes every field once, so this cannot happen; still no panic.
                Fail::Merge => WireError::UnexpectedWireType.into(),
            })?
        }
    };
    view.key_cache_generation = generation;
    Ok(view)
}

/// The attribute fields a lazy decode left undecoded, decoded into `view` (whose `kvs` get
/// the pairs, at the span returned). They decoded before, so they decode again; an error
/// would be a bug.
pub fn decode_lazy_attributes<'a>(view: &mut RequestView<'a>, lazy: &LazyAttributes<'a>) -> Span {
    let mut decoder = Decoder {
        view: std::mem::take(view),
        ..Decoder::default()
    };
    let start = decoder.view.kvs.len();
    let decoded = decoder.attribute_fields(lazy.bytes, lazy.tag, lazy.ctx);
    *view = decoder.view;
    decoded.expect("attribute fields that decoded before decode again");
    Span::to_end(start, &view.kvs)
}

/// Decodes the attributes of point `i` of `view` into it, when a lazy decode left them
/// undecoded.
pub fn decode_lazy_point(view: &mut RequestView<'_>, i: usize) {
    if let Some(n) = view.points[i].lazy.checked_sub(1) {
        let fields = view.lazy[n as usize];
        view.points[i].attributes = decode_lazy_attributes(view, &fields);
        view.points[i].lazy = 0;
    }
}

/// The view being built plus the stacks that keep nested lists contiguous in their arenas: a
/// nested list's elements wait on a stack until the list ends (lists nested in it finish
/// first and are moved to the arena before its own elements). Top-level attribute sets go
/// straight to `kvs`: nothing else is pushed there while one is read.
#[derive(Default)]
pub(crate) struct Decoder<'a> {
    pub(crate) view: RequestView<'a>,
    /// Leave attribute fields decoded before undecoded (`decode_request_lazy`).
    pub(crate) lazy: bool,
    pub(crate) pending_kvs: Vec<crate::otlp_view::KeyValueView<'a>>,
    pub(crate) pending_values: Vec<crate::otlp_view::AnyView<'a>>,
}

/// Calls `each` with every `resource_metrics` / `resource_spans` entry (field 1) of an Export
/// request and the budget its fields are read with; skips unknown fields.
pub(crate) fn each_resource<'a>(
    bytes: &'a [u8],
    mut each: impl FnMut(&'a [u8], u32) -> Res<()>,
) -> Res<()> {
    let mut r = Reader::new(bytes);
    let ctx = RECURSION_LIMIT;
    while !r.is_empty() {
        match r.key()? {
            (1, t) => {
                let (msg, inner) = r.message(t, ctx)?;
                each(msg, inner)?;
            }
            (tag, t) => r.skip(tag, t, ctx)?,
        }
    }
    Ok(())
}

impl<'a> Decoder<'a> {
    fn request(mut self, bytes: &'a [u8]) -> Res<RequestView<'a>> {
        // Rough sizes of the benchmark payload (about 150 bytes and 5 attributes per point):
        // enough that the arenas rarely grow, small enough not to matter.
        self.view.points.reserve(bytes.len() / 128);
        self.view.kvs.reserve(bytes.len() / 24);
        each_resource(bytes, |msg, ctx| self.resource_metrics(msg, ctx))?;
        Ok(self.view)
    }

    fn resource_metrics(&mut self, bytes: &'a [u8], ctx: u32) -> Res<()> {
        let mut resource = ResourceView {
            scopes: Span::to_end(self.view.scopes.len(), &self.view.scopes),
            ..ResourceView::default()
        };
        let mut seen_resource = false;
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    if std::mem::replace(&mut seen_resource, true) {
                        return Err(Fail::Merge);
                    }
                    resource.attributes = self.resource(msg, inner)?;
                }
                (2, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    self.scope_metrics(msg, inner)?;
                }
                (3, t) => drop(r.string(t)?), // schema_url
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        resource.scopes.end = self.view.scopes.len() as u32;
        self.view.resources.push(resource);
        Ok(())
    }

    /// A `Resource`: its attributes (entity refs and the dropped count are validated only).
    pub(crate) fn resource(&mut self, bytes: &'a [u8], ctx: u32) -> Res<Span> {
        let start = self.view.kvs.len();
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => {
                    let kv = self.key_value(&mut r, t, ctx)?;
                    self.view.kvs.push(kv);
                }
                (2, t) => drop(r.varint_field(t)?),
                (3, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    entity_ref(msg, inner)?;
                }
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        Ok(Span::to_end(start, &self.view.kvs))
    }

    fn scope_metrics(&mut self, bytes: &'a [u8], ctx: u32) -> Res<()> {
        let mut scope = ScopeView {
            metrics: Span::to_end(self.view.metrics.len(), &self.view.metrics),
            ..ScopeView::default()
        };
        let mut seen_scope = false;
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    if std::mem::replace(&mut seen_scope, true) {
                        return Err(Fail::Merge);
                    }
                    self.instrumentation_scope(msg, inner, &mut scope)?;
                }
                (2, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    self.metric(msg, inner)?;
                }
                (3, t) => drop(r.string(t)?), // schema_url
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        scope.metrics.end = self.view.metrics.len() as u32;
        self.view.scopes.push(scope);
        Ok(())
    }

    pub(crate) fn instrumentation_scope(
        &mut self,
        bytes: &'a [u8],
        ctx: u32,
        scope: &mut ScopeView<'a>,
    ) -> Res<()> {
        let start = self.view.kvs.len();
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => scope.name = r.string(t)?,
                (2, t) => scope.version = r.string(t)?,
                (3, t) => {
                    let kv = self.key_value(&mut r, t, ctx)?;
                    self.view.kvs.push(kv);
                }
                (4, t) => drop(r.varint_field(t)?), // dropped_attributes_count
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        scope.attributes = Span::to_end(start, &self.view.kvs);
        Ok(())
    }

    fn metric(&mut self, bytes: &'a [u8], ctx: u32) -> Res<()> {
        let first_point = self.view.points.len();
        let mut metric = MetricView::default();
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let (tag, t) = r.key()?;
            let kind = match tag {
                1 => {
                    metric.name = r.string(t)?;
                    continue;
                }
                2 => {
                    metric.description = r.string(t)?;
                    continue;
                }
                3 => {
                    metric.unit = r.string(t)?;
                    continue;
                }
                12 => {
                    self.key_value(&mut r, t, ctx)?; // metadata: validated only
                    continue;
                }
                5 => DataKind::Gauge,
                7 => DataKind::Sum,
                9 => DataKind::Histogram,
                10 => DataKind::ExponentialHistogram,
                11 => DataKind::Summary,
                _ => {
                    r.skip(tag, t, ctx)?;
                    continue;
                }
            };
            let (msg, inner) = r.message(t, ctx)?;
            if metric.data == Some(kind) {
                return Err(Fail::Merge);
            }
            // Another member of the oneof replaces the previous one entirely.
            self.view.points.truncate(first_point);
            metric.data = Some(kind);
            (metric.temporality, metric.monotonic) = self.data(kind, msg, inner)?;
        }
        metric.points = Span::to_end(first_point, &self.view.points);
        self.view.metrics.push(metric);
        Ok(())
    }

    /// A Gauge, Sum, Histogram, ExponentialHistogram or Summary message: its points go to the
    /// points arena; returns (aggregation_temporality, is_monotonic).
    fn data(&mut self, kind: DataKind, bytes: &'a [u8], ctx: u32) -> Res<(i32, bool)> {
        let (mut temporality, mut monotonic) = (0, false);
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match (kind, r.key()?) {
                (_, (1, t)) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    let point = self.point(kind, msg, inner)?;
                    self.view.points.push(point);
                }
                (DataKind::Sum | DataKind::Histogram | DataKind::ExponentialHistogram, (2, t)) => {
                    temporality = r.varint_field(t)? as i32
                }
                (DataKind::Sum, (3, t)) => monotonic = r.varint_field(t)? != 0,
                (_, (tag, t)) => r.skip(tag, t, ctx)?,
            }
        }
        Ok((temporality, monotonic))
    }

    /// Moves the kvlist pairs pending since `start` to their arena.
    pub(crate) fn finish_nested_kvs(&mut self, start: usize) -> Span {
        let first = self.view.nested_kvs.len();
        self.view.nested_kvs.extend(self.pending_kvs.drain(start..));
        Span::to_end(first, &self.view.nested_kvs)
    }
}

/// Validates an `EntityRef` (four string fields).
fn entity_ref(bytes: &[u8], ctx: u32) -> Res<()> {
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        match r.key()? {
            (1..=4, t) => drop(r.string(t)?),
            (tag, t) => r.skip(tag, t, ctx)?,
        }
    }
    Ok(())
}
