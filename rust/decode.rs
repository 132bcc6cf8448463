//! Phase one of an ingest, done without any lock: decode the request, validate every point,
//! compute its series key and encode histogram-like rows.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, Metric};
use prost::Message;

use crate::attributes::{check_str, encode_attribute_set, put_field, AttributeLimits};
use crate::error::CoreError;
use crate::reject::{Reason, Reject, Rejections};
use crate::rows;
use crate::series::{encode_metric_prefix, SeriesKey};
use crate::staged::{
    metric_shape, point_count, Limits, Payload, PointOrigin, RowTable, StagedPoint, StagedRequest,
};
use crate::validate::{self, TimeWindow, FLAG_NO_RECORDED_VALUE};

/// The fields every OTLP data point type has: attributes, time and flags.
macro_rules! common_fields {
    ($p:expr) => {
        (&$p.attributes[..], $p.time_unix_nano, $p.flags)
    };
}
/// Validates scope name, version and attributes and appends the scope part of the canonical
/// form.
fn encode_scope(
    scope: Option<&InstrumentationScope>,
    limits: &AttributeLimits,
    scratch: &mut Vec<u32>,
    out: &mut Vec<u8>,
) -> Result<(), Reject> {
    let (name, version, attrs) = scope.map_or(("", "", &[][..]), |s| {
        (&s.name[..], &s.version[..], &s.attributes[..])
    });
    check_str(name, limits, "scope name")?;
    check_str(version, limits, "scope version")?;
    put_field(out, name.as_bytes());
    put_field(out, version.as_bytes());
    encode_attribute_set(attrs, limits, "scope attribute", scratch, out)
}

/// Decodes and validates a request (phase one of `MetricsCore::ingest`).
pub fn stage_request(
    bytes: &[u8],
    now_ns: i64,
    limits: &Limits,
) -> Result<StagedRequest, CoreError> {
    let request = ExportMetricsServiceRequest::decode(bytes)?;
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
        points: Vec::new(),
        rows: Default::default(),
        rejections: Rejections::default(),
    };
    let mut total_points = 0u64;
    let (mut resource_buf, mut scope_buf) = (Vec::new(), Vec::new());
    for (ri, rm) in request.resource_metrics.iter().enumerate() {
        resource_buf.clear();
        let resource_attrs = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let resource_ok = encode_attribute_set(
            resource_attrs,
            &stager.attr_limits,
            "resource attribute",
            &mut stager.scratch,
            &mut resource_buf,
        );
        for (si, sm) in rm.scope_metrics.iter().enumerate() {
            scope_buf.clear();
            let scope_ok = resource_ok.and_then(|()| {
                encode_scope(
                    sm.scope.as_ref(),
                    &stager.attr_limits,
                    &mut stager.scratch,
                    &mut scope_buf,
                )
            });
            for (mi, metric) in sm.metrics.iter().enumerate() {
                let n = point_count(metric);
                let Some(data) = metric.data.as_ref().filter(|_| n > 0) else {
                    continue;
                };
                total_points += n as u64;
                let shape = scope_ok
                    .and_then(|()| validate::check_metric(metric, limits.max_name_bytes))
                    .and_then(|()| metric_shape(data));
                let shape = match shape {
                    Ok(shape) => shape,
                    Err(reject) => {
                        stager.rejections.add(reject, n as u64, &metric.name);
                        continue;
                    }
                };
                stager.key_buf.clear();
                let (name, unit) = (&metric.name, &metric.unit);
                encode_metric_prefix(
                    &mut stager.key_buf,
                    name,
                    unit,
                    shape,
                    &resource_buf,
                    &scope_buf,
                );
                let prefix = stager.key_buf.len();
                let origin = |p: usize| PointOrigin {
                    resource: ri as u32,
                    scope: si as u32,
                    metric: mi as u32,
                    point: p as u32,
                };
                for i in 0..n {
                    stager.stage_point(origin(i), metric, data, i, prefix);
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
    Ok(StagedRequest {
        request,
        points,
        rows,
        rejections,
        total_points,
    })
}

/// Scratch state of one `stage_request` call, reused across points.
struct Stager {
    attr_limits: AttributeLimits,
    window: TimeWindow,
    scratch: Vec<u32>,
    /// Canonical bytes: the metric prefix, then the current point's attributes.
    key_buf: Vec<u8>,
    points: Vec<StagedPoint>,
    rows: [Vec<u8>; 3],
    rejections: Rejections,
}

impl Stager {
    fn stage_point(
        &mut self,
        origin: PointOrigin,
        metric: &Metric,
        data: &Data,
        i: usize,
        prefix: usize,
    ) {
        match self.try_stage(origin, data, i, prefix) {
            Ok(point) => self.points.push(point),
            Err(reject) => self.rejections.add(reject, 1, &metric.name),
        }
    }

    fn try_stage(
        &mut self,
        origin: PointOrigin,
        data: &Data,
        i: usize,
        prefix: usize,
    ) -> Result<StagedPoint, Reject> {
        let (attrs, time, flags) = match data {
            Data::Gauge(g) => common_fields!(g.data_points[i]),
            Data::Sum(s) => common_fields!(s.data_points[i]),
            Data::Histogram(h) => common_fields!(h.data_points[i]),
            Data::ExponentialHistogram(h) => common_fields!(h.data_points[i]),
            Data::Summary(s) => common_fields!(s.data_points[i]),
        };
        if flags & FLAG_NO_RECORDED_VALUE != 0 {
            return Err(Reject::new(
                Reason::NoRecordedValue,
                "flag NO_RECORDED_VALUE",
            ));
        }
        let time_ns = self.window.check(time)?;
        let number = match data {
            Data::Gauge(g) => Some((validate::number_value(&g.data_points[i])?, 0, false)),
            Data::Sum(s) => {
                let p = &s.data_points[i];
                Some((
                    validate::number_value(p)?,
                    validate::start_ns(p.start_time_unix_nano),
                    true,
                ))
            }
            Data::Histogram(h) => validate::check_histogram(&h.data_points[i]).map(|()| None)?,
            Data::ExponentialHistogram(h) => {
                validate::check_exp_histogram(&h.data_points[i]).map(|()| None)?
            }
            Data::Summary(s) => validate::check_summary(&s.data_points[i]).map(|()| None)?,
        };
        self.key_buf.truncate(prefix);
        encode_attribute_set(
            attrs,
            &self.attr_limits,
            "point attribute",
            &mut self.scratch,
            &mut self.key_buf,
        )?;
        let key = SeriesKey::of_canonical(&self.key_buf);
        let payload = match number {
            Some((value, start_ns, is_sum)) => Payload::Number {
                value,
                start_ns,
                is_sum,
            },
            None => self.encode_row(data, i, key.id, time_ns),
        };
        Ok(StagedPoint {
            key,
            origin,
            time_ns,
            payload,
        })
    }

    fn encode_row(&mut self, data: &Data, i: usize, id: u64, time_ns: i64) -> Payload {
        let table = match data {
            Data::Histogram(_) => RowTable::Histogram,
            Data::ExponentialHistogram(_) => RowTable::ExpHistogram,
            _ => RowTable::Summary,
        };
        let buf = &mut self.rows[table as usize];
        let start = buf.len() as u32;
        match data {
            Data::Histogram(h) => rows::histogram_row(buf, id, time_ns, &h.data_points[i]),
            Data::ExponentialHistogram(h) => {
                rows::exp_histogram_row(buf, id, time_ns, &h.data_points[i])
            }
            Data::Summary(s) => rows::summary_row(buf, id, time_ns, &s.data_points[i]),
            Data::Gauge(_) | Data::Sum(_) => unreachable!("numbers go to chunks"),
        }
        Payload::Row {
            table,
            start,
            end: buf.len() as u32,
        }
    }
}
