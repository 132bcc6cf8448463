//! A borrowed, flattened view of an `ExportMetricsServiceRequest`: every string and bytes value
//! is a slice of the request bytes, and lists live in a few arenas (one `Vec` per element type)
//! addressed by [`Span`]s, so decoding allocates nothing per point.
//!
//! It holds exactly what ingest reads; `otlp_decode` builds it.

/// A range of indexes into one of the arenas of [`RequestView`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The span from `start` to the current length of an arena.
    pub fn to_end<T>(start: usize, arena: &[T]) -> Self {
        // Arenas are bounded by the request size limit, far below 4 G elements.
        Span {
            start: start as u32,
            end: arena.len() as u32,
        }
    }

    /// Number of elements.
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the span is empty.
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// The elements of `arena` in this span.
    pub fn of<T>(self, arena: &[T]) -> &[T] {
        &arena[self.start as usize..self.end as usize]
    }
}

/// An OTLP `AnyValue`; `Empty` also stands for an absent `KeyValue.value`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AnyView<'a> {
    Empty,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// Elements in [`RequestView::values`].
    Array(Span),
    /// Pairs in [`RequestView::nested_kvs`].
    Kvlist(Span),
    /// `string_value_strindex` (profiles only).
    Strindex(i32),
}

/// An OTLP `KeyValue` (`key_strindex` is not read).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeyValueView<'a> {
    pub key: &'a str,
    pub value: AnyView<'a>,
}

/// A `ResourceMetrics`: resource attributes and its scopes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ResourceView {
    pub attributes: Span,
    /// Into [`RequestView::scopes`].
    pub scopes: Span,
}

/// A `ScopeMetrics` with its `InstrumentationScope` flattened in (an absent scope reads as
/// empty name, version and attributes, which is how ingest treats it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ScopeView<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub attributes: Span,
    /// Into [`RequestView::metrics`].
    pub metrics: Span,
}

/// Which of the five data fields a metric has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

/// A `Metric` (metadata is validated, not kept).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MetricView<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub unit: &'a str,
    pub data: Option<DataKind>,
    /// `aggregation_temporality` of sum and (exponential) histogram, else 0.
    pub temporality: i32,
    /// `Sum.is_monotonic`.
    pub monotonic: bool,
    /// Into [`RequestView::points`].
    pub points: Span,
}

/// `NumberDataPoint.value`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumberValue {
    Double(f64),
    Int(i64),
}

/// `ExponentialHistogramDataPoint.Buckets`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BucketsView {
    pub offset: i32,
    /// Into [`RequestView::u64s`].
    pub counts: Span,
}

/// A data point of any of the five types: the fields its type does not have stay at their
/// defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PointView {
    pub attributes: Span,
    /// The id of its attribute fields in the thread's key cache (`key_cache.rs`), or 0 when
    /// they are not cached (a full decode, or fields split by other fields).
    pub attribute_set: u32,
    /// 0, or 1 + the index in [`RequestView::lazy`] of its attribute fields, left undecoded
    /// (`attributes` is then empty; see `decode_request_lazy`).
    pub lazy: u32,
    pub start_time_unix_nano: u64,
    pub time_unix_nano: u64,
    pub flags: u32,
    pub value: Option<NumberValue>,
    pub count: u64,
    /// Optional for histograms; a summary's plain `sum` reads as `unwrap_or(0.0)`.
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Into [`RequestView::u64s`].
    pub bucket_counts: Span,
    /// Into [`RequestView::f64s`].
    pub explicit_bounds: Span,
    pub scale: i32,
    pub zero_count: u64,
    pub zero_threshold: f64,
    pub positive: Option<BucketsView>,
    pub negative: Option<BucketsView>,
    /// Into [`RequestView::quantiles`].
    pub quantile_values: Span,
}

/// `SummaryDataPoint.ValueAtQuantile`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Quantile {
    pub quantile: f64,
    pub value: f64,
}

/// The whole request. `resources` is in request order; every other arena is addressed by the
/// spans of its parents.
#[derive(Debug, Default, PartialEq)]
pub struct RequestView<'a> {
    pub resources: Vec<ResourceView>,
    pub scopes: Vec<ScopeView<'a>>,
    pub metrics: Vec<MetricView<'a>>,
    pub points: Vec<PointView>,
    /// Top-level attribute sets (resource, scope, point): each set is pushed as it is read.
    pub kvs: Vec<KeyValueView<'a>>,
    /// Pairs of kvlist values, kept apart so that nesting never splits a top-level set.
    pub nested_kvs: Vec<KeyValueView<'a>>,
    pub values: Vec<AnyView<'a>>,
    pub u64s: Vec<u64>,
    pub f64s: Vec<f64>,
    pub quantiles: Vec<Quantile>,
    /// Attribute fields of points left undecoded (`PointView::lazy`).
    pub lazy: Vec<LazyAttributes<'a>>,
    /// The key cache generation its points' `attribute_set` ids belong to (`key_cache.rs`).
    pub key_cache_generation: u64,
}

/// A data point's attribute fields, left undecoded by `decode_request_lazy` because this
/// thread decoded these exact bytes before (`otlp_decode::decode_lazy_attributes` decodes
/// them when needed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LazyAttributes<'a> {
    /// The run of attribute fields, each with its key and length.
    pub bytes: &'a [u8],
    /// Their field number in the point's message.
    pub tag: u32,
    /// The recursion budget they are read with.
    pub ctx: u32,
}

impl<'a> RequestView<'a> {
    /// The pairs of a top-level attribute set.
    pub fn attrs(&self, s: Span) -> &[KeyValueView<'a>] {
        s.of(&self.kvs)
    }

    /// The pairs of a kvlist value.
    pub fn kvlist(&self, s: Span) -> &[KeyValueView<'a>] {
        s.of(&self.nested_kvs)
    }

    /// The elements of an array value.
    pub fn array(&self, s: Span) -> &[AnyView<'a>] {
        s.of(&self.values)
    }

    /// Bucket counts.
    pub fn counts(&self, s: Span) -> &[u64] {
        s.of(&self.u64s)
    }

    /// Explicit bounds.
    pub fn bounds(&self, s: Span) -> &[f64] {
        s.of(&self.f64s)
    }

    /// A bucket range's offset and counts; a missing range is offset 0 with no counts.
    pub fn buckets(&self, b: Option<BucketsView>) -> (i32, &[u64]) {
        b.map_or((0, &[][..]), |b| (b.offset, self.counts(b.counts)))
    }
}
