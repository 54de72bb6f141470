//! The report: `report.md` (tables, targets met or missed and by how much, method), `report.json`
//! (every figure of every round) and `cost.png` (gnuplot, from `cost.dat` and `cost.gp`).

use std::{fmt::Write as _, path::Path, process::Command};

use super::{
    Stat, control, flood, legit,
    per_packet::{self, Pattern, PerPacket, Row, Traffic},
    sets::Family,
};

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Where and when the run happened: the figures only mean something next to it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Environment {
    pub started_utc: String,
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    /// `/proc/loadavg` at the start and the end: other work on the machine skews the figures.
    pub load_start: String,
    pub load_end: String,
}

impl Environment {
    #[must_use]
    pub fn now() -> Environment {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let started_utc = Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        Environment {
            started_utc,
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            kernel: read("/proc/sys/kernel/osrelease"),
            load_start: loadavg(),
            load_end: String::new(),
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Results {
    pub quick: bool,
    pub seconds: f64,
    pub environment: Environment,
    pub targets: Vec<Target>,
    pub per_packet: Option<PerPacket>,
    pub control: Option<control::Results>,
    pub flood: Option<flood::Results>,
    pub legit: Option<legit::Results>,
}

impl Results {
    #[must_use]
    pub fn new(quick: bool) -> Results {
        Results {
            quick,
            seconds: 0.0,
            environment: Environment::now(),
            targets: Vec::new(),
            per_packet: None,
            control: None,
            flood: None,
            legit: None,
        }
    }
}

/// One of the targets, judged on this run's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Target {
    pub what: String,
    pub wanted: String,
    pub measured: String,
    /// `None`: not measured in this run.
    pub met: Option<bool>,
    /// How far from the limit: "40 % to spare", "95 % over", "12 % above", "30 % short".
    pub margin: String,
}

#[derive(Clone, Copy)]
enum Limit {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    /// Judges `measured` (a value in `unit` and what it comes from) against `limit`.
    fn judge(what: String, limit: Limit, unit: &str, measured: Option<(f64, String)>) -> Target {
        let wanted = match limit {
            Limit::AtMost(l) => format!("<= {l}{unit}"),
            Limit::AtLeast(l) => format!(">= {l}{unit}"),
        };
        let Some((value, detail)) = measured else {
            return Target {
                what,
                wanted,
                measured: "not measured in this run".into(),
                met: None,
                margin: String::new(),
            };
        };
        let (met, margin) = match limit {
            Limit::AtMost(l) if value <= l => {
                (true, format!("{:.0} % to spare", (1.0 - value / l) * 100.0))
            }
            Limit::AtMost(l) => (false, format!("{:.0} % over", (value / l - 1.0) * 100.0)),
            Limit::AtLeast(l) if value >= l => {
                (true, format!("{:.0} % above", (value / l - 1.0) * 100.0))
            }
            Limit::AtLeast(l) => (false, format!("{:.0} % short", (1.0 - value / l) * 100.0)),
        };
        Target {
            what,
            wanted,
            measured: format!("{value:.2}{unit} ({detail})"),
            met: Some(met),
            margin,
        }
    }
}

/// The median figure of a per-packet case.
fn case<'a>(
    pp: &'a PerPacket,
    size: usize,
    family: Family,
    program: &str,
    traffic: Option<Traffic>,
    pattern: Pattern,
) -> Option<&'a Row> {
    pp.rows.iter().find(|r| {
        r.size == size
            && r.family == family
            && r.program == program
            && r.traffic == traffic
            && r.pattern == pattern
    })
}

fn size_label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Judges the targets on `results` (per packet: at the largest size measured, which
/// in quick mode is small, so the verdicts are only indicative).
fn targets(results: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(pp) = &results.per_packet {
        per_packet_targets(pp, &mut out);
    }
    if let Some(fl) = &results.flood {
        flood_targets(fl, &mut out);
    }
    if let Some(cp) = &results.control {
        control_targets(cp, &mut out);
    }
    out
}

fn per_packet_targets(pp: &PerPacket, out: &mut Vec<Target>) {
    let size = pp.sizes.iter().map(|s| s.size).max().unwrap_or(0);
    let at = size_label(size);
    for family in Family::BOTH {
        let f = family.name();
        let checks = [
            (
                "banned SYN, spread",
                6.0,
                Traffic::BannedSyn,
                Pattern::Spread,
                per_packet::EMPTY_DROP,
            ),
            (
                "banned SYN, hot",
                3.0,
                Traffic::BannedSyn,
                Pattern::Hot,
                per_packet::EMPTY_DROP,
            ),
            (
                "non-SYN TCP",
                1.3,
                Traffic::NonSyn,
                Pattern::Hot,
                per_packet::EMPTY_PASS,
            ),
        ];
        for (what, limit, traffic, pattern, floor_name) in checks {
            let measured = case(
                pp,
                size,
                family,
                per_packet::BLOCKER,
                Some(traffic),
                pattern,
            )
            .zip(case(pp, size, family, floor_name, None, Pattern::Hot))
            .map(|(row, floor)| {
                let (ns, base) = (row.ns.median(), floor.ns.median());
                let reference = case(pp, size, family, per_packet::LINE_READ, None, pattern)
                    .map_or(String::new(), |line| {
                        format!(
                            "; a random line read over the table's bytes: {:.1} ns from user space",
                            line.ns.median()
                        )
                    });
                (
                    ns / base,
                    format!("{ns:.1} ns vs {base:.1} ns {floor_name}{reference}"),
                )
            });
            out.push(Target::judge(
                format!("{what}, {at} entries, {f}"),
                Limit::AtMost(limit),
                "x",
                measured,
            ));
        }
    }
}

/// The median drop rate of `filter` at `size` entries (`None`: the programs with no set).
fn flood_dropped(fl: &flood::Results, filter: &str, size: Option<usize>) -> Option<f64> {
    fl.rows
        .iter()
        .find(|r| r.filter == filter && r.size == size)
        .map(|r| r.dropped_pps.median())
}

fn flood_targets(fl: &flood::Results, out: &mut Vec<Target>) {
    let dropped = |filter, size| flood_dropped(fl, filter, size);
    let ceiling = dropped(flood::CEILING, None);
    // No filter that reads the frame drops faster than the program that only reads its
    // source: the same ratio for it says whether a target is within this machine's reach.
    // Padded, it shows what running instructions at all costs here.
    let references = [flood::READING, flood::READING_PADDED].map(|r| (r, dropped(r, None)));
    for size in [100_000, 1_000_000] {
        let at = size_label(size);
        let blocker = dropped(flood::BLOCKER, Some(size));
        let versus = |other: Option<f64>, scale: f64, unit: &str| {
            blocker.zip(other).map(|(b, o)| {
                let bound: String = references
                    .iter()
                    .filter_map(|&(name, r)| Some(format!("; {name}: {:.1}{unit}", r? / o * scale)))
                    .collect();
                (
                    b / o * scale,
                    format!("{:.2} vs {:.2} Mpps dropped{bound}", b / 1e6, o / 1e6),
                )
            })
        };
        let nftables = dropped(flood::NFTABLES, Some(size));
        for (what, limit, unit, other, scale) in [
            (flood::CEILING, 50.0, " %", ceiling, 100.0),
            (flood::NFTABLES, 10.0, "x", nftables, 1.0),
        ] {
            out.push(Target::judge(
                format!("flood, {at} entries: blocker vs {what}"),
                Limit::AtLeast(limit),
                unit,
                versus(other, scale, unit),
            ));
        }
    }
}

fn control_targets(cp: &control::Results, out: &mut Vec<Target>) {
    let apply = |n: usize| cp.apply.iter().find(|a| a.decisions == n);
    let how = "startup=true answer, Enforcer::pull";
    let time = |n| apply(n).map(|a| (a.seconds.median(), how.to_owned()));
    out.push(Target::judge(
        "1M decisions applied: time".into(),
        Limit::AtMost(10.0),
        " s",
        time(1_000_000),
    ));
    out.push(Target::judge(
        "1M decisions applied: peak RSS".into(),
        Limit::AtMost(150.0),
        " MB",
        apply(1_000_000).map(|a| {
            (
                a.own_rss_mb.median(),
                format!(
                    "VmHWM {:.2} MB of a fresh process, less the address tables it maps from the kernel, counted under Maps",
                    a.peak_rss_mb.median()
                ),
            )
        }),
    ));
    out.push(Target::judge(
        "100k decisions applied: time".into(),
        Limit::AtMost(2.0),
        " s",
        time(100_000),
    ));
    let latency = cp.latency.as_ref().map(|l| {
        let detail = format!(
            "{} trials, update_frequency {} s, p95 {:.2} s",
            l.seconds.0.len(),
            l.update_frequency_s,
            l.seconds.quantile(0.95)
        );
        (l.seconds.median(), detail)
    });
    out.push(Target::judge(
        "add -> first drop, p50".into(),
        Limit::AtMost(1.5),
        " s",
        latency,
    ));
}

/// Writes the report into `out` and returns its Markdown.
pub fn write(results: &mut Results, out: &Path) -> std::io::Result<String> {
    std::fs::create_dir_all(out)?;
    results.environment.load_end = loadavg();
    results.targets = targets(results);
    let plotted = plot(results, out)?;
    let markdown = markdown(results, plotted);
    std::fs::write(out.join("report.md"), &markdown)?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_vec_pretty(results).map_err(std::io::Error::other)?,
    )?;
    Ok(markdown)
}

fn cell(stat: &Stat) -> String {
    format!("{:.1} ({:.1})", stat.median(), stat.min())
}

fn markdown(r: &Results, plotted: Result<(), String>) -> String {
    let mut md = String::new();
    let e = &r.environment;
    let _ = writeln!(
        md,
        "# blocker benchmark{}\n",
        if r.quick {
            " (quick: small sizes, indicative only)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "{} on {} ({} CPUs), kernel {}; {:.0} s. Load average at start `{}`, at end `{}` (other work on the machine skews every figure).\n",
        e.started_utc, e.cpu, e.cpus, e.kernel, r.seconds, e.load_start, e.load_end
    );
    let _ = writeln!(
        md,
        "## Targets\n\n| Target | Wanted | Measured | Verdict |\n|---|---|---|---|"
    );
    for t in &r.targets {
        let verdict = match t.met {
            Some(true) => format!("**met** ({})", t.margin),
            Some(false) => format!("**MISSED** ({})", t.margin),
            None => "-".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {verdict} |",
            t.what, t.wanted, t.measured
        );
    }
    match plotted {
        Ok(()) => md.push_str("\n![cost against map size](cost.png)\n"),
        Err(why) => {
            let _ = writeln!(
                md,
                "\n(no plot: {why}; `cost.dat` and `cost.gp` are there for gnuplot)"
            );
        }
    }
    if let Some(pp) = &r.per_packet {
        per_packet_section(&mut md, pp);
    }
    if let Some(fl) = &r.flood {
        flood_section(&mut md, fl);
    }
    if let Some(cp) = &r.control {
        control_section(&mut md, cp);
    }
    if let Some(lg) = &r.legit {
        legit_section(&mut md, lg);
    }
    md
}

/// A row of the per-packet tables.
struct PerPacketLine {
    label: &'static str,
    program: &'static str,
    traffic: Option<Traffic>,
    pattern: Pattern,
    /// Also drawn in `cost.png` (the floor, blocker's banned SYN hot and spread, its clean SYN).
    plotted: bool,
}

const PER_PACKET_LINES: [PerPacketLine; 10] = [
    PerPacketLine {
        label: "empty XDP_DROP",
        program: per_packet::EMPTY_DROP,
        traffic: None,
        pattern: Pattern::Hot,
        plotted: true,
    },
    PerPacketLine {
        label: "empty XDP_PASS",
        program: per_packet::EMPTY_PASS,
        traffic: None,
        pattern: Pattern::Hot,
        plotted: false,
    },
    PerPacketLine {
        label: "blocker: banned SYN",
        program: per_packet::BLOCKER,
        traffic: Some(Traffic::BannedSyn),
        pattern: Pattern::Hot,
        plotted: true,
    },
    PerPacketLine {
        label: "blocker: banned SYN, spread",
        program: per_packet::BLOCKER,
        traffic: Some(Traffic::BannedSyn),
        pattern: Pattern::Spread,
        plotted: true,
    },
    PerPacketLine {
        label: "blocker: banned SYN, spread, one call per source (bound)",
        program: per_packet::BLOCKER,
        traffic: Some(Traffic::BannedSyn),
        pattern: Pattern::SpreadOneRun,
        plotted: false,
    },
    PerPacketLine {
        label: "reference: random line reads over the table's bytes, from user space",
        program: per_packet::LINE_READ,
        traffic: None,
        pattern: Pattern::Spread,
        plotted: false,
    },
    PerPacketLine {
        label: "blocker: clean SYN",
        program: per_packet::BLOCKER,
        traffic: Some(Traffic::CleanSyn),
        pattern: Pattern::Hot,
        plotted: true,
    },
    PerPacketLine {
        label: "blocker: SYN to unprotected port",
        program: per_packet::BLOCKER,
        traffic: Some(Traffic::UnprotectedSyn),
        pattern: Pattern::Hot,
        plotted: false,
    },
    PerPacketLine {
        label: "blocker: non-SYN TCP (ACK)",
        program: per_packet::BLOCKER,
        traffic: Some(Traffic::NonSyn),
        pattern: Pattern::Hot,
        plotted: false,
    },
    PerPacketLine {
        label: "blocker: UDP",
        program: per_packet::BLOCKER,
        traffic: Some(Traffic::Udp),
        pattern: Pattern::Hot,
        plotted: false,
    },
];

const PER_PACKET_METHOD: &str = "\nMethod. Every program timed is attached natively to a veth of its own, so \
    `BPF_PROG_TEST_RUN` finds it in the kernel's XDP dispatcher: otherwise each call with `repeat > 1` adds it and \
    removes it, waiting for an RCU grace period each time (about 16 ns per repeat at a million repeats). Hot: the \
    call's wall-clock time / repeats (the kernel's own figure is whole nanoseconds). Spread: the kernel repeats one \
    frame, so a hand-written harness (under fifty instructions) runs first in each repeat: it writes the next source \
    of the cycle into the frame and tail-calls blocker. The same harness cycling through as many copies of the hot \
    source gives what it adds besides the entries' cache misses, and a spread packet is reported as \
    `hot + (harness spread - harness hot)`: code hot and packets back to back as in a flood, map entries cold as \
    with many sources (back to back, the CPU may overlap a little of one packet's miss with the next packet, which a \
    driver's work between packets would leave less room for). The bound gives each source its own system call \
    (`repeat = 1`, timed by the kernel): `hot + (one-run spread - one-run hot)`; it overstates, most where the maps \
    fit in the caches, as the kernel's own entry and exit evict entries a flood would keep. The reference reads as \
    many random cache lines as there are sources (at most all of them), spread over as many bytes as the family's \
    address table, from user space in 4 KiB pages, each read naming the next, in the same round: what a table line \
    outside the core's own caches costs on this machine at that moment, whatever reads it (on a shared machine it \
    moves with the neighbours' use of the last-level cache). The \
    empty programs are `r0 = 1 or 2; exit`, loaded with a raw `BPF_PROG_LOAD`.\n";

fn per_packet_section(md: &mut String, pp: &PerPacket) {
    let sizes: Vec<usize> = pp.sizes.iter().map(|s| s.size).collect();
    let last = sizes.last().copied().unwrap_or(0);
    let _ = writeln!(
        md,
        "\n## 1. Cost per packet (`BPF_PROG_TEST_RUN`)\n\nNanoseconds per packet, median (min) of {} rounds; \
         hot: {} repeats of one frame; spread: as many repeats, each from the next of {} distinct banned entries \
         (as many for both families; all of them where there are fewer), cycled in random order (method \
         below). Sizes are entries per family (held): 99 % single addresses, 1 % disjoint ranges \
         (IPv4 /16../24, IPv6 /33../64: a /32 would be all of 2001:db8::/32). Frames carry IPv4 sources only from \
         198.18.0.0/15, which holds at most 65,792 of the entries; past those, IPv4 entries come from the \
         reserved 240.0.0.0/4: they fill the maps, and no frame carries them. blocker runs with an allow list \
         ({}) that no ban overlaps, as a mail host's own networks: the program then never looks it up.\n",
        pp.rounds,
        pp.repeat,
        grouped(pp.spread),
        super::HOST_ALLOWLIST.join(", ")
    );
    for family in Family::BOTH {
        let _ = write!(md, "| {} | ", family.name());
        for s in &pp.sizes {
            let held = if family == Family::V4 {
                s.v4_entries
            } else {
                s.v6_entries
            };
            let _ = write!(md, "{} ({held}) | ", size_label(s.size));
        }
        let _ = writeln!(
            md,
            "x floor at {} |\n|---|{}---|",
            size_label(last),
            "---|".repeat(sizes.len())
        );
        for &PerPacketLine {
            label,
            program,
            traffic,
            pattern,
            ..
        } in &PER_PACKET_LINES
        {
            let _ = write!(md, "| {label} | ");
            for &size in &sizes {
                let figure = case(pp, size, family, program, traffic, pattern)
                    .map_or("-".into(), |row| cell(&row.ns));
                let _ = write!(md, "{figure} | ");
            }
            let floor = match traffic {
                Some(Traffic::BannedSyn) => per_packet::EMPTY_DROP,
                _ => per_packet::EMPTY_PASS,
            };
            let ratio = case(pp, last, family, program, traffic, pattern)
                .zip(case(pp, last, family, floor, None, Pattern::Hot))
                .filter(|_| traffic.is_some())
                .map_or("-".into(), |(row, base)| {
                    format!("{:.2}x {floor}", row.ns.median() / base.ns.median())
                });
            let _ = writeln!(md, "{ratio} |");
        }
        md.push('\n');
    }
    md.push_str("Kernel memory of the maps (`memlock`), and time to write them one entry at a time:\n\n| Size | Maps | Install |\n|---|---|---|\n");
    for s in &pp.sizes {
        let bytes: u64 = s.map_memory.iter().map(|m| m.1).sum();
        let _ = writeln!(
            md,
            "| {} | {:.1} MiB | {:.2} s |",
            size_label(s.size),
            mib(bytes),
            s.install_seconds
        );
    }
    md.push_str(PER_PACKET_METHOD);
}

/// `n` with commas between groups of three digits, as the report's texts write numbers.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn mib(bytes: u64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "bytes")]
    let mib = bytes as f64 / f64::from(1 << 20);
    mib
}

fn flood_section(md: &mut String, fl: &flood::Results) {
    let _ = writeln!(
        md,
        "\n## 2. SYN flood over a veth pair\n\nMedian of rounds of {:.0} s. Generator: `BPF_PROG_TEST_RUN` live frames on CPU 0, \
         random sources in 198.18.0.0/16 (all banned). Receiver: threaded NAPI on CPU 1 (`SCHED_FIFO`, so at most 95 % of it). \
         CPU per packet is the NAPI thread's run time / frames it took; \"in the program\" is the XDP program's own run time \
         per frame, from one more round with the kernel's run-time statistics on (`BPF_ENABLE_STATS`; their two clock reads \
         a run are most of the empty program's figure).\n\n\
         | Filter | Entries per family | Dropped Mpps | Sent Mpps | Receiver CPU | ns per packet | ns in the program | Load |\n|---|---|---|---|---|---|---|---|",
        fl.seconds_per_round
    );
    for row in &fl.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {:.0} % | {:.0} | {} | {} |",
            row.filter,
            row.size.map_or("-".into(), size_label),
            row.dropped_pps.median() / 1e6,
            row.sent_pps.median() / 1e6,
            row.receiver_cpu.median() * 100.0,
            row.ns_per_packet.median(),
            row.program_ns.map_or("-".into(), |ns| format!("{ns:.0}")),
            row.load_seconds.map_or("-".into(), |s| format!("{s:.1} s")),
        );
    }
    let _ = writeln!(
        md,
        "\nOne entry is the range 198.18.0.0/16; 100k and 1M hold 198.18.0.0/16 as 65,536 single addresses plus the rest of \
         the set. nftables: `inet` table, an interval set per family, `prerouting` at priority `raw`, flags and ports matched \
         before the set. \"{}\": the same table with the sets crowdsec-firewall-bouncer's nftables mode makes, hash sets \
         of addresses with timeouts (`flags timeout`; it cuts a range to its first address, so the 1 % of ranges become one \
         address each, and at one entry it would hold 198.18.0.0 alone: not run). \"{}\": blocker at the largest size, \
         the flood's sources narrowed to 198.18.0.0/20, whose table lines the caches keep: what blocker costs there \
         without the table's cache misses. Frames the receiver cannot take are lost at the sender (veth's ring holds 256). \
         \"{}\" loads the IPv4 source, then drops: what it costs over the empty program is what looking at a frame \
         the other CPU wrote costs. \"{}\" is the same program with {} additions after the load that wait for nothing it \
         read: they add a few ns to its run time (ns in the program), and many times that to its cost a packet. So \
         here a filter pays for how many instructions it runs as much as for how long they take (likely because the \
         frame's cache miss is hidden behind the work that follows it only while that work fits in the CPU's \
         out-of-order window): blocker's program runs some 300 for a banned SYN.",
        flood::NFTABLES_HASH,
        flood::BLOCKER_FEW_SOURCES,
        flood::READING,
        flood::READING_PADDED,
        flood::PADDING
    );
    let versus_hash: Vec<String> = [100_000, 1_000_000]
        .into_iter()
        .filter_map(|size| {
            let blocker = flood_dropped(fl, flood::BLOCKER, Some(size));
            let (b, h) = blocker.zip(flood_dropped(fl, flood::NFTABLES_HASH, Some(size)))?;
            Some(format!("{:.1}x at {}", b / h, size_label(size)))
        })
        .collect();
    if !versus_hash.is_empty() {
        let _ = writeln!(
            md,
            "\nblocker against the sets crowdsec-firewall-bouncer itself makes: {} (not a target: the issue's \
             reference is the interval set, which holds the ranges as ranges).",
            versus_hash.join(", ")
        );
    }
}

fn control_section(md: &mut String, cp: &control::Results) {
    md.push_str(
        "\n## 3. Control plane\n\nA `startup=true` answer pulled and applied by the daemon's `Enforcer` in a fresh process \
         (peak RSS = its `VmHWM`); maps' kernel memory from `memlock`. The daemon maps the address \
         tables from the kernel to write them without a system call; the kernel maps every page at once, \
         so `VmHWM` counts all of them, though they are the maps' memory: \"Own\" is `VmHWM` less them.\n\n\
         | Decisions | Answer | Time, s | Peak RSS (VmHWM), MB | Own, MB | Maps |\n|---|---|---|---|---|---|\n",
    );
    for a in &cp.apply {
        #[expect(clippy::cast_precision_loss, reason = "bytes")]
        let answer = a.answer_bytes as f64 / 1e6;
        let _ = writeln!(
            md,
            "| {} | {answer:.0} MB | {} | {} | {} | {:.0} MiB |",
            size_label(a.decisions),
            cell(&a.seconds),
            cell(&a.peak_rss_mb),
            cell(&a.own_rss_mb),
            mib(a.map_bytes())
        );
    }
    if let Some(l) = &cp.latency {
        let _ = writeln!(
            md,
            "\nAdd to first drop (real LAPI 1.4.6, daemon at `update_frequency` {} s, {} trials, from `cscli decisions add` \
             returning to the first connection attempt that failed): p50 {:.3} s, p95 {:.3} s, min {:.3} s, max {:.3} s; \
             `cscli` itself took {:.3} s (median).",
            l.update_frequency_s,
            l.seconds.0.len(),
            l.seconds.median(),
            l.seconds.quantile(0.95),
            l.seconds.min(),
            l.seconds.quantile(1.0),
            l.cscli_seconds.median()
        );
    }
}

fn legit_section(md: &mut String, lg: &legit::Results) {
    let _ = writeln!(
        md,
        "\n## 4. Legitimate traffic\n\nA clean client to the mail host's port 25 across the test LAN's bridge, {} runs of {:.0} s; \
         blocker holds {} entries per family and inspected {} of the client's SYNs. Median (min).\n\n\
         | Mail host's NIC | Connections/s | Bulk Gbit/s | Timed-out connects |\n|---|---|---|---|",
        lg.rows.first().map_or(0, |r| r.connections_per_s.0.len()),
        lg.seconds_per_run,
        size_label(lg.entries),
        lg.syns_inspected
    );
    for row in &lg.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            row.setup,
            cell(&row.connections_per_s),
            cell(&row.bulk_gbit_per_s),
            row.failed_connections
        );
    }
    md.push_str(
        "\nAny native XDP program on a veth takes GSO away from its peer, so bulk data is segmented before it: compare blocker \
         with the empty program, not with no XDP, for what blocker itself costs.\n",
    );
}

/// gnuplot data blocks (`cost.dat`, addressed by `index`) and the panels that draw them.
#[derive(Default)]
struct Plot {
    dat: String,
    blocks: usize,
    /// Title, y label, plot clauses.
    panels: Vec<(&'static str, &'static str, Vec<String>)>,
}

impl Plot {
    /// Adds a block of (entries, y) points; returns its plot clause.
    fn series(
        &mut self,
        title: &str,
        style: &str,
        points: impl IntoIterator<Item = (usize, f64)>,
    ) -> String {
        let _ = writeln!(self.dat, "# {title}");
        for (x, y) in points {
            let _ = writeln!(self.dat, "{x} {y:.4}");
        }
        self.dat.push_str("\n\n");
        self.blocks += 1;
        format!(
            "'cost.dat' index {} with linespoints {style} title '{title}'",
            self.blocks - 1
        )
    }

    fn per_packet(&mut self, pp: &PerPacket) {
        let mut clauses = Vec::new();
        for (dash, family) in [(1, Family::V4), (2, Family::V6)] {
            for (color, line) in PER_PACKET_LINES.iter().enumerate() {
                if !line.plotted {
                    continue;
                }
                let points = pp.sizes.iter().filter_map(|s| {
                    case(pp, s.size, family, line.program, line.traffic, line.pattern)
                        .map(|row| (s.size, row.ns.median()))
                });
                let title = format!("{} {}", family.name(), line.label);
                clauses.push(self.series(&title, &format!("dt {dash} lc {}", color + 1), points));
            }
        }
        self.panels.push((
            "Cost per packet (BPF_PROG_TEST_RUN)",
            "ns per packet",
            clauses,
        ));
    }

    fn flood(&mut self, fl: &flood::Results) {
        let mut clauses = Vec::new();
        for filter in [flood::BLOCKER, flood::NFTABLES, flood::NFTABLES_HASH] {
            let points = fl
                .rows
                .iter()
                .filter(|r| r.filter == filter)
                .map(|r| (r.size.unwrap_or(1), r.dropped_pps.median() / 1e6));
            clauses.push(self.series(filter, "", points));
        }
        if let Some(c) = fl.rows.iter().find(|r| r.filter == flood::CEILING) {
            clauses.push(format!(
                "{:.4} with lines dt 3 lc 8 title 'empty XDP_DROP'",
                c.dropped_pps.median() / 1e6
            ));
        }
        self.panels
            .push(("SYN flood over veth, IPv4", "Mpps dropped", clauses));
    }
}

/// Writes `cost.dat` and `cost.gp` and runs gnuplot for `cost.png`.
fn plot(r: &Results, out: &Path) -> std::io::Result<Result<(), String>> {
    let mut plot = Plot::default();
    if let Some(pp) = &r.per_packet {
        plot.per_packet(pp);
    }
    if let Some(fl) = &r.flood {
        plot.flood(fl);
    }
    if plot.panels.is_empty() {
        return Ok(Err("nothing to plot".into()));
    }
    std::fs::write(out.join("cost.dat"), &plot.dat)?;
    let mut gp = format!(
        "set terminal pngcairo noenhanced size {},600 font ',10'\nset output 'cost.png'\nset multiplot layout 1,{}\n\
         set logscale x\nset xrange [0.7:2e6]\nset yrange [0:*]\nset grid\n\
         set xtics ('1' 1, '10' 10, '100' 100, '1k' 1e3, '10k' 1e4, '100k' 1e5, '1M' 1e6)\n\
         set xlabel 'banned entries per family'\nset key below font ',8' maxrows 4\nset bmargin 9\n",
        620 * plot.panels.len(),
        plot.panels.len()
    );
    for (title, ylabel, clauses) in &plot.panels {
        let _ = writeln!(
            gp,
            "set title '{title}'\nset ylabel '{ylabel}'\nplot {}",
            clauses.join(", \\\n  ")
        );
    }
    gp.push_str("unset multiplot\n");
    std::fs::write(out.join("cost.gp"), gp)?;
    Ok(
        match Command::new("gnuplot")
            .arg("cost.gp")
            .current_dir(out)
            .output()
        {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "gnuplot failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!(
                "gnuplot not found ({e}); `cargo xtask bench` installs gnuplot-nox"
            )),
        },
    )
}
