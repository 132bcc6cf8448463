//! What `MetricsCore` lets a live configuration change without a restart: the per-tenant
//! active-series limits and the length of new windows; and the active-series counts.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use crate::ingest::{lock, MetricsCore};
use crate::tenants::{SeriesLimits, ACTIVE_FOR_NS, SWEEP_EVERY_NS};

impl MetricsCore {
    /// Replaces the active-series limits: a tenant's own entry, else `default`, else none.
    /// Series already active stay active; a lower limit only refuses further series.
    pub fn set_series_limits(&self, limits: SeriesLimits) {
        *self
            .series_limits
            .write()
            .unwrap_or_else(PoisonError::into_inner) = limits;
    }

    /// The active-series limit of `tenant` (`None`: unlimited).
    pub fn series_limit(&self, tenant: &str) -> Option<u64> {
        self.series_limits
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .of(tenant)
    }

    /// Series of `tenant` with an accepted point within the last hour (idle ones leave the
    /// count at the next sweep, at most a minute late).
    pub fn active_series(&self, tenant: &str) -> u64 {
        self.tenants.active(tenant)
    }

    /// [`active_series`](Self::active_series) of every tenant this process has seen.
    pub fn active_series_by_tenant(&self) -> HashMap<String, u64> {
        self.tenants
            .slots()
            .iter()
            .map(|t| (t.name.to_string(), t.active.load(Ordering::Relaxed)))
            .collect()
    }

    /// Notes a request arriving at `now_ns`, and sweeps idle series out of the active counts
    /// when the last sweep is a minute old.
    pub(crate) fn note_arrival(&self, now_ns: i64) {
        self.latest_now_ns.fetch_max(now_ns, Ordering::Relaxed);
        self.sweep_idle_series(now_ns);
    }

    /// Ends the activity of series idle for an hour at `now_ns`, at most once a minute: one
    /// pass over the registries, a few milliseconds per million series.
    pub fn sweep_idle_series(&self, now_ns: i64) {
        let last = self.last_sweep_ns.load(Ordering::Relaxed);
        if now_ns < last.saturating_add(SWEEP_EVERY_NS)
            || self
                .last_sweep_ns
                .compare_exchange(last, now_ns, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let tenants = self.tenants.slots();
        let cutoff = now_ns.saturating_sub(ACTIVE_FOR_NS);
        for shard in &self.shards {
            lock(shard).registry.sweep(cutoff, |t| {
                if let Some(slot) = tenants.get(t as usize) {
                    slot.active.fetch_sub(1, Ordering::Relaxed);
                }
            });
        }
    }

    /// The length of the windows that begin from now on.
    pub fn window_ns(&self) -> i64 {
        self.rollups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .current_window_ns()
    }

    /// Windows that begin at or after the returned effective time have length `window_ns`
    /// (which must divide an hour): the first multiple of both lengths at or after the end
    /// of every window open now and of the window of the latest arrival. `None` (nothing
    /// changes) when the length already is `window_ns`.
    pub fn set_window_ns(&self, window_ns: i64) -> Option<i64> {
        // Every window update holds the read lock: none is under way while this holds it.
        let mut rollups = self.rollups.write().unwrap_or_else(PoisonError::into_inner);
        let newest_start = self
            .shards
            .iter()
            .filter_map(|s| lock(s).windows.newest_open_start_ns())
            .max();
        let latest_now = self.latest_now_ns.load(Ordering::Relaxed);
        let open_until = newest_start
            .into_iter()
            .chain((latest_now != i64::MIN).then(|| rollups.window_start(latest_now)))
            .map(|start| rollups.window_end(start))
            .max()
            .unwrap_or(i64::MIN);
        rollups.change_window(window_ns, open_until)
    }
}
