//! The real `blocker` binary as a separate process: a config for it, the daemon in a test
//! host's namespace, and CLI calls.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use crate::netns::Netns;

/// A throwaway config for a daemon on `eth0` of a test host, with its own pins and state.
pub struct TestConfig {
    pub dir: PathBuf,
    pub path: PathBuf,
    pub pins: crate::PinDir,
    pub log: PathBuf,
}

impl TestConfig {
    #[must_use]
    pub fn new(name: &str, lapi_url: &str, api_key: &str) -> TestConfig {
        let id = format!("blocker-test-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pins = crate::PinDir::new(name);
        let path = dir.join("blocker.yaml");
        std::fs::write(
            &path,
            format!(
                "api_url: {lapi_url}/\napi_key: {api_key}\ninterfaces: [eth0]\nxdp_mode: native\nupdate_frequency: 1s\nbpffs_dir: {}\nstate_file: {}\nprometheus:\n  enabled: false\nusage_metrics:\n  enabled: false\n",
                pins.path().display(),
                dir.join("state.json").display()
            ),
        )
        .expect("write config");
        TestConfig {
            log: dir.join("blocker.log"),
            dir,
            path,
            pins,
        }
    }

    /// The daemon's log so far, for failure messages.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the CLI (in the root namespace: it only reads pins) and returns its stdout.
    #[must_use]
    pub fn cli(&self, blocker: &str, args: &[&str]) -> String {
        let out = Command::new(blocker)
            .arg("-c")
            .arg(&self.path)
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .expect("run blocker");
        assert!(out.status.success(), "blocker {args:?} failed");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[must_use]
    pub fn json(&self, blocker: &str, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.cli(blocker, args)).expect("JSON output")
    }
}

impl Drop for TestConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `blocker run` in a host's network namespace (spawned from a thread inside it, so it keeps
/// the test's mount namespace and sees the host's bpffs). Killed on drop.
pub struct DaemonProcess(Child);

impl DaemonProcess {
    /// Starts `wrapper... blocker run -c CONFIG` (`wrapper` may be empty, or e.g. `setpriv ...`).
    #[must_use]
    pub fn start(
        ns: &Netns,
        wrapper: &[&str],
        blocker: &str,
        config: &TestConfig,
    ) -> DaemonProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.log)
            .expect("log");
        let (program, args) = match wrapper.split_first() {
            Some((program, args)) => (*program, [args, &[blocker]].concat()),
            None => (blocker, Vec::new()),
        };
        let child = ns.run(|| {
            Command::new(program)
                .args(args)
                .args(["run", "-c"])
                .arg(&config.path)
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn blocker")
        });
        DaemonProcess(child)
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends `signal` and reaps the process.
    pub fn signal(&mut self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("pid");
        // SAFETY: our own child, not yet reaped.
        unsafe { libc::kill(pid, signal) };
        self.0.wait().expect("wait for blocker");
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Blocks until `cond` holds, polling, or panics after `within` with `context()`.
pub fn wait_for(
    what: &str,
    within: std::time::Duration,
    mut cond: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}\n{}",
            context()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
