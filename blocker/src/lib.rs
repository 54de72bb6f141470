//! blocker: a CrowdSec remediation component for mail servers.
//!
//! Data flows left to right: LAPI client → decisions → sync → maps → (XDP program) → stats →
//! metrics.

pub mod clock;
pub mod loader;
pub mod maps;

/// The compiled XDP program, embedded at build time.
pub const EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/blocker"));
