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

/// Log capture for unit tests that check what the daemon says.
#[cfg(test)]
pub(crate) mod captured_log {
    use std::sync::{Arc, Mutex};

    /// What the log subscriber writes (INFO and above, no colours), while the guard
    /// [`CapturedLog::start`] returns lives on this thread.
    #[derive(Clone, Default)]
    pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for CapturedLog {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl CapturedLog {
        pub fn start() -> (CapturedLog, tracing::subscriber::DefaultGuard) {
            let log = CapturedLog::default();
            let writer = log.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            (log, tracing::subscriber::set_default(subscriber))
        }

        pub fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }
}
