//! Calls whose counts span cluster slots: reserved slot by slot, in ascending slot order,
//! and released when a later slot refuses, so replicas together never admit more than
//! `max` (a refusal under contention may be spurious; an over-admission never happens).

use super::{Owed, RedisStore, Reply};
use crate::clock::Timestamp;
use crate::store::{Admission, LimitRequest, StoreError};
use std::time::Duration;

/// Redis Cluster's number of hash slots.
const SLOTS: u16 = 16384;

/// The most releases kept owed after failures.
const MAX_OWED: usize = 4096;

/// Appends the hash tag of `scope_id`: `{s:ID}`, a `}` in the id written `)` so the tag
/// holds the whole id (two ids that then read alike share a slot, which is harmless).
pub(super) fn push_tag(name: &mut String, scope_id: &str) {
    name.push_str("{s:");
    name.extend(scope_id.chars().map(|c| if c == '}' { ')' } else { c }));
    name.push('}');
}

/// The slot of a key, as Redis Cluster computes it: CRC16 (XMODEM) of its hash tag (the
/// text between the first `{` and the next `}`, when not empty), else of the whole key.
pub(super) fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = key.find('{').and_then(|open| {
        let rest = bytes.get(open + 1..)?;
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| rest.get(..close)).flatten()
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(bytes)) % SLOTS
}

impl RedisStore {
    /// `acquire` or `peek` on a cluster: the requests grouped by slot, one script per
    /// slot in ascending slot order, all at one time (the first slot's, when the servers'
    /// clocks are used). On a refusal, the slots reserved before are released (acquire).
    pub(super) fn run_on_cluster(
        &self,
        mode: &str,
        now: Timestamp,
        requests: &[LimitRequest<'_>],
    ) -> Result<Admission, StoreError> {
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        for (i, request) in requests.iter().enumerate() {
            let slot = slot(&self.key_name(&request.key));
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, indices)) => indices.push(i),
                None => groups.push((slot, vec![i])),
            }
        }
        groups.sort_by_key(|(slot, _)| *slot);
        let acquiring = mode == "acquire";
        self.pay_owed();
        let started = std::time::Instant::now();
        // What a failed call reserved, to give back on a fresh connection: the failure
        // may have broken this one (the cluster client refreshes its map from any node).
        let mut to_release: Option<(Vec<usize>, u64)> = None;
        let result = self.with_steps(|b| {
            let mut at = (!self.server_time).then(|| now.as_nanos() / 1000);
            let mut reserved: Vec<&[usize]> = Vec::new();
            // Peeking looks at every slot and reports the longest wait, as one script does.
            let mut refused: Option<(usize, Duration)> = None;
            for (slot, indices) in &groups {
                let reply = match self.step(b, mode, at, requests, indices) {
                    Ok(reply) => reply,
                    Err(e) => {
                        // A slot's node failed: what the slots before it recorded is
                        // given back (below, in the time kept for it); the call fails
                        // closed.
                        if let (true, Some(at)) = (acquiring, at) {
                            let indices = reserved.iter().flat_map(|i| i.iter()).copied();
                            to_release = Some((indices.collect(), at));
                        }
                        return Err(e);
                    }
                };
                match reply {
                    Reply::Admitted { at: when } => {
                        at = Some(when);
                        reserved.push(indices);
                        // Time to give this back if a later slot fails.
                        b.keep(self.rollback_time());
                        if acquiring {
                            if let Err(e) = self.confirm(b, Some(*slot)) {
                                self.release_reserved(b, requests, &reserved, at);
                                return Err(e);
                            }
                        }
                    }
                    Reply::Refused { limit, wait } => {
                        let limit = indices.get(limit).copied().unwrap_or(usize::MAX);
                        if refused.is_none_or_shorter(wait) {
                            refused = Some((limit, wait));
                        }
                        if acquiring {
                            break;
                        }
                    }
                }
            }
            if let Some((mut limit, mut retry_after)) = refused {
                if acquiring {
                    self.release_reserved(b, requests, &reserved, at);
                    // As one script would, name the longest wait: the slots after the
                    // refusing one may make the call wait longer (peeking records nothing).
                    let refusing = reserved.len();
                    for (_, indices) in groups.iter().skip(refusing + 1) {
                        if let Reply::Refused { limit: l, wait } =
                            self.step(b, "peek", at, requests, indices)?
                        {
                            if wait > retry_after {
                                limit = indices.get(l).copied().unwrap_or(usize::MAX);
                                retry_after = wait;
                            }
                        }
                    }
                }
                return Ok(Admission::Refused { limit, retry_after });
            }
            let at = at.unwrap_or(now.as_nanos() / 1000);
            Ok(Admission::Admitted {
                at: Timestamp::from_nanos(at.saturating_mul(1000)),
            })
        });
        if let (Err(_), Some((indices, at))) = (&result, to_release) {
            let owed: Vec<Owed> = indices
                .iter()
                .filter_map(|&i| requests.get(i))
                .map(|request| self.owed_for(&request.key, at, request.cost))
                .collect();
            let left = self.timeout.saturating_sub(started.elapsed());
            self.pay(owed, left);
        }
        result
    }

    /// Gives back `owed` within `time` on a fresh connection; what cannot be given back
    /// now is kept for later operations (at most `MAX_OWED`; past that the oldest are
    /// dropped: units left counted only ever refuse, never over-admit).
    fn pay(&self, owed: Vec<Owed>, time: Duration) {
        let mut left = owed;
        if !time.is_zero() {
            let mut paid = 0;
            let _ = self.pool.run(time, |b| {
                for owed in left.iter().skip(paid) {
                    self.release_owed(b, owed)?;
                    paid += 1;
                }
                Ok(())
            });
            left.drain(..paid);
        }
        if !left.is_empty() {
            let mut debts = self.owed.lock();
            debts.extend(left);
            let over = debts.len().saturating_sub(MAX_OWED);
            debts.drain(..over);
        }
    }

    /// Pays what earlier failed calls could not give back, now that the cluster may answer
    /// again, within a quarter of the timeout.
    fn pay_owed(&self) {
        let owed = std::mem::take(&mut *self.owed.lock());
        if !owed.is_empty() {
            self.pay(owed, self.rollback_time());
        }
    }

    /// What a call that reserved a slot keeps of its deadline to give it back: a quarter.
    fn rollback_time(&self) -> Duration {
        self.timeout / 4
    }

    /// Gives back what the slots before a refusal recorded. A release that fails leaves
    /// those units counted until their window passes: a later call may be refused, none
    /// is ever admitted over `max`.
    fn release_reserved(
        &self,
        b: &mut super::Bounded<'_>,
        requests: &[LimitRequest<'_>],
        reserved: &[&[usize]],
        at: Option<u64>,
    ) {
        b.keep(Duration::ZERO);
        let Some(at) = at else { return };
        for &i in reserved.iter().flat_map(|indices| indices.iter()) {
            if let Some(request) = requests.get(i) {
                let _ = self.release_step(b, &request.key, at, request.cost);
            }
        }
    }
}

/// Whether a refusal found so far should give way to one with a longer wait.
trait Longest {
    fn is_none_or_shorter(&self, wait: Duration) -> bool;
}

impl Longest for Option<(usize, Duration)> {
    fn is_none_or_shorter(&self, wait: Duration) -> bool {
        self.map_or(true, |(_, longest)| wait > longest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_eq!(
            slot("{}x"),
            crc16::State::<crc16::XMODEM>::calculate(b"{}x") % SLOTS
        );
        let mut a = String::from("x");
        push_tag(&mut a, "g1");
        let mut b = String::from("y");
        push_tag(&mut b, "g1");
        assert_eq!(slot(&a), slot(&b));
    }
}
