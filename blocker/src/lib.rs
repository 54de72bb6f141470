//! blocker: a `CrowdSec` remediation component for mail servers.
//!
//! Data flows left to right: LAPI client → decisions → sync → maps → (XDP program) → stats →
//! metrics.

pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod decisions;
pub mod drop_log;
pub mod inspect;
pub mod lapi;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod notify;
pub mod state;
pub mod sync;
pub mod table;
pub mod usage;
pub mod xdp_hook;

/// The compiled XDP program, embedded at build time.
pub const EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/blocker"));

/// An error and its sources on one line, for logs: "a: b: c".
#[must_use]
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        line.push_str(": ");
        line.push_str(&e.to_string());
        source = e.source();
    }
    line
}
