//! What both gateways do beside relaying: watching files, reloading the policy, naming
//! it by digest, and how often counts are reclaimed.

use crate::files::load_policy;
use crate::Failure;
use mcp_policy::Engine;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often a gateway lets its counter store forget counts whose window has passed.
pub const RECLAIM_EVERY: Duration = Duration::from_secs(60);

/// Lowercase hex SHA-256 of a file's bytes.
pub fn file_sha256(path: &Path) -> Option<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).ok()?;
    Some(hex::encode(sha2::Sha256::digest(bytes)))
}

/// Calls `on_change` with each of `files` whose modification time changed, looking every
/// `every`, on a thread of its own.
pub fn watch(files: Vec<PathBuf>, every: Duration, on_change: impl Fn(&Path) + Send + 'static) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut seen: Vec<Option<SystemTime>> = files.iter().map(|f| modified(f)).collect();
    std::thread::spawn(move || loop {
        std::thread::sleep(every);
        for (file, seen) in files.iter().zip(seen.iter_mut()) {
            let now = modified(file);
            if now != *seen {
                *seen = now;
                on_change(file);
            }
        }
    });
}

/// Reloads the enforced policy or the shadow policy from the file that changed; a bad edit
/// keeps the previous one and says why. `named` learns the enforced policy file's digest.
pub fn reload(
    engine: &Engine,
    changed: &Path,
    policy: &Path,
    shadow: Option<&Path>,
    named: impl Fn(String),
) {
    let which = if changed == policy {
        "policy"
    } else {
        "shadow policy"
    };
    match load_policy(changed) {
        Ok(loaded) if changed == policy => {
            engine.reload(loaded);
            if let Some(hex) = file_sha256(policy) {
                named(hex);
            }
            eprintln!("mcp-policy gateway: reloaded {}", changed.display());
        }
        Ok(loaded) if Some(changed) == shadow => {
            engine.set_shadow(Some(loaded));
            eprintln!(
                "mcp-policy gateway: reloaded the shadow policy {}",
                changed.display()
            );
        }
        Ok(_) => {}
        Err(Failure::Usage(e) | Failure::Checked(e)) => {
            eprintln!("mcp-policy gateway: keeping the previous {which}: {e}")
        }
    }
}
