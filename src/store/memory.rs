//! [`MemoryStore`]: counters in this process, sharded behind `parking_lot` mutexes.

use super::window::{bucket_width_nanos, SlidingWindow};
use super::{Admission, CounterKey, CounterStore, LimitRequest, StoreError};
use crate::clock::Timestamp;
use crate::inline_vec::InlineVec;
use crate::policy::Counter;
use parking_lot::{Mutex, MutexGuard};
use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::time::Duration;

const SHARDS: usize = 64;
/// Sweeps happen no more often than every this many operations on a shard.
const MIN_SWEEP_INTERVAL: usize = 256;
/// Limits per call handled without allocating.
const INLINE_LIMITS: usize = 8;

/// Counters kept in this process: the default store.
///
/// Keys are spread over 64 shards, each a `parking_lot` mutex on its own cache line, so
/// calls on different keys rarely contend; a call locks only the shards of its own
/// limits, in a fixed order, and checks-and-records all of them under those locks.
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
    hasher: RandomState,
}

/// Keeps each shard's lock on its own cache line, so threads on different shards do not
/// slow each other down.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Debug, Default)]
struct Shard {
    windows: HashMap<OwnedKey, SlidingWindow, BuildHasherDefault<PrehashedHasher>>,
    ops_since_sweep: usize,
    sweep_interval: usize,
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
            hasher: RandomState::new(),
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
            .hash_one((key.counter.fingerprint(), key.scope_id))
    }

    fn shard_index(hash: u64) -> usize {
        // The hash table uses the low and top bits; shards take bits from the middle.
        (hash >> 32) as usize % SHARDS
    }

    fn run(&self, now: Timestamp, requests: &[LimitRequest<'_>], commit: bool) -> Admission {
        if let [request] = requests {
            return self.run_one(now, request, commit);
        }
        let mut hashes = InlineVec::<u64, INLINE_LIMITS>::new(0);
        let mut shard_ids = InlineVec::<usize, INLINE_LIMITS>::new(0);
        for request in requests {
            let hash = self.hash(&request.key);
            hashes.push(hash);
            shard_ids.push(Self::shard_index(hash));
        }
        // Lock each shard once, in ascending order, so concurrent calls cannot deadlock.
        let shard_ids = sorted_unique(shard_ids.as_mut_slice());
        let mut locks = Locks::default();
        for &id in shard_ids.iter() {
            if let Some(shard) = self.shards.get(id) {
                locks.push(shard.0.lock());
            }
        }

        let mut refused: Option<(usize, Duration)> = None;
        let mut recorded = InlineVec::<bool, INLINE_LIMITS>::new(false);
        for (i, (request, &hash)) in requests.iter().zip(hashes.as_slice()).enumerate() {
            let key = Prehashed {
                hash,
                key: request.key,
            };
            let bucket = now.as_nanos() / bucket_width(request);
            let Some(shard) = locks.for_hash(shard_ids, hash) else {
                recorded.push(false);
                continue;
            };
            let admitted = shard.with_window(&key, bucket, commit, |window| {
                take_room(window, now, request, true)
            });
            recorded.push(admitted.is_ok());
            if let Err(wait) = admitted {
                if refused.map_or(true, |(_, longest)| wait > longest) {
                    refused = Some((i, wait));
                }
            }
        }

        if refused.is_some() || !commit {
            // Undo the tentative records: a refused call, or a peek, leaves no trace.
            for ((request, &hash), &was_recorded) in requests
                .iter()
                .zip(hashes.as_slice())
                .zip(recorded.as_slice())
            {
                if !was_recorded {
                    continue;
                }
                let key = Prehashed {
                    hash,
                    key: request.key,
                };
                let shard = locks.for_hash(shard_ids, hash);
                if let Some(window) = shard.and_then(|s| s.windows.get_mut(&key as &dyn KeyView)) {
                    let head = window.head();
                    window.release(head, request.cost);
                }
            }
        }
        if commit {
            locks.for_each(|shard| shard.note_operation(now));
        }
        match refused {
            Some((limit, retry_after)) => Admission::Refused { limit, retry_after },
            None => Admission::Admitted { at: now },
        }
    }
}

impl MemoryStore {
    /// The common case of a call with one limit: one shard, no bookkeeping for undo.
    fn run_one(&self, now: Timestamp, request: &LimitRequest<'_>, commit: bool) -> Admission {
        let hash = self.hash(&request.key);
        let key = Prehashed {
            hash,
            key: request.key,
        };
        let Some(shard) = self.shards.get(Self::shard_index(hash)) else {
            return Admission::Admitted { at: now };
        };
        let bucket = now.as_nanos() / bucket_width(request);
        let mut shard = shard.0.lock();
        let admitted = shard.with_window(&key, bucket, commit, |window| {
            take_room(window, now, request, commit)
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

fn bucket_width(request: &LimitRequest<'_>) -> u64 {
    bucket_width_nanos(request.key.counter.window_secs()).max(1)
}

/// Moves `window` to `now` and, if `request` fits, records it (when `record`); otherwise
/// says how long until it fits.
fn take_room(
    window: &mut SlidingWindow,
    now: Timestamp,
    request: &LimitRequest<'_>,
    record: bool,
) -> Result<(), Duration> {
    let width = bucket_width(request);
    window.advance(now.as_nanos() / width);
    if window.has_room(request.cost, request.max) {
        if record {
            window.record(request.cost);
        }
        Ok(())
    } else {
        Err(window
            .retry_after(now.as_nanos(), width, request.cost, request.max)
            .unwrap_or(Duration::MAX))
    }
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
        let width = bucket_width_nanos(key.counter.window_secs()).max(1);
        if let Some(shard) = self.shards.get(Self::shard_index(hash)) {
            let mut shard = shard.0.lock();
            if let Some(window) = shard
                .windows
                .get_mut(&Prehashed { hash, key } as &dyn KeyView)
            {
                window.advance(now.as_nanos() / width);
                window.release(recorded_at.as_nanos() / width, cost);
            }
        }
        Ok(())
    }
}

impl Shard {
    /// Runs `f` on the window for `key`, creating it if missing when `create`; otherwise
    /// a missing key gets a fresh window that is not kept.
    fn with_window<R>(
        &mut self,
        key: &Prehashed<'_>,
        bucket: u64,
        create: bool,
        f: impl FnOnce(&mut SlidingWindow) -> R,
    ) -> R {
        if let Some(window) = self.windows.get_mut(key as &dyn KeyView) {
            return f(window);
        }
        if !create {
            return f(&mut SlidingWindow::new(bucket));
        }
        let owned = OwnedKey {
            hash: key.hash,
            counter: key.key.counter.clone(),
            scope_id: key.key.scope_id.into(),
        };
        f(self
            .windows
            .entry(owned)
            .or_insert_with(|| SlidingWindow::new(bucket)))
    }

    fn note_operation(&mut self, now: Timestamp) {
        self.ops_since_sweep += 1;
        if self.ops_since_sweep >= self.sweep_interval.max(MIN_SWEEP_INTERVAL) {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: Timestamp) {
        self.windows.retain(|key, window| {
            let width = bucket_width_nanos(key.counter.window_secs()).max(1);
            !window.is_idle_at(now.as_nanos() / width)
        });
        // Give back the memory of a table that emptied (a burst of sessions expired):
        // keep room for twice what is left, so a steady load does not rehash each sweep.
        let len = self.windows.len();
        if self.windows.capacity() > 4 * len.max(8) {
            self.windows.shrink_to(2 * len);
        }
        self.ops_since_sweep = 0;
        self.sweep_interval = len;
    }
}

/// The shard guards one call holds, in ascending shard order.
#[derive(Default)]
struct Locks<'s> {
    inline: [Option<MutexGuard<'s, Shard>>; INLINE_LIMITS],
    len: usize,
    heap: Vec<MutexGuard<'s, Shard>>,
}

impl<'s> Locks<'s> {
    fn push(&mut self, guard: MutexGuard<'s, Shard>) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = Some(guard),
            None => self.heap.push(guard),
        }
        self.len += 1;
    }

    /// The locked shard holding keys with this hash; `shard_ids` are the locked shards'
    /// indexes, in the order they were locked.
    fn for_hash(&mut self, shard_ids: &[usize], hash: u64) -> Option<&mut Shard> {
        let pos = shard_ids
            .binary_search(&MemoryStore::shard_index(hash))
            .ok()?;
        self.get_mut(pos)
    }

    fn get_mut(&mut self, pos: usize) -> Option<&mut Shard> {
        match self.inline.get_mut(pos) {
            Some(slot) => slot.as_deref_mut(),
            None => self.heap.get_mut(pos - INLINE_LIMITS).map(|g| &mut **g),
        }
    }

    fn for_each(&mut self, mut f: impl FnMut(&mut Shard)) {
        self.inline.iter_mut().flatten().for_each(|g| f(g));
        self.heap.iter_mut().for_each(|g| f(g));
    }
}

fn sorted_unique(ids: &mut [usize]) -> &[usize] {
    ids.sort_unstable();
    let mut kept = 0;
    for i in 0..ids.len() {
        let id = ids.get(i).copied().unwrap_or_default();
        if kept == 0 || ids.get(kept - 1) != Some(&id) {
            if let Some(slot) = ids.get_mut(kept) {
                *slot = id;
            }
            kept += 1;
        }
    }
    ids.get(..kept).unwrap_or_default()
}

/// A stored key: the counter, the scope id, and their hash (computed once).
#[derive(Debug)]
struct OwnedKey {
    hash: u64,
    counter: Counter,
    scope_id: Box<str>,
}

/// A borrowed key with its hash, for lookups that allocate nothing.
struct Prehashed<'a> {
    hash: u64,
    key: CounterKey<'a>,
}

/// What lookups compare: lets the table find an `OwnedKey` from a borrowed `Prehashed`.
trait KeyView {
    fn hash_value(&self) -> u64;
    fn counter(&self) -> &Counter;
    fn scope_id(&self) -> &str;
}

impl KeyView for OwnedKey {
    fn hash_value(&self) -> u64 {
        self.hash
    }
    fn counter(&self) -> &Counter {
        &self.counter
    }
    fn scope_id(&self) -> &str {
        &self.scope_id
    }
}

impl KeyView for Prehashed<'_> {
    fn hash_value(&self) -> u64 {
        self.hash
    }
    fn counter(&self) -> &Counter {
        self.key.counter
    }
    fn scope_id(&self) -> &str {
        self.key.scope_id
    }
}

impl<'a> Borrow<dyn KeyView + 'a> for OwnedKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash_value());
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.hash_value() == other.hash_value()
            && self.scope_id() == other.scope_id()
            && self.counter() == other.counter()
    }
}

impl Eq for dyn KeyView + '_ {}

impl Hash for OwnedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn KeyView).hash(state);
    }
}

impl PartialEq for OwnedKey {
    fn eq(&self, other: &Self) -> bool {
        (self as &dyn KeyView) == (other as &dyn KeyView)
    }
}

impl Eq for OwnedKey {}

/// Passes a precomputed 64-bit hash through unchanged.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in so the hasher stays correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
