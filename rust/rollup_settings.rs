//! How points are windowed: the window length, which can change while the process runs
//! (`MetricsCore::set_window_seconds`), the lateness and the t-digest compression.
//!
//! A change applies to windows that begin at or after its effective time, a multiple of both
//! the old and the new length at or after the end of every window open when it was made:
//! the windows of the old length tile time up to it and those of the new length from it,
//! so no two windows of one series ever overlap, whatever point arrives late.

use crate::tdigest::{check_compression, DEFAULT_COMPRESSION};

/// Nanoseconds in a second.
pub const NS_PER_SECOND: i64 = 1_000_000_000;
/// The second rollup level: hours, built from closed windows.
pub const HOUR_NS: i64 = 3_600 * NS_PER_SECOND;

/// A window length that applies from `effective_ns` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowChange {
    /// A multiple of both this length and the one before.
    pub effective_ns: i64,
    pub window_ns: i64,
}

/// How points are windowed (the Python `RollupSettings`, plus the live length changes).
#[derive(Clone, Debug)]
pub struct RollupSettings {
    /// Length of the windows that begin before the first change; divides an hour.
    pub window_ns: i64,
    /// How long after its end a window stays open for late points.
    pub lateness_ns: i64,
    /// t-digest compression.
    pub compression: f64,
    /// Later lengths, by increasing effective time.
    pub changes: Vec<WindowChange>,
}

impl Default for RollupSettings {
    fn default() -> Self {
        RollupSettings {
            window_ns: 60 * NS_PER_SECOND,
            lateness_ns: 60 * NS_PER_SECOND,
            compression: DEFAULT_COMPRESSION,
            changes: Vec::new(),
        }
    }
}

impl RollupSettings {
    /// The length of the windows that begin at `time_ns` or hold it.
    pub fn window_ns_at(&self, time_ns: i64) -> i64 {
        self.changes
            .iter()
            .rev()
            .find(|c| c.effective_ns <= time_ns)
            .map_or(self.window_ns, |c| c.window_ns)
    }

    /// The length new windows get: that of the latest change, else the first.
    pub fn current_window_ns(&self) -> i64 {
        self.changes.last().map_or(self.window_ns, |c| c.window_ns)
    }

    /// The start of the window holding `time_ns` (every effective time is a multiple of the
    /// length that starts there, so windows stay aligned to the Unix epoch).
    pub fn window_start(&self, time_ns: i64) -> i64 {
        time_ns - time_ns.rem_euclid(self.window_ns_at(time_ns))
    }

    /// The end of the window that starts at `start_ns`.
    pub fn window_end(&self, start_ns: i64) -> i64 {
        start_ns.saturating_add(self.window_ns_at(start_ns))
    }

    /// Schedules `window_ns` for the windows that begin at or after the first multiple of
    /// both it and the current length that is at or after `open_until_ns` (the end of every
    /// window open now) and the latest change; returns that effective time, or `None` when
    /// the length is already `window_ns`.
    pub fn change_window(&mut self, window_ns: i64, open_until_ns: i64) -> Option<i64> {
        let current = self.current_window_ns();
        if window_ns == current {
            return None;
        }
        let step = lcm(current, window_ns);
        let from = open_until_ns.max(self.changes.last().map_or(i64::MIN, |c| c.effective_ns));
        let effective_ns = from.saturating_add(step - 1).div_euclid(step) * step;
        self.changes.push(WindowChange {
            effective_ns,
            window_ns,
        });
        Some(effective_ns)
    }

    /// Windows starting at or before this have closed by `now_ns`: the latest start whose
    /// window ended `lateness_ns` ago or earlier (window ends grow with their starts).
    pub fn window_horizon(&self, now_ns: i64) -> i64 {
        let until = now_ns.saturating_sub(self.lateness_ns);
        let mut horizon = i64::MIN;
        let bounds = std::iter::once((i64::MIN, self.window_ns))
            .chain(self.changes.iter().map(|c| (c.effective_ns, c.window_ns)));
        let ends = self
            .changes
            .iter()
            .map(|c| c.effective_ns)
            .chain(std::iter::once(i64::MAX));
        for ((from, len), to) in bounds.zip(ends) {
            let latest = until.saturating_sub(len);
            let latest = latest.saturating_sub(latest.rem_euclid(len));
            let latest = latest.min(to.saturating_sub(len));
            if latest >= from {
                horizon = horizon.max(latest);
            }
        }
        horizon
    }

    /// Hours starting at or before this have closed by `now_ns`.
    pub fn hour_horizon(&self, now_ns: i64) -> i64 {
        now_ns
            .saturating_sub(HOUR_NS)
            .saturating_sub(self.lateness_ns)
    }

    /// The compression of new windows' digests (the default when the setting is out of range).
    pub(crate) fn digest_compression(&self) -> f64 {
        match check_compression(self.compression) {
            Ok(()) => self.compression,
            Err(_) => DEFAULT_COMPRESSION,
        }
    }
}

/// Windows starting at or before this have closed by `now_ns`.
pub fn window_horizon(now_ns: i64, settings: &RollupSettings) -> i64 {
    settings.window_horizon(now_ns)
}

/// Hours starting at or before this have closed by `now_ns`.
pub fn hour_horizon(now_ns: i64, settings: &RollupSettings) -> i64 {
    settings.hour_horizon(now_ns)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: i64, b: i64) -> i64 {
    a / gcd(a, b) * b
}
