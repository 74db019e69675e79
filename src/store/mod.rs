//! Where counts live: the [`CounterStore`] trait and its contract, the [`SlidingWindow`]
//! every store implements, [`MemoryStore`], `RedisStore` (feature `redis`), and a
//! conformance kit for stores of your own (`testing`, feature `test-util`).

mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "test-util")]
pub mod testing;
mod window;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use memory::MemoryStore;
pub use window::SlidingWindow;

use crate::clock::Timestamp;
use crate::policy::Counter;
use std::sync::Arc;
use std::time::Duration;

/// The key of one count: a counter, the scope id it is kept for (the call's grant, agent
/// or session id, or `""` for a global counter), and the value of the limit's `key`
/// argument when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterKey<'a> {
    /// The counter: name, window, scope and key path.
    pub counter: &'a Counter,
    /// The id the count is kept for.
    pub scope_id: &'a str,
    /// The call's value of the counter's `key` argument; `None` when it has no key path.
    pub value: Option<KeyValue<'a>>,
}

impl<'a> CounterKey<'a> {
    /// The key of `counter` for `scope_id`, without a key value.
    pub fn new(counter: &'a Counter, scope_id: &'a str) -> CounterKey<'a> {
        CounterKey {
            counter,
            scope_id,
            value: None,
        }
    }
}

/// A value of a limit's `key` argument: counts are kept separately per value. The engine
/// gives each value one spelling before it reaches a store: an integer argument, or a
/// string holding an integer's canonical decimal form (`"7"`), is an integer; other
/// strings stay text (and a store keeps `Text("7")` apart from `Integer(7)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyValue<'a> {
    /// A string argument.
    Text(&'a str),
    /// An integer argument that fits an `i64`.
    Integer(i64),
    /// An integer argument above `i64::MAX` (up to `u64::MAX`, what JSON parsers read
    /// exactly).
    Unsigned(u64),
}

impl KeyValue<'_> {
    /// The value as JSON: a string or a number.
    pub fn to_json(&self) -> serde_json::Value {
        match *self {
            KeyValue::Text(text) => text.into(),
            KeyValue::Integer(n) => n.into(),
            KeyValue::Unsigned(n) => n.into(),
        }
    }
}

impl std::fmt::Display for KeyValue<'_> {
    /// JSON: strings quoted, integers bare, so `"1"` and `1` read differently.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyValue::Text(text) => write!(f, "{}", serde_json::Value::from(*text)),
            KeyValue::Integer(n) => write!(f, "{n}"),
            KeyValue::Unsigned(n) => write!(f, "{n}"),
        }
    }
}

/// An owned [`KeyValue`], for decisions and stores: texts of up to 24 bytes inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OwnedKeyValue {
    Text(compact_str::CompactString),
    Integer(i64),
    Unsigned(u64),
}

impl OwnedKeyValue {
    pub(crate) fn new(value: KeyValue<'_>) -> OwnedKeyValue {
        match value {
            KeyValue::Text(text) => OwnedKeyValue::Text(text.into()),
            KeyValue::Integer(n) => OwnedKeyValue::Integer(n),
            KeyValue::Unsigned(n) => OwnedKeyValue::Unsigned(n),
        }
    }

    pub(crate) fn borrow(&self) -> KeyValue<'_> {
        match self {
            OwnedKeyValue::Text(text) => KeyValue::Text(text),
            OwnedKeyValue::Integer(n) => KeyValue::Integer(*n),
            OwnedKeyValue::Unsigned(n) => KeyValue::Unsigned(*n),
        }
    }
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

/// Where counts live: in this process ([`MemoryStore`]) or shared between gateway
/// replicas (`RedisStore`, or a store of your own).
///
/// The engine keeps the algorithm: it turns a call's limits into [`LimitRequest`]s, one
/// per count (limits sharing a count are merged first), and asks the store to check and
/// record them together. A store keeps, per [`CounterKey`], the counts of a
/// [`SlidingWindow`] (use that type, or the same algorithm on your server), and makes
/// each call's check-and-record atomic.
///
/// # Contract
///
/// Implementations must hold to every point below; callers may rely on them.
/// `store::testing::check_store` (feature `test-util`) checks a store against a reference
/// model of them.
///
/// - **Guarantees of the window.** Per key: no interval of the counter's window `W` holds
///   more than `max` admitted units (safety); a call is admitted whenever what was
///   admitted in the preceding `W·(1 + 1/16)`, plus its cost, is at most `max`
///   (liveness); see [`SlidingWindow`].
/// - **Atomicity.** [`acquire`](Self::acquire) checks every request and records all of
///   them or none. Concurrent calls behave as if run one after another in some order:
///   two calls can never both take the last unit, even from two processes sharing the
///   store.
/// - **Repeated keys.** The engine never passes one key twice in one call (it adds the
///   costs of limits that share a count). A store may assume distinct keys; given
///   repeated ones, it must still never admit more than `max` on any key.
/// - **Refusals.** [`Admission::Refused`] names the request with the longest wait and
///   that wait: repeating the same call after `retry_after`, with nothing admitted
///   meanwhile, admits it; `retry_after` ≤ `W·(1 + 1/16)` while the clock does not go
///   back. A request whose `cost` exceeds `max` is never admitted (the engine refuses
///   those itself).
/// - **Time going backwards.** `now` may be earlier than a time the store has seen (clock
///   steps, replicas with skewed clocks): treat it as the newest time seen. It must
///   neither panic nor re-open budget.
/// - **Refunds.** [`release`](Self::release) gives back at most what was recorded for
///   the key at `recorded_at`, and only while it is still inside the window; a unit that
///   expired stays expired. Releasing twice is the caller's bug, but must still never
///   make a count negative.
/// - **Expiry.** A key whose window has passed holds nothing; a store may forget it at
///   any time after (the built-in stores do, without a background thread).
/// - **Failures.** Return [`StoreError`] when the store cannot answer for sure (network
///   down, timeout, a reply that makes no sense). Never guess: the engine denies the call
///   (fail closed) unless its builder chose `fail_open`.
///
/// # Blocking
///
/// Methods are synchronous and called on the thread deciding the call. A networked store
/// should bound every call with a timeout (`RedisStore` does); an async gateway calls
/// the engine from a blocking-tolerant context or accepts that bound.
///
/// The trait is object-safe; the engine holds an `Arc<dyn CounterStore>`.
///
/// ```
/// use mcp_policy::store::{Admission, CounterKey, CounterStore, LimitRequest, MemoryStore};
/// use mcp_policy::{Counter, Scope, Timestamp};
///
/// let store = MemoryStore::new();
/// let counter = Counter::new("writes", 60, Scope::Grant);
/// let key = CounterKey::new(&counter, "g1");
/// let one = [LimitRequest { key, max: 1, cost: 1 }];
/// let now = Timestamp::from_nanos(0);
/// assert!(matches!(store.acquire(now, &one)?, Admission::Admitted { .. }));
/// assert!(matches!(store.acquire(now, &one)?, Admission::Refused { limit: 0, .. }));
/// store.release(now, key, now, 1)?;
/// assert!(matches!(store.acquire(now, &one)?, Admission::Admitted { .. }));
/// # Ok::<(), mcp_policy::StoreError>(())
/// ```
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

    /// Forgets every count with nothing left in its window at `now`, for a store that
    /// keeps counts in its own memory; a store whose counts expire by themselves (Redis)
    /// has nothing to do. Gateways call it on a schedule, so memory follows the live keys
    /// even when no new key arrives to trigger the store's own sweeping.
    fn reclaim_expired(&self, now: Timestamp) {
        let _ = now;
    }
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

    fn reclaim_expired(&self, now: Timestamp) {
        (**self).reclaim_expired(now);
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyValue, OwnedKeyValue};

    #[test]
    fn owned_key_values_give_back_what_they_were_made_of() {
        let long = "a ticket id longer than twenty-four bytes";
        for value in [
            KeyValue::Integer(0),
            KeyValue::Integer(-1),
            KeyValue::Integer(i64::MIN),
            KeyValue::Unsigned(u64::MAX),
            KeyValue::Text(""),
            KeyValue::Text("7"),
            KeyValue::Text(long),
        ] {
            assert_eq!(OwnedKeyValue::new(value).borrow(), value);
        }
        assert_ne!(KeyValue::Text("7"), KeyValue::Integer(7));
        assert_eq!(KeyValue::Text("7").to_string(), "\"7\"");
        assert_eq!(KeyValue::Integer(7).to_json(), serde_json::json!(7));
    }
}
