//! Trace requests shaped like those of `bench/trace_payloads.py` and `bench/trace_spans.py`:
//! 1,000 spans, 125 traces of 8 spans over 2-3 of 12 services (a SERVER root; a CLIENT call to
//! each other service answered by its SERVER span; database and cache CLIENT spans under
//! those), 4-8 attributes per span, an event on about a fifth of them, status ERROR on about
//! 2 %; one ResourceSpans per service (8 attributes), one ScopeSpans per instrumentation.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::Event, span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use crate::workload::{string_kv, Rng, NOW};

pub const SPANS_PER_REQUEST: usize = 1_000;
const SPANS_PER_TRACE: usize = 8;
const MS: u64 = 1_000_000;
const SERVICES: [&str; 12] = [
    "frontend",
    "checkout",
    "cart",
    "payment",
    "inventory",
    "shipping",
    "catalog",
    "search",
    "recommendation",
    "accounts",
    "pricing",
    "notification",
];
const NOUNS: [&str; 8] = [
    "orders", "items", "users", "sessions", "quotes", "reviews", "carts", "stock",
];
const DATABASES: [&str; 3] = ["postgresql", "mysql", "mongodb"];
const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
];
const HTTP: usize = 0;
const DB: usize = 1;

fn int_kv(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len() as u64) as usize]
}

fn resource(service: &str, rng: &mut Rng) -> Resource {
    let attributes = vec![
        string_kv("service.name", service),
        string_kv("service.namespace", "shop"),
        string_kv(
            "service.version",
            &format!("2.{}.{}", rng.below(20), rng.below(10)),
        ),
        string_kv("service.instance.id", &format!("{:032x}", rng.next_u64())),
        string_kv(
            "host.name",
            &format!("{service}-{:010x}", rng.below(1 << 40)),
        ),
        string_kv("k8s.namespace.name", "shop-prod"),
        string_kv("deployment.environment", "production"),
        string_kv("telemetry.sdk.language", "python"),
    ];
    Resource {
        attributes,
        ..Resource::default()
    }
}

/// One span waiting for its request: where it goes and who its parent is.
struct Planned {
    service: usize,
    scope: usize,
    span: Span,
    parent: Option<usize>,
}

struct Shop<'r> {
    rng: &'r mut Rng,
}

impl Shop<'_> {
    /// A child interval inside `[start, end]`.
    fn times(&mut self, start: u64, end: u64) -> (u64, u64) {
        let room = (end - start).max(2);
        let begin = start + 1 + self.rng.below((room / 10).max(1));
        let length = ((room as f64) * (0.3 + 0.5 * self.rng.unit())).max(1.0) as u64;
        (begin, end.min(begin + length))
    }

    fn span(&mut self, name: String, kind: SpanKind, (start, end): (u64, u64)) -> Span {
        let mut span = Span {
            name,
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            ..Span::default()
        };
        let draw = self.rng.unit();
        if draw < 0.02 {
            span.status = Some(Status {
                code: StatusCode::Error as i32,
                message: "upstream failed".into(),
            });
            span.events.push(Event {
                time_unix_nano: end - 1000 * (1 + self.rng.below(999)),
                name: "exception".into(),
                attributes: vec![
                    string_kv("exception.type", "TimeoutError"),
                    string_kv("exception.message", "timed out after 5 s"),
                ],
                ..Event::default()
            });
        } else if draw < 0.2 {
            span.events.push(Event {
                time_unix_nano: start + 1000 * (1 + self.rng.below(999)),
                name: "retry".into(),
                attributes: vec![int_kv("http.resend_count", 1)],
                ..Event::default()
            });
        }
        span
    }

    fn server(&mut self, service: &str, times: (u64, u64)) -> Span {
        let (noun, method) = (
            pick(self.rng, &NOUNS),
            pick(self.rng, &["GET", "GET", "POST"]),
        );
        let route = format!("/api/{service}/{noun}/{{id}}");
        let target = route.replace("{id}", &self.rng.below(10_000_000).to_string());
        let mut span = self.span(format!("{method} {route}"), SpanKind::Server, times);
        span.attributes = vec![
            string_kv("http.method", method),
            string_kv("http.route", &route),
            string_kv("http.target", &target),
            int_kv("http.status_code", 200),
            string_kv("http.scheme", "http"),
            string_kv("net.host.name", &format!("{service}.shop.svc")),
        ];
        if self.rng.unit() < 0.5 {
            let agent = pick(self.rng, &USER_AGENTS);
            span.attributes
                .push(string_kv("user_agent.original", agent));
            let ip = format!("10.{}.0.7", self.rng.below(256));
            span.attributes.push(string_kv("http.client_ip", &ip));
        }
        span
    }

    fn call(&mut self, peer: &str, times: (u64, u64)) -> Span {
        let (noun, method) = (
            pick(self.rng, &NOUNS),
            pick(self.rng, &["GET", "GET", "POST"]),
        );
        let mut span = self.span(format!("{method} {peer}"), SpanKind::Client, times);
        span.attributes = vec![
            string_kv("http.method", method),
            string_kv(
                "http.url",
                &format!("http://{peer}.shop.svc:8080/api/{peer}/{noun}/"),
            ),
            int_kv("http.status_code", 200),
            string_kv("net.peer.name", &format!("{peer}.shop.svc")),
            int_kv("net.peer.port", 8080),
        ];
        span
    }

    fn query(&mut self, service: usize, times: (u64, u64), cache: bool) -> Span {
        let (name, table) = (SERVICES[service], pick(self.rng, &NOUNS));
        if cache {
            let key = format!("{name}:{table}:{}", self.rng.below(1_000_000));
            let mut span = self.span("GET".into(), SpanKind::Client, times);
            span.attributes = vec![
                string_kv("db.system", "redis"),
                string_kv("db.operation", "GET"),
                string_kv("db.statement", &format!("GET {key}")),
                string_kv("net.peer.name", &format!("redis-{name}.shop.svc")),
                int_kv("net.peer.port", 6379),
            ];
            return span;
        }
        let system = DATABASES[service % DATABASES.len()];
        let op = pick(self.rng, &["SELECT", "SELECT", "UPDATE", "INSERT"]);
        let mut span = self.span(format!("{op} {name}.{table}"), SpanKind::Client, times);
        span.attributes = vec![
            string_kv("db.system", system),
            string_kv("db.name", name),
            string_kv("db.operation", op),
            string_kv(
                "db.statement",
                &format!("{op} * FROM {table} WHERE id = $1"),
            ),
            string_kv("net.peer.name", &format!("{system}-{name}.shop.svc")),
            int_kv("net.peer.port", 5432),
        ];
        span
    }

    /// A service other than those in `taken`.
    fn other(&mut self, taken: &[usize]) -> usize {
        loop {
            let s = self.rng.below(SERVICES.len() as u64) as usize;
            if !taken.contains(&s) {
                return s;
            }
        }
    }

    /// One trace of 8 spans, the root first, appended to `out`.
    fn trace(&mut self, out: &mut Vec<Planned>) {
        let start = NOW as u64 - self.rng.below(60_000 * MS);
        let end = start + self.rng.lognormal((40.0 * MS as f64).ln(), 0.6) as u64 + MS;
        let a = self.other(&[]);
        let b = self.other(&[a]);
        // Half of the traces call one service twice.
        let c = if self.rng.unit() < 0.5 {
            b
        } else {
            self.other(&[a, b])
        };
        let root = plan(out, a, HTTP, self.server(SERVICES[a], (start, end)), None);
        let half = start + (end - start) / 2;
        for (peer, (s, e)) in [(b, self.times(start, half)), (c, self.times(half, end))] {
            let call = plan(out, a, HTTP, self.call(SERVICES[peer], (s, e)), Some(root));
            let (s2, e2) = self.times(s, e);
            let span = self.server(SERVICES[peer], (s2, e2));
            let server = plan(out, peer, HTTP, span, Some(call));
            let times = self.times(s2, e2);
            plan(out, peer, DB, self.query(peer, times, false), Some(server));
            if out.len() - root < SPANS_PER_TRACE - 1 {
                let times = self.times(s2, e2);
                plan(out, peer, DB, self.query(peer, times, true), Some(server));
            }
        }
    }
}

/// Appends a span to the plan of a request; its index there.
fn plan(
    out: &mut Vec<Planned>,
    service: usize,
    scope: usize,
    span: Span,
    parent: Option<usize>,
) -> usize {
    out.push(Planned {
        service,
        scope,
        span,
        parent,
    });
    out.len() - 1
}

/// `n` encoded requests of 1,000 spans each, every trace and span id distinct.
pub fn trace_requests(n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(7);
    let resources: Vec<Resource> = SERVICES.iter().map(|s| resource(s, &mut rng)).collect();
    let scopes = [
        ("opentelemetry.instrumentation.http", "0.48b0"),
        ("opentelemetry.instrumentation.dbapi", "0.48b0"),
    ]
    .map(|(name, version)| InstrumentationScope {
        name: name.into(),
        version: version.into(),
        ..InstrumentationScope::default()
    });
    (0..n)
        .map(|_| {
            let mut planned = Vec::with_capacity(SPANS_PER_REQUEST);
            let mut shop = Shop { rng: &mut rng };
            for t in 0..SPANS_PER_REQUEST / SPANS_PER_TRACE {
                let first = planned.len();
                shop.trace(&mut planned);
                let trace_id = shop.rng.bytes(16);
                for i in first..planned.len() {
                    planned[i].span.trace_id = trace_id.clone();
                    planned[i].span.span_id = shop.rng.bytes(8);
                    if let Some(p) = planned[i].parent {
                        planned[i].span.parent_span_id = planned[p].span.span_id.clone();
                    }
                }
                debug_assert_eq!(planned.len(), (t + 1) * SPANS_PER_TRACE);
            }
            group(planned, &resources, &scopes).encode_to_vec()
        })
        .collect()
}

/// One ResourceSpans per service and one ScopeSpans per scope, in order of first appearance.
fn group(
    planned: Vec<Planned>,
    resources: &[Resource],
    scopes: &[InstrumentationScope; 2],
) -> ExportTraceServiceRequest {
    let mut order: Vec<usize> = Vec::new();
    let mut spans: Vec<[Vec<Span>; 2]> = vec![Default::default(); SERVICES.len()];
    for p in planned {
        if !order.contains(&p.service) {
            order.push(p.service);
        }
        spans[p.service][p.scope].push(p.span);
    }
    let resource_spans = order
        .into_iter()
        .map(|s| ResourceSpans {
            resource: Some(resources[s].clone()),
            scope_spans: std::mem::take(&mut spans[s])
                .into_iter()
                .zip(scopes)
                .filter(|(spans, _)| !spans.is_empty())
                .map(|(spans, scope)| ScopeSpans {
                    scope: Some(scope.clone()),
                    spans,
                    ..ScopeSpans::default()
                })
                .collect(),
            ..ResourceSpans::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}
