//! What the per-stage benchmarks (`rust/benches/stages.rs`) need beyond the public API, behind
//! the `bench-internals` feature: the extension is never built with it, so its surface does
//! not change.

use crate::ingest::{shard_of, MetricsCore, SHARDS};
use crate::staged::{Limits, StagedRequest};
use crate::windows::{RollupSettings, Windows};

/// A core whose points skip their windows: `ingest` with and without it shows what windowing
/// costs inside the whole call.
pub fn core_without_windows(limits: Limits, rollups: RollupSettings) -> MetricsCore {
    MetricsCore {
        skip_windows: true,
        ..MetricsCore::new(limits, rollups)
    }
}

/// The windowing step alone: open windows split by shard as `MetricsCore` splits them, fed
/// shard by shard in arrival order as `ingest` feeds them, without its locks.
pub struct ShardedWindows {
    shards: Vec<Windows>,
}

impl Default for ShardedWindows {
    fn default() -> Self {
        ShardedWindows {
            shards: (0..SHARDS).map(|_| Windows::default()).collect(),
        }
    }
}

impl ShardedWindows {
    /// Adds every staged point of `staged` (spool record `seq`) to its window.
    pub fn add_request(&mut self, staged: &StagedRequest<'_>, settings: &RollupSettings, seq: u64) {
        let mut runs: Vec<Vec<usize>> = vec![Vec::new(); SHARDS];
        for (i, p) in staged.points.iter().enumerate() {
            runs[shard_of(p.key.id)].push(i);
        }
        for (windows, run) in self.shards.iter_mut().zip(&runs) {
            for &i in run {
                windows.add(staged, i, settings, seq, None);
            }
        }
    }

    /// Open windows over every shard.
    pub fn len(&self) -> usize {
        self.shards.iter().map(Windows::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
