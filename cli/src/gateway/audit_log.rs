//! The audit log file: one JSON line per record, appended and flushed per record, so a
//! crash loses at most the line being written. A record that cannot be written (a full
//! disk) is reported on stderr and the call goes on.

use crate::Failure;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

pub(super) struct AuditLog(Mutex<File>);

impl AuditLog {
    /// Opens `path` for appending, creating it if needed.
    pub(super) fn open(path: &Path) -> Result<AuditLog, Failure> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(|file| AuditLog(Mutex::new(file)))
            .map_err(|e| Failure::Usage(format!("cannot open {}: {e}", path.display())))
    }

    /// Appends `records`, one line each.
    pub(super) fn write<S: AsRef<str>>(&self, records: impl IntoIterator<Item = S>) {
        let Ok(mut file) = self.0.lock() else {
            return;
        };
        for record in records {
            let record = record.as_ref();
            if let Err(e) = writeln!(file, "{record}").and_then(|()| file.flush()) {
                eprintln!("mcp-policy gateway: cannot write the audit log: {e}");
            }
        }
    }
}
