//! The series-key part of staging on its own: the canonical form of every point (metric
//! prefix once per metric, the point's attribute set) and its two xxh3 hashes, walked over a
//! decoded request as `decode::stage_request` walks it, without validation of values, times
//! or histograms. `stages.rs` checks once that the ids equal `stage_request`'s.

use _core::attributes::{encode_attribute_set, put_field, AttributeLimits};
use _core::otlp_view::RequestView;
use _core::series::{encode_metric_prefix, SeriesKey};
use _core::staged::{metric_shape, Limits};

/// The series ids of every point of `view`, in request order, into `ids`.
pub fn series_keys(view: &RequestView<'_>, limits: &Limits, ids: &mut Vec<u64>) {
    let limits = AttributeLimits {
        max_attributes: limits.max_attributes,
        max_value_bytes: limits.max_attribute_value_bytes,
    };
    let (mut scratch, mut resource, mut scope) = (Vec::new(), Vec::new(), Vec::new());
    let mut key = Vec::with_capacity(1024);
    for r in &view.resources {
        resource.clear();
        let attrs = view.attrs(r.attributes);
        encode_attribute_set(
            view,
            attrs,
            &limits,
            "resource",
            &mut scratch,
            &mut resource,
        )
        .expect("valid benchmark resource");
        for s in r.scopes.of(&view.scopes) {
            scope.clear();
            put_field(&mut scope, s.name.as_bytes());
            put_field(&mut scope, s.version.as_bytes());
            let attrs = view.attrs(s.attributes);
            encode_attribute_set(view, attrs, &limits, "scope", &mut scratch, &mut scope)
                .expect("valid benchmark scope");
            for m in s.metrics.of(&view.metrics) {
                let kind = m.data.expect("benchmark metrics have data");
                let shape = metric_shape(m, kind).expect("valid benchmark metric");
                key.clear();
                encode_metric_prefix(
                    &mut key, "default", m.name, m.unit, shape, &resource, &scope,
                );
                let prefix = key.len();
                for p in m.points.of(&view.points) {
                    key.truncate(prefix);
                    let attrs = view.attrs(p.attributes);
                    encode_attribute_set(view, attrs, &limits, "point", &mut scratch, &mut key)
                        .expect("valid benchmark point");
                    ids.push(SeriesKey::of_canonical(&key).id);
                }
            }
        }
    }
}
