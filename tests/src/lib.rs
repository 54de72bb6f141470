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
