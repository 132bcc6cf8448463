//! OTLP attributes: validation, canonical bytes (for series ids) and JSON (for `series` rows).

use base64::Engine as _;
use serde_json::Value as Json;

use crate::otlp_view::{AnyView, KeyValueView, RequestView};
use crate::reject::{Reason, Reject};

/// `AnyValue` nesting deeper than this is rejected (`attribute_too_deep`); a top-level
/// attribute value is depth 1. prost's own recursion limit (100) turns far deeper input into a
/// decode error before we get here.
pub const MAX_DEPTH: usize = 32;

/// Limits applied to every attribute set (resource, scope, point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttributeLimits {
    /// Most key/value pairs in one top-level set (nested kvlists are bounded by request size).
    pub max_attributes: usize,
    /// Longest key, string value or bytes value, in bytes, at any depth.
    pub max_value_bytes: usize,
}

/// Type tags of the canonical value encoding (see `series.rs`).
mod tag {
    pub const EMPTY: u8 = 0;
    pub const STRING: u8 = 1;
    pub const BOOL: u8 = 2;
    pub const INT: u8 = 3;
    pub const DOUBLE: u8 = 4;
    pub const ARRAY: u8 = 5;
    pub const KVLIST: u8 = 6;
    pub const BYTES: u8 = 7;
    pub const STRINDEX: u8 = 8;
}

/// Appends a u32 LE length then the bytes: the canonical form of one field.
pub fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    put_count(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    // Lengths are bounded by the request size limit, far below 4 GiB.
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

/// Checks a key or string value: length, then NUL (PostgreSQL text and jsonb cannot hold it).
pub fn check_str(s: &str, limits: &AttributeLimits, what: &'static str) -> Result<(), Reject> {
    if s.len() > limits.max_value_bytes {
        return Err(Reject::new(Reason::AttributeValueTooLong, what));
    }
    if s.as_bytes().contains(&0) {
        return Err(Reject::new(Reason::NulInAttribute, what));
    }
    Ok(())
}

/// Validates one top-level attribute set and appends its canonical encoding to `out`.
/// `what` names the set in the client message ("point attribute", "resource attribute"...).
/// `scratch` is reused across calls so that sorting allocates nothing per point.
pub fn encode_attribute_set(
    view: &RequestView<'_>,
    attrs: &[KeyValueView<'_>],
    limits: &AttributeLimits,
    what: &'static str,
    scratch: &mut Vec<u32>,
    out: &mut Vec<u8>,
) -> Result<(), Reject> {
    if attrs.len() > limits.max_attributes {
        return Err(Reject::new(Reason::TooManyAttributes, what));
    }
    sort_by_key(attrs, scratch);
    encode_sorted(view, attrs, scratch, limits, 1, what, out)
}

fn sort_by_key(attrs: &[KeyValueView<'_>], order: &mut Vec<u32>) {
    order.clear();
    order.extend(0..attrs.len() as u32);
    // Senders usually send sorted or near-sorted keys: the sort is then a linear scan.
    order.sort_unstable_by(|&a, &b| {
        attrs[a as usize]
            .key
            .as_bytes()
            .cmp(attrs[b as usize].key.as_bytes())
    });
}

fn encode_sorted(
    view: &RequestView<'_>,
    attrs: &[KeyValueView<'_>],
    order: &[u32],
    limits: &AttributeLimits,
    depth: usize,
    what: &'static str,
    out: &mut Vec<u8>,
) -> Result<(), Reject> {
    put_count(out, order.len());
    let mut prev: Option<&str> = None;
    for &i in order {
        let kv = &attrs[i as usize];
        if prev == Some(kv.key) {
            return Err(Reject::new(Reason::DuplicateAttributeKey, what));
        }
        prev = Some(kv.key);
        check_str(kv.key, limits, what)?;
        put_field(out, kv.key.as_bytes());
        encode_value(view, &kv.value, limits, depth, what, out)?;
    }
    Ok(())
}

fn encode_value(
    view: &RequestView<'_>,
    value: &AnyView<'_>,
    limits: &AttributeLimits,
    depth: usize,
    what: &'static str,
    out: &mut Vec<u8>,
) -> Result<(), Reject> {
    if depth > MAX_DEPTH {
        return Err(Reject::new(Reason::AttributeTooDeep, what));
    }
    match *value {
        AnyView::Empty => out.push(tag::EMPTY),
        AnyView::Str(s) => {
            check_str(s, limits, what)?;
            out.push(tag::STRING);
            put_field(out, s.as_bytes());
        }
        AnyView::Bool(b) => out.extend_from_slice(&[tag::BOOL, u8::from(b)]),
        AnyView::Int(i) => {
            out.push(tag::INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        AnyView::Double(d) => {
            out.push(tag::DOUBLE);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        AnyView::Bytes(b) => {
            if b.len() > limits.max_value_bytes {
                return Err(Reject::new(Reason::AttributeValueTooLong, what));
            }
            out.push(tag::BYTES);
            put_field(out, b);
        }
        AnyView::Array(span) => {
            let values = view.array(span);
            out.push(tag::ARRAY);
            put_count(out, values.len());
            for v in values {
                encode_value(view, v, limits, depth + 1, what, out)?;
            }
        }
        AnyView::Kvlist(span) => {
            let pairs = view.kvlist(span);
            out.push(tag::KVLIST);
            // Nested kvlists are rare: a fresh index vector here costs nothing overall.
            let mut order = Vec::new();
            sort_by_key(pairs, &mut order);
            encode_sorted(view, pairs, &order, limits, depth + 1, what, out)?;
        }
        AnyView::Strindex(i) => {
            // Only meaningful in profiles; kept distinct so it can never alias another value.
            out.push(tag::STRINDEX);
            out.extend_from_slice(&i.to_le_bytes());
        }
    }
    Ok(())
}

/// The JSON object of an attribute set, for the `series` row (built once per new series).
pub fn attributes_json(view: &RequestView<'_>, attrs: &[KeyValueView<'_>]) -> Json {
    Json::Object(
        attrs
            .iter()
            .map(|kv| (kv.key.to_owned(), any_value_json(view, &kv.value)))
            .collect(),
    )
}

/// JSON of one value: string, bool and numbers as themselves, non-finite doubles as the
/// strings "NaN"/"Infinity"/"-Infinity", bytes as base64, arrays and kvlists recursively,
/// an empty value as null.
pub fn any_value_json(view: &RequestView<'_>, value: &AnyView<'_>) -> Json {
    match *value {
        AnyView::Empty => Json::Null,
        AnyView::Str(s) => Json::String(s.to_owned()),
        AnyView::Bool(b) => Json::Bool(b),
        AnyView::Int(i) => Json::from(i),
        AnyView::Double(d) => match serde_json::Number::from_f64(d) {
            Some(n) => Json::Number(n),
            None if d.is_nan() => Json::from("NaN"),
            None if d > 0.0 => Json::from("Infinity"),
            None => Json::from("-Infinity"),
        },
        AnyView::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        AnyView::Array(span) => Json::Array(
            view.array(span)
                .iter()
                .map(|v| any_value_json(view, v))
                .collect(),
        ),
        AnyView::Kvlist(span) => attributes_json(view, view.kvlist(span)),
        AnyView::Strindex(i) => Json::from(i),
    }
}
