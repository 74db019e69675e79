//! [`RedisStore`]: counters shared by gateway replicas through one Redis server or a
//! Redis Cluster. `scripts` holds the Lua, `connection` the pooled connections and their
//! deadline, `cluster` the slot-by-slot reservation of calls whose counts span slots.

mod cluster;
mod connection;
mod scripts;

use super::window::bucket_width_nanos;
use super::{Admission, CounterKey, CounterStore, KeyValue, LimitRequest, StoreError};
use crate::clock::Timestamp;
use connection::{Backend, Pool};
pub(crate) use connection::{Bounded, Conn};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{RedisResult, Script};
use scripts::{ACQUIRE, RELEASE};
use std::fmt::Write as _;
use std::time::Duration;

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
/// # Redis Cluster
///
/// [`cluster`](Self::cluster) keeps the counts on a Redis Cluster (or Valkey). Each key
/// starts with a hash tag of its scope id (`{s:ID}`), so all counts of one id share a
/// slot. A call whose counts span slots is reserved slot by slot, in ascending slot
/// order, one script (one round trip) per slot; when a later slot refuses, what the
/// earlier ones recorded is released, and the slots after it are peeked at so the
/// refusal names the longest wait. Replicas together never admit more than `max`; a
/// refusal under contention may be spurious. `MOVED` and `ASK` redirections and failovers
/// are followed by the cluster client within the store's timeout, which bounds a call's
/// whole store work (each try of a command gets a quarter of what is left, so the client's
/// three retries fit); while a master is down calls fail closed, and what a call reserved
/// before a slot whose node failed is given back (at once, or once the cluster answers
/// again, before the next operation). Redis replicates
/// asynchronously: counts acknowledged just before a master fails can be lost;
/// [`wait_replicas`](Self::wait_replicas) confirms them through `WAIT` before admitting.
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
    pool: Pool,
    /// The cluster's seed nodes, to rebuild its client when the timeout changes.
    seeds: Vec<String>,
    connections: usize,
    prefix: String,
    timeout: Duration,
    server_time: bool,
    /// Replicas that must confirm a call's counts (`WAIT`) before it is admitted.
    wait_replicas: u32,
    /// Releases a cluster call could not make when one of its slots failed (the cluster
    /// client is unusable until the failover), paid before later operations.
    owed: parking_lot::Mutex<Vec<Owed>>,
    acquire: Script,
    release: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("RedisStore");
        match &self.pool.backend {
            Backend::Single(client) => debug.field("server", &client.get_connection_info().addr),
            Backend::Cluster(_) => debug.field("cluster", &self.seeds),
        };
        debug
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
        Ok(RedisStore::with_backend(
            Backend::Single(client),
            Vec::new(),
        ))
    }

    /// A store on the Redis Cluster (or Valkey cluster) that `seeds` name, any of its nodes
    /// (`redis://host:port/`); the rest of the cluster is found through them. Same
    /// defaults as [`open`](Self::open). See "Redis Cluster" above for how counts are
    /// placed and what a call whose counts span slots costs.
    ///
    /// # Errors
    /// No seed, or a malformed URL. An unreachable cluster is not an error here: calls
    /// fail closed until it is reachable.
    pub fn cluster(seeds: &[&str]) -> Result<RedisStore, StoreError> {
        let seeds: Vec<String> = seeds.iter().map(|s| (*s).to_owned()).collect();
        let client = cluster_client(&seeds, Duration::from_secs(1))?;
        Ok(RedisStore::with_backend(Backend::Cluster(client), seeds))
    }

    fn with_backend(backend: Backend, seeds: Vec<String>) -> RedisStore {
        RedisStore {
            pool: Pool::new(backend, DEFAULT_CONNECTIONS),
            seeds,
            connections: DEFAULT_CONNECTIONS,
            prefix: "mcp-policy:".into(),
            timeout: Duration::from_secs(1),
            server_time: false,
            wait_replicas: 0,
            owed: parking_lot::Mutex::new(Vec::new()),
            acquire: Script::new(ACQUIRE),
            release: Script::new(RELEASE),
        }
    }

    /// Admits a call only once `replicas` replicas of each master it counted on confirmed
    /// its counts (Redis `WAIT`, within the store's timeout); otherwise the call's counts
    /// are given back and the call fails closed. Redis replicates asynchronously: without
    /// this, counts acknowledged just before a master fails may be lost when its replica
    /// takes over, and limits then admit them again. Each confirmation is one more round
    /// trip per node a call counts on. Default 0: no confirmation.
    pub fn wait_replicas(mut self, replicas: u32) -> RedisStore {
        self.wait_replicas = replicas;
        self
    }

    /// Whether this store is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.pool.backend, Backend::Cluster(_))
    }

    /// Whether the server this store is on is a node of a Redis Cluster (`INFO cluster`
    /// says `cluster_enabled:1`): a single-server store pointed at one would send calls
    /// whose counts live on other nodes there, and fail. Gateways check it at start.
    ///
    /// # Errors
    /// The server could not be asked.
    pub fn server_is_cluster_node(&self) -> Result<bool, StoreError> {
        let info: String = self.with_connection(|c| redis::cmd("INFO").arg("cluster").query(c))?;
        Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
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
        if let (Backend::Cluster(_), Ok(client)) = (
            &self.pool.backend,
            cluster_client(&self.seeds, self.timeout),
        ) {
            self.pool = Pool::new(Backend::Cluster(client), self.connections);
        }
        self
    }

    /// Uses the Redis server's clock instead of the engine's (see "Time" above).
    pub fn server_time(mut self, server_time: bool) -> RedisStore {
        self.server_time = server_time;
        self
    }

    /// Keeps up to `connections` connections (at least one) for concurrent calls.
    pub fn connections(mut self, connections: usize) -> RedisStore {
        self.connections = connections.max(1);
        self.pool = Pool::new(self.pool.backend.clone(), self.connections);
        self
    }

    /// A board of pending console approvals in the same server, under the same prefix
    /// and timeout, on connections of its own (so approvals never wait behind counts).
    pub fn approval_board(&self) -> crate::mcp::RedisBoard {
        let store = RedisStore {
            pool: Pool::new(self.pool.backend.clone(), 2),
            seeds: self.seeds.clone(),
            connections: 2,
            prefix: self.prefix.clone(),
            timeout: self.timeout,
            server_time: self.server_time,
            wait_replicas: self.wait_replicas,
            owed: parking_lot::Mutex::new(Vec::new()),
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
    /// counters share a key whatever characters they contain. On a cluster the key starts
    /// with a hash tag of the scope id (`{s:ID}`), so all counts of one id share a slot.
    pub fn key_name(&self, key: &CounterKey<'_>) -> String {
        let counter = key.counter;
        let mut name = String::with_capacity(
            self.prefix.len() + counter.name().len() + key.scope_id.len() + 32,
        );
        if self.is_cluster() {
            // All counts of one scope id in one slot: most calls then touch one node.
            cluster::push_tag(&mut name, key.scope_id);
        }
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
        if self.is_cluster() {
            return self.run_on_cluster(mode, now, requests);
        }
        let all: Vec<usize> = (0..requests.len()).collect();
        let at = (!self.server_time).then(|| now.as_nanos() / 1000);
        let reply = self.pool.run(self.timeout, |b| {
            let reply = self.step(b, mode, at, requests, &all)?;
            if let (Reply::Admitted { at }, "acquire") = (&reply, mode) {
                if let Err(e) = self.confirm(b, None) {
                    for &i in &all {
                        if let Some(request) = requests.get(i) {
                            let _ = self.release_step(b, &request.key, *at, request.cost);
                        }
                    }
                    return Err(e);
                }
            }
            Ok(reply)
        })?;
        Ok(reply.admission(&all))
    }

    /// Waits for [`wait_replicas`](Self::wait_replicas) replicas of the node serving
    /// `slot` (the only node, off a cluster) to confirm what was written; an error if
    /// fewer do within the deadline.
    pub(super) fn confirm(&self, b: &mut Bounded<'_>, slot: Option<u16>) -> RedisResult<()> {
        if self.wait_replicas == 0 {
            return Ok(());
        }
        // The server answers WAIT by its own timeout: before the command's share of ours
        // runs out.
        let millis = u64::try_from((b.per_try() * 4 / 5).as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let conn = b.conn()?;
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.wait_replicas).arg(millis);
        let confirmed: i64 = match (conn, slot) {
            (Conn::Cluster(c), Some(slot)) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let node = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                redis::from_redis_value(&c.route_command(&wait, RoutingInfo::SingleNode(node))?)?
            }
            (conn, _) => wait.query(conn)?,
        };
        if confirmed < i64::from(self.wait_replicas) {
            return Err(redis::RedisError::from((
                redis::ErrorKind::ResponseError,
                "the call's counts were not confirmed by enough replicas",
                format!("{confirmed} of {} confirmed (WAIT)", self.wait_replicas),
            )));
        }
        Ok(())
    }

    /// Runs the acquire script in `mode` on the requests at `indices` (whose keys share a
    /// slot, on a cluster), at `at` microseconds (`None`: the server's clock).
    pub(super) fn step(
        &self,
        b: &mut Bounded<'_>,
        mode: &str,
        at: Option<u64>,
        requests: &[LimitRequest<'_>],
        indices: &[usize],
    ) -> RedisResult<Reply> {
        let mut invocation = self.acquire.prepare_invoke();
        invocation.arg(mode);
        match at {
            Some(at) => invocation.arg(at),
            None => invocation.arg(""),
        };
        for request in indices.iter().filter_map(|&i| requests.get(i)) {
            invocation
                .key(self.key_name(&request.key))
                .arg(width_micros(&request.key))
                .arg(request.max)
                .arg(request.cost);
        }
        let reply: Vec<i64> = invocation.invoke(b.conn()?)?;
        let micros = |value: i64| u64::try_from(value).unwrap_or(0);
        match reply.as_slice() {
            [0, at] => Ok(Reply::Admitted { at: micros(*at) }),
            [1, limit, wait] => Ok(Reply::Refused {
                limit: usize::try_from(*limit).unwrap_or(usize::MAX),
                wait: Duration::from_micros(micros(*wait)),
            }),
            other => Err(redis::RedisError::from((
                redis::ErrorKind::TypeError,
                "unexpected script reply",
                format!("{other:?}"),
            ))),
        }
    }

    /// Gives back `cost` units recorded for `key` at `at` microseconds.
    pub(super) fn release_step(
        &self,
        b: &mut Bounded<'_>,
        key: &CounterKey<'_>,
        at_micros: u64,
        cost: u64,
    ) -> RedisResult<()> {
        self.release_owed(b, &self.owed_for(key, at_micros, cost))
    }

    /// A release to make, by key name and bucket.
    pub(super) fn owed_for(&self, key: &CounterKey<'_>, at_micros: u64, cost: u64) -> Owed {
        Owed {
            key: self.key_name(key),
            bucket: at_micros / width_micros(key),
            cost,
        }
    }

    pub(super) fn release_owed(&self, b: &mut Bounded<'_>, owed: &Owed) -> RedisResult<()> {
        let mut invocation = self.release.prepare_invoke();
        invocation.key(&owed.key).arg(owed.bucket).arg(owed.cost);
        invocation.invoke::<i64>(b.conn()?).map(drop)
    }

    /// Runs `f` on a pooled connection, within the store's timeout (see [`Pool::run`]).
    pub(crate) fn with_connection<R>(
        &self,
        mut f: impl FnMut(&mut Conn) -> RedisResult<R>,
    ) -> Result<R, StoreError> {
        self.pool.run(self.timeout, |b| f(b.conn()?))
    }

    /// Runs `f`, which may send several commands, within the store's timeout.
    pub(crate) fn with_steps<R>(
        &self,
        f: impl FnMut(&mut Bounded<'_>) -> RedisResult<R>,
    ) -> Result<R, StoreError> {
        self.pool.run(self.timeout, f)
    }
}

/// Units to give back: the key's name, the bucket they were recorded in, how many.
pub(super) struct Owed {
    key: String,
    bucket: u64,
    cost: u64,
}

/// What the acquire script answered for one step.
pub(super) enum Reply {
    /// Every limit of the step had room, at this time (microseconds).
    Admitted { at: u64 },
    /// The step's limit at `limit` (an index into its keys) lacked room for `wait`.
    Refused { limit: usize, wait: Duration },
}

impl Reply {
    /// The admission, `indices` mapping the step's keys back to the call's requests.
    pub(super) fn admission(&self, indices: &[usize]) -> Admission {
        match *self {
            Reply::Admitted { at } => Admission::Admitted {
                at: Timestamp::from_nanos(at.saturating_mul(1000)),
            },
            Reply::Refused { limit, wait } => Admission::Refused {
                limit: indices.get(limit).copied().unwrap_or(usize::MAX),
                retry_after: wait,
            },
        }
    }
}

/// How many times the cluster client tries a command again (after a `MOVED` or `ASK`
/// redirection, or a connection lost in a failover).
pub(super) const CLUSTER_RETRIES: u32 = 3;

/// A cluster client for `seeds` whose connecting and answering are bounded by `timeout`,
/// and which follows a redirection or a failover a few times (each try gets a share of
/// the store's deadline, so all of them fit in it).
fn cluster_client(seeds: &[String], timeout: Duration) -> Result<ClusterClient, StoreError> {
    if seeds.is_empty() {
        return Err(StoreError::new(
            "redis",
            "a cluster needs at least one node's URL",
        ));
    }
    ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout((timeout / 8).max(Duration::from_millis(1)))
        .response_timeout((timeout / 4).max(Duration::from_millis(1)))
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(1)
        .max_retry_wait(10)
        .build()
        .map_err(store_error)
}

fn width_micros(key: &CounterKey<'_>) -> u64 {
    (bucket_width_nanos(key.counter.window_secs()) / 1000).max(1)
}

pub(super) fn store_error(e: redis::RedisError) -> StoreError {
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
        let at = recorded_at.as_nanos() / 1000;
        self.with_steps(|b| self.release_step(b, &key, at, cost))
    }
}
