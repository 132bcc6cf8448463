//! Tenants: the interned table of tenant names (a series keeps a small index into it, not a
//! string), each tenant's count of active series, and the per-tenant active-series limits.
//!
//! A series is *active* while it has received an accepted point within the last hour of
//! arrival time (`now_ns` of the ingest). The count of a tenant goes up when one of its series
//! becomes active and down when a sweep (at most once a minute) finds it idle for longer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::windows::NS_PER_SECOND;

/// The tenant of requests that name none, and of rows stored before tenants existed.
pub const DEFAULT_TENANT: &str = "default";
/// A series with no accepted point for this long is no longer active.
pub const ACTIVE_FOR_NS: i64 = 3_600 * NS_PER_SECOND;
/// Idle series are looked for at most this often.
pub const SWEEP_EVERY_NS: i64 = 60 * NS_PER_SECOND;

/// Index of a tenant in [`Tenants`] (the default tenant is 0).
pub type TenantIndex = u32;

/// One tenant: its name and how many of its series are active.
#[derive(Debug)]
pub struct TenantSlot {
    pub name: Box<str>,
    pub active: AtomicU64,
}

#[derive(Default)]
struct TenantTable {
    by_name: HashMap<Box<str>, TenantIndex>,
    slots: Vec<Arc<TenantSlot>>,
}

/// Every tenant this process has seen, by index; indexes are never reused.
pub struct Tenants {
    table: RwLock<TenantTable>,
}

impl Default for Tenants {
    fn default() -> Self {
        let tenants = Tenants {
            table: RwLock::default(),
        };
        tenants.intern(DEFAULT_TENANT);
        tenants
    }
}

impl Tenants {
    /// The index and slot of `name`, added when new.
    pub fn intern(&self, name: &str) -> (TenantIndex, Arc<TenantSlot>) {
        {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(&i) = table.by_name.get(name) {
                return (i, Arc::clone(&table.slots[i as usize]));
            }
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(&i) = table.by_name.get(name) {
            return (i, Arc::clone(&table.slots[i as usize]));
        }
        let i = TenantIndex::try_from(table.slots.len()).expect("more than 2^32 tenants");
        let slot = Arc::new(TenantSlot {
            name: name.into(),
            active: AtomicU64::new(0),
        });
        table.by_name.insert(name.into(), i);
        table.slots.push(Arc::clone(&slot));
        (i, slot)
    }

    /// The name of tenant `index`.
    pub fn name(&self, index: TenantIndex) -> Box<str> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.slots[index as usize].name.clone()
    }

    /// Every tenant, by index.
    pub fn slots(&self) -> Vec<Arc<TenantSlot>> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.slots.clone()
    }

    /// The active series of `name` (0 for a tenant never seen).
    pub fn active(&self, name: &str) -> u64 {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.by_name.get(name).map_or(0, |&i| {
            table.slots[i as usize].active.load(Ordering::Relaxed)
        })
    }
}

/// Per-tenant active-series limits: a tenant's own entry, else the default, else none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesLimits {
    pub by_tenant: HashMap<String, u64>,
    pub default: Option<u64>,
}

impl SeriesLimits {
    /// The limit of `tenant` (`None`: unlimited).
    pub fn of(&self, tenant: &str) -> Option<u64> {
        self.by_tenant.get(tenant).copied().or(self.default)
    }
}

/// Room for new active series of one tenant during one request. In a dry run (`check`)
/// nothing is counted: what would be taken is tallied locally.
pub struct SeriesBudget<'a> {
    pub slot: &'a TenantSlot,
    pub limit: Option<u64>,
    /// A replayed request was acknowledged already: the limit never refuses it.
    pub replay: bool,
    pub dry_run: bool,
    taken_dry: u64,
}

impl<'a> SeriesBudget<'a> {
    /// A budget for one request of the tenant of `slot`.
    pub fn new(slot: &'a TenantSlot, limit: Option<u64>, replay: bool, dry_run: bool) -> Self {
        SeriesBudget {
            slot,
            limit,
            replay,
            dry_run,
            taken_dry: 0,
        }
    }

    /// Takes room for one more active series; false when the tenant is at its limit.
    pub fn take(&mut self) -> bool {
        let limit = if self.replay { None } else { self.limit };
        if self.dry_run {
            let active = self.slot.active.load(Ordering::Relaxed) + self.taken_dry;
            let room = limit.is_none_or(|l| active < l);
            self.taken_dry += u64::from(room);
            return room;
        }
        match limit {
            None => {
                self.slot.active.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(l) => self
                .slot
                .active
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    (c < l).then_some(c + 1)
                })
                .is_ok(),
        }
    }
}
