//! [`MemoryStore`]: counters in this process, a lock per key, found through a small
//! per-thread cache or a sharded table.

use super::window::SlidingWindow;
use super::{Admission, CounterKey, CounterStore, LimitRequest, OwnedKeyValue, StoreError};
use crate::clock::Timestamp;
use crate::policy::Counter;
use crate::short_eq::same;
use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;
use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A power of two well above the thread counts the engine targets, so that threads
/// creating keys rarely meet on a shard.
const SHARDS: usize = 128;
/// Sweeps happen no more often than every this many inserts into a shard.
const MIN_SWEEP_INTERVAL: usize = 256;
/// Limits per call handled without allocating.
const INLINE_LIMITS: usize = 8;
/// Keys each thread remembers (direct-mapped by hash), across stores.
const CACHED_KEYS: usize = 16;
/// Failed `try_lock`s spent spinning, then yielding the core, before a call parks on a busy
/// key. Critical sections are tens of nanoseconds, so spinning briefly beats parking:
/// under contention on one hot key (a `global` limit), parking and waking threads through
/// the kernel costs microseconds per call and throughput collapses (to 0.14× one thread
/// at 16 threads, measured). Yielding keeps spinners from starving a lock holder that
/// was preempted when there are more threads than cores.
const SPINS: u32 = 32;
const YIELDS: u32 = 32;
/// Times a call looks its keys up again after finding one swept meanwhile.
const RETRIES: usize = 8;

/// Counters kept in this process: the default store.
///
/// Each (counter, scope id, key value) key has its own lock beside its counts, on one
/// cache line, so a call on a hot key (a `global` limit that every call charges) moves
/// that one line between cores, and calls on different keys share nothing. A thread finds
/// the keys it used recently in a small cache of its own, without touching any shared
/// memory; other lookups and inserts go through a table of 128 shards. A call with several
/// limits locks its keys in a fixed order and checks-and-records all of them under those
/// locks. A busy key is retried with backoff before the call parks on it. Keys are hashed
/// with `foldhash`, seeded per store, since callers choose the scope ids.
///
/// There is no background thread. A shard forgets keys whose window has passed while
/// keys are created: after as many inserts as it held keys at its last sweep, it drops
/// every idle key, which costs O(1) amortized per insert. [`reclaim_expired`] sweeps every
/// shard at once, for a gateway that wants memory back after a quiet period.
///
/// Memory: each live key costs about 410 bytes with a 14-byte scope id (measured in
/// `tests/allocations.rs`): its lock and 17-bucket window on their own cache lines, the
/// key with its own copy of the scope id, and the table's slack.
///
/// [`reclaim_expired`]: MemoryStore::reclaim_expired
#[derive(Debug)]
pub struct MemoryStore {
    /// Tells this store's keys from other stores' in the per-thread caches.
    id: u64,
    shards: Box<[Padded<Mutex<Shard>>]>,
    hasher: foldhash::fast::RandomState,
}

/// Keeps each shard's lock on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Debug, Default)]
struct Shard {
    slots: HashTable<Arc<Slot>>,
    inserts_since_sweep: usize,
    sweep_interval: usize,
}

/// One key: its lock and counts first, on a cache line of their own, then the key.
#[derive(Debug)]
#[repr(C, align(64))]
struct Slot {
    state: Mutex<SlotState>,
    hash: u64,
    counter: Counter,
    scope_id: Box<str>,
    value: Option<OwnedKeyValue>,
}

#[derive(Debug)]
#[repr(C)]
struct SlotState {
    /// Swept from the table: a call that found it through a cache must look again.
    dead: bool,
    window: SlidingWindow,
}

impl Slot {
    fn is(&self, hash: u64, key: &CounterKey<'_>) -> bool {
        self.hash == hash
            && same(self.scope_id.as_bytes(), key.scope_id.as_bytes())
            && self.value.as_ref().map(OwnedKeyValue::borrow) == key.value
            && self.counter == *key.counter
    }
}

/// A key a thread used recently.
struct Cached {
    store: u64,
    hash: u64,
    slot: Arc<Slot>,
}

impl Cached {
    /// Whether this entry is `key` of store `store`.
    fn is(&self, store: u64, hash: u64, key: &CounterKey<'_>) -> bool {
        self.store == store && self.hash == hash && self.slot.is(hash, key)
    }
}

const EMPTY: Option<Cached> = None;

thread_local! {
    static CACHE: RefCell<[Option<Cached>; CACHED_KEYS]> = const { RefCell::new([EMPTY; CACHED_KEYS]) };
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        MemoryStore {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The number of keys held, live or not yet reclaimed.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().slots.len()).sum()
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
        match key.value {
            None => self
                .hasher
                .hash_one((key.counter.fingerprint(), key.scope_id)),
            Some(value) => self
                .hasher
                .hash_one((key.counter.fingerprint(), key.scope_id, value)),
        }
    }

    fn shard(&self, hash: u64) -> Option<&Mutex<Shard>> {
        // The table uses the low and top bits; shards take bits from the middle.
        self.shards
            .get((hash >> 32) as usize % SHARDS)
            .map(|padded| &padded.0)
    }

    /// The slot of `key` from the table; when missing, a new one if `create`, else `None`.
    fn find(
        &self,
        hash: u64,
        key: &CounterKey<'_>,
        now: Timestamp,
        create: bool,
    ) -> Option<Arc<Slot>> {
        let mut shard = self.shard(hash)?.lock();
        if let Some(slot) = shard.slots.find(hash, |s| s.is(hash, key)) {
            return Some(Arc::clone(slot));
        }
        if !create {
            return None;
        }
        shard.note_insert(now);
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                dead: false,
                window: SlidingWindow::new(now, key.counter),
            }),
            hash,
            counter: key.counter.clone(),
            scope_id: key.scope_id.into(),
            value: key.value.map(OwnedKeyValue::new),
        });
        shard
            .slots
            .insert_unique(hash, Arc::clone(&slot), |s| s.hash);
        Some(slot)
    }

    fn run(&self, now: Timestamp, requests: &[LimitRequest<'_>], commit: bool) -> Admission {
        let first = requests.first().map(|r| self.hash(&r.key));
        if let ([request], Some(hash)) = (requests, first) {
            if let Some(answer) = self.run_one_cached(now, request, hash, commit) {
                return answer;
            }
        }
        let rest = requests.iter().skip(1).map(|r| self.hash(&r.key));
        let hashes: SmallVec<[u64; INLINE_LIMITS]> = first.into_iter().chain(rest).collect();
        // A call creates keys only once it knows it is admitted: a refused call (or a
        // peek) leaves nothing behind, so refused calls with ever new key values cost no
        // memory.
        let mut create = false;
        for _ in 0..RETRIES {
            let answer = CACHE
                .try_with(|cell| match cell.try_borrow_mut() {
                    Ok(mut cache) => {
                        let answer =
                            self.attempt(now, requests, &hashes, commit, create, Some(&mut cache));
                        if answer == Attempt::Swept {
                            // A key was swept: forget the cached ones, look them up again.
                            for &hash in &hashes {
                                if let Some(entry) = cache.get_mut(hash as usize % CACHED_KEYS) {
                                    if entry
                                        .as_ref()
                                        .is_some_and(|c| c.store == self.id && c.hash == hash)
                                    {
                                        *entry = None;
                                    }
                                }
                            }
                        }
                        answer
                    }
                    // Re-entered from a store call (cannot happen with this store): go
                    // around the cache.
                    Err(_) => self.attempt(now, requests, &hashes, commit, create, None),
                })
                // The thread is being torn down: no cache.
                .unwrap_or_else(|_| self.attempt(now, requests, &hashes, commit, create, None));
            match answer {
                Attempt::Done(answer) => return answer,
                Attempt::Create => create = true,
                Attempt::Swept => {}
            }
        }
        // Keys swept under us every time: cannot happen in practice (a key is swept only
        // when idle). Refuse, never admit.
        Admission::Refused {
            limit: 0,
            retry_after: Duration::from_millis(1),
        }
    }

    /// The common case, a call with one limit on a key this thread used recently: no
    /// bookkeeping for undo or lock order. `None` when the key is not in the cache (or was
    /// swept): the general path then handles the call.
    fn run_one_cached(
        &self,
        now: Timestamp,
        request: &LimitRequest<'_>,
        hash: u64,
        commit: bool,
    ) -> Option<Admission> {
        CACHE
            .try_with(|cell| {
                let mut cache = cell.try_borrow_mut().ok()?;
                let entry = cache.get_mut(hash as usize % CACHED_KEYS)?;
                let cached = entry.as_ref()?;
                if !cached.is(self.id, hash, &request.key) {
                    return None;
                }
                let mut state = lock(&cached.slot.state);
                if state.dead {
                    drop(state);
                    *entry = None;
                    return None;
                }
                let admitted =
                    state
                        .window
                        .admit(now, request.key.counter, request.cost, request.max, commit);
                Some(match admitted {
                    Ok(()) => Admission::Admitted { at: now },
                    Err(retry_after) => Admission::Refused {
                        limit: 0,
                        retry_after,
                    },
                })
            })
            .ok()
            .flatten()
    }

    /// One try at `run`. Keys missing from the store are created only when `create`;
    /// without it, a call that would be admitted but lacks a key answers
    /// [`Attempt::Create`] having recorded nothing.
    fn attempt(
        &self,
        now: Timestamp,
        requests: &[LimitRequest<'_>],
        hashes: &[u64],
        commit: bool,
        create: bool,
        mut cache: Option<&mut [Option<Cached>; CACHED_KEYS]>,
    ) -> Attempt {
        // Find every request's slot: in the cache, else in the table (then cached).
        let mut found: SmallVec<[Found; INLINE_LIMITS]> = SmallVec::new();
        let mut owned: SmallVec<[Arc<Slot>; 2]> = SmallVec::new();
        for (request, &hash) in requests.iter().zip(hashes) {
            let index = hash as usize % CACHED_KEYS;
            let cached = cache
                .as_deref()
                .and_then(|c| c.get(index))
                .and_then(Option::as_ref);
            if cached.is_some_and(|c| c.is(self.id, hash, &request.key)) {
                found.push(Found::Cached(index));
                continue;
            }
            let Some(slot) = self.find(hash, &request.key, now, commit && create) else {
                // A key that does not exist yet has all its room.
                found.push(Found::Empty);
                continue;
            };
            let taken = found
                .iter()
                .any(|f| matches!(f, Found::Cached(i) if *i == index));
            match cache.as_deref_mut().and_then(|c| c.get_mut(index)) {
                Some(entry) if !taken => {
                    *entry = Some(Cached {
                        store: self.id,
                        hash,
                        slot,
                    });
                    found.push(Found::Cached(index));
                }
                _ => {
                    owned.push(slot);
                    found.push(Found::Owned(owned.len() - 1));
                }
            }
        }
        let cache = cache.as_deref();
        let slots: SmallVec<[Option<&Slot>; INLINE_LIMITS]> = found
            .iter()
            .map(|f| match *f {
                Found::Cached(i) => cache
                    .and_then(|c| c.get(i))
                    .and_then(Option::as_ref)
                    .map(|c| &*c.slot),
                Found::Owned(i) => owned.get(i).map(|s| &**s),
                Found::Empty => None,
            })
            .collect();

        // Lock each slot once, in address order, so concurrent calls cannot deadlock.
        let mut order: SmallVec<[&Slot; INLINE_LIMITS]> = slots.iter().flatten().copied().collect();
        order.sort_unstable_by_key(|s| *s as *const Slot as usize);
        order.dedup_by_key(|s| *s as *const Slot as usize);
        let mut guards: SmallVec<[MutexGuard<'_, SlotState>; INLINE_LIMITS]> = SmallVec::new();
        for slot in &order {
            let guard = lock(&slot.state);
            if guard.dead {
                // Swept after we found it: forget it and look again.
                drop(guards);
                drop(guard);
                return Attempt::Swept;
            }
            guards.push(guard);
        }
        let position = |slot: &Slot| order.iter().position(|s| std::ptr::eq(*s, slot));

        let mut refused: Option<(usize, Duration)> = None;
        let mut recorded: SmallVec<[bool; INLINE_LIMITS]> = SmallVec::new();
        for (i, (request, slot)) in requests.iter().zip(&slots).enumerate() {
            let admitted = match slot.and_then(&position).and_then(|p| guards.get_mut(p)) {
                Some(state) => state.window.admit(
                    now,
                    request.key.counter,
                    request.cost,
                    request.max,
                    commit || requests.len() > 1,
                ),
                None if slot.is_none() => SlidingWindow::new(now, request.key.counter).admit(
                    now,
                    request.key.counter,
                    request.cost,
                    request.max,
                    false,
                ),
                // Unreachable: every slot found was locked. Refuse, never admit.
                None => Err(Duration::MAX),
            };
            recorded.push(admitted.is_ok() && slot.is_some() && (commit || requests.len() > 1));
            if let Err(wait) = admitted {
                if refused.map_or(true, |(_, longest)| wait > longest) {
                    refused = Some((i, wait));
                }
            }
        }
        let missing = commit && slots.iter().any(Option::is_none);
        if refused.is_some() || !commit || missing {
            // Undo the tentative records: a refused call, a peek, or a call that must
            // first create its keys leaves no trace.
            for ((request, slot), _) in requests
                .iter()
                .zip(&slots)
                .zip(&recorded)
                .filter(|(_, &was_recorded)| was_recorded)
            {
                if let Some(state) = slot.and_then(&position).and_then(|p| guards.get_mut(p)) {
                    state.window.unrecord(request.cost);
                }
            }
        }
        Attempt::Done(match refused {
            Some((limit, retry_after)) => Admission::Refused { limit, retry_after },
            None if missing => return Attempt::Create,
            None => Admission::Admitted { at: now },
        })
    }
}

/// How one try at a call ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Done(Admission),
    /// A key was swept meanwhile: look the keys up again.
    Swept,
    /// Admitted, but a key does not exist yet: try again creating it.
    Create,
}

/// Where a request's slot was found.
#[derive(Clone, Copy)]
enum Found {
    /// In the thread's cache, at this index.
    Cached(usize),
    /// Looked up for this call only (its cache entry was taken by another request).
    Owned(usize),
    /// Not in the store (peeking).
    Empty,
}

fn lock(mutex: &Mutex<SlotState>) -> MutexGuard<'_, SlotState> {
    for attempt in 0..SPINS + YIELDS {
        if let Some(guard) = mutex.try_lock() {
            return guard;
        }
        if attempt < SPINS {
            // Wait on a read of the lock (a shared copy of its cache line) until it looks
            // free, backing off exponentially, before trying to take it again.
            let mut pause = 1u32 << attempt.min(6);
            while mutex.is_locked() && pause > 0 {
                std::hint::spin_loop();
                pause -= 1;
            }
        } else {
            std::thread::yield_now();
        }
    }
    mutex.lock()
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
        // A key swept meanwhile was idle: nothing of it is left to give back.
        if let Some(slot) = self.find(hash, &key, now, false) {
            let mut state = lock(&slot.state);
            if !state.dead {
                state.window.give_back(now, key.counter, recorded_at, cost);
            }
        }
        Ok(())
    }

    fn reclaim_expired(&self, now: Timestamp) {
        MemoryStore::reclaim_expired(self, now);
    }
}

impl Shard {
    fn note_insert(&mut self, now: Timestamp) {
        self.inserts_since_sweep += 1;
        if self.inserts_since_sweep >= self.sweep_interval.max(MIN_SWEEP_INTERVAL) {
            self.sweep(now);
        }
    }

    /// Drops idle keys. A key in use right now is kept (its lock is busy), and one swept is
    /// marked dead under its lock, so a call that found it through a cache looks again.
    fn sweep(&mut self, now: Timestamp) {
        self.slots.retain(|slot| match slot.state.try_lock() {
            Some(mut state) if state.window.is_idle(now, &slot.counter) => {
                state.dead = true;
                false
            }
            _ => true,
        });
        // Give back the memory of a table that emptied (a burst of sessions expired):
        // keep room for twice what is left, so a steady load does not rehash each sweep.
        let len = self.slots.len();
        if self.slots.capacity() > 4 * len.max(8) {
            self.slots.shrink_to(2 * len, |s| s.hash);
        }
        self.inserts_since_sweep = 0;
        self.sweep_interval = len;
    }
}
