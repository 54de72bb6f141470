//! `cargo xtask demo`: installs what is missing, builds blocker and the demo, then runs the
//! demo (`tests/src/bin/demo.rs`) with `BLOCKER_BIN` pointing at the daemon just built.

use std::{os::unix::process::CommandExt as _, path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};

pub fn run() -> Result<()> {
    if effective_uid()? != 0 {
        bail!("the demo needs root (network namespaces, XDP): run `cargo xtask demo` as root");
    }
    crate::setup::toolchain()?;
    crate::setup::test_packages()?;
    crate::cargo(&["build", "--package", "blocker"])?;
    crate::cargo(&["build", "--package", "blocker-tests", "--bin", "demo"])?;
    let debug = target_dir()?.join("debug");
    let blocker = debug.join("blocker");
    let demo = debug.join("demo");
    println!(
        "xtask: BLOCKER_BIN={} {}",
        blocker.display(),
        demo.display()
    );
    // Replace xtask with the demo, as `cargo run` does: Ctrl-C then reaches only the demo (and
    // its children), which removes what it made before it exits.
    let error = Command::new(&demo).env("BLOCKER_BIN", &blocker).exec();
    Err(error).with_context(|| format!("running {}", demo.display()))
}

/// Where cargo builds: `CARGO_TARGET_DIR` (relative to the workspace root, where `cargo()`
/// runs) or `<workspace>/target`.
fn target_dir() -> Result<PathBuf> {
    let root = crate::workspace_root()?;
    Ok(match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    })
}

/// The effective user id, from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> Result<u32> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .context("/proc/self/status has no Uid line")
}
