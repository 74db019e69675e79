//! Pooled connections to one Redis server or to a Redis Cluster, and the one deadline
//! that bounds a store operation: waiting for a free connection, connecting, and every
//! command it sends.

use super::store_error;
use crate::store::StoreError;
use parking_lot::Mutex;
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Cmd, ConnectionLike, RedisResult, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where connections come from.
#[derive(Clone)]
pub(super) enum Backend {
    Single(redis::Client),
    Cluster(ClusterClient),
}

/// One pooled connection: to a server, or to a cluster (which follows `MOVED` and `ASK`
/// redirections itself).
pub(crate) enum Conn {
    Single(redis::Connection),
    Cluster(ClusterConnection),
}

impl Conn {
    fn set_timeouts(&mut self, left: Duration) -> RedisResult<()> {
        match self {
            Conn::Single(c) => c
                .set_read_timeout(Some(left))
                .and_then(|()| c.set_write_timeout(Some(left))),
            Conn::Cluster(c) => c
                .set_read_timeout(Some(left))
                .and_then(|()| c.set_write_timeout(Some(left))),
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_command(cmd),
            Conn::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Conn::Single(c) => c.check_connection(),
            Conn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Conn::Single(c) => c.is_open(),
            Conn::Cluster(c) => c.is_open(),
        }
    }
}

/// A connection within an operation's deadline: each command is given what is left of it.
pub(crate) struct Bounded<'c> {
    conn: &'c mut Conn,
    deadline: Instant,
    /// Time kept back from the commands sent now, for what must follow if they fail.
    keep: Duration,
}

impl Bounded<'_> {
    /// The connection, its socket timeouts set to what is left of the deadline; a timeout
    /// error once nothing is left.
    pub(crate) fn conn(&mut self) -> RedisResult<&mut Conn> {
        let per_try = self.per_try();
        if per_try.is_zero() {
            return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
        }
        self.conn.set_timeouts(per_try)?;
        Ok(self.conn)
    }

    /// What one try of a command may take: what is left (less what is kept back), shared
    /// on a cluster between the tries its client may make to follow a redirection or a
    /// failover, so all of them fit in the deadline.
    pub(crate) fn per_try(&self) -> Duration {
        let left = self.left().saturating_sub(self.keep);
        match self.conn {
            Conn::Single(_) => left,
            Conn::Cluster(_) if left.is_zero() => left,
            Conn::Cluster(_) => (left / (super::CLUSTER_RETRIES + 1)).max(Duration::from_millis(1)),
        }
    }

    /// Keeps `time` of the deadline back from the commands sent from now on (zero: none):
    /// a call that reserved a slot keeps time to give it back if a later slot fails.
    pub(crate) fn keep(&mut self, time: Duration) {
        self.keep = time;
    }

    /// What is left of the deadline.
    pub(crate) fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Connections opened as needed, each used by one operation at a time.
pub(super) struct Pool {
    pub(super) backend: Backend,
    cells: Box<[Mutex<Option<Conn>>]>,
    next: AtomicUsize,
}

impl Pool {
    pub(super) fn new(backend: Backend, size: usize) -> Pool {
        Pool {
            backend,
            cells: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Runs `f` on a pooled connection. The whole of it (waiting for a free connection,
    /// connecting, and every command `f` sends through [`Bounded::conn`]) is bounded by
    /// one deadline, `timeout` from now, so no decision waits longer, however many callers
    /// queue for the pool or however many slots a call's counts span.
    pub(super) fn run<R>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&mut Bounded<'_>) -> RedisResult<R>,
    ) -> Result<R, StoreError> {
        let started = Instant::now();
        let deadline = started + timeout;
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
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.cells.len();
        let Some(cell) = self.cells.get(slot) else {
            return Err(StoreError::new("redis", "no connection slot"));
        };
        let Some(mut cell) = cell.try_lock_for(timeout) else {
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
            let connect_timeout = (left() / 2).max(Duration::from_millis(1));
            let connection = match &self.backend {
                Backend::Single(client) => client
                    .get_connection_with_timeout(connect_timeout)
                    .map(Conn::Single),
                Backend::Cluster(client) => client.get_connection().map(Conn::Cluster),
            }
            .map_err(|e| match e.is_timeout() {
                true => timed_out("connecting"),
                false => store_error(e),
            })?;
            *cell = Some(connection);
            if Instant::now() >= deadline {
                return Err(timed_out("connecting"));
            }
        }
        let Some(conn) = cell.as_mut() else {
            return Err(StoreError::new("redis", "no connection"));
        };
        let mut bounded = Bounded {
            conn,
            deadline,
            keep: Duration::ZERO,
        };
        f(&mut bounded).map_err(|e| {
            // After an I/O error or timeout the connection's state is unknown: start over.
            // On a cluster, any error may mean the slot map is stale (a failover): the
            // next operation starts from a fresh map.
            let cluster = matches!(self.backend, Backend::Cluster(_));
            if cluster
                || e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
            {
                *cell = None;
            }
            match e.is_timeout()
                || e.kind() == redis::ErrorKind::IoError && Instant::now() >= deadline
            {
                true => timed_out("waiting for the Redis server to answer"),
                false => store_error(e),
            }
        })
    }
}
