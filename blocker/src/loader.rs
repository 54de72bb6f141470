//! Loads the embedded XDP object into the kernel (the verifier runs here).

use aya::{
    Ebpf, EbpfError,
    programs::{ProgramError, Xdp},
};

use crate::EBPF_OBJECT;

/// The program's name in the object.
pub const PROGRAM: &str = "blocker";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the XDP object failed (built without bpf-linker? run `cargo xtask build`)")]
    Object(#[source] EbpfError),
    #[error("the object has no XDP program named {PROGRAM}")]
    NoProgram,
    #[error("the kernel refused the XDP program (verifier or privileges: CAP_BPF, CAP_NET_ADMIN)")]
    Verifier(#[source] ProgramError),
}

/// Loads the object and its program into the kernel, unattached.
pub fn load() -> Result<Ebpf, LoadError> {
    let mut ebpf = Ebpf::load(EBPF_OBJECT).map_err(LoadError::Object)?;
    program(&mut ebpf)?.load().map_err(LoadError::Verifier)?;
    Ok(ebpf)
}

/// The XDP program of a loaded object.
pub fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoadError> {
    ebpf.program_mut(PROGRAM)
        .ok_or(LoadError::NoProgram)?
        .try_into()
        .map_err(|_| LoadError::NoProgram)
}

/// How to attach: `Native` runs in the driver (veth, most NICs), `Generic` after the kernel
/// has built an skb (works everywhere, slower).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
}

#[derive(Debug, thiserror::Error)]
#[error("attaching XDP ({mode:?}) to interface {interface} failed")]
pub struct AttachError {
    pub interface: String,
    pub mode: AttachMode,
    #[source]
    pub source: ProgramError,
}

/// Attaches the loaded program to `interface` (in the calling thread's network namespace).
pub fn attach(
    ebpf: &mut Ebpf,
    interface: &str,
    mode: AttachMode,
) -> Result<aya::programs::xdp::XdpLinkId, AttachError> {
    let xdp_mode = match mode {
        AttachMode::Native => aya::programs::XdpMode::Driver,
        AttachMode::Generic => aya::programs::XdpMode::Skb,
    };
    let program = program(ebpf).map_err(|_| AttachError {
        interface: interface.into(),
        mode,
        source: ProgramError::NotLoaded,
    })?;
    program.attach(interface, xdp_mode).map_err(|source| AttachError {
        interface: interface.into(),
        mode,
        source,
    })
}
