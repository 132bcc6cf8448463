//! Phase one of an ingest, done without any lock: validate every point of a decoded request,
//! compute its series key and encode exponential histogram and summary rows.

use crate::attributes::{check_str, encode_attribute_set, put_field, AttributeLimits};
use crate::histogram_chunks::BucketLayout;
use crate::key_cache::{KeyCache, KEY_CACHE, NO_SET};
use crate::otlp_decode::decode_lazy_attributes;
use crate::otlp_view::{DataKind, MetricView, RequestView, ScopeView};
use crate::reject::{Reason, Reject, Rejections};
use crate::rows;
use crate::series::{encode_metric_prefix, SeriesKey};
use crate::staged::{
    metric_shape, Limits, Payload, PointOrigin, RowTable, StagedPoint, StagedRequest, ROW_TABLES,
};
use crate::validate::{self, TimeWindow, FLAG_NO_RECORDED_VALUE};

/// Validates scope name, version and attributes and appends the scope part of the canonical
/// form.
fn encode_scope(
    view: &RequestView<'_>,
    scope: &ScopeView<'_>,
    limits: &AttributeLimits,
    scratch: &mut Vec<u32>,
    out: &mut Vec<u8>,
) -> Result<(), Reject> {
    check_str(scope.name, limits, "scope name")?;
    check_str(scope.version, limits, "scope version")?;
    put_field(out, scope.name.as_bytes());
    put_field(out, scope.version.as_bytes());
    let attrs = view.attrs(scope.attributes);
    encode_attribute_set(view, attrs, limits, "scope attribute", scratch, out)
}

/// Validates every point of a decoded request (phase one of `MetricsCore::ingest`) sent for
/// `tenant`, whose name begins the canonical form of each series.
pub fn stage_request<'a>(
    view: RequestView<'a>,
    tenant: &str,
    now_ns: i64,
    limits: &Limits,
) -> StagedRequest<'a> {
    KEY_CACHE.with_borrow_mut(|keys| stage_with(view, tenant, now_ns, limits, keys))
}

fn stage_with<'a>(
    view: RequestView<'a>,
    tenant: &str,
    now_ns: i64,
    limits: &Limits,
    keys: &mut KeyCache,
) -> StagedRequest<'a> {
    let mut stager = Stager {
        attr_limits: AttributeLimits {
            max_attributes: limits.max_attributes,
            max_value_bytes: limits.max_attribute_value_bytes,
        },
        window: TimeWindow {
            now_ns,
            max_past_ns: limits.max_past_ns,
            max_future_ns: limits.max_future_ns,
        },
        scratch: Vec::new(),
        key_buf: Vec::with_capacity(1024),
        points: Vec::with_capacity(view.points.len()),
        rows: Default::default(),
        rejections: Rejections::default(),
        keys,
        sets_valid: false,
    };
    stager.keys.begin_stage(stager.attr_limits);
    // Set ids of a view decoded before the sets last started over name other sets now.
    stager.sets_valid = view.key_cache_generation == stager.keys.generation();
    let mut total_points = 0u64;
    let (mut resource_buf, mut scope_buf) = (Vec::new(), Vec::new());
    for (ri, resource) in view.resources.iter().enumerate() {
        resource_buf.clear();
        let resource_ok = encode_attribute_set(
            &view,
            view.attrs(resource.attributes),
            &stager.attr_limits,
            "resource attribute",
            &mut stager.scratch,
            &mut resource_buf,
        );
        for si in resource.scopes.start..resource.scopes.end {
            let scope = &view.scopes[si as usize];
            scope_buf.clear();
            let scope_ok = resource_ok.and_then(|()| {
                encode_scope(
                    &view,
                    scope,
                    &stager.attr_limits,
                    &mut stager.scratch,
                    &mut scope_buf,
                )
            });
            for mi in scope.metrics.start..scope.metrics.end {
                let metric = &view.metrics[mi as usize];
                let n = metric.points.len();
                let Some(kind) = metric.data.filter(|_| n > 0) else {
                    continue;
                };
                total_points += n as u64;
                let shape = scope_ok
                    .and_then(|()| validate::check_metric(metric, limits.max_name_bytes))
                    .and_then(|()| metric_shape(metric, kind));
                let shape = match shape {
                    Ok(shape) => shape,
                    Err(reject) => {
                        stager.rejections.add(reject, n as u64, metric.name);
                        continue;
                    }
                };
                stager.key_buf.clear();
                encode_metric_prefix(
                    &mut stager.key_buf,
                    tenant,
                    metric.name,
                    metric.unit,
                    shape,
                    &resource_buf,
                    &scope_buf,
                );
                let prefix = stager.key_buf.len();
                let prefix_id = stager.keys.prefix(&stager.key_buf);
                for pi in metric.points.start..metric.points.end {
                    let origin = PointOrigin {
                        resource: ri as u32,
                        scope: si,
                        metric: mi,
                        point: pi,
                    };
                    stager.stage_point(&view, origin, metric, kind, (prefix, prefix_id));
                }
            }
        }
    }
    let Stager {
        points,
        rows,
        rejections,
        ..
    } = stager;
    StagedRequest {
        view,
        tenant: 0,
        points,
        rows,
        rejections,
        total_points,
    }
}

/// Scratch state of one `stage_request` call, reused across points.
struct Stager<'k> {
    attr_limits: AttributeLimits,
    window: TimeWindow,
    scratch: Vec<u32>,
    /// Canonical bytes: the metric prefix, then the current point's attributes.
    key_buf: Vec<u8>,
    points: Vec<StagedPoint>,
    rows: [Vec<u8>; ROW_TABLES],
    rejections: Rejections,
    keys: &'k mut KeyCache,
    /// Whether the view's attribute set ids are those of the key cache now.
    sets_valid: bool,
}

impl Stager<'_> {
    fn stage_point(
        &mut self,
        view: &RequestView<'_>,
        origin: PointOrigin,
        metric: &MetricView<'_>,
        kind: DataKind,
        prefix: (usize, u32),
    ) {
        match self.try_stage(view, origin, kind, prefix) {
            Ok(point) => self.points.push(point),
            Err(reject) => self.rejections.add(reject, 1, metric.name),
        }
    }

    fn try_stage(
        &mut self,
        view: &RequestView<'_>,
        origin: PointOrigin,
        kind: DataKind,
        (prefix, prefix_id): (usize, u32),
    ) -> Result<StagedPoint, Reject> {
        let p = &view.points[origin.point as usize];
        if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
            return Err(Reject::new(
                Reason::NoRecordedValue,
                "flag NO_RECORDED_VALUE",
            ));
        }
        let time_ns = self.window.check(p.time_unix_nano)?;
        let number = match kind {
            DataKind::Gauge => Some((validate::number_value(p)?, 0, false)),
            DataKind::Sum => Some((
                validate::number_value(p)?,
                validate::start_ns(p.start_time_unix_nano),
                true,
            )),
            DataKind::Histogram => validate::check_histogram(view, p).map(|()| None)?,
            DataKind::ExponentialHistogram => {
                validate::check_exp_histogram(view, p).map(|()| None)?
            }
            DataKind::Summary => validate::check_summary(view, p).map(|()| None)?,
        };
        let set = if self.sets_valid {
            p.attribute_set
        } else {
            NO_SET
        };
        let key = match self.keys.get(prefix_id, set) {
            Some(key) => key,
            None => {
                self.key_buf.truncate(prefix);
                // Attributes left undecoded (their bytes decoded before, under another
                // metric or before the cache started over) are decoded aside.
                let mut aside = RequestView::default();
                let (view, attributes) = match p.lazy {
                    0 => (view, view.attrs(p.attributes)),
                    n => {
                        let span = decode_lazy_attributes(&mut aside, &view.lazy[n as usize - 1]);
                        (&aside, aside.attrs(span))
                    }
                };
                encode_attribute_set(
                    view,
                    attributes,
                    &self.attr_limits,
                    "point attribute",
                    &mut self.scratch,
                    &mut self.key_buf,
                )?;
                let key = SeriesKey::of_canonical(&self.key_buf);
                self.keys.insert(prefix_id, set, key);
                key
            }
        };
        let payload = match number {
            Some((value, start_ns, is_sum)) => Payload::Number {
                value,
                start_ns,
                is_sum,
            },
            None if kind == DataKind::Histogram => Payload::Histogram {
                start_ns: validate::start_ns(p.start_time_unix_nano),
                layout_hash: BucketLayout {
                    bounds: view.bounds(p.explicit_bounds),
                    buckets_per_point: view.counts(p.bucket_counts).len(),
                }
                .hash(),
            },
            None => self.encode_row(view, kind, origin.point as usize, key.id, time_ns),
        };
        Ok(StagedPoint {
            key,
            origin,
            time_ns,
            payload,
        })
    }

    fn encode_row(
        &mut self,
        view: &RequestView<'_>,
        kind: DataKind,
        i: usize,
        id: u64,
        time_ns: i64,
    ) -> Payload {
        let table = match kind {
            DataKind::ExponentialHistogram => RowTable::ExpHistogram,
            _ => RowTable::Summary,
        };
        let buf = &mut self.rows[table as usize];
        let start = buf.len() as u32;
        let p = &view.points[i];
        match kind {
            DataKind::ExponentialHistogram => rows::exp_histogram_row(buf, view, id, time_ns, p),
            DataKind::Summary => rows::summary_row(buf, view, id, time_ns, p),
            DataKind::Gauge | DataKind::Sum | DataKind::Histogram => {
                unreachable!("numbers and histograms go to chunks")
            }
        }
        Payload::Row {
            table,
            start,
            end: buf.len() as u32,
        }
    }
}
