//! The lower half of the borrowed decoder (see `otlp_decode.rs`): data points of the five
//! types, exemplars (validated, not kept), `KeyValue` and `AnyValue`.

use crate::key_cache::KEY_CACHE;
use crate::otlp_decode::{Decoder, Fail, Res};
use crate::otlp_view::{AnyView, BucketsView, DataKind, KeyValueView, NumberValue, PointView};
use crate::otlp_view::{LazyAttributes, Quantile, Span};
use crate::wire::{repeated_fixed64, repeated_varint, zigzag32, Reader};

use DataKind::{ExponentialHistogram as Exp, Gauge, Histogram, Sum, Summary};

impl<'a> Decoder<'a> {
    /// One data point of a metric of `kind` (field numbers differ between the point types).
    pub(crate) fn point(&mut self, kind: DataKind, bytes: &'a [u8], ctx: u32) -> Res<PointView> {
        let attributes_tag = match kind {
            Gauge | Sum | Summary => 7,
            Histogram => 9,
            Exp => 1,
        };
        let mut p = PointView::default();
        let kv_start = self.view.kvs.len();
        let counts_start = self.view.u64s.len();
        let bounds_start = self.view.f64s.len();
        let quantiles_start = self.view.quantiles.len();
        // The bytes of the attribute fields, and whether they are one run (as every encoder
        // writes them): the lazy decode keeps them in the key cache (`key_cache.rs`).
        let mut run: Option<(usize, usize)> = None;
        let mut one_run = true;
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let field_start = bytes.len() - r.remaining();
            let (tag, t) = r.key()?;
            if tag == attributes_tag {
                if self.lazy {
                    r.message(t, ctx)?; // read below, unless these bytes decoded before
                } else {
                    let kv = self.key_value(&mut r, t, ctx)?;
                    self.view.kvs.push(kv);
                }
                let field_end = bytes.len() - r.remaining();
                run = match run {
                    None => Some((field_start, field_end)),
                    Some((start, end)) => {
                        one_run &= end == field_start;
                        Some((start, field_end))
                    }
                };
                continue;
            }
            let double = |r: &mut Reader<'a>| r.fixed64_field(t).map(f64::from_bits);
            match (kind, tag) {
                (_, 2) => p.start_time_unix_nano = r.fixed64_field(t)?,
                (_, 3) => p.time_unix_nano = r.fixed64_field(t)?,
                // The value oneof: scalars, so the last one wins.
                (Gauge | Sum, 4) => p.value = Some(NumberValue::Double(double(&mut r)?)),
                (Gauge | Sum, 6) => p.value = Some(NumberValue::Int(r.fixed64_field(t)? as i64)),
                (Gauge | Sum, 5) | (Histogram, 8) | (Exp, 11) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    self.exemplar(msg, inner)?;
                }
                (Gauge | Sum | Summary, 8) | (Histogram | Exp, 10) => {
                    p.flags = r.varint_field(t)? as u32;
                }
                (Histogram | Exp | Summary, 4) => p.count = r.fixed64_field(t)?,
                (Histogram | Exp | Summary, 5) => p.sum = Some(double(&mut r)?),
                (Histogram, 6) => repeated_fixed64(&mut r, t, &mut self.view.u64s, |v| v)?,
                (Histogram, 7) => repeated_fixed64(&mut r, t, &mut self.view.f64s, f64::from_bits)?,
                (Histogram, 11) | (Exp, 12) => p.min = Some(double(&mut r)?),
                (Histogram, 12) | (Exp, 13) => p.max = Some(double(&mut r)?),
                (Exp, 6) => p.scale = zigzag32(r.varint_field(t)?),
                (Exp, 7) => p.zero_count = r.fixed64_field(t)?,
                (Exp, 8 | 9) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    let slot = if tag == 8 {
                        &mut p.positive
                    } else {
                        &mut p.negative
                    };
                    if slot.is_some() {
                        return Err(Fail::Merge);
                    }
                    *slot = Some(self.buckets(msg, inner)?);
                }
                (Exp, 14) => p.zero_threshold = double(&mut r)?,
                (Summary, 6) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    let q = quantile(msg, inner)?;
                    self.view.quantiles.push(q);
                }
                _ => r.skip(tag, t, ctx)?,
            }
        }
        if self.lazy {
            self.keep_or_decode_attributes(&mut p, bytes, run, one_run, attributes_tag, ctx)?;
        }
        p.attributes = Span::to_end(kv_start, &self.view.kvs);
        if kind == Histogram {
            p.bucket_counts = Span::to_end(counts_start, &self.view.u64s);
            p.explicit_bounds = Span::to_end(bounds_start, &self.view.f64s);
        }
        p.quantile_values = Span::to_end(quantiles_start, &self.view.quantiles);
        Ok(p)
    }

    /// The lazy decode's attribute fields of a point (`bytes`, whose attribute fields span
    /// `run`, in one run or not): left undecoded when this thread decoded the same bytes
    /// before, else decoded; either way given their set id in the key cache when in one run.
    fn keep_or_decode_attributes(
        &mut self,
        p: &mut PointView,
        bytes: &'a [u8],
        run: Option<(usize, usize)>,
        one_run: bool,
        tag: u32,
        ctx: u32,
    ) -> Res<()> {
        if !one_run {
            // Split by other fields: read from the whole point, never cached.
            return self.attribute_fields(bytes, tag, ctx);
        }
        let fields = run.map_or(&[][..], |(start, end)| &bytes[start..end]);
        let context = u64::from(tag) << 32 | u64::from(ctx);
        let digest = match KEY_CACHE.with_borrow_mut(|c| c.find_set(context, fields)) {
            Ok(set) => {
                p.attribute_set = set;
                if !fields.is_empty() {
                    self.view.lazy.push(LazyAttributes {
                        bytes: fields,
                        tag,
                        ctx,
                    });
                    p.lazy = self.view.lazy.len() as u32;
                }
                return Ok(());
            }
            Err(digest) => digest,
        };
        self.attribute_fields(fields, tag, ctx)?;
        p.attribute_set = KEY_CACHE.with_borrow_mut(|c| c.note_set(digest, context, fields));
        Ok(())
    }

    /// Decodes every `tag` field of `bytes` (a message, or a run of its fields) as a
    /// `KeyValue` into `kvs`, skipping the other fields.
    pub(crate) fn attribute_fields(&mut self, bytes: &'a [u8], tag: u32, ctx: u32) -> Res<()> {
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (field, t) if field == tag => {
                    let kv = self.key_value(&mut r, t, ctx)?;
                    self.view.kvs.push(kv);
                }
                (field, t) => r.skip(field, t, ctx)?,
            }
        }
        Ok(())
    }

    fn buckets(&mut self, bytes: &'a [u8], ctx: u32) -> Res<BucketsView> {
        let start = self.view.u64s.len();
        let mut offset = 0;
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => offset = zigzag32(r.varint_field(t)?),
                (2, t) => repeated_varint(&mut r, t, &mut self.view.u64s)?,
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        Ok(BucketsView {
            offset,
            counts: Span::to_end(start, &self.view.u64s),
        })
    }

    /// Validates an `Exemplar`; its filtered attributes are decoded and dropped.
    fn exemplar(&mut self, bytes: &'a [u8], ctx: u32) -> Res<()> {
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (7, t) => drop(self.key_value(&mut r, t, ctx)?),
                (2 | 3 | 6, t) => drop(r.fixed64_field(t)?),
                (4 | 5, t) => drop(r.bytes(t)?),
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        Ok(())
    }

    /// Reads one `KeyValue` field occurrence of the message `r` reads (whose budget is `ctx`).
    #[inline]
    pub(crate) fn key_value(
        &mut self,
        r: &mut Reader<'a>,
        t: u8,
        ctx: u32,
    ) -> Res<KeyValueView<'a>> {
        let (bytes, ctx) = r.message(t, ctx)?;
        let mut kv = KeyValueView {
            key: "",
            value: AnyView::Empty,
        };
        let mut seen_value = false;
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => kv.key = r.string(t)?,
                (2, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    if std::mem::replace(&mut seen_value, true) {
                        return Err(Fail::Merge);
                    }
                    kv.value = self.any_value(msg, inner)?;
                }
                (3, t) => drop(r.varint_field(t)?), // key_strindex
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        Ok(kv)
    }

    fn any_value(&mut self, bytes: &'a [u8], ctx: u32) -> Res<AnyView<'a>> {
        let mut value = AnyView::Empty;
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            value = match r.key()? {
                (1, t) => AnyView::Str(r.string(t)?),
                (2, t) => AnyView::Bool(r.varint_field(t)? != 0),
                (3, t) => AnyView::Int(r.varint_field(t)? as i64),
                (4, t) => AnyView::Double(f64::from_bits(r.fixed64_field(t)?)),
                (5, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    if matches!(value, AnyView::Array(_)) {
                        return Err(Fail::Merge);
                    }
                    AnyView::Array(self.array_value(msg, inner)?)
                }
                (6, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    if matches!(value, AnyView::Kvlist(_)) {
                        return Err(Fail::Merge);
                    }
                    AnyView::Kvlist(self.kvlist_value(msg, inner)?)
                }
                (7, t) => AnyView::Bytes(r.bytes(t)?),
                (8, t) => AnyView::Strindex(r.varint_field(t)? as i32),
                (tag, t) => {
                    r.skip(tag, t, ctx)?;
                    value
                }
            };
        }
        Ok(value)
    }

    fn array_value(&mut self, bytes: &'a [u8], ctx: u32) -> Res<Span> {
        let start = self.pending_values.len();
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => {
                    let (msg, inner) = r.message(t, ctx)?;
                    let v = self.any_value(msg, inner)?;
                    self.pending_values.push(v);
                }
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        let first = self.view.values.len();
        self.view.values.extend(self.pending_values.drain(start..));
        Ok(Span::to_end(first, &self.view.values))
    }

    fn kvlist_value(&mut self, bytes: &'a [u8], ctx: u32) -> Res<Span> {
        let start = self.pending_kvs.len();
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match r.key()? {
                (1, t) => {
                    let kv = self.key_value(&mut r, t, ctx)?;
                    self.pending_kvs.push(kv);
                }
                (tag, t) => r.skip(tag, t, ctx)?,
            }
        }
        Ok(self.finish_nested_kvs(start))
    }
}

/// A `ValueAtQuantile`.
fn quantile(bytes: &[u8], ctx: u32) -> Res<Quantile> {
    let mut q = Quantile::default();
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        match r.key()? {
            (1, t) => q.quantile = f64::from_bits(r.fixed64_field(t)?),
            (2, t) => q.value = f64::from_bits(r.fixed64_field(t)?),
            (tag, t) => r.skip(tag, t, ctx)?,
        }
    }
    Ok(q)
}
