//! The approvers file: who may sign in to the approval console, and which calls each may
//! decide. Read again whenever it changes; a bad edit keeps the previous one.

use super::file_watch::FileWatch;
use crate::files::read_text;
use crate::gateway::auth::token_digest;
use crate::Failure;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproversFile {
    approvers: Vec<Entry>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Entry {
    sha256: Option<String>,
    name: String,
    grants: Option<Vec<String>>,
}

/// A person who may decide approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    /// Shown in the console and written to audit records.
    pub name: String,
    /// The SHA-256 of their sign-in token, hex; `None` for an approver who signs in
    /// through the authorization server only.
    pub digest: Option<String>,
    /// The grants whose calls they may decide; `None`: any but their own.
    pub grants: Option<Vec<String>>,
}

impl Approver {
    /// Whether `grant`'s call is theirs to decide, and if not, why.
    pub fn may_decide(&self, grant: Option<&str>, own: &[String]) -> Result<(), String> {
        let grant = grant.unwrap_or_default();
        if self.name == grant || own.iter().any(|g| g == grant) {
            return Err(format!(
                "this call was made by your own grant ({grant}): another approver must decide it"
            ));
        }
        match &self.grants {
            Some(grants) if !grants.iter().any(|g| g == grant) => Err(format!(
                "you may decide the calls of {} only, not of grant {grant}",
                grants.join(", ")
            )),
            _ => Ok(()),
        }
    }
}

/// The approvers file, read again when it changes.
pub struct ApproversFileWatch(FileWatch<Vec<Approver>>);

impl ApproversFileWatch {
    /// Reads `path` once; an error names what to fix.
    pub fn open(path: &Path) -> Result<ApproversFileWatch, Failure> {
        FileWatch::open(path, "approvers", load).map(ApproversFileWatch)
    }

    fn find(&self, wanted: impl Fn(&Approver) -> bool) -> Option<Approver> {
        self.0.current()?.iter().find(|a| wanted(a)).cloned()
    }

    /// The approver whose token is `token`.
    pub fn by_token(&self, token: &str) -> Option<Approver> {
        let digest = hex::encode(Sha256::digest(token.trim().as_bytes()));
        self.by_digest(&digest)
    }

    /// The approver whose token's digest is `digest`, if still listed.
    pub fn by_digest(&self, digest: &str) -> Option<Approver> {
        self.find(|a| a.digest.as_deref() == Some(digest))
    }

    /// The approver named `name` (an identity the authorization server vouched for), if
    /// listed.
    pub fn by_name(&self, name: &str) -> Option<Approver> {
        self.find(|a| a.name == name)
    }
}

/// Reads `{"approvers": [{"sha256"?: HEX, "name": NAME, "grants"?: [ID...]}]}`: without
/// `sha256`, the approver signs in through the authorization server only, as the
/// identity `name`.
fn load(path: &Path) -> Result<Vec<Approver>, String> {
    let text = read_text(path).map_err(|e| match e {
        Failure::Usage(m) | Failure::Checked(m) => m,
    })?;
    let file: ApproversFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut approvers = Vec::new();
    for (i, entry) in file.approvers.into_iter().enumerate() {
        let digest = match entry.sha256.as_deref().map(token_digest) {
            None => None,
            Some(Some(digest)) => Some(digest),
            Some(None) => {
                return Err(format!(
                    "{}: approvers[{i}].sha256 must be 64 hexadecimal digits (the SHA-256 of \
                     the approver's token)",
                    path.display()
                ))
            }
        };
        if entry.name.trim().is_empty() {
            return Err(format!(
                "{}: approvers[{i}].name must not be empty: it is written to audit records",
                path.display()
            ));
        }
        approvers.push(Approver {
            name: entry.name,
            digest,
            grants: entry.grants,
        });
    }
    Ok(approvers)
}
