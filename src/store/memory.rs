//! [`MemoryStore`]: counters in this process, sharded behind `parking_lot` mutexes.

use super::window::SlidingWindow;
use super::{Admission, CounterKey, CounterStore, LimitRequest, OwnedKeyValue, StoreError};
use crate::clock::Timestamp;
use crate::policy::Counter;
use crate::short_eq::same;
use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;
use std::hash::BuildHasher;
use std::time::Duration;

/// A power of two well above the thread counts the engine targets, so that threads on
/// distinct keys rarely meet on a shard (16 threads: about one pair in a run).
const SHARDS: usize = 128;
/// Sweeps happen no more often than every this many operations on a shard.
const MIN_SWEEP_INTERVAL: usize = 256;
/// Limits per call handled without allocating.
const INLINE_LIMITS: usize = 8;
/// Failed `try_lock`s spent spinning, then yielding the core, before a call parks on a busy
/// shard. Critical sections are tens of nanoseconds, so spinning briefly beats parking:
/// under contention on one hot key (a `global` limit), parking and waking threads through
/// the kernel costs microseconds per call and throughput collapses (to 0.14× one thread
/// at 16 threads, measured). Yielding keeps spinners from starving a lock holder that
/// was preempted when there are more threads than cores.
const SPINS: u32 = 32;
const YIELDS: u32 = 32;

/// Counters kept in this process: the default store.
///
/// Keys are spread over 128 shards, each a `parking_lot` mutex on its own cache line, so
/// calls on different keys rarely contend; a call locks only the shards of its own
/// limits, in a fixed order, and checks-and-records all of them under those locks. A
/// busy shard is retried with exponential backoff before the call parks on it. Keys are
/// hashed with `foldhash`, seeded per store, since callers choose the scope ids.
///
/// There is no background thread. A shard forgets keys whose window has passed while it
/// is used: after as many operations as it held keys at its last sweep, it drops every
/// idle key, which costs O(1) amortized per operation. [`reclaim_expired`] sweeps every
/// shard at once, for a gateway that wants memory back after a quiet period.
///
/// Memory: each live (counter, scope id) key costs about 300 bytes with a 14-byte scope id
/// (measured in `tests/allocations.rs`): a 17-bucket window (152 bytes), the key with its
/// own copy of the scope id, and the hash table's slack.
///
/// [`reclaim_expired`]: MemoryStore::reclaim_expired
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Padded<Mutex<Shard>>]>,
    hasher: foldhash::fast::RandomState,
}

/// Keeps each shard's lock on its own cache line, so threads on different shards do not
/// slow each other down.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Debug, Default)]
struct Shard {
    windows: HashTable<Entry>,
    ops_since_sweep: usize,
    sweep_interval: usize,
}

/// One key's window, with the key and its hash (computed once per call, kept for rehashing).
///
/// `repr(C, align(64))`: the window's hot fields start the entry, on a cache line of their
/// own, so a call on a hot key moves the fewest lines between cores.
#[derive(Debug)]
#[repr(C, align(64))]
struct Entry {
    window: SlidingWindow,
    hash: u64,
    counter: Counter,
    scope_id: Box<str>,
    value: Option<OwnedKeyValue>,
}

impl Entry {
    fn is(&self, hash: u64, key: &CounterKey<'_>) -> bool {
        self.hash == hash
            && same(self.scope_id.as_bytes(), key.scope_id.as_bytes())
            && self.value.as_ref().map(OwnedKeyValue::borrow) == key.value
            && self.counter == *key.counter
    }
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The number of keys held, live or not yet reclaimed.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().windows.len()).sum()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key with nothing left in its window at `now`.
    pub fn reclaim_expired(&self, now: Timestamp) {
        for shard in self.shards.iter() {
            shard.0.lock().sweep(now);
        }
    }

    fn hash(&self, key: &CounterKey<'_>) -> u64 {
        self.hasher
            .hash_one((key.counter.fingerprint(), key.scope_id, key.value))
    }

    fn shard_index(hash: u64) -> usize {
        // The hash table uses the low and top bits; shards take bits from the middle.
        (hash >> 32) as usize % SHARDS
    }

    fn lock(&self, index: usize) -> Option<MutexGuard<'_, Shard>> {
        let shard = &self.shards.get(index)?.0;
        for attempt in 0..SPINS + YIELDS {
            if let Some(guard) = shard.try_lock() {
                return Some(guard);
            }
            if attempt < SPINS {
                // Wait on a read of the lock (a shared copy of its cache line) until it
                // looks free, backing off exponentially, before trying to take it again.
                let mut pause = 1u32 << attempt.min(6);
                while shard.is_locked() && pause > 0 {
                    std::hint::spin_loop();
                    pause -= 1;
                }
            } else {
                std::thread::yield_now();
            }
        }
        Some(shard.lock())
    }

    fn run(&self, now: Timestamp, requests: &[LimitRequest<'_>], commit: bool) -> Admission {
        if let [request] = requests {
            return self.run_one(now, request, commit);
        }
        let hashes: SmallVec<[u64; INLINE_LIMITS]> =
            requests.iter().map(|r| self.hash(&r.key)).collect();
        // Lock each shard once, in ascending order, so concurrent calls cannot deadlock.
        let mut shard_ids: SmallVec<[usize; INLINE_LIMITS]> =
            hashes.iter().map(|&h| Self::shard_index(h)).collect();
        shard_ids.sort_unstable();
        shard_ids.dedup();
        let mut locks: SmallVec<[MutexGuard<'_, Shard>; INLINE_LIMITS]> = SmallVec::new();
        for &id in &shard_ids {
            locks.extend(self.lock(id));
        }
        if locks.len() != shard_ids.len() {
            // Unreachable: every index is below `SHARDS`. Refuse, never admit.
            return Admission::Refused {
                limit: 0,
                retry_after: Duration::MAX,
            };
        }

        let mut refused: Option<(usize, Duration)> = None;
        let mut recorded: SmallVec<[bool; INLINE_LIMITS]> = SmallVec::new();
        for (i, (request, &hash)) in requests.iter().zip(&hashes).enumerate() {
            let admitted = match locked(&mut locks, &shard_ids, hash) {
                Some(shard) => shard.with_window(hash, &request.key, now, commit, |window| {
                    admit(window, now, request, true)
                }),
                // Unreachable: every request's shard was locked above. Refuse, never admit.
                None => Err(Duration::MAX),
            };
            recorded.push(admitted.is_ok());
            if let Err(wait) = admitted {
                if refused.map_or(true, |(_, longest)| wait > longest) {
                    refused = Some((i, wait));
                }
            }
        }

        if refused.is_some() || !commit {
            // Undo the tentative records: a refused call, or a peek, leaves no trace.
            for ((request, &hash), _) in requests
                .iter()
                .zip(&hashes)
                .zip(&recorded)
                .filter(|(_, &was_recorded)| was_recorded)
            {
                let entry = locked(&mut locks, &shard_ids, hash)
                    .and_then(|shard| shard.windows.find_mut(hash, |e| e.is(hash, &request.key)));
                if let Some(entry) = entry {
                    entry.window.unrecord(request.cost);
                }
            }
        }
        if commit {
            locks.iter_mut().for_each(|shard| shard.note_operation(now));
        }
        match refused {
            Some((limit, retry_after)) => Admission::Refused { limit, retry_after },
            None => Admission::Admitted { at: now },
        }
    }

    /// The common case of a call with one limit: one shard, no bookkeeping for undo.
    fn run_one(&self, now: Timestamp, request: &LimitRequest<'_>, commit: bool) -> Admission {
        let hash = self.hash(&request.key);
        let Some(mut shard) = self.lock(Self::shard_index(hash)) else {
            // Unreachable: the index is below `SHARDS`. Refuse, never admit.
            return Admission::Refused {
                limit: 0,
                retry_after: Duration::MAX,
            };
        };
        let admitted = shard.with_window(hash, &request.key, now, commit, |window| {
            admit(window, now, request, commit)
        });
        if commit {
            shard.note_operation(now);
        }
        match admitted {
            Ok(()) => Admission::Admitted { at: now },
            Err(retry_after) => Admission::Refused {
                limit: 0,
                retry_after,
            },
        }
    }
}

fn admit(
    window: &mut SlidingWindow,
    now: Timestamp,
    request: &LimitRequest<'_>,
    record: bool,
) -> Result<(), Duration> {
    window.admit(now, request.key.counter, request.cost, request.max, record)
}

impl CounterStore for MemoryStore {
    fn acquire(
        &self,
        now: Timestamp,
        requests: &[LimitRequest<'_>],
    ) -> Result<Admission, StoreError> {
        Ok(self.run(now, requests, true))
    }

    fn peek(&self, now: Timestamp, requests: &[LimitRequest<'_>]) -> Result<Admission, StoreError> {
        Ok(self.run(now, requests, false))
    }

    fn release(
        &self,
        now: Timestamp,
        key: CounterKey<'_>,
        recorded_at: Timestamp,
        cost: u64,
    ) -> Result<(), StoreError> {
        let hash = self.hash(&key);
        if let Some(mut shard) = self.lock(Self::shard_index(hash)) {
            if let Some(entry) = shard.windows.find_mut(hash, |e| e.is(hash, &key)) {
                entry.window.give_back(now, key.counter, recorded_at, cost);
            }
        }
        Ok(())
    }
}

/// The locked shard holding keys with this hash; `shard_ids` are the locked shards'
/// indexes, in the order of `locks`.
fn locked<'g>(
    locks: &'g mut [MutexGuard<'_, Shard>],
    shard_ids: &[usize],
    hash: u64,
) -> Option<&'g mut Shard> {
    let position = shard_ids
        .binary_search(&MemoryStore::shard_index(hash))
        .ok()?;
    locks.get_mut(position).map(|guard| &mut **guard)
}

impl Shard {
    /// Runs `f` on the window for `key`, creating it if missing when `create`; otherwise
    /// a missing key gets a fresh window that is not kept.
    fn with_window<R>(
        &mut self,
        hash: u64,
        key: &CounterKey<'_>,
        now: Timestamp,
        create: bool,
        f: impl FnOnce(&mut SlidingWindow) -> R,
    ) -> R {
        if let Some(entry) = self.windows.find_mut(hash, |e| e.is(hash, key)) {
            return f(&mut entry.window);
        }
        if !create {
            return f(&mut SlidingWindow::new(now, key.counter));
        }
        let entry = Entry {
            window: SlidingWindow::new(now, key.counter),
            hash,
            counter: key.counter.clone(),
            scope_id: key.scope_id.into(),
            value: key.value.map(OwnedKeyValue::new),
        };
        f(&mut self
            .windows
            .insert_unique(hash, entry, |e| e.hash)
            .into_mut()
            .window)
    }

    fn note_operation(&mut self, now: Timestamp) {
        self.ops_since_sweep += 1;
        if self.ops_since_sweep >= self.sweep_interval.max(MIN_SWEEP_INTERVAL) {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: Timestamp) {
        self.windows
            .retain(|entry| !entry.window.is_idle(now, &entry.counter));
        // Give back the memory of a table that emptied (a burst of sessions expired):
        // keep room for twice what is left, so a steady load does not rehash each sweep.
        let len = self.windows.len();
        if self.windows.capacity() > 4 * len.max(8) {
            self.windows.shrink_to(2 * len, |e| e.hash);
        }
        self.ops_since_sweep = 0;
        self.sweep_interval = len;
    }
}
