//! Counter state: the [`CounterStore`] trait and its implementations.

mod memory;
#[cfg(feature = "redis")]
mod redis;
pub(crate) mod window;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use memory::MemoryStore;

use crate::clock::Timestamp;
use crate::policy::Counter;
use std::sync::Arc;
use std::time::Duration;

/// The key of one count: a counter and the scope id it is kept for (the call's grant,
/// agent or session id, or `""` for a global counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterKey<'a> {
    /// The counter: name, window and scope.
    pub counter: &'a Counter,
    /// The id the count is kept for.
    pub scope_id: &'a str,
}

/// One limit a call must fit under: `cost` more units on `key`, at most `max` per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitRequest<'a> {
    /// Which count.
    pub key: CounterKey<'a>,
    /// Units admitted per window.
    pub max: u64,
    /// Units this call uses; never more than `max`.
    pub cost: u64,
}

/// The answer of a [`CounterStore`] for all the limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Every limit had room; each recorded the call's cost at `at` (unless peeking).
    Admitted {
        /// The time the use was recorded at; pass it back to
        /// [`CounterStore::release`].
        at: Timestamp,
    },
    /// Some limit lacked room, and nothing was recorded.
    Refused {
        /// Index into the requests of the limit with the longest wait.
        limit: usize,
        /// How long until that limit has room for the call.
        retry_after: Duration,
    },
}

/// A counter store failed: unreachable, timed out, or answered nonsense.
///
/// The engine denies the call with this error as its reason (fail closed), unless it was
/// built with [`fail_open`](crate::EngineBuilder::fail_open).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{store} counter store failed: {message}")]
pub struct StoreError {
    store: &'static str,
    message: String,
}

impl StoreError {
    /// An error from the store called `store` (such as `"redis"`).
    pub fn new(store: &'static str, message: impl Into<String>) -> StoreError {
        StoreError {
            store,
            message: message.into(),
        }
    }

    /// The name of the store that failed.
    pub fn store(&self) -> &'static str {
        self.store
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Where counts live: in this process ([`MemoryStore`]) or shared between gateway replicas.
///
/// A store implements the sliding window described in the `window` module docs: for a
/// window `W` split into 16 sub-buckets, no interval of length `W` admits more than `max`,
/// and a call is admitted when the preceding `W·(1+1/16)` admitted at most `max - cost`.
///
/// The trait is object-safe; the engine holds an `Arc<dyn CounterStore>`.
pub trait CounterStore: Send + Sync {
    /// Checks every request at time `now` and, only if all have room, records each one's
    /// cost, atomically: concurrent calls never see a partial record, and a refused call
    /// records nothing anywhere.
    fn acquire(
        &self,
        now: Timestamp,
        requests: &[LimitRequest<'_>],
    ) -> Result<Admission, StoreError>;

    /// What [`acquire`](Self::acquire) would answer at `now`, recording nothing.
    fn peek(&self, now: Timestamp, requests: &[LimitRequest<'_>]) -> Result<Admission, StoreError>;

    /// Gives back `cost` units that `acquire` recorded for `key` at `recorded_at`, if they
    /// are still inside the window at `now`. Never gives back more than was recorded.
    fn release(
        &self,
        now: Timestamp,
        key: CounterKey<'_>,
        recorded_at: Timestamp,
        cost: u64,
    ) -> Result<(), StoreError>;
}

impl<S: CounterStore + ?Sized> CounterStore for Arc<S> {
    fn acquire(
        &self,
        now: Timestamp,
        requests: &[LimitRequest<'_>],
    ) -> Result<Admission, StoreError> {
        (**self).acquire(now, requests)
    }

    fn peek(&self, now: Timestamp, requests: &[LimitRequest<'_>]) -> Result<Admission, StoreError> {
        (**self).peek(now, requests)
    }

    fn release(
        &self,
        now: Timestamp,
        key: CounterKey<'_>,
        recorded_at: Timestamp,
        cost: u64,
    ) -> Result<(), StoreError> {
        (**self).release(now, key, recorded_at, cost)
    }
}
