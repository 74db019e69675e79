//! A file the console reads again when it changes (the approvers file, the gateway's
//! tokens file): looked at on use, by modification time, so a request costs one `stat`,
//! not a read and a parse; a bad edit keeps the previous content and says why.

use crate::Failure;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub struct FileWatch<T> {
    path: PathBuf,
    /// What the file holds, for messages ("approvers", "tokens").
    what: &'static str,
    load: fn(&Path) -> Result<T, String>,
    loaded: Mutex<(Option<SystemTime>, Arc<T>)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl<T> FileWatch<T> {
    /// Reads `path` with `load` once; an error names what to fix.
    pub fn open(
        path: &Path,
        what: &'static str,
        load: fn(&Path) -> Result<T, String>,
    ) -> Result<FileWatch<T>, Failure> {
        let content = load(path).map_err(Failure::Usage)?;
        Ok(FileWatch {
            path: path.to_owned(),
            what,
            load,
            loaded: Mutex::new((modified(path), Arc::new(content))),
        })
    }

    /// The content now: the file is read again if it changed since.
    pub fn current(&self) -> Option<Arc<T>> {
        let mut loaded = self.loaded.lock().ok()?;
        let now = modified(&self.path);
        if now != loaded.0 {
            loaded.0 = now;
            match (self.load)(&self.path) {
                Ok(content) => {
                    loaded.1 = Arc::new(content);
                    eprintln!("mcp-policy gateway: reloaded {}", self.path.display());
                }
                Err(e) => eprintln!(
                    "mcp-policy gateway: keeping the previous {}: {e}",
                    self.what
                ),
            }
        }
        Some(Arc::clone(&loaded.1))
    }
}
