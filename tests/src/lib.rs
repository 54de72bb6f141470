//! Support for blocker's integration tests: frames, the reference classifier, the kernel
//! harness, network namespaces and a real (or fault-injecting fake) `CrowdSec` LAPI.

pub mod bench;
pub mod daemon;
pub mod fake_lapi;
pub mod kernel;
pub mod lapi;
pub mod netns;
pub mod packet;
pub mod process;
pub mod reference;
pub mod tls;

/// A test's own pin folder: whatever is pinned in it is removed (links detached) when it
/// drops, also when the test fails half-way, so a failed run leaves no program attached and
/// no pins behind.
pub struct PinDir(std::path::PathBuf);

impl PinDir {
    /// `/sys/fs/bpf/blocker-test-<name>-<pid>`.
    #[must_use]
    pub fn new(name: &str) -> PinDir {
        PinDir::at(format!("/sys/fs/bpf/blocker-test-{name}-{}", std::process::id()).into())
    }

    /// The folder `path`, named elsewhere (a test daemon's settings).
    #[must_use]
    pub fn at(path: std::path::PathBuf) -> PinDir {
        PinDir(path)
    }

    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // Gone already after a test's own `detach`; nothing to report either way.
        let _ = blocker::loader::detach(&self.0);
    }
}

/// Gate for tests that need root (BPF, network namespaces). Without root the test is skipped
/// with a line saying so, except under `CI=true`, where a missing privilege fails the test.
#[must_use]
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: needs root (CAP_BPF, CAP_NET_ADMIN) and CI=true forbids skipping"
    );
    eprintln!("skipping {test}: needs root (CAP_BPF, CAP_NET_ADMIN)");
    false
}

/// Keeps `pid` (0: the calling thread) on `cpu` alone.
pub fn pin_to_cpu(pid: i32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only read
    // what they are given.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &raw const set)
    };
    assert_eq!(
        rc,
        0,
        "pin {pid} to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
}
