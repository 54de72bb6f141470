//! Installs what building and testing need, as `shared/TOOLCHAIN.md` describes: rust-src for
//! the nightly, bpf-linker linked against the nightly's own libLLVM (no LLVM development
//! package of that version exists in Debian here), and Debian's packages for the tests
//! (`CrowdSec`'s LAPI and cscli, iproute2, nftables, ethtool, bpftool).

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// The bpf-linker release known to build against LLVM 22 with these compilers.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the tests use.
const TEST_PACKAGES: &[&str] = &["crowdsec", "iproute2", "nftables", "ethtool", "bpftool"];

/// rust-src for nightly and bpf-linker.
pub fn toolchain() -> Result<()> {
    let components = || {
        output(
            "rustup",
            &["component", "list", "--toolchain", "nightly", "--installed"],
        )
    };
    let installed = if let Ok(installed) = components() {
        installed
    } else {
        // The eBPF crate builds only with a nightly (`-Z build-std`).
        say("installing a nightly toolchain with rustup (the eBPF program needs one)");
        run(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )
        .context(
            "installing a nightly toolchain failed (is rustup installed? https://rustup.rs)",
        )?;
        components()?
    };
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        say("installing rust-src for the nightly toolchain (eBPF builds core from source)");
        run(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        )?;
    }
    // aya-build runs bpf-linker under `rustup run nightly`, as we check it here.
    if output("rustup", &["run", "nightly", "bpf-linker", "--version"]).is_ok() {
        return Ok(());
    }
    let sysroot = output("rustc", &["+nightly", "--print", "sysroot"])?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    let libllvm = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libLLVM.so"))
        })
        .with_context(|| format!("no libLLVM.so in {}", lib_dir.display()))?;
    let version = output("rustc", &["+nightly", "-vV"])?;
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV names no LLVM version")?
        .to_owned();
    let home = std::env::var("HOME").context("HOME is not set")?;
    let prefix = PathBuf::from(home).join(".local/rustc-llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    // bpf-linker's build looks for `libLLVM.so`; the binary then loads the soname through its
    // rpath (this folder), so link both names.
    let soname = libllvm.file_name().context("libLLVM has a file name")?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), soname] {
        let link = prefix.join("lib").join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    say(&format!(
        "installing bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} ({}); takes a few minutes",
        libllvm.display()
    ));
    let status = Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
        ])
        .args(["--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix)
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed ({status})");
    }
    Ok(())
}

/// Debian's packages for the tests. `CrowdSec`'s install script registers with the central API
/// unless its credentials file is non-empty, and there is no route out: write it first.
pub fn test_packages() -> Result<()> {
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !output("dpkg-query", &["-W", "-f", "${Status}", p])
                .is_ok_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if missing.contains(&"crowdsec") {
        let credentials = std::path::Path::new("/etc/crowdsec/online_api_credentials.yaml");
        if std::fs::metadata(credentials).map_or(true, |m| m.len() == 0) {
            say(
                "writing an offline /etc/crowdsec/online_api_credentials.yaml (no central API here)",
            );
            std::fs::create_dir_all("/etc/crowdsec")?;
            std::fs::write(credentials, "# offline: no central API\n")?;
        }
    }
    say(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    run("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    let status = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", missing.join(" "));
    }
    Ok(())
}

fn say(what: &str) {
    println!("xtask setup: {what}");
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// A command's stdout, or an error if it cannot run or fails.
fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {} failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
