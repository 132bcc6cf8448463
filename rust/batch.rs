//! `take_batch`, `forget_series` and the counters of `MetricsCore`.

use std::mem;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use crate::buffer::{utc_day, ChunkBuf, ChunkMap, RowBuffer};
use crate::copy_binary::{write_header, write_trailer};
use crate::histogram_chunks::{HistogramChunk, HistogramChunkMap};
use crate::ingest::{lock, shard_of, Batch, MetricsCore};
use crate::rollup_rows::{self, Resolution};
use crate::rows;
use crate::staged::ROW_TABLES;

impl MetricsCore {
    /// Moves every buffered point into a [`Batch`], without closing any window (tests of the
    /// point tables use it); `None` when nothing is buffered.
    pub fn take_batch(&self) -> Option<Batch> {
        self.take_batch_at(i64::MIN, false, false)
    }

    /// Moves every buffered point, and the windows and hours closed by `now_ns` (every
    /// window when `flush_all`, at shutdown; every hour when `flush_hours`), into a
    /// [`Batch`]; `None` when there is nothing and no request to account for. Shutdown asks
    /// for the windows and then for the hours, so that no batch holds both sets of rows.
    ///
    /// Under the write gate it only swaps buffers out and picks the closed windows (so that
    /// every request lands entirely in one batch, rollups included); the encoding happens
    /// after the gate is released, so ingests continue meanwhile.
    pub fn take_batch_at(&self, now_ns: i64, flush_all: bool, flush_hours: bool) -> Option<Batch> {
        let mut closed = Vec::new();
        let mut hour_parts = Vec::new();
        let mut open_from_seq = u64::MAX;
        // A flush of everything (shutdown, tests) may pass a time far ahead: no sweep then.
        if now_ns != i64::MIN && !flush_all {
            self.sweep_idle_series(now_ns);
        }
        let rollups = self
            .rollups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (chunk_maps, histogram_maps, tables, series, points, seqs) = {
            let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            let points = self.buffered_points.swap(0, Ordering::Relaxed);
            let series = mem::take(&mut *lock(&self.series));
            let seqs = lock(&self.seqs).take();
            let (chunk_maps, histogram_maps): (Vec<ChunkMap>, Vec<HistogramChunkMap>) = self
                .shards
                .iter()
                .map(|s| {
                    let mut shard = lock(s);
                    closed.extend(shard.windows.take_closed(now_ns, &rollups, flush_all));
                    hour_parts.extend(shard.windows.take_hour_parts());
                    open_from_seq = open_from_seq.min(shard.windows.min_seq());
                    (
                        mem::take(&mut shard.chunks),
                        mem::take(&mut shard.histograms),
                    )
                })
                .unzip();
            let tables: [RowBuffer; ROW_TABLES] =
                std::array::from_fn(|t| mem::take(&mut *lock(&self.tables[t])));
            (chunk_maps, histogram_maps, tables, series, points, seqs)
        };
        let mut rollups_copy = Vec::new();
        let mut days: Vec<i64> = closed.iter().map(|(k, _)| utc_day(k.start_ns)).collect();
        let tenants = self.tenants.slots();
        let window_rows = rollup_rows::encode(
            &mut rollups_copy,
            &mut closed,
            Resolution::Window(&rollups),
            &tenants,
        );
        // Encoded (and their digests compressed): the windows now move into their hours.
        let mut hours = {
            let mut open_hours = lock(&self.hours);
            closed
                .into_iter()
                .chain(hour_parts)
                .for_each(|(key, agg)| open_hours.absorb(key, agg));
            let hours = open_hours.take_closed(now_ns, &rollups, flush_hours);
            open_from_seq = open_from_seq.min(open_hours.min_seq());
            hours
        };
        if points == 0
            && series.ids.is_empty()
            && window_rows == 0
            && hours.is_empty()
            && seqs.is_empty()
            && !flush_hours
        {
            return None;
        }
        days.extend(hours.iter().map(|(k, _)| utc_day(k.start_ns)));
        let mut batch = Batch {
            points,
            seqs,
            open_from_seq,
            new_series_ids: series.ids,
            window_rollup_rows: window_rows,
            ..Batch::default()
        };
        batch.hour_rollup_rows =
            rollup_rows::encode(&mut rollups_copy, &mut hours, Resolution::Hour, &tenants);
        rollup_rows::finish(&mut rollups_copy);
        batch.rollups_copy = rollups_copy;
        batch.series_copy = series.rows.finish();
        let (chunk_copy, chunk_rows) = encode_chunks(chunk_maps, &mut days);
        batch.point_chunks_copy = chunk_copy;
        batch.chunk_rows = chunk_rows;
        let (histogram_copy, histogram_rows) = encode_histogram_chunks(histogram_maps, &mut days);
        batch.histogram_chunks_copy = histogram_copy;
        batch.histogram_chunk_rows = histogram_rows;
        let [exp_histogram, summary] = tables;
        batch.exp_histogram_rows = exp_histogram.rows;
        batch.summary_rows = summary.rows;
        for table in [&exp_histogram, &summary] {
            days.extend_from_slice(&table.days);
        }
        batch.exp_histogram_points_copy = exp_histogram.finish();
        batch.summary_points_copy = summary.finish();
        days.sort_unstable();
        days.dedup();
        batch.days = days;
        Some(batch)
    }

    /// Forgets the series first seen in a batch whose write failed, so that the next point of
    /// each is `New` again and its `series` row is sent again.
    pub fn forget_series(&self, ids: &[u64]) {
        for &id in ids {
            lock(&self.shards[shard_of(id)]).registry.forget(id);
        }
    }

    /// Series PostgreSQL holds under ids this process gave other series, as `(id, stored
    /// fingerprint)`: later points of this process's series with those ids are rejected as
    /// collisions.
    pub fn adopt_stored_series(&self, stored: &[(u64, u64)]) {
        for &(id, fingerprint) in stored {
            lock(&self.shards[shard_of(id)])
                .registry
                .adopt_stored(id, fingerprint);
        }
    }

    /// Windows and hours open (not yet written as rollup rows).
    pub fn open_windows(&self) -> usize {
        let windows: usize = self.shards.iter().map(|s| lock(s).windows.len()).sum();
        windows + lock(&self.hours).len()
    }

    /// The start of the oldest window not yet taken by a flush (`None` when none is open):
    /// how far the flushes lag behind closing windows. Open hours are not windows and are
    /// left out.
    pub fn oldest_open_window_start_ns(&self) -> Option<i64> {
        self.shards
            .iter()
            .filter_map(|s| lock(s).windows.oldest_open_start_ns())
            .min()
    }

    /// Points buffered since the last `take_batch`.
    pub fn buffered_points(&self) -> u64 {
        self.buffered_points.load(Ordering::Relaxed)
    }

    /// Series this process has written (or is about to write).
    pub fn known_series(&self) -> usize {
        self.shards.iter().map(|s| lock(s).registry.len()).sum()
    }

    /// Distinct series ids that collided with another series.
    pub fn series_collisions(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).registry.collisions())
            .sum()
    }

    /// Records a fake known series, so that tests can force a collision.
    #[cfg(test)]
    pub(crate) fn inject_known_series(&self, id: u64, fingerprint: u64) {
        lock(&self.shards[shard_of(id)])
            .registry
            .insert(id, fingerprint);
    }
}

/// One `point_chunks` row per (series, day), sorted by (series id as stored, day) so that
/// the btree on (series_id, start_time) is filled in order.
fn encode_chunks(maps: Vec<ChunkMap>, days: &mut Vec<i64>) -> (Vec<u8>, u64) {
    let mut chunks: Vec<((u64, i64), ChunkBuf)> = maps.into_iter().flatten().collect();
    if chunks.is_empty() {
        return (Vec::new(), 0);
    }
    chunks.sort_unstable_by_key(|((id, day), _)| (*id as i64, *day));
    let points: usize = chunks.iter().map(|(_, c)| c.times.len()).sum();
    let mut buf = Vec::with_capacity(64 + chunks.len() * 64 + points * 40);
    write_header(&mut buf);
    for ((id, day), chunk) in &chunks {
        rows::chunk_row(&mut buf, *id, chunk);
        if days.last() != Some(day) {
            days.push(*day);
        }
    }
    write_trailer(&mut buf);
    (buf, chunks.len() as u64)
}

/// One `histogram_chunks` row per (series, day, bucket layout), sorted like `point_chunks`
/// rows, then by layout so that the output does not depend on hash-map order.
fn encode_histogram_chunks(maps: Vec<HistogramChunkMap>, days: &mut Vec<i64>) -> (Vec<u8>, u64) {
    let mut chunks: Vec<(u64, i64, HistogramChunk)> = maps
        .into_iter()
        .flatten()
        .flat_map(|((id, day, _), layouts)| layouts.into_iter().map(move |c| (id, day, c)))
        .collect();
    if chunks.is_empty() {
        return (Vec::new(), 0);
    }
    chunks.sort_unstable_by(|(ia, da, a), (ib, db, b)| {
        (*ia as i64, *da)
            .cmp(&(*ib as i64, *db))
            .then_with(|| a.buckets_per_point.cmp(&b.buckets_per_point))
            .then_with(|| total_cmp_slices(&a.bounds, &b.bounds))
    });
    let size: usize = chunks
        .iter()
        .map(|(_, _, c)| 128 + c.times.len() * 80 + (c.bounds.len() + c.bucket_counts.len()) * 12)
        .sum();
    let mut buf = Vec::with_capacity(64 + size);
    write_header(&mut buf);
    for (id, day, chunk) in &chunks {
        rows::histogram_chunk_row(&mut buf, *id, chunk);
        days.push(*day);
    }
    write_trailer(&mut buf);
    (buf, chunks.len() as u64)
}

fn total_cmp_slices(a: &[f64], b: &[f64]) -> std::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.total_cmp(y))
        .find(|o| o.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}
