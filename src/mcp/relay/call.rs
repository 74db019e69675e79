//! A call on its way through the relay: the `ToolCall` the engine decides, and the digest
//! of its arguments, computed once however many outward forms need it (the audit record,
//! the approval binding).

use crate::call::ToolCall;
use crate::mcp::arguments_sha256;
use std::cell::OnceCell;
use std::ops::Deref;

pub(super) struct Call<'c> {
    call: ToolCall<'c>,
    args_sha256: OnceCell<String>,
    /// The console approver who decided the call, for its audit records.
    approver: Option<String>,
}

impl<'c> Call<'c> {
    pub(super) fn new(call: ToolCall<'c>) -> Call<'c> {
        Call {
            call,
            args_sha256: OnceCell::new(),
            approver: None,
        }
    }

    /// The call, decided by the console approver `approver` (if any).
    pub(super) fn approved_by(mut self, approver: Option<String>) -> Call<'c> {
        self.approver = approver;
        self
    }

    /// The console approver who decided the call.
    pub(super) fn approver(&self) -> Option<&str> {
        self.approver.as_deref()
    }

    /// Lowercase hex SHA-256 of the arguments in canonical form, hashed on first use.
    pub(super) fn args_sha256(&self) -> &str {
        self.args_sha256
            .get_or_init(|| arguments_sha256(self.call.args()))
    }
}

impl<'c> Deref for Call<'c> {
    type Target = ToolCall<'c>;

    fn deref(&self) -> &ToolCall<'c> {
        &self.call
    }
}
