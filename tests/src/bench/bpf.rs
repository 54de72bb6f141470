//! The raw `bpf(2)` calls the benchmark needs and aya 0.14 does not offer: loading a program
//! from hand-written instructions (the empty floors, the flood's reading drop and generator,
//! and the rotating harness), with the few maps they use, timing
//! `BPF_PROG_TEST_RUN` on any program fd (one code path for the floors and for blocker, so
//! both are measured alike), live-frames mode, `BPF_LINK_CREATE` for XDP, naming map fds, and
//! reading a program's run-time statistics from its fd.

use std::{
    io,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

// `enum bpf_cmd`, `enum bpf_prog_type`, `enum bpf_attach_type` and flags, from
// include/uapi/linux/bpf.h and if_link.h.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// Helper ids.
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_PRANDOM_U32: i32 = 7;
const HELPER_TAIL_CALL: i32 = 12;
/// `src_reg` of a 64-bit immediate load that names a map by fd.
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// XDP verdicts.
pub const XDP_ABORTED: u32 = 0;
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

/// `XDP_DROP` after one load of the IPv4 source address (bounds-checked), with the verdict
/// computed from what was loaded (`(src & 1) | 1`, always 1), so that, as in blocker, nothing
/// can be decided before the load completes: what any filter pays to look at a packet, beside
/// the empty program, which never touches it.
///
/// With `padding`, as many additions follow the load, to registers the program zeroes first,
/// so that they depend on nothing it read: they run while the load waits for the frame's
/// cache line, and the program's own run time hardly grows, but each takes a place in the
/// CPU's out-of-order window, as a real filter's work does.
#[must_use]
pub fn reading_drop(padding: usize) -> Vec<Insn> {
    // Free once the load is issued (r1, the context, included).
    const SCRATCH: [u8; 5] = [1, 2, 3, 4, 5];
    let zeroing = if padding == 0 { 0 } else { SCRATCH.len() };
    let to_exit = i16::try_from(3 + zeroing + padding).expect("a short program");
    let mut insns = vec![
        insn(0x61, 2, 1, 0, 0),       // r2 = ctx->data
        insn(0x61, 3, 1, 4, 0),       // r3 = ctx->data_end
        mov_r0(XDP_DROP),             // r0 = XDP_DROP
        insn(0xbf, 4, 2, 0, 0),       // r4 = r2
        insn(0x07, 4, 0, 0, 34),      // r4 += Ethernet + IPv4 headers
        insn(0x2d, 4, 3, to_exit, 0), // if r4 > r3 goto exit
        insn(0x61, 0, 2, 14 + 12, 0), // r0 = the source address
    ];
    insns.extend(SCRATCH[..zeroing].iter().map(|&r| insn(0xb7, r, 0, 0, 0))); // rN = 0
    insns.extend((0..padding).map(|i| insn(0x07, SCRATCH[i % SCRATCH.len()], 0, 0, 1))); // rN += 1
    insns.extend([
        insn(0x57, 0, 0, 0, 1), // r0 &= 1
        #[expect(clippy::cast_possible_wrap, reason = "XDP_DROP is 1")]
        insn(0x47, 0, 0, 0, XDP_DROP as i32), // r0 |= XDP_DROP
        EXIT,
    ]);
    insns
}

/// The flood generator, for live-frames mode: puts a random value of `bits` bits (at most 16)
/// in the low 16 bits of the IPv4 source and its ones' complement in the IP ID, so the
/// one's-complement sum of the header, hence its checksum, is unchanged (the frame must start
/// with `src_low + id == 0xffff`), then returns `XDP_TX`, which live-frames mode turns into a
/// transmit on the ingress interface.
#[must_use]
pub const fn spraying_tx(bits: u32) -> [Insn; 13] {
    const SRC_LOW: i16 = 14 + 14;
    const IP_ID: i16 = 14 + 4;
    assert!(bits <= 16);
    #[expect(clippy::cast_possible_wrap, reason = "at most 0xffff")]
    let mask = ((1u32 << bits) - 1) as i32;
    [
        insn(0xbf, 6, 1, 0, 0),                  // r6 = ctx
        insn(0x85, 0, 0, 0, HELPER_PRANDOM_U32), // r0 = bpf_get_prandom_u32()
        insn(0x57, 0, 0, 0, mask),               // r0 &= mask
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

/// `dst = map` (two instructions): a 64-bit immediate load of a map named by its fd.
fn load_map(dst: u8, map: BorrowedFd<'_>) -> [Insn; 2] {
    [
        insn(0x18, dst, BPF_PSEUDO_MAP_FD, 0, map.as_raw_fd()),
        insn(0, 0, 0, 0, 0),
    ]
}

/// Where [`rotating`] keeps its state, in the frame's MAC addresses (blocker reads neither),
/// as 4-byte words: the base index, the counter (modulo the cycle) and the runs so far.
pub const ROTATION_BASE: usize = 0;
pub const ROTATION_COUNTER: usize = 4;
pub const ROTATION_RUNS: usize = 8;

/// A harness that makes `BPF_PROG_TEST_RUN`'s repeats of one frame come from many sources:
/// each run writes `sources[base + counter]` (`src_len` bytes, a multiple of 4) at
/// `src_offset` in the frame, advances the counter modulo `cycle` and the run count, and
/// tail-calls the program in
/// slot 0 of `target`. Within one test run (not in live-frames mode) the kernel does not reset
/// the frame between repeats, so the counter lives in the frame. `XDP_ABORTED` if anything is
/// amiss (a short frame, an index past the map, an empty slot).
#[must_use]
pub fn rotating(
    sources: BorrowedFd<'_>,
    cycle: u32,
    src_offset: i16,
    src_len: i16,
    target: BorrowedFd<'_>,
) -> Vec<Insn> {
    #![expect(
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        reason = "offsets within a frame's first 64 bytes"
    )]
    const BASE: i16 = ROTATION_BASE as i16;
    const COUNTER: i16 = ROTATION_COUNTER as i16;
    const RUNS: i16 = ROTATION_RUNS as i16;
    assert!(src_len > 0 && src_len % 4 == 0, "copied in 4-byte words");
    let end = i32::from((src_offset + src_len).max(RUNS + 4));
    let cycle = i32::try_from(cycle).expect("a cycle below 2^31");
    let mut p = vec![insn(0xbf, 6, 1, 0, 0)]; // r6 = ctx
    let mut to_abort = Vec::new();
    // r2 = ctx->data, r3 = ctx->data_end; `if r2 + end > r3 goto abort` (its last).
    let bounds = [
        insn(0x61, 2, 6, 0, 0),
        insn(0x61, 3, 6, 4, 0),
        insn(0xbf, 4, 2, 0, 0),
        insn(0x07, 4, 0, 0, end),
        insn(0x2d, 4, 3, 0, 0),
    ];
    p.extend(bounds);
    to_abort.push(p.len() - 1);
    p.extend([
        insn(0x61, 7, 2, COUNTER, 0), // r7 = counter
        insn(0xbf, 8, 7, 0, 0),       // r8 = r7 + 1, or 0 at `cycle`
        insn(0x07, 8, 0, 0, 1),
        insn(0xa5, 8, 0, 1, cycle), // if r8 < cycle skip the next
        insn(0xb7, 8, 0, 0, 0),
        insn(0x63, 2, 8, COUNTER, 0), // counter = r8
        insn(0x61, 9, 2, RUNS, 0),    // runs += 1
        insn(0x07, 9, 0, 0, 1),
        insn(0x63, 2, 9, RUNS, 0),
        insn(0x61, 9, 2, BASE, 0), // r7 += base
        insn(0x0f, 7, 9, 0, 0),
        insn(0x63, 10, 7, -4, 0), // key on the stack
    ]);
    p.extend(load_map(1, sources));
    p.extend([
        insn(0xbf, 2, 10, 0, 0),
        insn(0x07, 2, 0, 0, -4),
        insn(0x85, 0, 0, 0, HELPER_MAP_LOOKUP_ELEM),
    ]);
    to_abort.push(p.len());
    p.push(insn(0x15, 0, 0, 0, 0)); // if r0 == NULL goto abort
    p.extend(bounds); // the call clobbered r2..r5
    to_abort.push(p.len() - 1);
    for word in (0..src_len).step_by(4) {
        p.push(insn(0x61, 5, 0, word, 0));
        p.push(insn(0x63, 2, 5, src_offset + word, 0));
    }
    p.push(insn(0xbf, 1, 6, 0, 0));
    p.extend(load_map(2, target));
    p.extend([
        insn(0xb7, 3, 0, 0, 0),
        insn(0x85, 0, 0, 0, HELPER_TAIL_CALL),
    ]);
    let abort = p.len();
    for at in to_abort {
        p[at].off = i16::try_from(abort - at - 1).expect("a short program");
    }
    p.extend([mov_r0(XDP_ABORTED), EXIT]);
    p
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// A map with `u32` keys, created by fd for hand-written programs; freed when dropped (and
/// no program holds it).
pub struct RawMap {
    fd: OwnedFd,
    value_size: usize,
}

impl RawMap {
    /// Every `RawMap`'s name starts so, which keeps it out of [`map_memory`].
    pub const NAME_PREFIX: &str = "bench_";

    /// An array of `max_entries` values of `value_size` bytes.
    pub fn array(name: &str, value_size: u32, max_entries: u32) -> io::Result<RawMap> {
        RawMap::create(name, BPF_MAP_TYPE_ARRAY, value_size, max_entries)
    }

    /// A one-slot program array, for a tail call.
    pub fn prog_array(name: &str) -> io::Result<RawMap> {
        RawMap::create(name, BPF_MAP_TYPE_PROG_ARRAY, 4, 1)
    }

    fn create(name: &str, map_type: u32, value_size: u32, max_entries: u32) -> io::Result<RawMap> {
        assert!(name.starts_with(RawMap::NAME_PREFIX), "{name}");
        let mut attr = MapCreateAttr {
            map_type,
            key_size: 4,
            value_size,
            max_entries,
            map_name: object_name(name),
            ..MapCreateAttr::default()
        };
        let fd = bpf(BPF_MAP_CREATE, &mut attr)
            .map_err(|e| io::Error::new(e.kind(), format!("create map {name}: {e}")))?;
        // SAFETY: BPF_MAP_CREATE returns a new fd that we now own.
        Ok(RawMap {
            fd: unsafe { OwnedFd::from_raw_fd(fd_of(fd)) },
            value_size: usize::try_from(value_size).expect("a value size"),
        })
    }

    /// Writes `value` (the map's value size: the kernel reads that many bytes) at `index`.
    pub fn set(&self, index: u32, value: &[u8]) -> io::Result<()> {
        assert_eq!(value.len(), self.value_size, "a value of the map's size");
        let mut attr = MapElemAttr {
            map_fd: u32::try_from(self.fd.as_raw_fd()).expect("fds are positive"),
            _pad: 0,
            key: user_ptr(std::slice::from_ref(&index)),
            value: user_ptr(value),
            flags: 0,
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
    }
}

impl AsFd for RawMap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A map's or program's name as the kernel takes it: at most 15 bytes and a NUL.
fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0; 16];
    let len = name.len().min(15);
    out[..len].copy_from_slice(&name.as_bytes()[..len]);
    out
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
            prog_name: object_name(name),
            ..ProgLoadAttr::default()
        };
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

/// The members of `union bpf_attr` that `BPF_OBJ_PIN` reads.
#[repr(C)]
struct PinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

impl RawXdp {
    /// Pins the program at `path` (on a BPF filesystem), for tools that attach a pinned
    /// program (`ip link set dev X xdp pinned PATH`).
    pub fn pin(&self, path: &std::path::Path) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt as _;
        let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        let mut attr = PinAttr {
            pathname: user_ptr(path.as_bytes_with_nul()),
            bpf_fd: u32::try_from(self.fd.as_raw_fd()).expect("fds are positive"),
            file_flags: 0,
        };
        bpf(BPF_OBJ_PIN, &mut attr).map(drop)
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
    run(prog, data, repeat, live, None)
}

/// [`test_run`] without live frames, also giving the frame as the last repeat left it.
pub fn test_run_frame(
    prog: BorrowedFd<'_>,
    data: &[u8],
    repeat: u32,
) -> io::Result<(RunResult, Vec<u8>)> {
    let mut out = vec![0; data.len()];
    let result = run(prog, data, repeat, None, Some(&mut out))?;
    Ok((result, out))
}

fn run(
    prog: BorrowedFd<'_>,
    data: &[u8],
    repeat: u32,
    live: Option<LiveFrames>,
    out: Option<&mut [u8]>,
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
    let out_len = out.map(|out| {
        attr.data_size_out = u32::try_from(out.len()).expect("a frame");
        attr.data_out = out.as_mut_ptr() as u64;
        attr.data_size_out
    });
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
    if let Some(len) = out_len {
        // The program changes no length, so the frame comes back whole.
        assert_eq!(attr.data_size_out, len, "the frame came back resized");
    }
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

/// Words of `struct bpf_prog_info` up to `run_cnt`, and where `run_time_ns` and `run_cnt` are.
const PROG_INFO_WORDS: usize = 26;
const RUN_TIME_NS_WORD: usize = 192 / 8;
const RUN_CNT_WORD: usize = 200 / 8;

/// How long `prog` has run in all, in nanoseconds, and how many times: counted only while
/// run-time statistics are on (`aya::sys::enable_stats`). aya reads them only from programs it
/// loaded, and the reference programs here are raw fds.
pub fn run_time(prog: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let mut info = [0u64; PROG_INFO_WORDS];
    let mut attr = InfoAttr {
        bpf_fd: u32::try_from(prog.as_raw_fd()).expect("fds are positive"),
        info_len: u32::try_from(size_of_val(&info)).expect("208 bytes"),
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok((info[RUN_TIME_NS_WORD], info[RUN_CNT_WORD]))
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

/// Kernel memory (`memlock` in `/proc/self/fdinfo`) of every BPF map this process holds but
/// the benchmark's own ([`RawMap`]s, named `bench_*`), summed by map name.
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
        if let (Some(name), Some(memlock)) = (map_name(fd), memlock)
            && !name.starts_with(RawMap::NAME_PREFIX)
        {
            *by_name.entry(name).or_default() += memlock;
        }
    }
    by_name.into_iter().collect()
}
