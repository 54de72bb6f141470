//! `cargo xtask bench`: blocker's costs, measured side by side in one run, and a report.
//!
//! 1. [`per_packet`]: nanoseconds per packet with `BPF_PROG_TEST_RUN`, against empty
//!    `XDP_DROP` and `XDP_PASS` programs, per traffic kind, family, map size and source pattern.
//! 2. [`flood`]: SYNs from banned sources flooded over a veth pair between two namespaces:
//!    drops per second and receiver CPU for an empty `XDP_DROP`, blocker and nftables.
//! 3. [`control`]: applying a `startup=true` answer (time, peak RSS, kernel memory of the
//!    maps), and add-to-first-drop latency against a real LAPI.
//! 4. [`legit`]: connection rate and bulk throughput of a clean client, with and without
//!    blocker attached.
//!
//! [`report`] writes `report.md`, `report.json` and `cost.png` and judges the targets.
//! Everything runs as root, in namespaces made here, on documentation and benchmarking
//! addresses only.

pub mod bpf;
pub mod control;
pub mod flood;
pub mod legit;
pub mod per_packet;
pub mod report;
pub mod sets;

use std::{
    os::fd::{AsFd as _, BorrowedFd},
    path::PathBuf,
    time::Instant,
};

use aya::{
    Ebpf,
    programs::{XdpMode, xdp::XdpLinkId},
};
use blocker::{
    loader::{self, Capacity},
    maps::{Ban, KernelMaps},
};
use blocker_common::origin;

use crate::netns::{Netns, ip};

/// Seed of every random choice, so two runs measure the same sets.
pub const SEED: u64 = 0x00b1_0c4e;

/// blocker's default protected ports (`config.rs`).
pub const MAIL_PORTS: [u16; 7] = [25, 465, 587, 143, 993, 110, 995];

/// Which parts to run and how big.
#[derive(Clone, Debug)]
pub struct Options {
    /// Each part once, small: for `tests/bench_quick.rs` and a smoke run.
    pub quick: bool,
    /// Where the report goes.
    pub out_dir: PathBuf,
    /// The `bench` executable: part 3 re-runs it as a fresh process (`--apply-child`) so that
    /// the peak RSS it reports is the daemon's work alone.
    pub helper: PathBuf,
    /// Parts to run (1..=4).
    pub parts: Vec<u8>,
}

impl Options {
    #[must_use]
    pub fn new(quick: bool, out_dir: PathBuf, helper: PathBuf) -> Options {
        Options {
            quick,
            out_dir,
            helper,
            parts: vec![1, 2, 3, 4],
        }
    }
}

/// Runs the benchmark and writes the report; returns the report's Markdown.
pub fn run(options: &Options) -> std::io::Result<String> {
    let started = Instant::now();
    let mut log =
        |line: &str| println!("bench [{:>6.1} s] {line}", started.elapsed().as_secs_f64());
    let quick = options.quick;
    let mut results = report::Results::new(quick);
    if options.parts.contains(&1) {
        let config = per_packet::Config {
            sizes: if quick {
                vec![1, 1_000]
            } else {
                vec![1, 10_000, 100_000, 1_000_000]
            },
            repeat: if quick { 10_000 } else { 1_000_000 },
            rounds: 3,
            spread: if quick { 1_000 } else { 65_536 },
        };
        results.per_packet = Some(per_packet::run(&config, &mut log));
    }
    if options.parts.contains(&3) {
        results.control = Some(control::run(
            &control::Config::new(quick, options.helper.clone()),
            &mut log,
        ));
    }
    if options.parts.contains(&2) {
        results.flood = Some(flood::run(&flood::Config::new(quick), &mut log));
    }
    if options.parts.contains(&4) {
        results.legit = Some(legit::run(&legit::Config::new(quick), &mut log));
    }
    results.seconds = started.elapsed().as_secs_f64();
    let markdown = report::write(&mut results, &options.out_dir)?;
    log(&format!("report written to {}", options.out_dir.display()));
    Ok(markdown)
}

/// One figure per round.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(transparent)]
pub struct Stat(pub Vec<f64>);

impl Stat {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    #[must_use]
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    #[must_use]
    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    /// The `q` quantile, interpolated between the two nearest values.
    #[must_use]
    pub fn quantile(&self, q: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        #[expect(clippy::cast_precision_loss, reason = "a handful of rounds")]
        let at = q * (v.len() - 1) as f64;
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "0 <= at < len"
        )]
        let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
        #[expect(clippy::cast_precision_loss, reason = "lo is small")]
        let frac = at - lo as f64;
        v[lo] + (v[hi] - v[lo]) * frac
    }
}

/// `num / den` as a float.
#[must_use]
#[expect(
    clippy::cast_precision_loss,
    reason = "benchmark counts stay far below 2^52"
)]
pub fn ratio(num: u64, den: usize) -> f64 {
    num as f64 / den as f64
}

/// The allow list blocker runs with: two prefixes no ban overlaps, as a mail host's own
/// networks seldom are banned (the program then never looks it up).
pub const HOST_ALLOWLIST: [&str; 2] = ["198.51.100.0/24", "2001:db8:ff::/48"];

/// The real blocker program, loaded and unattached, with its maps.
pub struct Blocker {
    ebpf: Ebpf,
    pub maps: KernelMaps,
}

impl Blocker {
    /// Loads blocker with its address tables sized for `set`, as an admin sets
    /// `max_addresses` to the lists they load (empty).
    #[must_use]
    pub fn load_for(set: &sets::BanSet) -> Blocker {
        let capacity = Capacity {
            addresses: u32::try_from(set.v4.len().max(set.v6.len()).max(1))
                .expect("bench sets stay far below 2^32"),
        };
        let mut ebpf = loader::load(capacity)
            .unwrap_or_else(|e| panic!("load blocker: {}", blocker::error_chain(&e)));
        let maps = KernelMaps::take(&mut ebpf).expect("blocker's maps");
        Blocker { ebpf, maps }
    }

    /// Bytes of `family`'s address table (a bucket is a cache line in both families).
    #[must_use]
    pub fn table_bytes(&self, family: sets::Family) -> usize {
        let (v4, v6) = self.maps.table_buckets();
        let buckets = match family {
            sets::Family::V4 => v4,
            sets::Family::V6 => v6,
        };
        usize::try_from(buckets).expect("a bucket count") * size_of::<blocker_common::BucketV4>()
    }

    /// Bans every prefix of `set` for ever, protects the mail ports and sets `HOST_ALLOWLIST`.
    pub fn install(&mut self, set: &sets::BanSet) {
        for net in set.nets() {
            self.maps
                .insert_ban(Ban {
                    net,
                    expires_at_ns: u64::MAX,
                    origin: origin::CAPI,
                })
                .unwrap_or_else(|e| panic!("insert {net}: {}", blocker::error_chain(&e)));
        }
        self.maps.set_ports(&MAIL_PORTS).expect("set ports");
        self.maps.set_observe(false).expect("set settings");
        let allow = HOST_ALLOWLIST.map(|net| net.parse().expect("a prefix"));
        self.maps.set_allowlist(&allow).expect("set the allow list");
        assert_eq!(
            self.maps.allow_overlaps(),
            0,
            "no ban overlaps the allow list"
        );
    }

    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        let program: &aya::programs::Xdp = self
            .ebpf
            .program(loader::PROGRAM)
            .expect("program")
            .try_into()
            .expect("an XDP program");
        program.fd().expect("a loaded program").as_fd()
    }

    /// Attaches natively to `interface` in `ns`, until [`Blocker::detach`] or drop.
    pub fn attach(&mut self, ns: &Netns, interface: &str) -> XdpLinkId {
        let program = loader::program(&mut self.ebpf).expect("program");
        ns.run(|| program.attach(interface, XdpMode::Driver))
            .unwrap_or_else(|e| {
                panic!(
                    "attach blocker to {interface}: {}",
                    blocker::error_chain(&e)
                )
            })
    }

    pub fn detach(&mut self, link: XdpLinkId) {
        loader::program(&mut self.ebpf)
            .expect("program")
            .detach(link)
            .expect("detach");
    }
}

/// The index of `interface` in `ns`.
#[must_use]
pub fn ifindex(ns: &Netns, interface: &str) -> u32 {
    let name = std::ffi::CString::new(interface).expect("an interface name");
    // SAFETY: a valid C string.
    let index = ns.run(|| unsafe { libc::if_nametoindex(name.as_ptr()) });
    assert_ne!(index, 0, "no interface {interface} in {}", ns.name);
    index
}

/// Adds a veth pair `a`-`b` inside `ns`, both up.
pub fn veth_pair(ns: &Netns, a: &str, b: &str) {
    ip(&[
        "-n", &ns.name, "link", "add", a, "type", "veth", "peer", "name", b,
    ]);
    ip(&["-n", &ns.name, "link", "set", a, "up"]);
    ip(&["-n", &ns.name, "link", "set", b, "up"]);
}

/// A fresh namespace named `blkbench<pid>-<what>`, deleted on drop.
#[must_use]
pub fn namespace(what: &str) -> Netns {
    Netns::new(format!("blkbench{}-{what}", std::process::id()))
}
