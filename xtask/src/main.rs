//! `cargo xtask`: set up, build, test and run blocker. Every task first installs what is
//! missing on this machine (and says so); a second run installs nothing.

mod bench;
mod demo;
mod setup;

use std::process::Command;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, test and run blocker")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain and the Debian packages the tests need, then stop.
    Setup,
    /// Build the XDP object and the daemon.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run every test: unit tests, then the privileged integration tests (root, a real
    /// kernel, a real `CrowdSec` LAPI) one at a time, since they share kernel state.
    Test,
    /// Build, then run the daemon with these arguments (as root).
    Run {
        #[arg(long)]
        release: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Show blocker at work (as root): a real LAPI, a mail host, an attacker and a client in
    /// network namespaces; ban the attacker with cscli, watch its mail connections fail while
    /// the client's succeed, print the kernel counters, lift the ban, and clean everything up.
    Demo,
    /// Measure blocker (as root): cost per packet against empty XDP programs, a SYN flood
    /// against nftables, applying decisions and ban latency, legitimate traffic. Writes
    /// target/bench/report.md, report.json and cost.png.
    Bench {
        /// Each part once at small sizes: a smoke run of under a minute.
        #[arg(long)]
        quick: bool,
        /// Only these parts, e.g. `1,3` (1 per packet, 2 flood, 3 control plane, 4 legitimate
        /// traffic).
        #[arg(long)]
        only: Option<String>,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse().task) {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run(task: Task) -> Result<()> {
    match task {
        Task::Setup => {
            setup::toolchain()?;
            setup::test_packages()
        }
        Task::Build { release } => {
            setup::toolchain()?;
            cargo(&build_args(release))
        }
        Task::Test => {
            setup::toolchain()?;
            setup::test_packages()?;
            cargo(&["test", "--workspace", "--exclude", "blocker-tests"])?;
            cargo(&[
                "test",
                "--package",
                "blocker-tests",
                "--",
                "--test-threads=1",
                "--nocapture",
            ])
        }
        Task::Run { release, args } => {
            setup::toolchain()?;
            cargo(&build_args(release))?;
            let profile = if release { "release" } else { "debug" };
            let binary = workspace_root()?
                .join("target")
                .join(profile)
                .join("blocker");
            let status = Command::new(&binary)
                .args(&args)
                .status()
                .with_context(|| format!("running {}", binary.display()))?;
            if !status.success() {
                bail!("blocker exited with {status}");
            }
            Ok(())
        }
        Task::Demo => demo::run(),
        Task::Bench { quick, only } => bench::run(quick, only.as_deref()),
    }
}

fn build_args(release: bool) -> Vec<&'static str> {
    let mut args = vec!["build", "--package", "blocker"];
    if release {
        args.push("--release");
    }
    args
}

/// Runs cargo (the one that runs us) in the workspace root.
fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("xtask: cargo {}", args.join(" "));
    let mut command = Command::new(cargo);
    // Cargo sets these for us as a package; passed on, they make build scripts (ring's) rerun
    // and rebuild half the tree on every switch between `cargo xtask` and plain `cargo`.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_MANIFEST_LINKS",
            ]
            .contains(&key.as_ref())
        {
            command.env_remove(key.as_ref());
        }
    }
    let status = command
        .args(args)
        .current_dir(workspace_root()?)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn workspace_root() -> Result<std::path::PathBuf> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest
        .parent()
        .context("xtask has a parent directory")?
        .to_path_buf())
}
