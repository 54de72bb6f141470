//! The daemon (`blocker::daemon::run`) in-process, on a thread inside a test host's namespace,
//! so it attaches to that host's NIC and reaches a LAPI on that host's loopback.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use blocker::{
    config::XdpMode,
    daemon::{self, DaemonSettings},
    lapi::{ApiKey, LapiAuth, LapiSettings},
};

use crate::netns::Netns;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Settings for a test daemon: 1 s polling, default ports, native XDP on `eth0`, its own pin
/// folder under /sys/fs/bpf and state file under the temp folder.
#[must_use]
pub fn settings(api_url: &str, api_key: &str) -> DaemonSettings {
    let id = format!(
        "blocker-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut lapi = LapiSettings::new(
        api_url.parse().expect("LAPI URL"),
        LapiAuth::ApiKey(ApiKey::new(api_key.to_owned())),
    );
    lapi.timeout = Duration::from_secs(5);
    DaemonSettings {
        lapi,
        update_frequency: Duration::from_secs(1),
        supported_types: vec!["ban".into()],
        interfaces: vec!["eth0".into()],
        xdp_mode: XdpMode::Native,
        ports: vec![25, 465, 587, 143, 993, 110, 995],
        allowlist: Vec::new(),
        observe: false,
        deny_log: false,
        capacity: blocker::loader::Capacity::default(),
        pin_dir: PathBuf::from("/sys/fs/bpf").join(&id),
        state_file: std::env::temp_dir().join(id).join("state.json"),
        prometheus: None,
        usage_metrics: None,
    }
}

/// A running daemon; dropping it stops it, then detaches its program and removes its pins
/// (a real daemon leaves them, so enforcement outlives it).
pub struct Daemon {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Dropped after the thread is joined: the daemon's pins go once it has stopped.
    _pins: crate::PinDir,
}

impl Daemon {
    /// Starts the daemon inside `ns`.
    #[must_use]
    pub fn start(ns: &Netns, settings: DaemonSettings) -> Daemon {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let name = ns.name.clone();
        let pins = crate::PinDir::at(settings.pin_dir.clone());
        let thread = std::thread::spawn(move || {
            crate::netns::enter(&name);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime
                .block_on(daemon::run(settings, async {
                    let _ = stopped.await;
                }))
                .unwrap_or_else(|e| panic!("daemon: {}", blocker::error_chain(&e)));
        });
        Daemon {
            stop: Some(stop),
            thread: Some(thread),
            _pins: pins,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            if !std::thread::panicking() {
                joined.expect("daemon thread panicked");
            }
        }
    }
}
