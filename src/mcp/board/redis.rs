//! [`RedisBoard`]: approvals shared by gateway replicas through Redis.

use super::{in_time, ApprovalBoard, BoardEntry, PendingApproval, Verdict, DECIDED_KEPT};
use crate::store::redis::{Bounded, Conn};
use crate::store::{RedisStore, StoreError};
use serde::de::DeserializeOwned;

/// Approvals kept in Redis (feature `redis`), so the console of any replica shows and
/// decides the calls every replica holds. Made by
/// [`RedisStore::approval_board`](crate::store::RedisStore::approval_board), under the
/// store's prefix and timeout.
///
/// Keys (`P` the prefix, each with the hash tag `{approvals}`, so on a Redis Cluster the
/// board is one slot): `P{approvals}:approval:ID` (the approval, JSON) and
/// `P{approvals}:verdict:ID` (its verdict, written with `SET NX`, so the first decision
/// stands), both expiring at the approval's `use_by_ms`; `P{approvals}:approval-call:DIGEST`
/// (the latest approval of a call); `P{approvals}:approvals:pending` (a sorted set of ids by
/// creation) and `P{approvals}:approvals:decided` (the last 100 decisions, JSON). Deciding
/// is one `SET NX`; listing is two round trips.
#[derive(Debug)]
pub struct RedisBoard {
    store: RedisStore,
}

impl RedisBoard {
    pub(crate) fn new(store: RedisStore) -> RedisBoard {
        RedisBoard { store }
    }

    /// The key of `kind` and `id`. Every key carries the hash tag `{approvals}`: on a
    /// cluster the board lives in one slot, so one command may read several of its keys.
    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{{approvals}}:{kind}:{id}", self.store.key_prefix())
    }

    fn run<R>(&self, f: impl FnMut(&mut Conn) -> redis::RedisResult<R>) -> Result<R, StoreError> {
        self.store.with_connection(f)
    }

    /// Several commands within one deadline (not a transaction: a cluster refuses those
    /// through this client, and nothing here needs one — `SET NX` decides).
    fn steps<R>(
        &self,
        f: impl FnMut(&mut Bounded<'_>) -> redis::RedisResult<R>,
    ) -> Result<R, StoreError> {
        self.store.with_steps(f)
    }

    /// Entries of `ids`, in order (`None` for those forgotten).
    fn entries(&self, ids: &[String]) -> Result<Vec<Option<BoardEntry>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys: Vec<String> = ids.iter().map(|id| self.key("approval", id)).collect();
        keys.extend(ids.iter().map(|id| self.key("verdict", id)));
        let values: Vec<Option<String>> = self.run(|c| redis::cmd("MGET").arg(&keys).query(c))?;
        let (approvals, verdicts) = values.split_at(ids.len().min(values.len()));
        Ok(approvals
            .iter()
            .zip(verdicts.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(approval, verdict)| {
                let approval = parse::<PendingApproval>(approval.as_deref()?)?;
                let verdict = verdict
                    .and_then(|v| v.as_deref())
                    .and_then(parse::<Verdict>);
                Some(BoardEntry { approval, verdict })
            })
            .collect())
    }
}

fn parse<T: DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_str(text).ok()
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::new("redis", e.to_string()))
}

/// Milliseconds from `now_ms` until `until_ms`, at least one.
fn left_ms(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).max(1)
}

impl ApprovalBoard for RedisBoard {
    fn post(&self, approval: &PendingApproval) -> Result<(), StoreError> {
        let text = json(approval)?;
        let life = left_ms(approval.use_by_ms, approval.created_ms);
        let (record, call, pending) = (
            self.key("approval", &approval.id),
            self.key("approval-call", &approval.call),
            self.key("approvals", "pending"),
        );
        self.steps(|b| {
            redis::cmd("SET")
                .arg(&record)
                .arg(&text)
                .arg("PX")
                .arg(life)
                .query::<()>(b.conn()?)?;
            redis::cmd("SET")
                .arg(&call)
                .arg(&approval.id)
                .arg("PX")
                .arg(life)
                .query::<()>(b.conn()?)?;
            redis::cmd("ZADD")
                .arg(&pending)
                .arg(approval.created_ms)
                .arg(&approval.id)
                .query::<()>(b.conn()?)
        })
    }

    fn get(&self, id: &str) -> Result<Option<BoardEntry>, StoreError> {
        Ok(self.entries(&[id.to_owned()])?.into_iter().next().flatten())
    }

    fn find_call(&self, call: &str) -> Result<Option<BoardEntry>, StoreError> {
        let key = self.key("approval-call", call);
        let id: Option<String> = self.run(|c| redis::cmd("GET").arg(&key).query(c))?;
        match id {
            Some(id) => self.get(&id),
            None => Ok(None),
        }
    }

    fn forget_call(&self, call: &str) -> Result<(), StoreError> {
        let key = self.key("approval-call", call);
        self.run(|c| redis::cmd("DEL").arg(&key).query::<()>(c))
    }

    fn decide(&self, id: &str, verdict: Verdict) -> Result<Option<BoardEntry>, StoreError> {
        let Some(entry) = self.get(id)? else {
            return Ok(None);
        };
        if entry.verdict.is_some() {
            return Ok(Some(entry));
        }
        let verdict = in_time(&entry.approval, verdict);
        let text = json(&verdict)?;
        let life = left_ms(entry.approval.use_by_ms, verdict.decided_ms);
        let key = self.key("verdict", id);
        let won: Option<String> = self.run(|c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(&text)
                .arg("NX")
                .arg("PX")
                .arg(life)
                .query(c)
        })?;
        if won.is_none() {
            // Another replica decided first: its verdict stands.
            return self.get(id);
        }
        let decided = BoardEntry {
            approval: entry.approval,
            verdict: Some(verdict),
        };
        let (list, pending) = (
            self.key("approvals", "decided"),
            self.key("approvals", "pending"),
        );
        let line = json(&decided)?;
        let kept = isize::try_from(DECIDED_KEPT).unwrap_or(100) - 1;
        self.steps(|b| {
            redis::cmd("LPUSH")
                .arg(&list)
                .arg(&line)
                .query::<()>(b.conn()?)?;
            redis::cmd("LTRIM")
                .arg(&list)
                .arg(0)
                .arg(kept)
                .query::<()>(b.conn()?)?;
            redis::cmd("ZREM")
                .arg(&pending)
                .arg(id)
                .query::<()>(b.conn()?)
        })?;
        Ok(Some(decided))
    }

    fn pending(&self, now_ms: u64) -> Result<Vec<PendingApproval>, StoreError> {
        let key = self.key("approvals", "pending");
        let ids: Vec<String> =
            self.run(|c| redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query(c))?;
        let entries = self.entries(&ids)?;
        let mut gone = Vec::new();
        let mut pending = Vec::new();
        for (id, entry) in ids.iter().zip(entries) {
            match entry {
                Some(entry) if entry.is_pending(now_ms) => pending.push(entry.approval),
                Some(entry) if entry.verdict.is_none() => {}
                _ => gone.push(id.clone()),
            }
        }
        if !gone.is_empty() {
            self.run(|c| redis::cmd("ZREM").arg(&key).arg(&gone).query::<()>(c))?;
        }
        Ok(pending)
    }

    fn decided(&self) -> Result<Vec<BoardEntry>, StoreError> {
        let key = self.key("approvals", "decided");
        let kept = isize::try_from(DECIDED_KEPT).unwrap_or(100) - 1;
        let lines: Vec<String> =
            self.run(|c| redis::cmd("LRANGE").arg(&key).arg(0).arg(kept).query(c))?;
        Ok(lines.iter().filter_map(|line| parse(line)).collect())
    }
}
