//! [`RedisStore`]: counters shared by gateway replicas through one Redis server.

use super::window::bucket_width_nanos;
use super::{Admission, CounterKey, CounterStore, KeyValue, LimitRequest, StoreError};
use crate::clock::Timestamp;
use parking_lot::Mutex;
use redis::{Connection, RedisResult, Script};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Checks and records every limit of one call atomically. See the `RedisStore` docs for
/// the data layout; the algorithm is `MemoryStore`'s sliding window, in Lua.
const ACQUIRE: &str = r"
local mode = ARGV[1]
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[2])
end
local heads, widths = {}, {}
local pending = {}
local refused, longest = 0, -1
for i = 1, #KEYS do
  local key = KEYS[i]
  local width = tonumber(ARGV[3 * i])
  local max = tonumber(ARGV[3 * i + 1])
  local cost = tonumber(ARGV[3 * i + 2])
  local head = math.floor(now / width)
  local flat = redis.call('HGETALL', key)
  local counts = {}
  for j = 1, #flat, 2 do
    local b = tonumber(flat[j])
    counts[b] = tonumber(flat[j + 1])
    -- A replica whose clock is ahead moved the window on: never go back.
    if b > head then head = b end
  end
  local total = pending[key] or 0
  for b, c in pairs(counts) do
    if b > head - 17 then total = total + c end
  end
  heads[i] = head
  widths[i] = width
  if cost <= max - total then
    pending[key] = (pending[key] or 0) + cost
  else
    local remaining = total
    local wait = 17 * width
    for k = 1, 17 do
      remaining = remaining - (counts[head + k - 17] or 0)
      if cost <= max - remaining then
        wait = (head + k) * width - now
        break
      end
    end
    if wait > longest then
      refused, longest = i, wait
    end
  end
end
if refused > 0 then
  return {1, refused - 1, longest}
end
if mode == 'acquire' then
  for i = 1, #KEYS do
    local key, head = KEYS[i], heads[i]
    redis.call('HINCRBY', key, string.format('%d', head), ARGV[3 * i + 2])
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if tonumber(field) <= head - 17 then redis.call('HDEL', key, field) end
    end
    -- The key expires once its newest bucket has left the window, plus a second.
    redis.call('PEXPIRE', key, math.ceil(((head + 17) * widths[i] - now) / 1000) + 1000)
  end
end
return {0, now}
";

/// Gives back units recorded in one bucket, never more than it holds.
const RELEASE: &str = r"
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local give = math.min(held, tonumber(ARGV[2]))
if give <= 0 then return 0 end
if give >= held then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HINCRBY', KEYS[1], ARGV[1], string.format('%d', -give))
end
return give
";

/// Counters kept in Redis, shared by every gateway replica that uses the same server and
/// prefix (feature `redis`).
///
/// Each (counter, scope id) key is one Redis hash holding the sub-bucket counts of the
/// sliding window (at most 17 fields). One Lua script checks and records all the limits of
/// a call atomically, so replicas never over-admit together; the script is loaded once per
/// connection and re-sent if the server lost it (`EVALSHA`, then `EVAL` on `NOSCRIPT`).
/// Keys expire on their own once their window has passed.
///
/// # Time
///
/// By default the engine's clock timestamps each call, so replicas must keep their clocks
/// in sync (NTP). A replica whose clock runs ahead by δ moves a key's window forward early;
/// the window then never moves back, so the others see the same window, and safety holds
/// for intervals of length W − δ: no interval of W − δ admits more than `max`.
/// [`server_time(true)`](Self::server_time) uses the Redis server's `TIME` instead: one
/// clock for all replicas, the guarantees of `MemoryStore` exactly, at the cost of ignoring
/// the engine's clock (a `ManualClock` then has no effect on counts).
///
/// # Failures
///
/// Connection loss, a timeout or a Redis error is a [`StoreError`] naming `redis`; the
/// engine then fails closed (or open, if built so). A broken connection is dropped and the
/// next call reconnects, so the store recovers by itself when Redis is back. Each store
/// operation, from waiting for a pooled connection to the server's answer, is bounded by
/// one deadline, [`timeout`](Self::timeout) after it starts; a decision makes one such
/// operation, and a refund one per limit.
///
/// # Durability
///
/// Counts live only in Redis. If Redis loses its data (a restart without persistence, a
/// `FLUSHALL`, an eviction under `maxmemory`), every count starts again from zero: calls
/// recorded before are forgotten and limits admit a full `max` again. Where that matters,
/// run Redis with persistence (`appendonly yes`), with `maxmemory-policy noeviction`
/// (Redis then refuses writes when full, and the engine fails closed), and on a server of
/// its own or with a [`prefix`](Self::prefix) no other application deletes.
///
/// Redis Cluster is not supported: the keys of one call must live on one server.
///
/// ```no_run
/// use mcp_policy::{Engine, Policy, RedisStore};
///
/// let policy: Policy = std::fs::read_to_string("policy.json")?.parse()?;
/// let store = RedisStore::open("redis://127.0.0.1:6379/")?.prefix("mcp-policy:");
/// let engine = Engine::builder(policy).store(store).build();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisStore {
    client: redis::Client,
    connections: Box<[Mutex<Option<Connection>>]>,
    next: AtomicUsize,
    prefix: String,
    timeout: Duration,
    server_time: bool,
    acquire: Script,
    release: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.client.get_connection_info().addr)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("server_time", &self.server_time)
            .finish_non_exhaustive()
    }
}

const DEFAULT_CONNECTIONS: usize = 4;

impl RedisStore {
    /// A store for the server at `url` (`redis://host:port/db`), with prefix
    /// `"mcp-policy:"`, a one-second timeout and four connections, opened as needed.
    ///
    /// # Errors
    /// A malformed URL. An unreachable server is not an error here: calls fail closed
    /// until it is reachable (use [`ping`](Self::ping) to check at start-up).
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(store_error)?;
        Ok(RedisStore {
            client,
            connections: (0..DEFAULT_CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            prefix: "mcp-policy:".into(),
            timeout: Duration::from_secs(1),
            server_time: false,
            acquire: Script::new(ACQUIRE),
            release: Script::new(RELEASE),
        })
    }

    /// Prefixes every key, so several policies or applications can share a server.
    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisStore {
        self.prefix = prefix.into();
        self
    }

    /// Bounds each store operation, from waiting for a free pooled connection to the
    /// server's answer, to `timeout` (default one second).
    pub fn timeout(mut self, timeout: Duration) -> RedisStore {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Uses the Redis server's clock instead of the engine's (see "Time" above).
    pub fn server_time(mut self, server_time: bool) -> RedisStore {
        self.server_time = server_time;
        self
    }

    /// Keeps up to `connections` connections (at least one) for concurrent calls.
    pub fn connections(mut self, connections: usize) -> RedisStore {
        self.connections = (0..connections.max(1)).map(|_| Mutex::new(None)).collect();
        self
    }

    /// A board of pending console approvals in the same server, under the same prefix
    /// and timeout, on connections of its own (so approvals never wait behind counts).
    pub fn approval_board(&self) -> crate::mcp::RedisBoard {
        let store = RedisStore {
            client: self.client.clone(),
            connections: (0..2).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            prefix: self.prefix.clone(),
            timeout: self.timeout,
            server_time: self.server_time,
            acquire: Script::new(ACQUIRE),
            release: Script::new(RELEASE),
        };
        crate::mcp::RedisBoard::new(store)
    }

    /// The prefix of every key.
    pub(crate) fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// Checks that the server answers.
    ///
    /// # Errors
    /// The connection or protocol error, as a [`StoreError`].
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with_connection(|connection| redis::cmd("PING").query::<String>(connection).map(drop))
    }

    /// The Redis key holding the counts of `key`. Names are length-prefixed, so no two
    /// counters share a key whatever characters they contain.
    pub fn key_name(&self, key: &CounterKey<'_>) -> String {
        let counter = key.counter;
        let mut name = String::with_capacity(
            self.prefix.len() + counter.name().len() + key.scope_id.len() + 32,
        );
        let kind = if counter.is_private() { 'p' } else { 'n' };
        let Some(path) = counter.key_path() else {
            let _ = write!(
                name,
                "{}{kind}:{}:{}:{}:{}:{}",
                self.prefix,
                counter.window_secs(),
                counter.scope(),
                counter.name().len(),
                counter.name(),
                key.scope_id
            );
            return name;
        };
        // Counters with a `key` path: the path and scope id length-prefixed too, then the
        // value tagged by type (`t` text, `i` integer) so `"1"` and `1` differ.
        let _ = write!(
            name,
            "{}{kind}k:{}:{}:{}:{}:{}:{}:{}:{}:",
            self.prefix,
            counter.window_secs(),
            counter.scope(),
            counter.name().len(),
            counter.name(),
            path.len(),
            path,
            key.scope_id.len(),
            key.scope_id
        );
        let _ = match key.value {
            Some(KeyValue::Text(text)) => write!(name, "t{text}"),
            Some(KeyValue::Integer(n)) => write!(name, "i{n}"),
            Some(KeyValue::Unsigned(n)) => write!(name, "i{n}"),
            None => write!(name, "-"),
        };
        name
    }

    fn run(
        &self,
        mode: &str,
        now: Timestamp,
        requests: &[LimitRequest<'_>],
    ) -> Result<Admission, StoreError> {
        let mut invocation = self.acquire.prepare_invoke();
        invocation.arg(mode);
        if self.server_time {
            invocation.arg("");
        } else {
            invocation.arg(now.as_nanos() / 1000);
        }
        for request in requests {
            invocation
                .key(self.key_name(&request.key))
                .arg(width_micros(&request.key))
                .arg(request.max)
                .arg(request.cost);
        }
        let reply: Vec<i64> = self.with_connection(|connection| invocation.invoke(connection))?;
        let micros = |value: i64| u64::try_from(value).unwrap_or(0);
        match reply.as_slice() {
            [0, at] => Ok(Admission::Admitted {
                at: Timestamp::from_nanos(micros(*at).saturating_mul(1000)),
            }),
            [1, limit, wait] => Ok(Admission::Refused {
                limit: usize::try_from(*limit).unwrap_or(usize::MAX),
                retry_after: Duration::from_micros(micros(*wait)),
            }),
            other => Err(StoreError::new(
                "redis",
                format!("unexpected script reply {other:?}"),
            )),
        }
    }

    /// Runs `f` on a pooled connection. The whole of it (waiting for a free connection,
    /// connecting, and every request `f` makes) is bounded by one deadline,
    /// [`timeout`](Self::timeout) from now, so no decision waits longer, however many
    /// callers queue for the pool.
    pub(crate) fn with_connection<R>(
        &self,
        mut f: impl FnMut(&mut Connection) -> RedisResult<R>,
    ) -> Result<R, StoreError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let timed_out = |doing: &str| {
            StoreError::new(
                "redis",
                format!(
                    "timed out after {} ms {doing}",
                    started.elapsed().as_millis()
                ),
            )
        };
        // What is left of the deadline; never zero, which sockets read as "no timeout".
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let Some(cell) = self.connections.get(slot) else {
            return Err(StoreError::new("redis", "no connection slot"));
        };
        let Some(mut cell) = cell.try_lock_for(self.timeout) else {
            return Err(timed_out("waiting for a free connection"));
        };
        // Got the connection as the deadline passed: no time is left for the server.
        if Instant::now() >= deadline {
            return Err(timed_out("waiting for a free connection"));
        }
        if cell.is_none() {
            // The client's handshake reads each of its replies with the whole timeout it
            // is given (two of them with a password and a database): give it half of what
            // is left, so connecting cannot outlast the deadline.
            let connection = self
                .client
                .get_connection_with_timeout((left() / 2).max(Duration::from_millis(1)))
                .map_err(|e| match e.is_timeout() {
                    true => timed_out("connecting"),
                    false => store_error(e),
                })?;
            *cell = Some(connection);
            if Instant::now() >= deadline {
                return Err(timed_out("connecting"));
            }
        }
        let Some(connection) = cell.as_mut() else {
            return Err(StoreError::new("redis", "no connection"));
        };
        let bounded = connection
            .set_read_timeout(Some(left()))
            .and_then(|()| connection.set_write_timeout(Some(left())));
        let result = bounded.and_then(|()| f(connection));
        result.map_err(|e| {
            // After an I/O error or timeout the connection's state is unknown: start over.
            if e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
            {
                *cell = None;
            }
            match e.is_timeout() {
                true => timed_out("waiting for the Redis server to answer"),
                false => store_error(e),
            }
        })
    }
}

fn width_micros(key: &CounterKey<'_>) -> u64 {
    (bucket_width_nanos(key.counter.window_secs()) / 1000).max(1)
}

fn store_error(e: redis::RedisError) -> StoreError {
    StoreError::new("redis", e.to_string())
}

impl CounterStore for RedisStore {
    fn acquire(
        &self,
        now: Timestamp,
        requests: &[LimitRequest<'_>],
    ) -> Result<Admission, StoreError> {
        self.run("acquire", now, requests)
    }

    fn peek(&self, now: Timestamp, requests: &[LimitRequest<'_>]) -> Result<Admission, StoreError> {
        self.run("peek", now, requests)
    }

    fn release(
        &self,
        _now: Timestamp,
        key: CounterKey<'_>,
        recorded_at: Timestamp,
        cost: u64,
    ) -> Result<(), StoreError> {
        let bucket = recorded_at.as_nanos() / 1000 / width_micros(&key);
        let mut invocation = self.release.prepare_invoke();
        invocation.key(self.key_name(&key)).arg(bucket).arg(cost);
        self.with_connection(|connection| invocation.invoke::<i64>(connection).map(drop))
    }
}
