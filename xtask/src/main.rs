//! `cargo xtask`: set up, build, test and run blocker. Every task first installs what is
//! missing on this machine (and says so); a second run installs nothing.

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
    /// kernel, a real CrowdSec LAPI) one at a time, since they share kernel state.
    Test,
    /// Build, then run the daemon with these arguments (as root).
    Run {
        #[arg(long)]
        release: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
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
            cargo(&["test", "--package", "blocker-tests", "--", "--test-threads=1"])
        }
        Task::Run { release, args } => {
            setup::toolchain()?;
            cargo(&build_args(release))?;
            let profile = if release { "release" } else { "debug" };
            let binary = workspace_root()?.join("target").join(profile).join("blocker");
            let status = Command::new(&binary)
                .args(&args)
                .status()
                .with_context(|| format!("running {}", binary.display()))?;
            if !status.success() {
                bail!("blocker exited with {status}");
            }
            Ok(())
        }
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
    let status = Command::new(cargo)
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
    Ok(manifest.parent().context("xtask has a parent directory")?.to_path_buf())
}
