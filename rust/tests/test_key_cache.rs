//! The per-thread key cache (`key_cache.rs`): a point whose attribute bytes were seen before
//! gets the key it would get from its canonical form, under its own metric and limits only;
//! and the lazy decode that leaves those bytes undecoded.

use prost::Message;

use super::builder::*;
use super::random_requests::*;
use super::test_differential::decode_every_lazy_point;
use super::view_reference::to_prost;
use crate::decode::stage_request;
use crate::key_cache::{KeyCache, KEY_CACHE, MAX_KEYS, MAX_PREFIX_BYTES, MAX_SETS};
use crate::key_cache::{MAX_SET_BYTES, MAX_SET_LEN, NO_PREFIX, NO_SET};
use crate::otlp_decode::{decode_request, decode_request_lazy};
use crate::reject::Reason;
use crate::series::SeriesKey;
use crate::staged::{Limits, StagedPoint};

/// Decoded lazily and staged for `tenant`, as ingest does.
fn staged_for(tenant: &str, bytes: &[u8], limits: &Limits) -> (Vec<StagedPoint>, String) {
    let mut spare = Vec::new();
    let view = decode_request_lazy(bytes, &mut spare).unwrap();
    let staged = stage_request(view, tenant, NOW, limits);
    (staged.points, staged.rejections.message(3))
}

fn staged(bytes: &[u8], limits: &Limits) -> (Vec<StagedPoint>, String) {
    staged_for("default", bytes, limits)
}

/// Staged on a thread of its own, whose cache starts empty.
fn staged_cold(bytes: &[u8], limits: Limits) -> (Vec<StagedPoint>, String) {
    let bytes = bytes.to_vec();
    std::thread::spawn(move || staged(&bytes, &limits))
        .join()
        .unwrap()
}

fn keys(points: &[StagedPoint]) -> Vec<SeriesKey> {
    points.iter().map(|p| p.key).collect()
}

#[test]
fn cached_keys_are_the_keys_of_the_canonical_form() {
    let mut rng = Rng(0x6b65_7973);
    let limits = Limits::default();
    let requests: Vec<Vec<u8>> = (0..300)
        .map(|_| random_request(&mut rng).encode_to_vec())
        .collect();
    // Every request twice in a row on this thread (the second from the cache, and the
    // requests share attribute sets and metric names), against a thread that saw none.
    for bytes in &requests {
        let cold = staged_cold(bytes, limits);
        assert_eq!(staged(bytes, &limits), cold);
        assert_eq!(staged(bytes, &limits), cold);
    }
}

#[test]
fn one_attribute_set_under_two_metrics_has_two_keys() {
    let a = attrs(&[("host", "h1"), ("region", "eu")]);
    let bytes = request(vec![
        gauge("first", vec![number(T, 1.0, a.clone())]),
        gauge("second", vec![number(T, 2.0, a.clone())]),
        gauge("first", vec![number(T, 3.0, a)]),
    ]);
    let limits = Limits::default();
    for _ in 0..2 {
        let (points, _) = staged(&bytes, &limits);
        let keys: Vec<SeriesKey> = points.iter().map(|p| p.key).collect();
        assert_eq!(keys.len(), 3);
        assert_ne!(keys[0], keys[1]);
        assert_eq!(keys[0], keys[2]);
    }
}

#[test]
fn a_change_of_limits_checks_the_attributes_again() {
    let bytes = request(vec![gauge(
        "limited",
        vec![number(T, 1.0, attrs(&[("a", "1"), ("b", "2"), ("c", "3")]))],
    )]);
    let wide = Limits::default();
    let narrow = Limits {
        max_attributes: 2,
        ..Limits::default()
    };
    let short = Limits {
        max_attribute_value_bytes: 0,
        ..Limits::default()
    };
    assert_eq!(staged(&bytes, &wide).0.len(), 1);
    let (points, message) = staged(&bytes, &narrow);
    assert!(points.is_empty());
    assert!(message.contains("point attribute"), "{message}");
    assert_eq!(staged(&bytes, &wide).0.len(), 1);
    assert!(staged(&bytes, &short).0.is_empty());
    assert_eq!(staged(&bytes, &wide), staged_cold(&bytes, wide));
}

#[test]
fn refused_attribute_sets_are_refused_every_time() {
    let duplicate = attrs(&[("k", "1"), ("k", "2")]);
    let bytes = request(vec![gauge("dup", vec![number(T, 1.0, duplicate)])]);
    let limits = Limits::default();
    for _ in 0..3 {
        let mut spare = Vec::new();
        let view = decode_request(&bytes, &mut spare).unwrap();
        let staged = stage_request(view, "default", NOW, &limits);
        assert!(staged.points.is_empty());
        assert_eq!(staged.rejections.count(Reason::DuplicateAttributeKey), 1);
    }
}

/// A point whose attribute fields are split by another field: no cache, the same key.
#[test]
fn attributes_split_by_other_fields_get_the_same_key() {
    let pair = |k: &str, v: &str| kv(k, str_value(v)).encode_to_vec();
    let point = |split: bool| {
        let mut p = Vec::new();
        ld(&mut p, 7, &pair("host", "h1"));
        if split {
            f64_field(&mut p, 3, T);
        }
        ld(&mut p, 7, &pair("region", "eu"));
        if !split {
            f64_field(&mut p, 3, T);
        }
        f64_field(&mut p, 4, 1.5f64.to_bits());
        wrap_gauge_point(b"split", &p)
    };
    let (joined, split) = (point(false), point(true));
    let mut spare = Vec::new();
    let sets: Vec<u32> = [&joined, &split]
        .iter()
        .map(|bytes| decode_request_lazy(bytes, &mut spare).unwrap().points[0].attribute_set)
        .collect();
    assert_ne!(sets[0], NO_SET);
    assert_eq!(sets[1], NO_SET, "a split run is not cached");
    let limits = Limits::default();
    let key = |bytes: &[u8]| staged(bytes, &limits).0[0].key;
    assert_eq!(key(&joined), key(&split));
    assert_eq!(key(&split), staged_cold(&split, limits).0[0].key);
}

#[test]
fn a_full_cache_starts_over_between_requests() {
    let limits = Limits::default();
    let series = |from: usize| {
        let points = (from..from + 1000)
            .map(|i| number(T, 1.0, attrs(&[("i", &i.to_string())])))
            .collect();
        request(vec![gauge("many", points)])
    };
    let first = series(0);
    let before = staged(&first, &limits);
    for n in 1..(MAX_SETS / 1000 + 20) {
        staged(&series(n * 1000), &limits);
    }
    assert!(KEY_CACHE.with_borrow(|cache| cache.len()) <= MAX_KEYS);
    assert!(KEY_CACHE.with_borrow(|cache| cache.sets().0) <= MAX_SETS);
    assert_eq!(staged(&first, &limits), before);
}

#[test]
fn attribute_fields_decoded_before_are_left_for_later_and_decode_the_same() {
    let a = attrs(&[("host", "lazy-h1"), ("region", "eu")]);
    let nested = vec![kv("map", kvlist(attrs(&[("k", "v")])))];
    let bytes = request(vec![
        gauge("lazy-a", vec![number(T, 1.0, a.clone())]),
        gauge("lazy-b", vec![number(T, 2.0, nested)]),
    ]);
    let mut spare = Vec::new();
    let eager = to_prost(&decode_request(&bytes, &mut spare).unwrap());
    let (mut first_spare, mut second_spare) = (Vec::new(), Vec::new());
    let first = decode_request_lazy(&bytes, &mut first_spare).unwrap();
    let mut second = decode_request_lazy(&bytes, &mut second_spare).unwrap();
    assert_eq!(first.points.iter().filter(|p| p.lazy != 0).count(), 0);
    assert!(first.points.iter().all(|p| p.attribute_set != NO_SET));
    assert_eq!(
        second.points.iter().map(|p| p.lazy).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(second.kvs.len() + 3, first.kvs.len()); // the resource's are decoded
    decode_every_lazy_point(&mut second);
    assert_eq!(to_prost(&second), eager);
}

#[test]
fn only_equal_bytes_read_at_the_same_place_share_an_attribute_set_id() {
    let mut cache = KeyCache::default();
    let id = cache.note_set(7, 1, b"attribute fields");
    assert_ne!(id, NO_SET);
    assert_eq!(cache.set_of(7, 1, b"attribute fields"), Some(id));
    // Read at another depth or as another field: decoded again.
    assert_eq!(cache.set_of(7, 2, b"attribute fields"), None);
    // The same digest over other bytes (a collision): decoded each time, never cached.
    assert_eq!(cache.set_of(7, 1, b"attribute fieldz"), None);
    assert_eq!(cache.note_set(7, 1, b"attribute fieldz"), NO_SET);
    assert_eq!(cache.set_of(8, 1, b"attribute fields"), None);
    // Long fields are never kept, and the kept bytes stay within their budget.
    assert_eq!(cache.note_set(9, 1, &vec![b'x'; MAX_SET_LEN + 1]), NO_SET);
    let mut digest = 10;
    while cache.note_set(digest, 1, &vec![b'y'; MAX_SET_LEN]) != NO_SET {
        digest += 1;
    }
    assert!(cache.sets().1 <= MAX_SET_BYTES);
    assert_eq!(
        cache.sets().1 / MAX_SET_LEN,
        MAX_SET_BYTES / MAX_SET_LEN - 1
    );
}

#[test]
fn a_prefix_that_did_not_fit_is_kept_in_the_next_request() {
    let mut cache = KeyCache::default();
    let limits = Limits::default();
    let attribute_limits = crate::attributes::AttributeLimits {
        max_attributes: limits.max_attributes,
        max_value_bytes: limits.max_attribute_value_bytes,
    };
    cache.begin_stage(attribute_limits);
    let big = vec![b'p'; MAX_PREFIX_BYTES / 4];
    for i in 0..4u8 {
        let mut prefix = big.clone();
        prefix[0] = i;
        assert_ne!(cache.prefix(&prefix), NO_PREFIX);
    }
    assert_eq!(cache.prefix(b"one more"), NO_PREFIX);
    cache.begin_stage(attribute_limits);
    assert_ne!(cache.prefix(b"one more"), NO_PREFIX);
    assert!(cache.prefix_bytes() <= MAX_PREFIX_BYTES);
}

/// Two requests decoded before either is staged, the sets starting over in between: the
/// first one's set ids name other sets now, so it is staged without them.
#[test]
fn set_ids_of_an_older_generation_are_not_used() {
    let limits = Limits::default();
    let a = request(vec![gauge(
        "gen",
        vec![number(T, 1.0, attrs(&[("k", "A")]))],
    )]);
    let b = request(vec![gauge(
        "gen",
        vec![number(T, 1.0, attrs(&[("k", "B")]))],
    )]);
    let (cold_a, cold_b) = (staged_cold(&a, limits), staged_cold(&b, limits));
    for _ in 0..2 {
        let (mut spare_a, mut spare_b) = (Vec::new(), Vec::new());
        KEY_CACHE.with_borrow_mut(|cache| cache.start_over());
        let view_a = decode_request_lazy(&a, &mut spare_a).unwrap();
        KEY_CACHE.with_borrow_mut(|cache| cache.start_over());
        let view_b = decode_request_lazy(&b, &mut spare_b).unwrap();
        assert_eq!(
            view_a.points[0].attribute_set,
            view_b.points[0].attribute_set
        );
        let staged_a = stage_request(view_a, "default", NOW, &limits);
        let staged_b = stage_request(view_b, "default", NOW, &limits);
        assert_eq!(staged_a.points, cold_a.0);
        assert_eq!(staged_b.points, cold_b.0);
    }
}

/// A known attribute set under a metric of its own: its key and series row come from the
/// attributes decoded then, equal to a thread that never saw them.
#[test]
fn a_known_attribute_set_under_a_new_metric_gets_its_own_series_row() {
    let a = attrs(&[("host", "row-h1"), ("pod", "p-7")]);
    let first = request(vec![gauge("rows-first", vec![number(T, 1.0, a.clone())])]);
    let later = request(vec![gauge("rows-later", vec![number(T, 2.0, a)])]);
    let rows = |bytes: &[u8]| {
        let core = core();
        core.ingest(bytes, NOW).unwrap();
        core.take_batch().unwrap().series_copy.to_vec()
    };
    rows(&first);
    let cold = {
        let later = later.clone();
        std::thread::spawn(move || rows(&later)).join().unwrap()
    };
    assert_eq!(rows(&later), cold);
    assert!(cold.windows(6).any(|w| w == b"row-h1"));
}

/// Everything before the point attributes in the canonical form tells keys apart: the other
/// attributes, the resource, the scope, the tenant, values deep in nested lists.
#[test]
fn attribute_sets_that_differ_anywhere_have_their_own_keys() {
    let limits = Limits::default();
    let one = |a: Vec<_>, b: Vec<_>| {
        request(vec![gauge(
            "apart",
            vec![number(T, 1.0, a), number(T, 2.0, b)],
        )])
    };
    let nested = |v: &str| {
        vec![kv(
            "map",
            kvlist(vec![kv("inner", kvlist(attrs(&[("y", v)])))]),
        )]
    };
    let with_resources = {
        let points = || vec![gauge("apart", vec![number(T, 1.0, attrs(&[("a", "1")]))])];
        let mut request = request_with(
            attrs(&[("service.name", "r1")]),
            scope("s1", vec![]),
            points(),
        );
        for (resource, scope_name) in [("r1", "s2"), ("r2", "s1")] {
            let other = request_with(
                attrs(&[("service.name", resource)]),
                scope(scope_name, vec![]),
                points(),
            );
            request.resource_metrics.extend(other.resource_metrics);
        }
        request.encode_to_vec()
    };
    let requests = [
        one(
            attrs(&[("a", "1"), ("b", "2")]),
            attrs(&[("a", "1"), ("b", "3")]),
        ),
        one(nested("1"), nested("2")),
        with_resources,
    ];
    for bytes in &requests {
        let cold = staged_cold(bytes, limits);
        for _ in 0..2 {
            let (points, _) = staged(bytes, &limits);
            assert_eq!(points, cold.0);
            let mut ids: Vec<u64> = points.iter().map(|p| p.key.id).collect();
            ids.dedup();
            assert_eq!(ids.len(), points.len(), "every point a series of its own");
        }
    }
    let bytes = &requests[0];
    let (a, b) = (
        staged_for("a", bytes, &limits),
        staged_for("b", bytes, &limits),
    );
    assert_ne!(keys(&a.0), keys(&b.0));
    assert_eq!(keys(&staged_for("a", bytes, &limits).0), keys(&a.0));
}

/// Metric prefixes hold the resource's attributes: large ones stop being cached at the
/// budget, and their points still get their keys.
#[test]
fn metric_prefixes_are_kept_within_their_budget() {
    let limits = Limits::default();
    let big = "x".repeat(4000);
    let resource: Vec<_> = (0..32)
        .map(|i| kv(&format!("r{i}"), str_value(&big)))
        .collect();
    let metrics = (0..100)
        .map(|m| {
            gauge(
                &format!("wide-{m}"),
                vec![number(T, 1.0, attrs(&[("a", "1")]))],
            )
        })
        .collect();
    let bytes = request_with(resource, scope("lib", vec![]), metrics).encode_to_vec();
    let cold = staged_cold(&bytes, limits);
    for _ in 0..3 {
        assert_eq!(staged(&bytes, &limits), cold);
        assert!(KEY_CACHE.with_borrow(|cache| cache.prefix_bytes()) <= MAX_PREFIX_BYTES);
    }
}

/// Sets kept under made-up digests can be found only by guessing that they follow the set
/// before them, so these tests see when `find_set` guesses.
fn keep(cache: &mut KeyCache, digest: Option<u128>, context: u64, fields: &[u8]) -> u32 {
    let real = cache.find_set(context, fields).unwrap_err();
    cache.note_set(digest.unwrap_or(real), context, fields)
}

#[test]
fn the_set_after_the_last_one_is_found_by_its_bytes() {
    let mut cache = KeyCache::default();
    let first = keep(&mut cache, None, 1, b"first");
    let second = keep(&mut cache, Some(2), 1, b"second");
    let third = keep(&mut cache, Some(3), 1, b"third");
    assert_eq!((first, second, third), (1, 2, 3));
    cache.begin_decode();
    assert_eq!(cache.find_set(1, b"first"), Ok(first)); // by its digest
    assert_eq!(cache.find_set(1, b"second"), Ok(second)); // guessed
    assert_eq!(cache.find_set(1, b"third"), Ok(third));
    // Only the same bytes read at the same place: another place, other bytes, another order.
    assert_eq!(cache.find_set(1, b"first"), Ok(first));
    assert!(cache.find_set(2, b"second").is_err());
    assert_eq!(cache.find_set(1, b"first"), Ok(first));
    assert!(cache.find_set(1, b"secone").is_err());
    assert!(cache.find_set(1, b"third").is_err());
    // The same ids whichever way they are found.
    assert_eq!(cache.find_set(1, b"first"), Ok(first));
    assert_eq!(cache.find_set(1, b"second"), Ok(second));
}

#[test]
fn a_request_in_another_order_stops_guessing() {
    let mut cache = KeyCache::default();
    let first = keep(&mut cache, None, 1, b"first");
    let second = keep(&mut cache, Some(2), 1, b"second");
    cache.begin_decode();
    for _ in 0..8 {
        assert_eq!(cache.find_set(1, b"first"), Ok(first));
        assert!(cache.find_set(1, b"unknown").is_err()); // a missed guess each
    }
    assert_eq!(cache.find_set(1, b"first"), Ok(first));
    assert!(
        cache.find_set(1, b"second").is_err(),
        "no guess after 8 misses"
    );
    cache.begin_decode();
    assert_eq!(cache.find_set(1, b"first"), Ok(first));
    assert_eq!(cache.find_set(1, b"second"), Ok(second), "guessing again");
}

#[test]
fn a_set_keeps_its_keys_under_several_prefixes_until_they_are_forgotten() {
    let limits = |max_attributes| crate::attributes::AttributeLimits {
        max_attributes,
        max_value_bytes: 100,
    };
    let mut cache = KeyCache::default();
    cache.begin_stage(limits(10));
    let set = keep(&mut cache, None, 1, b"fields");
    let (one, two) = (
        SeriesKey::of_canonical(b"one"),
        SeriesKey::of_canonical(b"two"),
    );
    cache.insert(0, set, one);
    cache.insert(1, set, two);
    cache.insert(1, set, two);
    assert_eq!(
        (cache.get(0, set), cache.get(1, set)),
        (Some(one), Some(two))
    );
    assert_eq!(cache.get(2, set), None);
    assert_eq!(cache.len(), 2);
    // Other limits: every key goes, the one beside the set too.
    cache.begin_stage(limits(5));
    assert_eq!(
        (cache.get(0, set), cache.get(1, set), cache.len()),
        (None, None, 0)
    );
    cache.insert(1, set, two);
    assert_eq!(
        (cache.get(0, set), cache.get(1, set), cache.len()),
        (None, Some(two), 1)
    );
}
