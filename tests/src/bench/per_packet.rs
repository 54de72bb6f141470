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
//! Also reported, as a bound: each source in its own run (`repeat = 1`, timed by the kernel),
//! less as many one-run calls on the hot source. It also checks each source's verdict. It
//! overstates: between two system calls the kernel's own entry and exit evict the entries (and
//! TLB entries) a flood would keep, which shows at sizes whose maps fit in the caches.

use std::{
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
};

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

/// Nanoseconds per packet of the hot loop; panics if the verdict is not `expect`.
fn hot_ns(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32, expect: u32) -> f64 {
    let run = bpf::test_run(prog, frame, repeat, None).expect("BPF_PROG_TEST_RUN");
    assert_eq!(run.retval, expect, "unexpected verdict");
    run.wall.as_secs_f64() * 1e9 / f64::from(repeat)
}

/// The kernel's mean nanoseconds over one run per frame; panics on any verdict but `expect`.
fn per_frame_ns<'a>(
    prog: BorrowedFd<'_>,
    frames: impl ExactSizeIterator<Item = &'a [u8]>,
    expect: u32,
) -> f64 {
    let count = frames.len();
    let mut total = 0u64;
    for frame in frames {
        let run = bpf::test_run(prog, frame, 1, None).expect("BPF_PROG_TEST_RUN");
        assert_eq!(run.retval, expect, "unexpected verdict for a spread source");
        total += u64::from(run.kernel_ns);
    }
    super::ratio(total, count)
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
    super::veth_pair(&ns, "pp4", "pp5");
    let rotations = [(Family::V4, "pp4"), (Family::V6, "pp5")]
        .map(|(family, dev)| Rotation::new(family, config.spread, &ns, dev));
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
        for (family, rotation) in Family::BOTH.into_iter().zip(&rotations) {
            rows.extend(measure_family(
                config,
                &blocker,
                [&drop, &pass],
                rotation,
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
        rows,
        sizes,
    }
}

/// [`bpf::rotating`] for one family, attached to an interface of its own, with its sources
/// in two halves: `[0, cycle)` the spread sources, `[cycle, 2 * cycle)` the hot one.
struct Rotation {
    sources: RawMap,
    target: RawMap,
    prog: RawXdp,
    cycle: u32,
    _link: OwnedFd,
}

impl Rotation {
    fn new(family: Family, cycle: usize, ns: &super::Netns, interface: &str) -> Rotation {
        let (offset, len): (i16, u8) = match family {
            Family::V4 => (14 + 12, 4),
            Family::V6 => (14 + 8, 16),
        };
        let cycle = u32::try_from(cycle).expect("a spread below 2^31");
        let sources = RawMap::array("bench_sources", u32::from(len), 2 * cycle)
            .expect("create the rotation's sources");
        let target = RawMap::prog_array("bench_target").expect("create the rotation's slot");
        let prog = RawXdp::load(
            "rotating",
            &bpf::rotating(
                sources.as_fd(),
                cycle,
                offset,
                i16::from(len),
                target.as_fd(),
            ),
        )
        .expect("load the rotating harness");
        let index = super::ifindex(ns, interface);
        let link = ns
            .run(|| bpf::attach_xdp(prog.as_fd(), index))
            .expect("attach the rotating harness");
        Rotation {
            sources,
            target,
            prog,
            cycle,
            _link: link,
        }
    }

    /// Points the harness at `blocker`, through `spread` (repeated to fill the cycle) and `hot`.
    fn aim(&self, blocker: BorrowedFd<'_>, spread: &[IpAddr], hot: IpAddr) {
        let fd = blocker.as_raw_fd().to_ne_bytes();
        self.target.set(0, &fd).expect("put blocker in the slot");
        let bytes = |a: IpAddr| match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        for (i, source) in (0..self.cycle).zip(spread.iter().cycle()) {
            self.sources
                .set(i, &bytes(*source))
                .expect("a spread source");
            self.sources
                .set(self.cycle + i, &bytes(hot))
                .expect("the hot source");
        }
    }

    /// Nanoseconds per packet through the spread half, then through the hot half.
    fn spread_and_hot(&self, frame: &[u8], repeat: u32) -> (f64, f64) {
        let through = |base: u32| {
            let mut frame = frame.to_vec();
            frame[bpf::ROTATION_BASE..][..4].copy_from_slice(&base.to_ne_bytes());
            frame[bpf::ROTATION_COUNTER..][..4].fill(0);
            hot_ns(self.prog.as_fd(), &frame, repeat, XDP_DROP)
        };
        (through(0), through(self.cycle))
    }
}

fn measure_family(
    config: &Config,
    blocker: &Blocker,
    [drop, pass]: [&RawXdp; 2],
    rotation: &Rotation,
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
    let floor_frame = &cases[0].1;
    let spread_sources: Vec<IpAddr> = if entries > 1 {
        let mut rng = StdRng::seed_from_u64(super::SEED ^ size as u64);
        fam.spread_sources(config.spread, &mut rng)
    } else {
        Vec::new()
    };
    let spread_frames: Vec<Vec<u8>> = spread_sources
        .iter()
        .map(|&src| Frame::syn(src, 25).bytes())
        .collect();
    let (drop_fd, pass_fd, blocker_fd) = (drop.as_fd(), pass.as_fd(), blocker.fd());
    if !spread_sources.is_empty() {
        rotation.aim(blocker_fd, &spread_sources, fam.hot_source());
    }
    // Warm up caches, the CPU's frequency and the frames' pages.
    for (_, frame, expect) in &cases {
        hot_ns(blocker_fd, frame, config.repeat.min(100_000), *expect);
    }
    let mut floor_drop = Stat::default();
    let mut floor_pass = Stat::default();
    let mut hot: Vec<Stat> = vec![Stat::default(); cases.len()];
    let mut spread = [(); 3].map(|()| Stat::default());
    let mut one_run = [(); 3].map(|()| Stat::default());
    for _ in 0..config.rounds {
        // Each round measures everything once, so drift hits every case alike.
        floor_drop.push(hot_ns(drop_fd, floor_frame, config.repeat, XDP_DROP));
        floor_pass.push(hot_ns(pass_fd, floor_frame, config.repeat, XDP_PASS));
        for ((_, frame, expect), stat) in cases.iter().zip(&mut hot) {
            stat.push(hot_ns(blocker_fd, frame, config.repeat, *expect));
        }
        if !spread_frames.is_empty() {
            let hot_frame = cases[0].1.as_slice();
            let hot_loop = hot[0].0.last().copied().expect("measured above");
            let dropped_before = dropped(blocker);
            let (through_spread, through_hot) = rotation.spread_and_hot(hot_frame, config.repeat);
            // The last verdict alone would not show a source the harness got wrong.
            assert_eq!(
                dropped(blocker) - dropped_before,
                2 * u64::from(config.repeat),
                "blocker passed some of the harness's banned sources"
            );
            push_spread(&mut spread, hot_loop, through_spread, through_hot);
            let spread_ns = per_frame_ns(
                blocker_fd,
                spread_frames.iter().map(Vec::as_slice),
                XDP_DROP,
            );
            let hot_ns = per_frame_ns(
                blocker_fd,
                std::iter::repeat_n(hot_frame, spread_frames.len()),
                XDP_DROP,
            );
            push_spread(&mut one_run, hot_loop, spread_ns, hot_ns);
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
    if !spread_frames.is_empty() {
        for (pattern, [ns, raw_spread, raw_hot]) in
            [(Pattern::Spread, spread), (Pattern::SpreadOneRun, one_run)]
        {
            rows.push(Row {
                raw_spread_ns: Some(raw_spread),
                raw_hot_ns: Some(raw_hot),
                sources: Some(spread_frames.len()),
                ..row(BLOCKER, Some(Traffic::BannedSyn), pattern, ns)
            });
        }
    }
    rows
}

/// Packets blocker has dropped, over all CPUs, families and origins.
fn dropped(blocker: &Blocker) -> u64 {
    let stats = blocker.maps.stats().expect("read blocker's counters");
    stats.iter().flat_map(|s| s.dropped_packets).sum()
}

/// Records one round of a spread measure: `[figure, raw spread, raw hot]`, the figure being
/// the hot loop's cost plus what the spread sources add over the hot one.
fn push_spread(stats: &mut [Stat; 3], hot_loop: f64, raw_spread: f64, raw_hot: f64) {
    stats[0].push(hot_loop + raw_spread - raw_hot);
    stats[1].push(raw_spread);
    stats[2].push(raw_hot);
}
