//! The raw `bpf(2)` calls the benchmark needs and aya 0.14 does not offer: loading a program
//! from hand-written instructions (the empty floors and the flood generator), timing
//! `BPF_PROG_TEST_RUN` on any program fd (one code path for the floors and for blocker, so
//! both are measured alike), live-frames mode, `BPF_LINK_CREATE` for XDP, and naming map fds.

use std::{
    io,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

// `enum bpf_cmd`, `enum bpf_prog_type`, `enum bpf_attach_type` and flags, from
// include/uapi/linux/bpf.h and if_link.h.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// Helper id of `bpf_get_prandom_u32`.
const HELPER_PRANDOM_U32: i32 = 7;

/// XDP verdicts.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// One `struct bpf_insn`: opcode, `dst | src << 4`, offset, immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | src << 4,
        off,
        imm,
    }
}

const EXIT: Insn = insn(0x95, 0, 0, 0, 0);

const fn mov_r0(action: u32) -> Insn {
    #[expect(clippy::cast_possible_wrap, reason = "XDP verdicts are 0..=4")]
    insn(0xb7, 0, 0, 0, action as i32)
}

/// `r0 = action; exit`: the cheapest XDP program there is.
#[must_use]
pub const fn returning(action: u32) -> [Insn; 2] {
    [mov_r0(action), EXIT]
}

/// The flood generator, for live-frames mode: puts a random value in the low 16 bits of the
/// IPv4 source and its ones' complement in the IP ID, so the one's-complement sum of the header,
/// hence its checksum, is unchanged (the frame must start with `src_low + id == 0xffff`), then
/// returns `XDP_TX`, which live-frames mode turns into a transmit on the ingress interface.
#[must_use]
pub const fn spraying_tx() -> [Insn; 12] {
    const SRC_LOW: i16 = 14 + 14;
    const IP_ID: i16 = 14 + 4;
    [
        insn(0xbf, 6, 1, 0, 0),                  // r6 = ctx
        insn(0x85, 0, 0, 0, HELPER_PRANDOM_U32), // r0 = bpf_get_prandom_u32()
        insn(0x61, 2, 6, 0, 0),                  // r2 = ctx->data
        insn(0x61, 3, 6, 4, 0),                  // r3 = ctx->data_end
        insn(0xbf, 4, 2, 0, 0),                  // r4 = r2
        insn(0x07, 4, 0, 0, 34),                 // r4 += Ethernet + IPv4 headers
        insn(0x2d, 4, 3, 3, 0),                  // if r4 > r3 goto tx
        insn(0x6b, 2, 0, SRC_LOW, 0),            // *(u16 *)(r2 + 28) = r0
        insn(0xa7, 0, 0, 0, 0xffff),             // r0 ^= 0xffff
        insn(0x6b, 2, 0, IP_ID, 0),              // *(u16 *)(r2 + 18) = r0
        mov_r0(XDP_TX),                          // tx: r0 = XDP_TX
        EXIT,
    ]
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a `#[repr(C)]` prefix of `union bpf_attr` for `cmd`, zeroed beyond the
    // fields set, and outlives the call; the kernel reads (and for some commands writes) only
    // `size_of::<T>()` bytes of it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<u8>(),
            size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn user_ptr<T>(data: &[T]) -> u64 {
    data.as_ptr() as u64
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// An XDP program loaded from raw instructions; unloaded when dropped.
pub struct RawXdp {
    fd: OwnedFd,
}

impl RawXdp {
    /// Loads `insns` as an XDP program named `name` (at most 15 bytes); the verifier's log is
    /// in the error if it refuses.
    pub fn load(name: &str, insns: &[Insn]) -> io::Result<RawXdp> {
        let mut log = vec![0u8; 64 << 10];
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: u32::try_from(insns.len()).expect("a short program"),
            insns: user_ptr(insns),
            license: user_ptr(c"GPL".to_bytes_with_nul()),
            log_level: 1,
            log_size: u32::try_from(log.len()).expect("64 KiB"),
            log_buf: user_ptr(&log),
            expected_attach_type: BPF_XDP,
            ..ProgLoadAttr::default()
        };
        let len = name.len().min(15);
        attr.prog_name[..len].copy_from_slice(&name.as_bytes()[..len]);
        match bpf(BPF_PROG_LOAD, &mut attr) {
            // SAFETY: BPF_PROG_LOAD returns a new fd that we now own.
            Ok(fd) => Ok(RawXdp {
                fd: unsafe { OwnedFd::from_raw_fd(fd_of(fd)) },
            }),
            Err(e) => {
                log.retain(|&b| b != 0);
                Err(io::Error::new(
                    e.kind(),
                    format!("load {name}: {e}: {}", String::from_utf8_lossy(&log)),
                ))
            }
        }
    }
}

impl AsFd for RawXdp {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn fd_of(rc: libc::c_long) -> i32 {
    i32::try_from(rc).expect("file descriptors fit in an int")
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    /// Explicit, so it is zero: the kernel refuses nonzero bytes past the fields it knows.
    _pad: u32,
}

/// Live-frames mode: the frames really go out of `ingress_ifindex` (in the calling thread's
/// network namespace) when the program returns `XDP_TX`, `batch` frames per NAPI-like batch.
#[derive(Clone, Copy, Debug)]
pub struct LiveFrames {
    pub ingress_ifindex: u32,
    pub batch: u32,
}

/// What one `BPF_PROG_TEST_RUN` answered.
#[derive(Clone, Copy, Debug)]
pub struct RunResult {
    /// The program's return value (of the last run).
    pub retval: u32,
    /// The kernel's average time per repeat, in whole nanoseconds.
    pub kernel_ns: u32,
    /// Wall-clock time of the whole system call, measured here.
    pub wall: Duration,
}

/// Runs `prog` `repeat` times on `data` with `BPF_PROG_TEST_RUN`.
pub fn test_run(
    prog: BorrowedFd<'_>,
    data: &[u8],
    repeat: u32,
    live: Option<LiveFrames>,
) -> io::Result<RunResult> {
    // `struct xdp_md`: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    let ctx: [u32; 6];
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(prog.as_raw_fd()).expect("fds are positive"),
        data_size_in: u32::try_from(data.len()).expect("a frame"),
        data_in: user_ptr(data),
        repeat,
        ..TestRunAttr::default()
    };
    if let Some(live) = live {
        ctx = [0, attr.data_size_in, 0, live.ingress_ifindex, 0, 0];
        attr.ctx_in = user_ptr(&ctx);
        attr.ctx_size_in = u32::try_from(size_of_val(&ctx)).expect("24 bytes");
        attr.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
        attr.batch_size = live.batch;
    }
    let start = Instant::now();
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    let wall = start.elapsed();
    Ok(RunResult {
        retval: attr.retval,
        kernel_ns: attr.duration,
        wall,
    })
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Attaches `prog` to `ifindex` (in the calling thread's network namespace) in driver mode;
/// it stays attached until the returned link is dropped.
pub fn attach_xdp(prog: BorrowedFd<'_>, ifindex: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: u32::try_from(prog.as_raw_fd()).expect("fds are positive"),
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: XDP_FLAGS_DRV_MODE,
    };
    let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: BPF_LINK_CREATE returns a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd_of(fd)) })
}

/// The first fields of `struct bpf_map_info`.
#[repr(C)]
#[derive(Default)]
struct MapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The name of the map behind `fd`, if it is one.
fn map_name(fd: i32) -> Option<String> {
    let mut info = MapInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: u32::try_from(fd).ok()?,
        info_len: u32::try_from(size_of::<MapInfo>()).expect("40 bytes"),
        info: std::ptr::from_mut(&mut info) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).ok()?;
    let len = info
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(info.name.len());
    Some(String::from_utf8_lossy(&info.name[..len]).into_owned())
}

/// Kernel memory (`memlock` in `/proc/self/fdinfo`) of every BPF map this process holds,
/// summed by map name.
#[must_use]
pub fn map_memory() -> Vec<(String, u64)> {
    let mut by_name: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    for entry in fds.filter_map(Result::ok) {
        let is_map = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str() == "anon_inode:bpf-map");
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if !is_map {
            continue;
        }
        let memlock = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("memlock:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
        if let (Some(name), Some(memlock)) = (map_name(fd), memlock) {
            *by_name.entry(name).or_default() += memlock;
        }
    }
    by_name.into_iter().collect()
}
