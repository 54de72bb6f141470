//! What the daemon records for `blocker status`: when it last synced with LAPI, the last
//! error, how it attached. A small JSON file, replaced atomically (write, then rename).

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

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
    /// Writes the state to `path`; failures are logged, never fatal (status is a convenience).
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
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the state file");
        }
    }

    /// Reads the state a daemon left at `path`.
    pub fn load(path: &Path) -> std::io::Result<DaemonState> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }
}
