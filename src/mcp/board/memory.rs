//! [`MemoryBoard`]: approvals in this process.

use super::{in_time, ApprovalBoard, BoardEntry, PendingApproval, Verdict, DECIDED_KEPT};
use crate::store::StoreError;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};

/// Approvals kept in this process: one gateway's console decides its own calls.
///
/// ```
/// use mcp_policy::mcp::{ApprovalBoard, MemoryBoard, PendingApproval, Verdict};
///
/// let board = MemoryBoard::new();
/// let approval = PendingApproval::new("whmcs_add_credit", "credits need a second person",
///     None, "00", [Some("g1"), None, None], Some("whmcs_add_credit"), 1_000, 300_000, 600_000)?;
/// board.post(&approval)?;
/// assert_eq!(board.pending(2_000)?.len(), 1);
///
/// let won = board.decide(&approval.id, Verdict::by("ana", true, None, 3_000))?.unwrap();
/// assert_eq!(won.verdict.unwrap().approver.as_deref(), Some("ana"));
/// // A second decision does not replace the first.
/// let stands = board.decide(&approval.id, Verdict::by("bo", false, None, 4_000))?.unwrap();
/// assert!(stands.verdict.unwrap().approved);
/// assert!(board.pending(5_000)?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryBoard {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, BoardEntry>,
    /// Call digest → the latest approval's id.
    calls: HashMap<String, String>,
    decided: VecDeque<BoardEntry>,
}

impl MemoryBoard {
    /// An empty board.
    pub fn new() -> MemoryBoard {
        MemoryBoard::default()
    }
}

impl State {
    /// Forgets entries past their `use_by_ms`.
    fn forget_old(&mut self, now_ms: u64) {
        self.entries.retain(|_, e| now_ms < e.approval.use_by_ms);
        let entries = &self.entries;
        self.calls.retain(|_, id| entries.contains_key(id));
    }
}

impl ApprovalBoard for MemoryBoard {
    fn post(&self, approval: &PendingApproval) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        state.forget_old(approval.created_ms);
        state
            .calls
            .insert(approval.call.clone(), approval.id.clone());
        state.entries.insert(
            approval.id.clone(),
            BoardEntry {
                approval: approval.clone(),
                verdict: None,
            },
        );
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<BoardEntry>, StoreError> {
        Ok(self.state.lock().entries.get(id).cloned())
    }

    fn find_call(&self, call: &str) -> Result<Option<BoardEntry>, StoreError> {
        let state = self.state.lock();
        Ok(state
            .calls
            .get(call)
            .and_then(|id| state.entries.get(id))
            .cloned())
    }

    fn forget_call(&self, call: &str) -> Result<(), StoreError> {
        self.state.lock().calls.remove(call);
        Ok(())
    }

    fn decide(&self, id: &str, verdict: Verdict) -> Result<Option<BoardEntry>, StoreError> {
        let mut state = self.state.lock();
        let Some(entry) = state.entries.get_mut(id) else {
            return Ok(None);
        };
        if entry.verdict.is_some() {
            return Ok(Some(entry.clone()));
        }
        entry.verdict = Some(in_time(&entry.approval, verdict));
        let decided = entry.clone();
        state.decided.push_front(decided.clone());
        state.decided.truncate(DECIDED_KEPT);
        Ok(Some(decided))
    }

    fn pending(&self, now_ms: u64) -> Result<Vec<PendingApproval>, StoreError> {
        let mut state = self.state.lock();
        state.forget_old(now_ms);
        let mut pending: Vec<PendingApproval> = state
            .entries
            .values()
            .filter(|e| e.is_pending(now_ms))
            .map(|e| e.approval.clone())
            .collect();
        pending.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(pending)
    }

    fn decided(&self) -> Result<Vec<BoardEntry>, StoreError> {
        Ok(self.state.lock().decided.iter().cloned().collect())
    }
}
