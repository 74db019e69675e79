//! The approval board: calls held for a person on an approval console, and what was
//! decided about them. Relays post to it; a console reads and decides; a board shared
//! through Redis lets any gateway replica's console decide any replica's call.

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::MemoryBoard;
#[cfg(feature = "redis")]
pub use redis::RedisBoard;

use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// How many decided approvals a board keeps for its console, newest first.
pub const DECIDED_KEPT: usize = 100;

/// The most bytes of arguments a board keeps for the console to show; larger arguments
/// are kept as the start of their JSON text (the call's digest still binds them whole).
const MAX_SHOWN_ARGS: usize = 64 * 1024;

/// A call held for a person on the approval console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingApproval {
    /// 128 random bits, hex: names the approval in the console's address and, once it is
    /// used, as the call's approval in the audit log.
    pub id: String,
    /// The tool called.
    pub tool: String,
    /// Why the policy holds it.
    pub reason: String,
    /// The arguments (cut to their first 64 KiB of JSON text when larger).
    pub args: Value,
    /// Lowercase hex SHA-256 of the arguments in canonical form.
    pub args_sha256: String,
    /// The grant that made the call.
    pub grant: Option<String>,
    /// The agent that made the call.
    pub agent: Option<String>,
    /// The session the call came in.
    pub session: Option<String>,
    /// The key of the rule that holds it.
    pub rule: Option<String>,
    /// What the same call retried later is found by: tool, arguments, grant, agent and
    /// rule, hashed ([`PendingApproval::call_digest`]).
    pub call: String,
    /// When it was posted, in milliseconds of the gateway's clock.
    pub created_ms: u64,
    /// When it is declined for want of a decision (the approval timeout).
    pub expires_ms: u64,
    /// Until when an approved call may still run (its expiry plus the approval's
    /// lifetime); the board forgets it after.
    pub use_by_ms: u64,
}

/// What a person (or the timeout) decided about a pending approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Verdict {
    /// Whether the call may run.
    pub approved: bool,
    /// The console approver's name; `None` when no console approver decided (the
    /// timeout, or the client's own user under `approvers: "either"`).
    pub approver: Option<String>,
    /// What the approver wrote, or why the call was declined without one.
    pub note: Option<String>,
    /// When, in milliseconds of the deciding clock.
    pub decided_ms: u64,
}

impl Verdict {
    /// A console approver's decision.
    pub fn by(approver: &str, approved: bool, note: Option<String>, now_ms: u64) -> Verdict {
        Verdict {
            approved,
            approver: Some(approver.to_owned()),
            note,
            decided_ms: now_ms,
        }
    }

    /// A decision no console approver made: `why` names who or what decided.
    pub fn without_approver(approved: bool, why: &str, now_ms: u64) -> Verdict {
        Verdict {
            approved,
            approver: None,
            note: Some(why.to_owned()),
            decided_ms: now_ms,
        }
    }
}

/// One approval on the board, decided or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BoardEntry {
    /// The call held.
    pub approval: PendingApproval,
    /// The decision, once made.
    pub verdict: Option<Verdict>,
}

impl BoardEntry {
    /// Whether it still waits for a decision at `now_ms` (undecided, not expired).
    pub fn is_pending(&self, now_ms: u64) -> bool {
        self.verdict.is_none() && now_ms < self.approval.expires_ms
    }
}

impl PendingApproval {
    /// A new approval for a call, with a fresh random id, waiting until `created_ms +
    /// timeout_ms` and usable, once approved, until `ttl_ms` after that.
    ///
    /// # Errors
    /// The random source failed.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tool: &str,
        reason: &str,
        args: Option<&Value>,
        args_sha256: &str,
        ids: [Option<&str>; 3],
        rule: Option<&str>,
        created_ms: u64,
        timeout_ms: u64,
        ttl_ms: u64,
    ) -> Result<PendingApproval, StoreError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)
            .map_err(|e| StoreError::new("approvals", format!("no random id: {e}")))?;
        let [grant, agent, session] = ids.map(|id| id.map(str::to_owned));
        let shown = args
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let text = shown.to_string();
        let args = if text.len() > MAX_SHOWN_ARGS {
            let mut cut = MAX_SHOWN_ARGS;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            Value::String(format!(
                "{}… (cut: {} bytes in all)",
                text.get(..cut).unwrap_or(""),
                text.len()
            ))
        } else {
            shown
        };
        let expires_ms = created_ms.saturating_add(timeout_ms);
        Ok(PendingApproval {
            id: hex::encode(nonce),
            tool: tool.to_owned(),
            reason: reason.to_owned(),
            call: PendingApproval::call_digest(
                tool,
                args_sha256,
                grant.as_deref(),
                agent.as_deref(),
                rule,
            ),
            args,
            args_sha256: args_sha256.to_owned(),
            grant,
            agent,
            session,
            rule: rule.map(str::to_owned),
            created_ms,
            expires_ms,
            use_by_ms: expires_ms.saturating_add(ttl_ms),
        })
    }

    /// An approval known only by its id (one the board no longer has).
    pub(crate) fn placeholder(id: String) -> PendingApproval {
        PendingApproval {
            id,
            tool: String::new(),
            reason: String::new(),
            args: Value::Null,
            args_sha256: String::new(),
            grant: None,
            agent: None,
            session: None,
            rule: None,
            call: String::new(),
            created_ms: 0,
            expires_ms: 0,
            use_by_ms: 0,
        }
    }

    /// The digest that finds an approval for the same call made again: tool, arguments'
    /// digest, grant, agent and rule, each length-prefixed, SHA-256, hex. The session is
    /// left out: a client that can only retry may do so from a new session.
    pub fn call_digest(
        tool: &str,
        args_sha256: &str,
        grant: Option<&str>,
        agent: Option<&str>,
        rule: Option<&str>,
    ) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [Some(tool), Some(args_sha256), grant, agent, rule] {
            match part {
                Some(text) => {
                    hash.update(b"+");
                    hash.update((text.len() as u64).to_be_bytes());
                    hash.update(text.as_bytes());
                }
                None => hash.update(b"-"),
            }
        }
        hex::encode(hash.finalize())
    }
}

/// Where pending approvals and decisions live: in this process ([`MemoryBoard`]) or
/// shared by replicas ([`RedisBoard`], feature `redis`).
///
/// # Contract
/// - [`decide`](Self::decide) is atomic: of two deciders, one wins, and both are told the
///   verdict that stands. A verdict made at or after the approval's `expires_ms` is
///   recorded as a decline, whatever was asked.
/// - An entry is kept until its `use_by_ms`; the last [`DECIDED_KEPT`] decisions are kept
///   for the console whatever their age.
/// - Errors are [`StoreError`]s; a relay refuses the call (`store_failed`) rather than
///   let it through.
pub trait ApprovalBoard: Send + Sync + fmt::Debug {
    /// Posts a new pending approval.
    ///
    /// # Errors
    /// The board could not record it.
    fn post(&self, approval: &PendingApproval) -> Result<(), StoreError>;

    /// The approval `id`, with its verdict if decided; `None` when unknown or forgotten.
    ///
    /// # Errors
    /// The board could not be read.
    fn get(&self, id: &str) -> Result<Option<BoardEntry>, StoreError>;

    /// The latest approval posted for the call whose [`PendingApproval::call_digest`] is
    /// `call`, unless forgotten.
    ///
    /// # Errors
    /// The board could not be read.
    fn find_call(&self, call: &str) -> Result<Option<BoardEntry>, StoreError>;

    /// Forgets which approval the call `call` has, so the next try posts a new one.
    ///
    /// # Errors
    /// The board could not be written.
    fn forget_call(&self, call: &str) -> Result<(), StoreError>;

    /// Decides `id`, unless decided already: the entry as it stands after, with the
    /// verdict that won; `None` when `id` is unknown.
    ///
    /// # Errors
    /// The board could not be written.
    fn decide(&self, id: &str, verdict: Verdict) -> Result<Option<BoardEntry>, StoreError>;

    /// Approvals waiting for a decision at `now_ms`, oldest first.
    ///
    /// # Errors
    /// The board could not be read.
    fn pending(&self, now_ms: u64) -> Result<Vec<PendingApproval>, StoreError>;

    /// The last [`DECIDED_KEPT`] decisions, newest first.
    ///
    /// # Errors
    /// The board could not be read.
    fn decided(&self) -> Result<Vec<BoardEntry>, StoreError>;
}

/// `verdict`, or a decline if it comes too late for `approval`.
pub(crate) fn in_time(approval: &PendingApproval, verdict: Verdict) -> Verdict {
    if verdict.decided_ms < approval.expires_ms {
        return verdict;
    }
    Verdict::without_approver(
        false,
        "no person decided within the approval timeout",
        verdict.decided_ms,
    )
}
