//! What the daemon records for `blocker status`: when it last synced with LAPI, the last
//! error, how it attached. A small JSON file, replaced atomically (write, then rename).

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// The last write of the state file failed: the next failure is not logged again, since the
/// daemon saves after every pull (a `state_file` the service may not write would otherwise
/// fill the journal).
static FAILING: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonState {
    pub pid: u32,
    pub version: String,
    pub lapi_url: String,
    /// `(interface, mode)`: "native", "generic", or "kept (pinned link reused)".
    pub interfaces: Vec<(String, String)>,
    pub started_at: u64,
    /// Unix seconds of the last successful pull.
    pub last_sync: Option<u64>,
    /// Unix seconds of the last successful full (`startup=true`) pull: while full pulls fail,
    /// deltas still bring new bans, and this says how stale the rest may be.
    #[serde(default)]
    pub last_full_sync: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    /// Bans and removals the kernel refused, waiting to be tried again (each second).
    #[serde(default)]
    pub pending_writes: usize,
}

#[must_use]
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl DaemonState {
    /// Writes the state to `path`; failures are logged (the first of a run of them), never
    /// fatal (status is a convenience).
    pub fn save(&self, path: &Path) {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(
                &tmp,
                serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
            )?;
            std::fs::rename(&tmp, path)
        };
        match write() {
            Ok(()) => {
                if FAILING.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %path.display(), "the state file is written again");
                }
            }
            Err(e) => {
                if !FAILING.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "cannot write the state file (`blocker status` shows an old state); said once until it works again"
                    );
                }
            }
        }
    }

    /// Reads the state a daemon left at `path`.
    pub fn load(path: &Path) -> std::io::Result<DaemonState> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captured_log::CapturedLog;

    #[test]
    fn a_state_file_that_cannot_be_written_is_warned_about_once_until_it_can() {
        let dir = std::env::temp_dir().join(format!("blocker-state-test-{}", std::process::id()));
        let (log, guard) = CapturedLog::start();
        let state = DaemonState::default();
        // A folder can't be made under /proc.
        for _ in 0..3 {
            state.save(Path::new("/proc/blocker-state-test/state.json"));
        }
        state.save(&dir.join("state.json"));
        state.save(&dir.join("state.json"));
        drop(guard);
        let text = log.text();
        assert_eq!(
            text.matches("cannot write the state file").count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.matches("the state file is written again").count(),
            1,
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
