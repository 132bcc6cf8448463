//! Histogram chunks: grouping by series, day and bounds, NULL elements, flattened bucket
//! counts, and collisions (of series ids and of bounds hashes).

use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;

use super::builder::*;
use super::copy_reader::*;
use crate::copy_binary::ns_to_pg_micros;
use crate::histogram_chunks::{append, BucketLayout, HistogramChunkMap, HistogramPoint};

const DAY: u64 = 86_400_000_000_000;

fn us(ns: u64) -> i64 {
    ns_to_pg_micros(ns as i64)
}

/// The `histogram_chunks` rows of one ingest of `points` (one series).
fn chunk_rows(points: Vec<HistogramDataPoint>) -> Vec<Vec<Field>> {
    let core = core();
    let out = core
        .ingest(&request(vec![histogram("h", DELTA, points)]), NOW)
        .unwrap();
    assert_eq!(out.rejected_points, 0, "{:?}", out.rejected_by_reason);
    let batch = core.take_batch().unwrap();
    let rows = tuples(&batch.histogram_chunks_copy);
    assert_eq!(batch.histogram_chunk_rows, rows.len() as u64);
    assert_eq!(batch.points, out.accepted_points);
    rows
}

#[test]
fn chunks_are_grouped_by_day_and_bounds_with_flattened_counts() {
    let midnight = (T / DAY) * DAY;
    let core = core();
    let first = vec![
        histogram_point(midnight + 5, vec![1.0, 5.0], vec![1, 2, 3]),
        histogram_point(midnight + 7, vec![1.0, 2.0, 5.0], vec![1, 1, 1, 1]),
        histogram_point(midnight - 1, vec![1.0, 5.0], vec![5, 0, 0]),
    ];
    let second = vec![histogram_point(midnight + 3, vec![1.0, 5.0], vec![0, 0, 4])];
    for points in [first, second] {
        core.ingest(&request(vec![histogram("h", DELTA, points)]), NOW)
            .unwrap();
    }
    let batch = core.take_batch().unwrap();
    let day = (midnight / DAY) as i64;
    assert_eq!(batch.days, vec![day - 1, day]);
    assert_eq!((batch.points, batch.histogram_chunk_rows), (4, 3));
    let rows = tuples(&batch.histogram_chunks_copy);
    // Sorted by (series, day, layout): the earlier day first, then fewer buckets first.
    let bounds: Vec<Vec<f64>> = rows.iter().map(|r| float8_array(&r[10])).collect();
    assert_eq!(
        bounds,
        [vec![1.0, 5.0], vec![1.0, 5.0], vec![1.0, 2.0, 5.0]]
    );
    let two = &rows[1];
    assert_eq!(int4(&two[3]), 2);
    assert_eq!(
        (int8(&two[1]), int8(&two[2])),
        (us(midnight + 3), us(midnight + 5))
    );
    assert_eq!(
        int8_array(&two[4]),
        vec![Some(us(midnight + 5)), Some(us(midnight + 3))],
        "arrival order across requests"
    );
    assert_eq!(int8_array(&two[6]), vec![Some(6), Some(4)]);
    assert_eq!(
        int8_array(&two[11]),
        [1, 2, 3, 0, 0, 4].map(Some).to_vec(),
        "point-major"
    );
    assert_eq!(int8_array(&rows[0][11]), [5, 0, 0].map(Some).to_vec());
    assert_eq!(int8_array(&rows[2][11]), [1, 1, 1, 1].map(Some).to_vec());
    let ids: Vec<i64> = rows.iter().map(|r| int8(&r[0])).collect();
    assert!(ids.iter().all(|&id| id == ids[0]), "one series");
}

#[test]
fn bounds_are_compared_exactly() {
    // 0.0 and -0.0 are equal as numbers but stored differently: never one chunk.
    let rows = chunk_rows(vec![
        histogram_point(T, vec![0.0], vec![1, 1]),
        histogram_point(T, vec![-0.0], vec![1, 1]),
        histogram_point(T, vec![0.0], vec![2, 0]),
    ]);
    assert_eq!(rows.len(), 2);
    let points: Vec<i32> = rows.iter().map(|r| int4(&r[3])).collect();
    assert_eq!(points.iter().sum::<i32>(), 3);
    assert!(points.contains(&2) && points.contains(&1));
}

#[test]
fn absent_fields_are_null_elements() {
    let mut full = histogram_point(T, vec![1.0], vec![1, 2]);
    full.start_time_unix_nano = T - 1000;
    (full.min, full.max) = (Some(0.5), Some(7.0));
    let mut bare = histogram_point(T + 1000, vec![1.0], vec![0, 1]);
    (bare.sum, bare.min) = (None, Some(2.0));
    let rows = chunk_rows(vec![full, bare]);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(int8_array(&r[5]), vec![Some(us(T - 1000)), None]);
    let floats = |f: &Field| -> Vec<Option<f64>> {
        array8(f)
            .1
            .into_iter()
            .map(|e| e.map(f64::from_be_bytes))
            .collect()
    };
    assert_eq!(floats(&r[7]), vec![Some(10.5), None]);
    assert_eq!(floats(&r[8]), vec![Some(0.5), Some(2.0)]);
    assert_eq!(floats(&r[9]), vec![Some(7.0), None]);
}

#[test]
fn points_without_buckets_get_their_own_chunk() {
    // Both valid with empty bounds: no buckets at all, or one bucket holding everything.
    let rows = chunk_rows(vec![
        histogram_point(T, vec![], vec![]),
        histogram_point(T, vec![], vec![4]),
        histogram_point(T + 1, vec![], vec![]),
    ]);
    assert_eq!(rows.len(), 2);
    assert!(float8_array(&rows[0][10]).is_empty() && float8_array(&rows[1][10]).is_empty());
    assert_eq!(int4(&rows[0][3]), 2);
    assert!(int8_array(&rows[0][11]).is_empty());
    assert_eq!(int8_array(&rows[1][11]), vec![Some(4)]);
}

#[test]
fn a_bounds_hash_collision_never_merges_chunks() {
    let mut map = HistogramChunkMap::default();
    let point = |bounds: &'static [f64], counts: &'static [u64]| HistogramPoint {
        time_ns: T as i64,
        start_ns: 0,
        count: counts.iter().sum(),
        sum: None,
        min: None,
        max: None,
        layout: BucketLayout {
            bounds,
            buckets_per_point: counts.len(),
        },
        bucket_counts: counts,
    };
    // The same forced hash for different bounds, as a real collision would give.
    append(&mut map, 1, 0, 99, &point(&[1.0], &[1, 1]));
    append(&mut map, 1, 0, 99, &point(&[2.0], &[1, 1]));
    append(&mut map, 1, 0, 99, &point(&[1.0], &[0, 3]));
    let chunks = &map[&(1, 0, 99)];
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0].bounds, vec![1.0]);
    assert_eq!(chunks[0].bucket_counts, vec![1, 1, 0, 3]);
    assert_eq!(chunks[1].bounds, vec![2.0]);
    assert_ne!(
        BucketLayout {
            bounds: &[1.0],
            buckets_per_point: 2
        }
        .hash(),
        BucketLayout {
            bounds: &[2.0],
            buckets_per_point: 2
        }
        .hash()
    );
}

#[test]
fn a_colliding_histogram_point_is_rejected_and_others_kept() {
    let core = core();
    let bytes = request(vec![
        histogram("a", DELTA, vec![histogram_point(T, vec![1.0], vec![1, 1])]),
        histogram("b", DELTA, vec![histogram_point(T, vec![1.0], vec![2, 2])]),
    ]);
    core.ingest(&bytes, NOW).unwrap();
    let ids = core.take_batch().unwrap().new_series_ids;
    core.forget_series(&ids);
    core.inject_known_series(ids[0], 12345);
    let out = core.ingest(&bytes, NOW).unwrap();
    assert_eq!((out.accepted_points, out.rejected_points), (1, 1));
    assert_eq!(out.rejected_by_reason, vec![("series_id_collision", 1)]);
    let batch = core.take_batch().unwrap();
    let rows = tuples(&batch.histogram_chunks_copy);
    assert_eq!((batch.points, rows.len()), (1, 1));
    assert_eq!((int8(&rows[0][0]), int4(&rows[0][3])), (ids[1] as i64, 1));
}
