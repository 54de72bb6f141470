//! Part 1: the cost of one packet, with `BPF_PROG_TEST_RUN` (no NIC involved).
//!
//! Every program is attached (natively, to a veth in a namespace of its own) while it is
//! timed. Not for the traffic, for the kernel's XDP dispatcher: `BPF_PROG_TEST_RUN` with
//! `repeat > 1` adds a program the dispatcher does not hold yet and removes it afterwards, and
//! each change waits for an RCU grace period (milliseconds, i.e. 16 ns per repeat at 10^6);
//! an attached program is already there. It is also how a driver calls it: a direct call.
//!
//! Hot: one frame repeated `repeat` times in the kernel's loop; the cost is the system call's
//! wall-clock time divided by `repeat` (the kernel's own figure is whole nanoseconds, too coarse
//! for a 2-instruction program; the call's fixed cost is < 0.01 ns per repeat at 1,000,000).
//!
//! Spread: the kernel repeats one frame, so the program alone would only ever touch one map
//! entry. A small harness ([`bpf::rotating`], attached like the others) runs first in each
//! repeat: it writes the next of >= 65,536 banned sources (at the large sizes; random order)
//! into the frame and tail-calls blocker. The same harness cycling through as many copies of
//! the hot source measures what it adds besides the entries' cache misses (its own array, the
//! tail call), so a spread packet costs `hot + (rotating spread - rotating hot)`: code hot and
//! packets back to back, as in a flood, with map entries cold, as in a flood from many sources.
//!
//! Beside it, as a reference for the machine's state at that moment: reads of as many random
//! cache lines as there are sources (at most all of them) over as many bytes as the address
//! table, from user space, each read waiting for the one before ([`line_read_ns`]). It is what
//! a table line that is not in the core's own caches costs here and now, whatever reads it.
//!
//! Also reported, as a bound: each source in its own run (`repeat = 1`, timed by the kernel),
//! less the median of as many one-run calls on the hot source. It also checks each source's
//! verdict. It overstates: between two system calls the kernel's own entry and exit evict the
//! entries (and TLB entries) a flood would keep, which shows at sizes whose maps fit in the
//! caches.

use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd};

use rand::{SeedableRng as _, rngs::StdRng};

use crate::packet::{ACK, Frame, udp};

use super::{
    Blocker, Stat,
    bpf::{self, RawMap, RawXdp, XDP_DROP, XDP_PASS},
    sets::{BanSet, Family, FamilySet},
};

/// What the blocker program is fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Traffic {
    /// A SYN to port 25 from a banned source: dropped.
    BannedSyn,
    /// A SYN to port 25 from a source no entry covers: both maps searched, passed.
    CleanSyn,
    /// A SYN to port 8080 from a banned source: passed without a lookup.
    UnprotectedSyn,
    /// An ACK to port 25 from a banned source: passed without a lookup.
    NonSyn,
    /// A UDP datagram to port 25 from a banned source: passed.
    Udp,
}

impl Traffic {
    pub const ALL: [Traffic; 5] = [
        Traffic::BannedSyn,
        Traffic::CleanSyn,
        Traffic::UnprotectedSyn,
        Traffic::NonSyn,
        Traffic::Udp,
    ];

    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Traffic::BannedSyn => "banned SYN",
            Traffic::CleanSyn => "clean SYN",
            Traffic::UnprotectedSyn => "SYN to unprotected port",
            Traffic::NonSyn => "non-SYN TCP (ACK)",
            Traffic::Udp => "UDP",
        }
    }

    fn frame(self, set: &FamilySet, family: Family) -> (Vec<u8>, u32) {
        let banned = set.hot_source();
        let frame = match self {
            Traffic::BannedSyn => return (Frame::syn(banned, 25).bytes(), XDP_DROP),
            Traffic::CleanSyn => Frame::syn(family.clean_source(), 25),
            Traffic::UnprotectedSyn => Frame::syn(banned, 8080),
            Traffic::NonSyn => Frame::tcp(banned, 25, ACK),
            Traffic::Udp => Frame::ip(banned, 17, udp(25)),
        };
        (frame.bytes(), XDP_PASS)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    Hot,
    /// Sources spread over many entries, measured in the kernel's loop (the target's figure).
    Spread,
    /// The same sources, one system call each: a bound from above.
    SpreadOneRun,
}

/// One measured case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    /// The size asked for (entries per family).
    pub size: usize,
    pub family: Family,
    /// Entries the family's maps really held.
    pub entries: usize,
    pub program: &'static str,
    pub traffic: Option<Traffic>,
    pub pattern: Pattern,
    /// Nanoseconds per packet, one value per round.
    pub ns: Stat,
    /// Spread: the rotating harness's figures behind `ns`, through the spread sources and
    /// through as many copies of the hot source. One-run: the kernel's one-run-per-frame
    /// figures, likewise.
    pub raw_spread_ns: Option<Stat>,
    pub raw_hot_ns: Option<Stat>,
    /// Spread only: distinct banned entries the sources cover.
    pub sources: Option<usize>,
}

/// Kernel memory of the maps at one size.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SizeInfo {
    pub size: usize,
    pub v4_entries: usize,
    pub v6_entries: usize,
    pub install_seconds: f64,
    /// `memlock` of each map, bytes.
    pub map_memory: Vec<(String, u64)>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PerPacket {
    pub repeat: u32,
    pub rounds: usize,
    /// Distinct banned entries the spread pattern asks for (see [`Config::spread`]).
    pub spread: usize,
    pub rows: Vec<Row>,
    pub sizes: Vec<SizeInfo>,
}

pub struct Config {
    pub sizes: Vec<usize>,
    pub repeat: u32,
    pub rounds: usize,
    /// Distinct banned entries for the spread pattern (all of them if fewer).
    pub spread: usize,
}

pub const EMPTY_DROP: &str = "empty XDP_DROP";
pub const EMPTY_PASS: &str = "empty XDP_PASS";
pub const BLOCKER: &str = "blocker";
/// The reference beside the spread figures: not a program, a user-space read (its `ns` are
/// per read, not per packet).
pub const LINE_READ: &str = "user-space line read";

/// Nanoseconds per packet of the hot loop; panics if the verdict is not `expect`.
fn hot_ns(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32, expect: u32) -> f64 {
    let run = bpf::test_run(prog, frame, repeat, None).expect("BPF_PROG_TEST_RUN");
    assert_eq!(run.retval, expect, "unexpected verdict");
    per_repeat_ns(&run, repeat)
}

/// A run's wall-clock nanoseconds per repeat (the kernel's own figure is whole nanoseconds,
/// too coarse for a 2-instruction program).
fn per_repeat_ns(run: &bpf::RunResult, repeat: u32) -> f64 {
    run.wall.as_secs_f64() * 1e9 / f64::from(repeat)
}

/// The kernel's nanoseconds for one run of each frame; panics on any verdict but `expect`.
fn one_run_ns<'a>(
    prog: BorrowedFd<'_>,
    frames: impl Iterator<Item = &'a [u8]>,
    expect: u32,
) -> Vec<u64> {
    frames
        .map(|frame| {
            let run = bpf::test_run(prog, frame, 1, None).expect("BPF_PROG_TEST_RUN");
            assert_eq!(run.retval, expect, "unexpected verdict for a spread source");
            u64::from(run.kernel_ns)
        })
        .collect()
}

/// Runs part 1.
#[must_use]
pub fn run(config: &Config, log: &mut impl FnMut(&str)) -> PerPacket {
    let drop = RawXdp::load("empty_drop", &bpf::returning(XDP_DROP))
        .expect("load the empty XDP_DROP program");
    let pass = RawXdp::load("empty_pass", &bpf::returning(XDP_PASS))
        .expect("load the empty XDP_PASS program");
    let ns = super::namespace("pp");
    super::veth_pair(&ns, "pp0", "pp1");
    super::veth_pair(&ns, "pp2", "pp3");
    super::veth_pair(&ns, ROTATION_INTERFACE, "pp5");
    let _links = [(&drop, "pp0"), (&pass, "pp1")].map(|(prog, dev)| {
        let index = super::ifindex(&ns, dev);
        ns.run(|| bpf::attach_xdp(prog.as_fd(), index))
            .expect("attach an empty program")
    });
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    for &size in &config.sizes {
        let set = BanSet::new(size, size, super::SEED);
        let mut blocker = Blocker::load_for(&set);
        let started = std::time::Instant::now();
        blocker.install(&set);
        blocker.attach(&ns, "pp2");
        let info = SizeInfo {
            size,
            v4_entries: set.v4.len(),
            v6_entries: set.v6.len(),
            install_seconds: started.elapsed().as_secs_f64(),
            map_memory: bpf::map_memory(),
        };
        log(&format!(
            "per-packet: {size} entries per family ({} IPv4, {} IPv6) installed in {:.2} s, maps hold {} MiB",
            info.v4_entries,
            info.v6_entries,
            info.install_seconds,
            info.map_memory.iter().map(|m| m.1).sum::<u64>() >> 20
        ));
        sizes.push(info);
        for family in Family::BOTH {
            rows.extend(measure_family(
                config,
                &blocker,
                [&drop, &pass],
                &ns,
                &set,
                size,
                family,
            ));
        }
        for row in rows.iter().filter(|r| r.size == size) {
            log(&format!(
                "  {:>5} {:<14} {:<24} {:<6} median {:>7.2} ns  min {:>7.2} ns",
                row.family.name(),
                row.program,
                row.traffic.map_or("", Traffic::label),
                format!("{:?}", row.pattern).to_lowercase(),
                row.ns.median(),
                row.ns.min()
            ));
        }
    }
    PerPacket {
        repeat: config.repeat,
        rounds: config.rounds,
        spread: config.spread,
        rows,
        sizes,
    }
}

/// The harness interface in part 1's namespace.
const ROTATION_INTERFACE: &str = "pp4";

/// [`bpf::rotating`] aimed at blocker for one family and size, attached to
/// [`ROTATION_INTERFACE`], with an array of `2 * cycle` sources: `[0, cycle)` those of the
/// spread frames, `[cycle, 2 * cycle)` the hot frame's. Either way the harness runs the same
/// code, tail call and array stream; only the entries blocker looks up differ.
struct Rotation {
    cycle: usize,
    /// Where the source lies in a frame, and its length.
    offset: usize,
    len: usize,
    prog: RawXdp,
    _slot: RawMap,
    _array: RawMap,
    _link: OwnedFd,
}

impl Rotation {
    fn new(
        blocker: BorrowedFd<'_>,
        spread: &[Vec<u8>],
        hot: &[u8],
        family: Family,
        ns: &super::Netns,
    ) -> Rotation {
        let (offset, len) = match family {
            Family::V4 => (14 + 12, 4),
            Family::V6 => (14 + 8, 16),
        };
        let source = |frame: &[u8]| frame[offset..][..len].to_vec();
        let cycle = u32::try_from(spread.len()).expect("a spread below 2^32");
        let array = RawMap::array(
            "bench_sources",
            u32::try_from(len).expect("4 or 16"),
            cycle.checked_mul(2).expect("2^32"),
        )
        .expect("create the rotation's sources");
        let hot_source = source(hot);
        for (i, frame) in (0..).zip(spread) {
            array.set(i, &source(frame)).expect("a spread source");
            array.set(cycle + i, &hot_source).expect("the hot source");
        }
        let slot = RawMap::prog_array("bench_target").expect("create the rotation's slot");
        slot.set(0, &blocker.as_raw_fd().to_ne_bytes())
            .expect("put blocker in the slot");
        let prog = RawXdp::load(
            "rotating",
            &bpf::rotating(
                array.as_fd(),
                cycle,
                i16::try_from(offset).expect("a header offset"),
                i16::try_from(len).expect("4 or 16"),
                slot.as_fd(),
            ),
        )
        .expect("load the rotating harness");
        let index = super::ifindex(ns, ROTATION_INTERFACE);
        let link = ns
            .run(|| bpf::attach_xdp(prog.as_fd(), index))
            .expect("attach the rotating harness");
        Rotation {
            cycle: spread.len(),
            offset,
            len,
            prog,
            _slot: slot,
            _array: array,
            _link: link,
        }
    }

    /// Nanoseconds per packet through the spread half, then through the hot half, each after
    /// an untimed pass round the cycle (so that no half starts colder than the other). Checks
    /// from the frame each timed run leaves that the harness ran every repeat and went round:
    /// its run count, its counter, and the source of the last repeat where the frame started
    /// with none. `spread` are the frames the harness was made with; `frame` is the hot one.
    fn spread_and_hot(&self, frame: &[u8], spread: &[Vec<u8>], repeat: u32) -> (f64, f64) {
        assert!(repeat > 0, "at least one repeat");
        let cycle = self.cycle;
        let last = usize::try_from(repeat - 1).expect("a repeat count") % cycle;
        let source = |frame: &[u8]| frame[self.offset..][..self.len].to_vec();
        let through = |base: usize, last_source: &[u8]| {
            let mut frame = frame.to_vec();
            let base = u32::try_from(base).expect("an index below 2^32");
            frame[bpf::ROTATION_BASE..][..4].copy_from_slice(&base.to_ne_bytes());
            frame[bpf::ROTATION_COUNTER..][..4].fill(0);
            frame[bpf::ROTATION_RUNS..][..4].fill(0);
            frame[self.offset..][..last_source.len()].fill(0);
            let run = |repeat| {
                let (run, out) = bpf::test_run_frame(self.prog.as_fd(), &frame, repeat)
                    .expect("BPF_PROG_TEST_RUN");
                assert_eq!(
                    run.retval, XDP_DROP,
                    "unexpected verdict (or the harness aborted)"
                );
                (run, out)
            };
            run(u32::try_from(cycle).expect("a cycle below 2^32"));
            let (timed, out) = run(repeat);
            let word = |at: usize| u32::from_ne_bytes(out[at..][..4].try_into().expect("4 bytes"));
            assert_eq!(word(bpf::ROTATION_RUNS), repeat, "the harness missed runs");
            assert_eq!(
                usize::try_from(word(bpf::ROTATION_COUNTER)).expect("a counter"),
                (last + 1) % cycle,
                "the harness did not go round"
            );
            assert_eq!(
                &out[self.offset..][..last_source.len()],
                last_source,
                "the harness wrote the wrong source"
            );
            per_repeat_ns(&timed, repeat)
        };
        (
            through(0, &source(&spread[last])),
            through(cycle, &source(frame)),
        )
    }
}

/// One spread measure's figures, a value per round: the figure (the hot loop's cost plus what
/// the spread sources add over the hot one) and the two raw measures behind it.
#[derive(Default)]
struct SpreadStats {
    figure: Stat,
    raw_spread: Stat,
    raw_hot: Stat,
}

impl SpreadStats {
    fn push(&mut self, hot_loop: f64, raw_spread: f64, raw_hot: f64) {
        self.figure.push(hot_loop + raw_spread - raw_hot);
        self.raw_spread.push(raw_spread);
        self.raw_hot.push(raw_hot);
    }
}

/// The spread pattern for one family and size: its harness, its frames for the one-run bound,
/// and its figures so far.
struct Spread {
    rotation: Rotation,
    frames: Vec<Vec<u8>>,
    table_bytes: usize,
    in_loop: SpreadStats,
    one_run: SpreadStats,
    line_read: Stat,
    rng: StdRng,
}

impl Spread {
    /// `None` for a set too small to spread over (or with no entry frames may carry).
    /// `hot_frame` is the hot banned SYN's.
    fn new(
        config: &Config,
        blocker: &Blocker,
        fam: &FamilySet,
        family: Family,
        hot_frame: &[u8],
        size: usize,
        ns: &super::Netns,
    ) -> Option<Spread> {
        if fam.len() < 2 {
            return None;
        }
        let mut rng = StdRng::seed_from_u64(super::SEED ^ size as u64);
        let sources = fam.spread_sources(config.spread, &mut rng);
        if sources.is_empty() {
            return None;
        }
        let frames: Vec<Vec<u8>> = sources
            .iter()
            .map(|&src| Frame::syn(src, 25).bytes())
            .collect();
        Some(Spread {
            rotation: Rotation::new(blocker.fd(), &frames, hot_frame, family, ns),
            frames,
            table_bytes: blocker.table_bytes(family),
            in_loop: SpreadStats::default(),
            one_run: SpreadStats::default(),
            line_read: Stat::default(),
            rng,
        })
    }

    /// One round of every spread measure; `hot_loop` is this round's hot banned SYN.
    fn round(&mut self, blocker: &Blocker, hot_frame: &[u8], hot_loop: f64, repeat: u32) {
        let dropped_before = dropped(blocker);
        let (spread, hot) = self
            .rotation
            .spread_and_hot(hot_frame, &self.frames, repeat);
        // Every repeat, not only the last one the verdict shows: each half's untimed pass
        // round the cycle and its timed run.
        let cycle = u64::try_from(self.frames.len()).expect("a spread count");
        assert_eq!(
            dropped(blocker) - dropped_before,
            2 * (cycle + u64::from(repeat)),
            "blocker passed some of the harness's banned sources"
        );
        self.in_loop.push(hot_loop, spread, hot);
        self.line_read.push(line_read_ns(
            self.table_bytes,
            self.frames.len(),
            &mut self.rng,
        ));
        let blocker_fd = blocker.fd();
        let spread = one_run_ns(blocker_fd, self.frames.iter().map(Vec::as_slice), XDP_DROP);
        let spread = super::ratio(spread.iter().sum(), spread.len());
        // The median of the hot source's runs, which are all alike: an interrupt inside one of
        // them, in their mean, once made the bound negative.
        let hot = one_run_ns(
            blocker_fd,
            std::iter::repeat_n(hot_frame, self.frames.len()),
            XDP_DROP,
        );
        #[expect(clippy::cast_precision_loss, reason = "nanoseconds")]
        let hot = Stat(hot.into_iter().map(|ns| ns as f64).collect()).median();
        self.one_run.push(hot_loop, spread, hot);
    }

    fn rows(self, row: impl Fn(&'static str, Option<Traffic>, Pattern, Stat) -> Row) -> [Row; 3] {
        let sources = Some(self.frames.len());
        let blocker_row = |pattern, stats: SpreadStats| Row {
            raw_spread_ns: Some(stats.raw_spread),
            raw_hot_ns: Some(stats.raw_hot),
            sources,
            ..row(BLOCKER, Some(Traffic::BannedSyn), pattern, stats.figure)
        };
        [
            blocker_row(Pattern::Spread, self.in_loop),
            blocker_row(Pattern::SpreadOneRun, self.one_run),
            Row {
                sources,
                ..row(LINE_READ, None, Pattern::Spread, self.line_read)
            },
        ]
    }
}

fn measure_family(
    config: &Config,
    blocker: &Blocker,
    [drop, pass]: [&RawXdp; 2],
    ns: &super::Netns,
    set: &BanSet,
    size: usize,
    family: Family,
) -> Vec<Row> {
    let fam = set.family(family);
    let entries = fam.len();
    let cases: Vec<(Traffic, Vec<u8>, u32)> = Traffic::ALL
        .iter()
        .map(|&t| {
            let (frame, expect) = t.frame(fam, family);
            (t, frame, expect)
        })
        .collect();
    let hot_frame = &cases[0].1;
    let (drop_fd, pass_fd, blocker_fd) = (drop.as_fd(), pass.as_fd(), blocker.fd());
    let mut spread = Spread::new(config, blocker, fam, family, hot_frame, size, ns);
    // Warm up caches, the CPU's frequency and the frames' pages.
    for (_, frame, expect) in &cases {
        hot_ns(blocker_fd, frame, config.repeat.min(100_000), *expect);
    }
    let mut floor_drop = Stat::default();
    let mut floor_pass = Stat::default();
    let mut hot: Vec<Stat> = vec![Stat::default(); cases.len()];
    for _ in 0..config.rounds {
        // Each round measures everything once, so drift hits every case alike.
        floor_drop.push(hot_ns(drop_fd, hot_frame, config.repeat, XDP_DROP));
        floor_pass.push(hot_ns(pass_fd, hot_frame, config.repeat, XDP_PASS));
        for ((_, frame, expect), stat) in cases.iter().zip(&mut hot) {
            stat.push(hot_ns(blocker_fd, frame, config.repeat, *expect));
        }
        if let Some(spread) = &mut spread {
            let hot_loop = hot[0].0.last().copied().expect("measured above");
            spread.round(blocker, hot_frame, hot_loop, config.repeat);
        }
    }
    let row = |program, traffic, pattern, ns| Row {
        size,
        family,
        entries,
        program,
        traffic,
        pattern,
        ns,
        raw_spread_ns: None,
        raw_hot_ns: None,
        sources: None,
    };
    let mut rows = vec![
        row(EMPTY_DROP, None, Pattern::Hot, floor_drop),
        row(EMPTY_PASS, None, Pattern::Hot, floor_pass),
    ];
    rows.extend(
        cases
            .iter()
            .zip(hot)
            .map(|((t, _, _), ns)| row(BLOCKER, Some(*t), Pattern::Hot, ns)),
    );
    rows.extend(spread.into_iter().flat_map(|s| s.rows(row)));
    rows
}

/// One cache line as [`line_read_ns`] reads it.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line {
    next: usize,
    _rest: [usize; 7],
}

/// Nanoseconds per read of one of `lines` random cache lines (at most all of them) among
/// `bytes` of ordinary memory in 4 KiB pages (as BPF arrays past 32 KiB are), each read naming
/// the next, in a cycle through all of them: the spread pattern without a program. The lines
/// are written just before, so a read finds its line wherever the caches kept it.
fn line_read_ns(bytes: usize, lines: usize, rng: &mut StdRng) -> f64 {
    let slots = (bytes / size_of::<Line>()).max(1);
    let lines = lines.clamp(1, slots);
    let mut memory: Vec<Line> = Vec::with_capacity(slots);
    // Only advice, and moot where transparent huge pages are "madvise" or "never": where they
    // are "always", it keeps 2 MiB pages, which no BPF array has, off fresh memory (memory
    // the allocator reuses from an earlier round keeps what it had).
    let page = 4096;
    let base = memory.as_mut_ptr().cast::<u8>();
    let skip = base.addr().next_multiple_of(page) - base.addr();
    let len = (slots * size_of::<Line>()).saturating_sub(skip) / page * page;
    if len > 0 {
        // SAFETY: advice on whole pages inside this allocation; it changes no contents.
        unsafe {
            libc::madvise(base.add(skip).cast(), len, libc::MADV_NOHUGEPAGE);
        }
    }
    memory.resize(
        slots,
        Line {
            next: 0,
            _rest: [0; 7],
        },
    );
    let picked = rand::seq::index::sample(rng, slots, lines).into_vec();
    for (i, &at) in picked.iter().enumerate() {
        memory[at].next = picked[(i + 1) % lines];
    }
    let mut at = picked[0];
    for _ in 0..lines {
        at = memory[at].next;
    }
    let reads = lines * 10;
    let started = std::time::Instant::now();
    for _ in 0..reads {
        at = memory[at].next;
    }
    let elapsed = started.elapsed();
    std::hint::black_box(at);
    elapsed.as_secs_f64() * 1e9 * super::ratio(1, reads)
}

/// Packets blocker has dropped, over all CPUs, families and origins.
fn dropped(blocker: &Blocker) -> u64 {
    let stats = blocker.maps.stats().expect("read blocker's counters");
    stats.iter().flat_map(|s| s.dropped_packets).sum()
}
