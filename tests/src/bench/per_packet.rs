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
//! Spread: the kernel repeats one frame, so a single run only ever touches one map entry. To
//! touch many, each source gets its own run (`repeat = 1`, timed by the kernel, which brackets
//! the program with two clock reads), in random order over >= 65,536 distinct entries at the
//! large sizes. The same number of one-run calls on the hot source measures what such a call
//! costs besides the entry's cache misses: the clock reads, and the program's code and the
//! stack's data gone cold during a system call. So a spread packet costs
//! `hot_loop + (per_frame_spread - per_frame_hot)`, in the hot loop's units: the program's code
//! stays hot, as in a flood, while its map entries are cold, as in a flood from many sources.

use std::os::fd::{AsFd as _, BorrowedFd};

use rand::{SeedableRng as _, rngs::StdRng};

use crate::packet::{ACK, Frame, udp};

use super::{
    Blocker, Stat,
    bpf::{self, RawXdp, XDP_DROP, XDP_PASS},
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
    Spread,
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
    /// Spread only: the kernel's one-run-per-frame figures behind `ns`, for the spread
    /// sources and for as many runs on the hot source.
    pub per_frame_ns: Option<Stat>,
    pub per_frame_hot_ns: Option<Stat>,
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
                config, &blocker, &drop, &pass, &set, size, family,
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

fn measure_family(
    config: &Config,
    blocker: &Blocker,
    drop: &RawXdp,
    pass: &RawXdp,
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
    let spread_frames: Vec<Vec<u8>> = if entries > 1 {
        let mut rng = StdRng::seed_from_u64(super::SEED ^ size as u64);
        fam.spread_sources(config.spread, &mut rng)
            .into_iter()
            .map(|src| Frame::syn(src, 25).bytes())
            .collect()
    } else {
        Vec::new()
    };
    let (drop_fd, pass_fd, blocker_fd) = (drop.as_fd(), pass.as_fd(), blocker.fd());
    // Warm up caches, the CPU's frequency and the frames' pages.
    for (_, frame, expect) in &cases {
        hot_ns(blocker_fd, frame, config.repeat.min(100_000), *expect);
    }
    let mut floor_drop = Stat::default();
    let mut floor_pass = Stat::default();
    let mut hot: Vec<Stat> = vec![Stat::default(); cases.len()];
    let (mut spread, mut per_frame_spread, mut per_frame_hot) =
        (Stat::default(), Stat::default(), Stat::default());
    for _ in 0..config.rounds {
        // Each round measures everything once, so drift hits every case alike.
        floor_drop.push(hot_ns(drop_fd, floor_frame, config.repeat, XDP_DROP));
        floor_pass.push(hot_ns(pass_fd, floor_frame, config.repeat, XDP_PASS));
        for ((_, frame, expect), stat) in cases.iter().zip(&mut hot) {
            stat.push(hot_ns(blocker_fd, frame, config.repeat, *expect));
        }
        if !spread_frames.is_empty() {
            let hot_frame = cases[0].1.as_slice();
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
            per_frame_spread.push(spread_ns);
            per_frame_hot.push(hot_ns);
            spread.push(hot[0].0.last().copied().expect("measured above") + spread_ns - hot_ns);
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
        per_frame_ns: None,
        per_frame_hot_ns: None,
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
        rows.push(Row {
            per_frame_ns: Some(per_frame_spread),
            per_frame_hot_ns: Some(per_frame_hot),
            sources: Some(spread_frames.len()),
            ..row(BLOCKER, Some(Traffic::BannedSyn), Pattern::Spread, spread)
        });
    }
    rows
}
