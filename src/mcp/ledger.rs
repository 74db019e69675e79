//! The approval ledger: used approval nonces kept in a file, so that an approval works
//! once across restarts of a gateway that keeps its counts in memory.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// Used approval nonces, appended to a file (one `EXPIRY_MS NONCE` line each, `EXPIRY_MS`
/// on the relay's clock) and read back when opened, so a restarted gateway refuses an
/// approval it already accepted or declined.
///
/// One gateway process writes a ledger: replicas that must share single use share a
/// counter store (Redis) instead. Each use is written and synced to disk before the call
/// goes on, so a crash right after cannot forget it. Opening drops entries whose approval
/// has expired and rewrites the file without them, so it holds at most the approvals of
/// one lifetime.
///
/// ```
/// use mcp_policy::mcp::ApprovalLedger;
///
/// let path = std::env::temp_dir().join(format!("ledger-doc-{}", std::process::id()));
/// let ledger = ApprovalLedger::open(&path, 1_000)?;
/// assert!(ledger.use_once("nonce-a", 61_000, 1_000)?);
/// assert!(!ledger.use_once("nonce-a", 61_000, 2_000)?);
/// drop(ledger);
/// // Across a restart:
/// let ledger = ApprovalLedger::open(&path, 3_000)?;
/// assert!(!ledger.use_once("nonce-a", 61_000, 3_000)?);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ApprovalLedger {
    path: PathBuf,
    state: Mutex<Ledger>,
}

#[derive(Debug)]
struct Ledger {
    file: File,
    /// Nonce → when its approval expires (ms on the relay's clock).
    used: HashMap<String, u64>,
    /// Uses recorded since expired entries were last dropped from memory.
    since_prune: usize,
}

impl ApprovalLedger {
    /// Opens (or creates) the ledger at `path`, keeping the entries that have not expired
    /// at `now_ms`.
    ///
    /// # Errors
    /// The file cannot be read, rewritten or opened for appending.
    pub fn open(path: impl AsRef<Path>, now_ms: u64) -> io::Result<ApprovalLedger> {
        let path = path.as_ref().to_path_buf();
        let mut used = HashMap::new();
        match File::open(&path) {
            Ok(file) => {
                for line in BufReader::new(file).lines() {
                    let line = line?;
                    // A line cut by a crash mid-write has no nonce after its expiry, or
                    // an expiry that does not parse: nothing was approved with it yet.
                    let Some((expiry, nonce)) = line.split_once(' ') else {
                        continue;
                    };
                    if let Ok(expiry) = expiry.parse::<u64>() {
                        if expiry > now_ms && !nonce.is_empty() {
                            used.insert(nonce.to_owned(), expiry);
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Rewrite without the expired entries, then append from there.
        let fresh = path.with_extension("compacting");
        {
            let mut out = File::create(&fresh)?;
            for (nonce, expiry) in &used {
                writeln!(out, "{expiry} {nonce}")?;
            }
            out.sync_all()?;
        }
        std::fs::rename(&fresh, &path)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(ApprovalLedger {
            path,
            state: Mutex::new(Ledger {
                file,
                used,
                since_prune: 0,
            }),
        })
    }

    /// Records `nonce` as used until `expires_ms`: `true` the first time, `false` if it
    /// was used before (by this process or before a restart).
    ///
    /// # Errors
    /// The use could not be written to disk; the approval must then be refused.
    pub fn use_once(&self, nonce: &str, expires_ms: u64, now_ms: u64) -> io::Result<bool> {
        if nonce.contains(char::is_whitespace) || nonce.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an approval nonce is a non-empty word",
            ));
        }
        let mut ledger = self.state.lock();
        if ledger
            .used
            .get(nonce)
            .is_some_and(|&expiry| expiry > now_ms)
        {
            return Ok(false);
        }
        writeln!(ledger.file, "{expires_ms} {nonce}")?;
        ledger.file.sync_data()?;
        ledger.used.insert(nonce.to_owned(), expires_ms);
        ledger.since_prune += 1;
        if ledger.since_prune >= ledger.used.len().max(1024) {
            ledger.used.retain(|_, expiry| *expiry > now_ms);
            ledger.since_prune = 0;
        }
        Ok(true)
    }

    /// The file the ledger is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn expired_uses_are_forgotten_on_open_and_a_torn_line_is_ignored() {
        let path = std::env::temp_dir().join(format!("ledger-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ledger = ApprovalLedger::open(&path, 0).unwrap();
        assert!(ledger.use_once("a", 100, 0).unwrap());
        assert!(ledger.use_once("b", 1_000, 0).unwrap());
        assert!(ledger.use_once("bad nonce", 1_000, 0).is_err());
        drop(ledger);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"99999")
            .unwrap();
        let ledger = ApprovalLedger::open(&path, 500).unwrap();
        assert!(!ledger.use_once("b", 1_000, 500).unwrap());
        assert!(
            ledger.use_once("a", 1_100, 500).unwrap(),
            "a expired at 100"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        std::fs::remove_file(&path).unwrap();
    }
}
