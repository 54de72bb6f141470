//! Loads the embedded XDP object into the kernel (the verifier runs here), attaches it, and
//! pins it so enforcement outlives the daemon.
//!
//! Pinned under `bpffs_dir` (default `/sys/fs/bpf/blocker`): every map by its name, and one XDP
//! link per interface (`link-<interface>`, a `.` in the name as `:`). A new daemon reuses the
//! pinned maps (bans survive a restart or a crash) and swaps its program into the pinned link
//! with `BPF_LINK_UPDATE`, which is atomic: no packet meets an interface without the program.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{MapInfo, MapType},
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        xdp::XdpLink,
    },
};
use blocker_common::{BucketV4, BucketV6, Settings, Slot, map, table};

use crate::{EBPF_OBJECT, xdp_hook};

/// The program's name in the object.
pub const PROGRAM: &str = "blocker";

/// `statfs` magic of a BPF filesystem.
const BPF_FS_MAGIC: i64 = 0xCAFE_4A11;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the XDP object failed (built without bpf-linker? run `cargo xtask build`)")]
    Object(#[source] EbpfError),
    #[error("the object has no XDP program named {PROGRAM}")]
    NoProgram,
    #[error(
        "the kernel refused the XDP program (verifier or privileges: CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON; kernel 5.11 or later)"
    )]
    Verifier(#[source] ProgramError),
    #[error(
        "{dir} is not on a BPF filesystem and mounting one at /sys/fs/bpf failed; mount it with `mount -t bpf bpf /sys/fs/bpf` (or give the container the host's /sys/fs/bpf)"
    )]
    NoBpffs {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "bpffs_dir {dir} is not on a BPF filesystem; choose a folder under one (the default is /sys/fs/bpf/blocker)"
    )]
    PinDirNotBpffs { dir: PathBuf },
    #[error(
        "the pinned map {path} has another layout (left by an older blocker?); run `blocker detach`, then start again"
    )]
    OldPins { path: PathBuf },
    #[error(
        "renaming {from} over {to} failed; the program with the resized tables is attached already, and the next start finishes the resize"
    )]
    Promote {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pinning the resized map at {path} failed")]
    Repin {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot create the pin directory {dir}")]
    PinDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How to attach: `Native` runs in the driver (veth, most NICs), `Generic` after the kernel
/// has built an skb (works everywhere, slower).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
}

/// What attaching did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A fresh link, now pinned.
    New(AttachMode),
    /// The program was swapped into the link a previous daemon pinned (its mode is kept).
    Replaced,
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("attaching XDP ({mode:?}) to interface {interface} failed")]
    Attach {
        interface: String,
        mode: AttachMode,
        #[source]
        source: ProgramError,
    },
    #[error("the pinned XDP link {path} cannot be reused")]
    Reuse {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error("cannot read which interface the pinned XDP link {path} is on")]
    LinkInterface {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list the pinned XDP links in {dir}")]
    ListPins {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot move the pinned XDP link {from} to {to}, after its interface's new name")]
    MovePin {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove the pinned XDP link {path}, left on another interface or none")]
    StalePin {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("swapping the program into the pinned XDP link {path} failed")]
    Replace {
        path: PathBuf,
        #[source]
        source: ProgramError,
    },
    #[error(
        "interface {interface} already has XDP program {program_id}{} ({mode}), not attached by this blocker: blocker needs the hook to itself; `bpftool prog show id {program_id}` shows it; remove it with `ip link set dev {interface} xdp off`, or, if a BPF link holds it (`bpftool link`), by stopping its owner or removing its pin (a blocker with another bpffs_dir: `blocker detach` with its configuration)",
        name.as_ref().map(|name| format!(" {name:?}")).unwrap_or_default()
    )]
    Occupied {
        interface: String,
        program_id: u32,
        /// The program's own name, if it can be read: listing programs takes `CAP_SYS_ADMIN`,
        /// which the systemd unit does not give.
        name: Option<String>,
        mode: &'static str,
    },
    #[error("pinning the XDP link at {path} failed")]
    Pin {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// How many single addresses per family the address tables are sized for (`max_addresses`).
/// Each table gets 1.5 slots per address: full to that point, 0.06 % of IPv4 addresses (8-slot
/// buckets) and 1 % of IPv6 addresses (3-slot buckets) find no room in their probe and go to
/// the range trie, and a lookup of an absent address reads 1.3 and 1.8 buckets on average
/// (simulated). Nothing is rounded to a power of two: the smaller a table, the fewer pages
/// (TLB entries) a flood from many sources walks over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub addresses: u32,
}

/// The default, as crowdsec-firewall-bouncer's `ipset_size`: room for the community
/// blocklist and local decisions in small tables (1.5 MB IPv4, 4 MB IPv6), which are also the
/// fastest under a flood; bigger lists raise it.
impl Default for Capacity {
    fn default() -> Self {
        Capacity { addresses: 131_072 }
    }
}

impl Capacity {
    /// Buckets of the IPv4 table.
    #[must_use]
    pub fn v4_buckets(self) -> u32 {
        self.buckets(size_of::<BucketV4>() / size_of::<Slot<1>>())
    }

    /// Buckets of the IPv6 table.
    #[must_use]
    pub fn v6_buckets(self) -> u32 {
        self.buckets(size_of::<BucketV6>() / size_of::<Slot<4>>())
    }

    fn buckets(self, slots_per_bucket: usize) -> u32 {
        let slots = (u64::from(self.addresses) * 3).div_ceil(2);
        let buckets = slots.div_ceil(slots_per_bucket as u64);
        // At least a whole probe, so that a probe never wraps onto itself.
        u32::try_from(buckets)
            .unwrap_or(u32::MAX)
            .max(table::PROBE_BUCKETS)
    }

    fn apply(self, loader: &mut EbpfLoader<'_>) {
        loader
            .map_max_entries(map::BANNED_V4_ADDRS, self.v4_buckets())
            .map_max_entries(map::BANNED_V6_ADDRS, self.v6_buckets());
    }
}

/// Loads the object and its program into the kernel, unattached, with fresh maps (tests).
pub fn load(capacity: Capacity) -> Result<Ebpf, LoadError> {
    let mut loader = EbpfLoader::new();
    capacity.apply(&mut loader);
    finish_load(loader.load(EBPF_OBJECT))
}

/// The maps that change with `capacity`: the address tables, and the settings that say how
/// big they are (a program reading one table's size from the other's settings would miss).
pub const SIZED_MAPS: [&str; 3] = [map::BANNED_V4_ADDRS, map::BANNED_V6_ADDRS, map::SETTINGS];

/// Loads the object with every map pinned in `dir`, reusing pins a previous daemon left.
///
/// `Resized`: the pinned address tables are not of `capacity`'s size (or a resize was cut
/// short: a map pinned beside is left), so the tables and settings are fresh maps, and every
/// other map is the pinned one. The caller pins them beside the old ones ([`pin_beside`]),
/// moves the old tables' addresses in, swaps the program into the pinned links, then renames
/// the new pins over the old ([`promote`]).
pub fn load_pinned(dir: &Path, capacity: Capacity) -> Result<Loaded, LoadError> {
    ensure_bpffs(dir)?;
    check_pins(dir)?;
    let wanted = (capacity.v4_buckets(), capacity.v6_buckets());
    let pinned = pinned_buckets(dir);
    // A daemon killed while renaming may have left new tables pinned with the old settings
    // (whose hash keys placed none of their entries): only a resize, which reads every slot
    // whatever the keys, puts that right.
    let cut_short = SIZED_MAPS.iter().any(|name| beside(dir, name).exists());
    let resize = pinned.is_some_and(|pinned| pinned != wanted || cut_short);
    let mut loader = EbpfLoader::new();
    capacity.apply(&mut loader);
    for name in map::ALL {
        if !(resize && SIZED_MAPS.contains(&name)) {
            loader.map_pin_path(name, dir.join(name));
        }
    }
    let ebpf = finish_load(loader.load(EBPF_OBJECT))?;
    Ok(match pinned {
        Some(from) if resize => Loaded::Resized {
            ebpf,
            from,
            to: wanted,
        },
        _ => Loaded::Pinned(ebpf),
    })
}

/// What [`load_pinned`] made.
pub enum Loaded {
    /// Every map is the pinned one (or a new one, now pinned).
    Pinned(Ebpf),
    /// The [`SIZED_MAPS`] are new, of `to` buckets (IPv4, IPv6); the pinned tables have
    /// `from`.
    Resized {
        ebpf: Ebpf,
        from: (u32, u32),
        to: (u32, u32),
    },
}

/// Buckets of the pinned address tables (IPv4, IPv6), if both are pinned in `dir`.
fn pinned_buckets(dir: &Path) -> Option<(u32, u32)> {
    let buckets = |name: &str| {
        MapInfo::from_pin(dir.join(name))
            .ok()
            .map(|info| info.max_entries())
    };
    Some((
        buckets(map::BANNED_V4_ADDRS)?,
        buckets(map::BANNED_V6_ADDRS)?,
    ))
}

/// Pins the new [`SIZED_MAPS`] of a resize beside the old ones (as `NAME-next`), before
/// [`KernelMaps::take`](crate::maps::KernelMaps::take) takes them out of `ebpf`.
pub fn pin_beside(ebpf: &Ebpf, dir: &Path) -> Result<(), LoadError> {
    for name in SIZED_MAPS {
        let beside = beside(dir, name);
        let _ = std::fs::remove_file(&beside);
        let map = ebpf.map(name).ok_or(LoadError::Repin {
            path: beside.clone(),
            source: "the object has no such map".into(),
        })?;
        map.pin(&beside).map_err(|e| LoadError::Repin {
            path: beside.clone(),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// Renames the maps [`pin_beside`] pinned over the old pins, once the program that uses them
/// is attached. Each rename replaces a pin at once, so there is always one; a daemon killed
/// before the last rename leaves a map pinned beside, and the next one resizes again.
pub fn promote(dir: &Path) -> Result<(), LoadError> {
    for name in SIZED_MAPS {
        let (from, to) = (beside(dir, name), dir.join(name));
        std::fs::rename(&from, &to).map_err(|source| LoadError::Promote { from, to, source })?;
    }
    Ok(())
}

/// Where [`pin_beside`] pins the new map `name`.
#[must_use]
pub fn beside(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{BESIDE}"))
}

/// Suffix of a map pinned beside the one it replaces (bpffs refuses names with a dot).
const BESIDE: &str = "-next";

/// Refuses pins whose layout is not this build's (left by an older blocker): aya would reuse
/// them as they are, and the verifier's refusal would not say why.
fn check_pins(dir: &Path) -> Result<(), LoadError> {
    let layouts = [
        (map::BANNED_V4_ADDRS, MapType::Array, size_of::<BucketV4>()),
        (map::BANNED_V6_ADDRS, MapType::Array, size_of::<BucketV6>()),
        (map::SETTINGS, MapType::Array, size_of::<Settings>()),
    ];
    for (name, map_type, value_size) in layouts {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let fits = MapInfo::from_pin(&path).is_ok_and(|info| {
            info.map_type().is_ok_and(|t| t == map_type)
                && usize::try_from(info.value_size()) == Ok(value_size)
        });
        if !fits {
            return Err(LoadError::OldPins { path });
        }
    }
    Ok(())
}

fn finish_load(loaded: Result<Ebpf, EbpfError>) -> Result<Ebpf, LoadError> {
    let mut ebpf = loaded.map_err(LoadError::Object)?;
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

/// Where the link of `interface` is pinned. bpffs refuses names with a dot, which VLANs have
/// (`eth0.100`); a pin name has `:` for it, which no interface name has.
#[must_use]
pub fn link_pin(dir: &Path, interface: &str) -> PathBuf {
    dir.join(format!("link-{}", interface.replace('.', ":")))
}

fn xdp_mode(mode: AttachMode) -> XdpMode {
    match mode {
        AttachMode::Native => XdpMode::Driver,
        AttachMode::Generic => XdpMode::Skb,
    }
}

/// Attaches the loaded program to `interface` (in the calling thread's network namespace),
/// unpinned: it is detached when `ebpf` is dropped, or with the returned id.
pub fn attach(
    ebpf: &mut Ebpf,
    interface: &str,
    mode: AttachMode,
) -> Result<aya::programs::xdp::XdpLinkId, AttachError> {
    let error = |source| AttachError::Attach {
        interface: interface.into(),
        mode,
        source,
    };
    let xdp = program(ebpf).map_err(|_| error(ProgramError::NotLoaded))?;
    xdp.attach(interface, xdp_mode(mode)).map_err(error)
}

/// Attaches through the link pinned in `dir` if there is one (an atomic program swap), else
/// attaches anew in `mode` and pins the link. After [`reconcile_links`], a pin is always on
/// the interface that has its name.
pub fn attach_pinned(
    ebpf: &mut Ebpf,
    dir: &Path,
    interface: &str,
    mode: AttachMode,
) -> Result<Attached, AttachError> {
    let path = link_pin(dir, interface);
    let error = |source| AttachError::Attach {
        interface: interface.into(),
        mode,
        source,
    };
    let xdp = program(ebpf).map_err(|_| error(ProgramError::NotLoaded))?;
    if path.exists() {
        let reuse = |source| AttachError::Reuse {
            path: path.clone(),
            source,
        };
        let link = FdLink::from(PinnedLink::from_pin(&path).map_err(reuse)?);
        let link = XdpLink::try_from(link).map_err(reuse)?;
        let id = xdp
            .attach_to_link(link)
            .map_err(|source| AttachError::Replace {
                path: path.clone(),
                source,
            })?;
        // The program keeps the link's fd; closed here, the pin alone holds the link, so that
        // `blocker detach` detaches at once, as after a first attach, even with us running.
        if let Ok(link) = xdp.take_link(id) {
            // Taking the fd out of the wrapper, whose drop would detach (netlink link).
            let _closed = FdLink::try_from(link);
        }
        return Ok(Attached::Replaced);
    }
    // A failure with another program on the hook says whose it is: the kernel's EBUSY or
    // EEXIST ("native and generic XDP can't be active at the same time") would not.
    let id = xdp
        .attach(interface, xdp_mode(mode))
        .map_err(|source| occupied(interface).unwrap_or_else(|| error(source)))?;
    let pin_error = |source: Box<dyn std::error::Error + Send + Sync>| AttachError::Pin {
        path: path.clone(),
        source,
    };
    let link = xdp.take_link(id).map_err(|e| pin_error(e.into()))?;
    let link = FdLink::try_from(link).map_err(|e| pin_error(e.into()))?;
    link.pin(&path).map_err(|e| pin_error(e.into()))?;
    Ok(Attached::New(mode))
}

/// [`AttachError::Occupied`] if some program holds `interface`'s XDP hook in a mode that
/// excludes ours (an offloaded one alone does not).
fn occupied(interface: &str) -> Option<AttachError> {
    let hook = xdp_hook::xdp_hook(ifindex(interface)?)
        .ok()
        .flatten()
        .filter(|hook| hook.mode != "offloaded")?;
    let name = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|program| program.id() == hook.program_id)
        .and_then(|program| program.name_as_str().map(str::to_owned));
    Some(AttachError::Occupied {
        interface: interface.to_owned(),
        program_id: hook.program_id,
        name,
        mode: hook.mode,
    })
}

/// What [`reconcile_links`] did to a pinned link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// Its interface was renamed to `to`, a configured name: the pin follows it.
    Renamed { from: String, to: String },
    /// It was on no configured interface (or on none any more): unpinned, so detached.
    Dropped { interface: String },
}

/// Makes the links pinned in `dir` agree with `interfaces` (in this network namespace),
/// before they are attached: a link stays pinned under the name of the configured interface
/// it is on, its pin renamed if that interface was (swapped names included); a link on no
/// configured interface (an interface dropped from the config, or deleted) is unpinned, which
/// detaches it.
pub fn reconcile_links(dir: &Path, interfaces: &[String]) -> Result<Vec<LinkChange>, AttachError> {
    let links = match pins(dir) {
        Ok(pins) => pins.links,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AttachError::ListPins {
                dir: dir.into(),
                source,
            });
        }
    };
    let configured: Vec<(u32, &str)> = interfaces
        .iter()
        .filter_map(|name| Some((ifindex(name)?, name.as_str())))
        .collect();
    let mut on = Vec::new();
    for (name, path) in links {
        let index = pinned_xdp_ifindex(&path).map_err(|source| AttachError::LinkInterface {
            path: path.clone(),
            source,
        })?;
        let wanted = configured
            .iter()
            .find(|(configured, _)| *configured == index)
            .map(|(_, name)| *name);
        on.push((name, path, wanted));
    }
    let unpin = |name: &str, path: &Path| {
        std::fs::remove_file(path).map_err(|source| AttachError::StalePin {
            path: path.into(),
            source,
        })?;
        Ok::<_, AttachError>(LinkChange::Dropped {
            interface: name.into(),
        })
    };
    let mut changes = Vec::new();
    for (name, path, _) in on.iter().filter(|(_, _, wanted)| wanted.is_none()) {
        changes.push(unpin(name, path)?);
    }
    // A link on a configured interface is never unpinned: its release is asynchronous, and a
    // new link on the same interface meanwhile would be refused (EBUSY). Pins that move go
    // through a name no interface has first (`:` reads back as `.`), so that swapped names
    // free each other's; this process's id keeps it clear of any left by one that died here.
    let moving: Vec<(&String, PathBuf, &str)> = on
        .iter()
        .filter_map(|(name, path, wanted)| {
            let wanted = (*wanted)?;
            (wanted != name).then(|| (name, path.clone(), wanted))
        })
        .collect();
    let mut parked = Vec::new();
    for (i, (name, path, wanted)) in moving.into_iter().enumerate() {
        let park = dir.join(format!("link-:moving{}-{i}", std::process::id()));
        rename_pin(&path, &park)?;
        parked.push((name, park, wanted));
    }
    for (name, park, wanted) in parked {
        rename_pin(&park, &link_pin(dir, wanted))?;
        changes.push(LinkChange::Renamed {
            from: name.clone(),
            to: wanted.into(),
        });
    }
    Ok(changes)
}

fn rename_pin(from: &Path, to: &Path) -> Result<(), AttachError> {
    std::fs::rename(from, to).map_err(|source| AttachError::MovePin {
        from: from.into(),
        to: to.into(),
        source,
    })
}

/// The index of `interface` in this network namespace, if it exists.
#[must_use]
pub fn ifindex(interface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(interface).ok()?;
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The index of the interface the XDP link pinned at `pin` is on: 0 once the kernel has let
/// the link go with its interface. From `BPF_OBJ_GET_INFO_BY_FD`, which aya's `LinkInfo` reads
/// but does not hand out.
fn pinned_xdp_ifindex(pin: &Path) -> std::io::Result<u32> {
    use std::os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    };
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_TYPE_XDP: u32 = 6;
    // The members of `union bpf_attr` these two commands read.
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        pad: u32,
    }
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // `struct bpf_link_info`: the XDP member of its union is the interface index; the rest
    // stays zero, as the kernel requires of a buffer longer than it knows.
    #[repr(C)]
    struct LinkInfo {
        kind: u32,
        id: u32,
        prog_id: u32,
        pad: u32,
        xdp_ifindex: u32,
        rest: [u32; 27],
    }
    let bpf = |cmd: libc::c_long, attr: *const u8, size: usize| {
        // SAFETY: `attr` points to `size` bytes laid out as `union bpf_attr` for `cmd`, writable
        // where the command writes back; the pointers inside it point to live buffers.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    };
    let path = std::ffi::CString::new(pin.as_os_str().as_bytes())?;
    let get = ObjGet {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        pad: 0,
    };
    let fd = bpf(BPF_OBJ_GET, (&raw const get).cast(), size_of::<ObjGet>())?;
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("BPF_OBJ_GET: not an fd"))?;
    // SAFETY: the kernel just opened it for us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = LinkInfo {
        kind: 0,
        id: 0,
        prog_id: 0,
        pad: 0,
        xdp_ifindex: 0,
        rest: [0; 27],
    };
    // The kernel writes `info_len` back.
    let mut get_info = InfoByFd {
        bpf_fd: u32::try_from(fd.as_raw_fd()).map_err(std::io::Error::other)?,
        info_len: u32::try_from(size_of::<LinkInfo>()).map_err(std::io::Error::other)?,
        info: (&raw mut info) as u64,
    };
    bpf(
        BPF_OBJ_GET_INFO_BY_FD,
        (&raw mut get_info).cast_const().cast(),
        size_of::<InfoByFd>(),
    )?;
    if info.kind != BPF_LINK_TYPE_XDP {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a link of type {}, not XDP", info.kind),
        ));
    }
    Ok(info.xdp_ifindex)
}

/// What a daemon pinned in its folder.
pub struct Pins {
    /// `(interface, pin of its XDP link)`.
    pub links: Vec<(String, PathBuf)>,
    pub maps: Vec<PathBuf>,
}

/// Everything pinned in `dir`.
pub fn pins(dir: &Path) -> std::io::Result<Pins> {
    let (mut links, mut maps) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(interface) = name.strip_prefix("link-") {
            links.push((interface.replace(':', "."), path));
        } else if map::ALL.contains(&name.strip_suffix(BESIDE).unwrap_or(&name)) {
            maps.push(path);
        }
    }
    links.sort();
    maps.sort();
    Ok(Pins { links, maps })
}

/// Removes the program from every interface and deletes the pins: enforcement stops.
pub fn detach(dir: &Path) -> std::io::Result<usize> {
    let Pins { links, maps } = pins(dir)?;
    for (_, path) in &links {
        // Unpinning drops the last reference to the link: the kernel detaches the program.
        std::fs::remove_file(path)?;
    }
    for path in &maps {
        std::fs::remove_file(path)?;
    }
    let _ = std::fs::remove_dir(dir);
    Ok(links.len())
}

/// Makes sure `dir` is on bpffs, mounting one at /sys/fs/bpf if none is there, and exists.
fn ensure_bpffs(dir: &Path) -> Result<(), LoadError> {
    if !on_bpffs(Path::new("/sys/fs/bpf")) {
        let target = c"/sys/fs/bpf";
        // SAFETY: static C strings; mount(2) has no other preconditions.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(LoadError::NoBpffs {
                dir: dir.into(),
                source: std::io::Error::last_os_error(),
            });
        }
        // Pins live as long as this mount: in a private mount namespace (`ip netns exec`, a
        // container without the host's /sys/fs/bpf) they vanish with the process.
        tracing::warn!(
            "no BPF filesystem was mounted: mounted one at /sys/fs/bpf; if this process has a private mount namespace (ip netns exec, a container without the host's /sys/fs/bpf), enforcement ends when it exits"
        );
    }
    std::fs::create_dir_all(dir).map_err(|source| LoadError::PinDir {
        dir: dir.into(),
        source,
    })?;
    if !on_bpffs(dir) {
        return Err(LoadError::PinDirNotBpffs { dir: dir.into() });
    }
    Ok(())
}

fn on_bpffs(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: zeroed statfs is a valid out-buffer.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &raw mut buf) };
    #[expect(
        clippy::useless_conversion,
        reason = "f_type's width varies by libc target"
    )]
    let magic = i64::from(buf.f_type);
    rc == 0 && magic == BPF_FS_MAGIC
}
