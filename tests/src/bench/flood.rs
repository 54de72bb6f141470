//! Part 2: a SYN flood from banned sources over a veth pair between two namespaces.
//!
//! The generator is `BPF_PROG_TEST_RUN` in live-frames mode in the sender namespace: a tiny
//! program ([`bpf::spraying_tx`]) gives each frame a random source in 198.18.0.0/16 and returns
//! `XDP_TX`, which live-frames mode turns into a transmit out of the ingress interface named in
//! the context, the sender veth, so the frames land in its peer's receive ring. Every source is
//! banned: one entry is the range 198.18.0.0/16; 100k and 1M entries hold all of it as single
//! addresses (plus the rest of the set, whose IPv4 part past 198.18.0.0/15 only ever sits in
//! the maps and nftables' sets), so sources are spread over 65,536 entries.
//!
//! The generator is pinned to CPU 0 and the receiver veth's threaded NAPI to CPU 1, both
//! `SCHED_FIFO` so that other work on the machine cannot take their CPU (real-time throttling
//! still leaves others 5 %). Everything the receiver does (XDP, or the stack up to nftables'
//! prerouting hook) is that thread's run time, read from `/proc/<pid>/schedstat`. The receiver
//! has GRO on, which gives veth its NAPI (and so the ring that takes XDP frames) without an XDP
//! program, for the nftables case.
//!
//! Beside the empty `XDP_DROP` program (the ceiling), one that reads the IPv4 source before
//! dropping tells what looking at a frame written on the other CPU costs, apart from what
//! blocker does with it. At the largest size blocker also takes a flood from 198.18.0.0/20
//! alone (4,096 addresses), whose table lines the caches can keep: what is left of its cost
//! when the table's size no longer brings misses.
//!
//! Drops are read from the receiver's `rx_queue_0_xdp_drops` (the XDP programs).
//! nftables has a set per family and a `prerouting` chain at priority `raw` matching flags and
//! ports first, the set last, with a counter as a firewall bouncer's rules have. It runs twice:
//! with interval sets (the reference: every prefix as it is), and with the hash sets
//! crowdsec-firewall-bouncer's nftables mode makes (see [`NftSets`]). Its drops are the frames
//! the NAPI took minus those counted by a set-less table's chain right after it (to list a
//! counter of a table with sets, nft fetches every element; the two figures agree, checked on
//! the small interval sets). Nothing lists a big set.

use std::{
    fmt::Write as _,
    os::fd::{AsFd as _, BorrowedFd},
    time::{Duration, Instant},
};

use crate::{netns::Netns, packet::Frame};

use super::{
    Blocker, MAIL_PORTS, Stat,
    bpf::{self, LiveFrames, RawXdp, XDP_DROP},
    sets::{BanSet, SPRAY_BASE_V4},
};

/// Frames per live-frames system call (~1 s at 8 Mpps). Each call puts the generator into the
/// kernel's XDP dispatcher and takes it out again, and each change waits for an RCU grace period
/// (6-16 ms here, `bpf_dispatcher_change_prog`), in which nothing is sent: with calls of 2^20
/// frames (0.15 s) the receiver sat idle 15 % of the time, and every rate read low.
const CHUNK: u32 = 1 << 23;
/// Frames per batch in live-frames mode (the kernel's default, `NAPI_POLL_WEIGHT`).
const BATCH: u32 = 64;
const GENERATOR_CPU: usize = 0;
const RECEIVER_CPU: usize = 1;

pub struct Config {
    pub sizes: Vec<usize>,
    pub seconds: f64,
    pub rounds: usize,
}

impl Config {
    #[must_use]
    pub fn new(quick: bool) -> Config {
        if quick {
            // 100k too, the smallest set that bans every source as single addresses, so that
            // the hash-set run is exercised.
            Config {
                sizes: vec![1, 100_000],
                seconds: 1.0,
                rounds: 1,
            }
        } else {
            Config {
                sizes: vec![1, 100_000, 1_000_000],
                seconds: 3.0,
                rounds: 3,
            }
        }
    }
}

/// One flood, as the receiver saw it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Round {
    pub seconds: f64,
    /// Frames the generator handed to the sender veth.
    pub sent: u64,
    /// Frames the receiver's NAPI took from its ring.
    pub processed: u64,
    pub dropped: u64,
    /// Run time of `rx0`'s NAPI thread, nanoseconds.
    pub receiver_cpu_ns: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub filter: &'static str,
    /// Entries per family (`None` for the programs without maps).
    pub size: Option<usize>,
    pub entries: Option<usize>,
    /// Seconds to load the set into the filter.
    pub load_seconds: Option<f64>,
    pub dropped_pps: Stat,
    pub sent_pps: Stat,
    /// Receiver CPU, fraction of one core.
    pub receiver_cpu: Stat,
    /// Receiver CPU per processed frame, nanoseconds.
    pub ns_per_packet: Stat,
    /// The XDP program's own run time per frame, nanoseconds, from one more round with the
    /// kernel's run-time statistics on (`None` for nftables).
    pub program_ns: Option<f64>,
    pub rounds: Vec<Round>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Results {
    pub seconds_per_round: f64,
    pub rows: Vec<Row>,
}

pub const CEILING: &str = "empty XDP_DROP";
/// Not a target's reference: shows what reading the packet costs here (see the report).
pub const READING: &str = "XDP_DROP reading the source";
/// Not a target's reference either: [`READING`] with [`PADDING`] more instructions that do
/// nothing it waits for (see the report).
pub const READING_PADDED: &str = "XDP_DROP reading the source, padded";
/// Additions in [`READING_PADDED`].
pub const PADDING: usize = 200;
pub const BLOCKER: &str = "blocker";
/// blocker, the flood's sources narrowed to 198.18.0.0/20 ([`FEW_SOURCE_BITS`]).
pub const BLOCKER_FEW_SOURCES: &str = "blocker, 4,096 sources";
/// Random bits of the narrowed flood's sources: 2^12 = 4,096 addresses.
const FEW_SOURCE_BITS: u32 = 12;
/// The reference: the same prefixes in interval sets.
pub const NFTABLES: &str = "nftables";
/// What crowdsec-firewall-bouncer itself builds: hash sets of addresses with timeouts.
pub const NFTABLES_HASH: &str = "nftables, hash set";

/// The two kinds of nftables set the flood is run against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NftSets {
    /// `flags interval`: every prefix as it is (an rbtree at this size).
    Interval,
    /// `flags timeout`, as crowdsec-firewall-bouncer's nftables mode makes them: addresses
    /// only, a range cut to its first address (its `normalizedDecisions`), each with a 4 h
    /// timeout.
    Hash,
}

impl NftSets {
    fn filter(self) -> &'static str {
        match self {
            NftSets::Interval => NFTABLES,
            NftSets::Hash => NFTABLES_HASH,
        }
    }
}

/// The two namespaces and their veth pair, named after this process so that the NAPI thread
/// (`napi/<interface>-<id>`, cut to 15 bytes) can be told from other namespaces' threads.
struct Wire {
    /// Fields drop in order: the receiver before the generator.
    rx: Netns,
    gen_ns: Netns,
    rx_if: String,
    gen_ifindex: u32,
}

impl Wire {
    fn new() -> Wire {
        let rx = super::namespace("rx");
        let gen_ns = super::namespace("gen");
        let id = base36(std::process::id());
        let (gen_if, rx_if) = (format!("g{id}"), format!("r{id}"));
        let ip = crate::netns::ip;
        ip(&[
            "-n",
            &gen_ns.name,
            "link",
            "add",
            &gen_if,
            "type",
            "veth",
            "peer",
            "name",
            &rx_if,
            "netns",
            &rx.name,
        ]);
        // The frames' MAC addresses (`packet.rs`): the receiver takes them as its own.
        ip(&[
            "-n",
            &gen_ns.name,
            "link",
            "set",
            &gen_if,
            "address",
            "02:00:00:00:00:02",
            "up",
        ]);
        ip(&[
            "-n",
            &rx.name,
            "link",
            "set",
            &rx_if,
            "address",
            "02:00:00:00:00:01",
            "up",
        ]);
        ip(&[
            "-n",
            &gen_ns.name,
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            &gen_if,
        ]);
        ip(&[
            "-n",
            &rx.name,
            "addr",
            "add",
            "198.51.100.250/24",
            "dev",
            &rx_if,
        ]);
        let _ = gen_ns.exec("ethtool", &["-K", &gen_if, "tso", "off"]);
        let _ = rx.exec("ethtool", &["-K", &rx_if, "gro", "on"]);
        // `ip netns exec` mounts the namespace's own /sys.
        let _ = rx.exec(
            "sh",
            &["-c", &format!("echo 1 > /sys/class/net/{rx_if}/threaded")],
        );
        let gen_ifindex = super::ifindex(&gen_ns, &gen_if);
        Wire {
            rx,
            gen_ns,
            rx_if,
            gen_ifindex,
        }
    }

    /// The receiver's NAPI thread (a new one whenever an XDP program comes or goes), pinned to
    /// the receiver CPU.
    fn napi_thread(&self) -> i32 {
        let wanted = format!("napi/{}-", self.rx_if);
        let pid = std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.starts_with(&wanted))
            })
            .unwrap_or_else(|| panic!("{} has no threaded NAPI thread", self.rx_if));
        pin(pid, RECEIVER_CPU);
        pid
    }

    fn ethtool_stat(&self, name: &str) -> u64 {
        let out = self.rx.exec("ethtool", &["-S", &self.rx_if]);
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)?
                    .strip_prefix(':')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {name} in ethtool -S {}", self.rx_if))
    }
}

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).expect("a base-36 digit"));
        n /= 36;
        if n == 0 {
            return digits.iter().rev().collect();
        }
    }
}

/// Pins `pid` (0: the calling thread) to `cpu` as a real-time (`SCHED_FIFO`) thread, so the
/// rest of the machine's work cannot take the CPU from it for the flood's few seconds.
fn pin(pid: i32, cpu: usize) {
    crate::pin_to_cpu(pid, cpu);
    let param = libc::sched_param { sched_priority: 50 };
    // SAFETY: sched_setscheduler only reads `param`.
    let rc = unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &raw const param) };
    assert_eq!(
        rc,
        0,
        "make {pid} SCHED_FIFO: {}",
        std::io::Error::last_os_error()
    );
}

fn run_time_ns(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).expect("schedstat");
    stat.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat's first field")
}

/// Floods `frames` for `seconds` and reads what the receiver did; `dropped` reads the drop
/// counter of the filter under test.
fn flood(
    wire: &Wire,
    generator: &RawXdp,
    frame: &[u8],
    seconds: f64,
    dropped: &dyn Fn() -> u64,
) -> Round {
    let napi = wire.napi_thread();
    let (processed0, dropped0, cpu0) = (
        wire.ethtool_stat("rx_queue_0_xdp_packets"),
        dropped(),
        run_time_ns(napi),
    );
    let live = LiveFrames {
        ingress_ifindex: wire.gen_ifindex,
        batch: BATCH,
    };
    let (sent, elapsed) = wire.gen_ns.run(|| {
        pin(0, GENERATOR_CPU);
        let (start, mut sent) = (Instant::now(), 0u64);
        // Bounded in time and in count: at most `seconds` plus one chunk.
        while start.elapsed().as_secs_f64() < seconds {
            bpf::test_run(generator.as_fd(), frame, CHUNK, Some(live))
                .expect("live-frames BPF_PROG_TEST_RUN");
            sent += u64::from(CHUNK);
        }
        (sent, start.elapsed())
    });
    // Let the receiver drain its ring before reading.
    std::thread::sleep(Duration::from_millis(50));
    Round {
        seconds: elapsed.as_secs_f64(),
        sent,
        processed: wire.ethtool_stat("rx_queue_0_xdp_packets") - processed0,
        dropped: dropped() - dropped0,
        receiver_cpu_ns: run_time_ns(napi) - cpu0,
    }
}

/// A filter under test, as its row names it.
#[derive(Clone, Copy)]
struct Filter {
    name: &'static str,
    /// Entries per family (`None` for the programs without maps).
    size: Option<usize>,
    entries: Option<usize>,
    /// Seconds to load the set into the filter.
    load_seconds: Option<f64>,
}

impl Filter {
    /// A program without maps, a reference for the others.
    fn reference(name: &'static str) -> Filter {
        Filter {
            name,
            size: None,
            entries: None,
            load_seconds: None,
        }
    }
}

/// How a filter's drops are counted.
enum Counted<'a> {
    /// By the receiver's XDP counters; the program also gives its run time.
    Xdp(BorrowedFd<'a>),
    /// By this function (nftables' counter).
    Nft(&'a dyn Fn() -> u64),
}

impl Row {
    /// The row in one line, for the log.
    fn summary(&self) -> String {
        format!(
            "flood: {:<35} {:>9} entries: {:>6.2} Mpps dropped of {:>6.2} Mpps sent, receiver CPU {:>3.0} %, {:>6.1} ns per packet, {} in the program",
            self.filter,
            self.size.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            self.dropped_pps.median() / 1e6,
            self.sent_pps.median() / 1e6,
            self.receiver_cpu.median() * 100.0,
            self.ns_per_packet.median(),
            self.program_ns
                .map_or_else(|| "-".to_owned(), |ns| format!("{ns:.1} ns")),
        )
    }
}

/// The run time per frame of `program`, the filter under test, in one more flood with the
/// kernel's run-time statistics on: apart from the rounds, since their clock reads slow every
/// run.
fn program_ns(
    wire: &Wire,
    generator: &RawXdp,
    frame: &[u8],
    seconds: f64,
    dropped: &dyn Fn() -> u64,
    program: BorrowedFd<'_>,
) -> f64 {
    // On while this fd lives, off again however the bench ends; each run then also reads the
    // clock twice, which costs what the empty program's figure shows.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let read = || bpf::run_time(program).expect("the program's run time");
    let (ns0, runs0) = read();
    flood(wire, generator, frame, seconds, dropped);
    let (ns, runs) = read();
    #[expect(clippy::cast_precision_loss, reason = "nanoseconds and run counts")]
    let per_run = (ns - ns0) as f64 / (runs - runs0).max(1) as f64;
    per_run
}

/// Runs part 2.
pub fn run(config: &Config, log: &mut impl FnMut(&str)) -> Results {
    let wire = Wire::new();
    let generator =
        RawXdp::load("flood_gen", &bpf::spraying_tx(16)).expect("load the flood generator");
    let narrow = RawXdp::load("flood_gen_few", &bpf::spraying_tx(FEW_SOURCE_BITS))
        .expect("load the narrowed flood generator");
    let frame = Frame::syn(SPRAY_BASE_V4.into(), 25).bytes();
    let xdp_drops = || wire.ethtool_stat("rx_queue_0_xdp_drops");
    let measure =
        |generator: &RawXdp, filter: Filter, counted: Counted<'_>, log: &mut dyn FnMut(&str)| {
            let (dropped, program): (&dyn Fn() -> u64, _) = match counted {
                Counted::Xdp(program) => (&xdp_drops, Some(program)),
                Counted::Nft(dropped) => (dropped, None),
            };
            let rounds: Vec<Round> = (0..config.rounds)
                .map(|_| flood(&wire, generator, &frame, config.seconds, dropped))
                .collect();
            let program_ns = program.map(|program| {
                program_ns(&wire, generator, &frame, config.seconds, dropped, program)
            });
            let row = row(filter, rounds, program_ns);
            log(&row.summary());
            row
        };
    let mut rows = Vec::new();
    let index = super::ifindex(&wire.rx, &wire.rx_if);
    for (filter, name, program) in [
        (CEILING, "empty_drop", bpf::returning(XDP_DROP).to_vec()),
        (READING, "reading_drop", bpf::reading_drop(0)),
        (READING_PADDED, "padded_drop", bpf::reading_drop(PADDING)),
    ] {
        let prog = RawXdp::load(name, &program)
            .unwrap_or_else(|e| panic!("load the {filter} program: {e}"));
        let _link = wire
            .rx
            .run(|| bpf::attach_xdp(prog.as_fd(), index))
            .unwrap_or_else(|e| panic!("attach the {filter} program: {e}"));
        let counted = Counted::Xdp(prog.as_fd());
        rows.push(measure(&generator, Filter::reference(filter), counted, log));
    }
    for &size in &config.sizes {
        let set = if size == 1 {
            BanSet::spray_range()
        } else {
            BanSet::new(size, size, super::SEED)
        };
        assert!(
            set.bans_spray_range(),
            "the flood's sources must all be banned"
        );
        {
            let started = Instant::now();
            let mut blocker = Blocker::load_for(&set);
            blocker.install(&set);
            let load = started.elapsed().as_secs_f64();
            blocker.attach(&wire.rx, &wire.rx_if);
            let entries = Some(set.len());
            // At the largest size, also the flood narrowed to few sources.
            let few = Some(&size) == config.sizes.last() && set.v4.singles() > 0;
            let floods = [
                (&generator, BLOCKER, Some(load)),
                (&narrow, BLOCKER_FEW_SOURCES, None),
            ];
            for (generator, name, load_seconds) in floods.into_iter().take(if few { 2 } else { 1 })
            {
                let filter = Filter {
                    name,
                    size: Some(size),
                    entries,
                    load_seconds,
                };
                rows.push(measure(generator, filter, Counted::Xdp(blocker.fd()), log));
            }
        }
        let mut measure_nft = |name, elements, load, dropped: &dyn Fn() -> u64| {
            let filter = Filter {
                name,
                size: Some(size),
                entries: Some(elements),
                load_seconds: Some(load),
            };
            measure(&generator, filter, Counted::Nft(dropped), log)
        };
        rows.extend(nftables_rows(&wire, &set, &mut measure_nft));
    }
    Results {
        seconds_per_round: config.seconds,
        rows,
    }
}

/// Floods nftables and makes its row, given the filter, the sets' elements, their load time and
/// how to read the drops.
type MeasureNft<'a> = dyn FnMut(&'static str, usize, f64, &dyn Fn() -> u64) -> Row + 'a;

/// The flood against nftables holding `set`, in each kind of set ([`NftSets`]).
fn nftables_rows(wire: &Wire, set: &BanSet, measure: &mut MeasureNft<'_>) -> Vec<Row> {
    let mut rows = Vec::new();
    for kind in [NftSets::Interval, NftSets::Hash] {
        if kind == NftSets::Hash && set.v4.singles() == 0 {
            // At one entry (the /16 as a range) the bouncer's hash set would hold 198.18.0.0
            // alone, and drop next to nothing.
            continue;
        }
        let (load, elements) = load_nftables(&wire.rx, set, kind);
        // Frames the NAPI took minus frames that got past the drop rules: listing the rules'
        // own counter would make nft fetch the sets' elements (minutes for 1M: the kernel's
        // set dump restarts its walk for every message).
        let nft_drops = || wire.ethtool_stat("rx_queue_0_xdp_packets") - nft_passed(&wire.rx);
        let row = measure(kind.filter(), elements, load, &nft_drops);
        if elements <= 10_000 {
            // Small enough to read the drop rules' own counter: it must agree.
            let derived: u64 = row.rounds.iter().map(|r| r.dropped).sum();
            assert_eq!(
                nft_counter(&wire.rx),
                derived,
                "nftables' drop counter disagrees with frames in - frames past"
            );
        }
        rows.push(row);
        for table in ["blkbench", "blkbench_pass"] {
            let _ = wire.rx.exec("nft", &["delete", "table", "inet", table]);
        }
    }
    rows
}

fn row(filter: Filter, rounds: Vec<Round>, program_ns: Option<f64>) -> Row {
    let per_second = |count: fn(&Round) -> u64| {
        #[expect(clippy::cast_precision_loss, reason = "packet counts")]
        Stat(rounds.iter().map(|r| count(r) as f64 / r.seconds).collect())
    };
    #[expect(clippy::cast_precision_loss, reason = "packet counts and nanoseconds")]
    let ns_per_packet = Stat(
        rounds
            .iter()
            .map(|r| r.receiver_cpu_ns as f64 / r.processed.max(1) as f64)
            .collect(),
    );
    #[expect(clippy::cast_precision_loss, reason = "nanoseconds")]
    let receiver_cpu = Stat(
        rounds
            .iter()
            .map(|r| r.receiver_cpu_ns as f64 / 1e9 / r.seconds)
            .collect(),
    );
    Row {
        filter: filter.name,
        size: filter.size,
        entries: filter.entries,
        load_seconds: filter.load_seconds,
        dropped_pps: per_second(|r| r.dropped),
        sent_pps: per_second(|r| r.sent),
        receiver_cpu,
        ns_per_packet,
        program_ns,
        rounds,
    }
}

/// Loads `set` into an nftables table in `ns` (sets of `kind`, `raw` prerouting); returns how
/// long `nft -f` took and how many elements the sets hold.
fn load_nftables(ns: &Netns, set: &BanSet, kind: NftSets) -> (f64, usize) {
    let ports = MAIL_PORTS.map(|p| p.to_string()).join(", ");
    let flags = match kind {
        NftSets::Interval => "interval",
        NftSets::Hash => "timeout",
    };
    let mut script = format!(
        "table inet blkbench {{\n\
         \tset banned4 {{ type ipv4_addr; flags {flags}; }}\n\
         \tset banned6 {{ type ipv6_addr; flags {flags}; }}\n\
         \tcounter dropped {{ }}\n\
         \tchain pre {{\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\ttcp flags & (syn | ack | rst) == syn tcp dport {{ {ports} }} ip saddr @banned4 counter name \"dropped\" drop\n\
         \t\ttcp flags & (syn | ack | rst) == syn tcp dport {{ {ports} }} ip6 saddr @banned6 counter name \"dropped\" drop\n\
         \t}}\n\
         }}\n\
         table inet blkbench_pass {{\n\
         \tchain pass {{\n\
         \t\ttype filter hook prerouting priority -299; policy accept;\n\
         \t\tcounter\n\
         \t}}\n\
         }}\n"
    );
    let mut elements = 0;
    for (name, nets) in [
        ("banned4", set.v4.nets().collect::<Vec<_>>()),
        ("banned6", set.v6.nets().collect()),
    ] {
        let items: Vec<String> = match kind {
            NftSets::Interval => nets.iter().map(ToString::to_string).collect(),
            NftSets::Hash => nets
                .iter()
                .map(ipnet::IpNet::network)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|addr| format!("{addr} timeout 4h"))
                .collect(),
        };
        elements += items.len();
        // One `add element` per 10,000: nft handles big sets better in pieces.
        for chunk in items.chunks(10_000) {
            let _ = writeln!(
                script,
                "add element inet blkbench {name} {{ {} }}",
                chunk.join(", ")
            );
        }
    }
    let path = std::env::temp_dir().join(format!("blkbench{}.nft", std::process::id()));
    std::fs::write(&path, script).expect("write the nft script");
    let started = Instant::now();
    let _ = ns.exec("nft", &["-f", path.to_str().expect("a UTF-8 temp path")]);
    let took = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    (took, elements)
}

/// Packets of the drop rules' counter. Fetches the sets' elements: small sets only.
fn nft_counter(ns: &Netns) -> u64 {
    packets(&ns.exec("nft", &["list", "counter", "inet", "blkbench", "dropped"]))
}

/// Packets that got past the drop rules: the counter of a set-less table that comes right
/// after it (listing a table fetches only that table).
fn nft_passed(ns: &Netns) -> u64 {
    packets(&ns.exec("nft", &["list", "table", "inet", "blkbench_pass"]))
}

fn packets(listing: &str) -> u64 {
    listing
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in: {listing}"))
}
