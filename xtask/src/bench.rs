//! `cargo xtask bench`: builds the benchmark (`tests/src/bin/bench.rs`, release) and runs it as
//! root. It writes `report.md`, `report.json` and `cost.png` under `target/bench/`.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

pub fn run(quick: bool, only: Option<&str>) -> Result<()> {
    crate::setup::toolchain()?;
    crate::setup::test_packages()?;
    gnuplot();
    crate::cargo(&[
        "build",
        "--release",
        "--package",
        "blocker-tests",
        "--bin",
        "bench",
    ])?;
    let root = crate::workspace_root()?;
    let binary = root.join("target").join("release").join("bench");
    let mut command = Command::new(&binary);
    command.arg("--out").arg(root.join("target").join("bench"));
    if quick {
        command.arg("--quick");
    }
    if let Some(parts) = only {
        command.args(["--only", parts]);
    }
    let status = command
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    if !status.success() {
        bail!("the benchmark failed ({status})");
    }
    Ok(())
}

/// gnuplot draws `cost.png`; without it the report says so and keeps the data and script.
fn gnuplot() {
    if Command::new("gnuplot")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return;
    }
    println!("xtask bench: installing gnuplot-nox (draws the report's plot)");
    let installed = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "gnuplot-nox",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        println!("xtask bench: gnuplot-nox did not install; the report will have no plot");
    }
}
