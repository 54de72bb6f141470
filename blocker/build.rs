//! Builds the XDP program (`blocker-ebpf`) for the BPF target with aya-build, so a plain
//! `cargo build` yields a daemon with its object embedded. Needs the nightly's rust-src and
//! bpf-linker: `cargo xtask build` installs them on a fresh machine.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "blocker-ebpf")
        .ok_or_else(|| anyhow!("blocker-ebpf is not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("blocker-ebpf has no manifest directory"))?
        .as_str();
    aya_build::build_ebpf(
        [Package {
            name: ebpf.name.as_str(),
            root_dir,
            ..Package::default()
        }],
        Toolchain::default(),
    )
}
