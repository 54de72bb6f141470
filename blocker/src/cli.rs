//! The `blocker` command line: the daemon, config checks, and introspection of the pinned
//! state (which works whether the daemon runs or not). anyhow lives here, at the edge.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    clock,
    config::{Config, DEFAULT_CONFIG_PATH},
    daemon::{self, DaemonSettings},
    inspect::{self, BanView, Verdict},
    loader,
    maps::{KernelMaps, TableUsage},
    state::{DaemonState, unix_seconds},
    xdp_hook,
};

/// `CrowdSec` bouncer for mail servers: drops SYNs to mail ports from banned prefixes with XDP.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enforce LAPI's decisions until stopped (SIGTERM, SIGINT). Enforcement stays in place
    /// after it stops; `blocker detach` removes it.
    Run,
    /// Validate the configuration and exit.
    CheckConfig,
    /// Print the configuration with defaults filled in and the API key redacted.
    ShowConfig,
    /// Interfaces, maps, counters and the last LAPI sync.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Would a SYN from this address to a protected port be dropped, and why.
    Check {
        address: IpAddr,
        #[arg(long)]
        json: bool,
    },
    /// The banned prefixes, with origin and expiry.
    List {
        #[arg(long)]
        json: bool,
        /// Only IPv4 prefixes.
        #[arg(long, conflicts_with = "v6")]
        v4: bool,
        /// Only IPv6 prefixes.
        #[arg(long)]
        v6: bool,
    },
    /// Remove the program from every interface and delete the pinned maps: stops enforcing.
    Detach,
}

/// Runs the command line; exits with 1 and a one-line error (with its causes) on failure.
pub fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("blocker: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let config = match cli.command {
        Command::Run | Command::CheckConfig | Command::ShowConfig => Config::load(&cli.config)?,
        _ => Config::load_for_inspection(&cli.config)?,
    };
    match &cli.command {
        Command::CheckConfig => {
            let settings = DaemonSettings::from_config(&config)?;
            // Reads the TLS files, as `run` does before it touches the kernel.
            crate::lapi::LapiClient::new(&settings.lapi)
                .context("the LAPI client cannot be set up")?;
            println!("{}: ok", cli.config.display());
            Ok(())
        }
        Command::ShowConfig => {
            print!("{}", config.to_yaml_redacted()?);
            Ok(())
        }
        Command::Run => run_daemon(&config),
        Command::Status { json } => status(&config, *json),
        Command::Check { address, json } => check(&config, *address, *json),
        Command::List { json, v4, v6 } => list(&config, *json, *v4, *v6),
        Command::Detach => {
            let links = loader::detach(config.bpffs_dir())
                .with_context(|| format!("detaching {}", config.bpffs_dir().display()))?;
            println!(
                "detached from {links} interface(s); pins under {} removed",
                config.bpffs_dir().display()
            );
            Ok(())
        }
    }
}

fn run_daemon(config: &Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_max_level(config.log_level().tracing_level())
        .with_target(false)
        .init();
    let settings = DaemonSettings::from_config(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async {
        let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let stop = async {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = sigint.recv() => {}
            }
        };
        daemon::run(settings, stop)
            .await
            .map_err(anyhow::Error::from)
    })
}

fn open_maps(config: &Config) -> anyhow::Result<KernelMaps> {
    Ok(KernelMaps::from_pins(config.bpffs_dir())?)
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn ago(unix: u64, now: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(now.saturating_sub(unix))).to_string()
}

#[derive(Serialize)]
struct FamilyReport {
    family: &'static str,
    packets_seen: u64,
    syn_inspected: u64,
    dropped_packets: u64,
    dropped_bytes: u64,
    observed_packets: u64,
    allowlisted: u64,
    malformed: u64,
}

#[derive(Serialize)]
struct StatusReport {
    pin_dir: PathBuf,
    interfaces: Vec<String>,
    program_ids: Vec<u32>,
    /// Per interface: `native`, `generic`...; `None` where this network namespace cannot tell.
    xdp_modes: Vec<Option<&'static str>>,
    banned_v4: usize,
    banned_v6: usize,
    expired_awaiting_removal: usize,
    allowlisted_prefixes: usize,
    /// Bans an allow-listed prefix overlaps: while a family has any, the program looks its
    /// allow list up on every banned SYN.
    allowlist_overlaps: usize,
    tables: TableUsage,
    ports: Vec<u16>,
    observe: bool,
    counters: Vec<FamilyReport>,
    daemon: Option<DaemonState>,
    daemon_running: bool,
}

fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let dir = config.bpffs_dir();
    let maps = open_maps(config)?;
    let links = loader::pins(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .links;
    let program_ids: Vec<Option<u32>> = links
        .iter()
        .map(|(_, path)| link_program_id(path))
        .collect();
    // From the kernel, not the state file: a pinned link reused at a restart keeps the mode
    // it was made in. Only where the hook holds the link's program: interface names are this
    // network namespace's, and the daemon's may be another.
    let xdp_modes = links
        .iter()
        .zip(&program_ids)
        .map(|((interface, _), &program_id)| {
            let hook = xdp_hook::xdp_hook(loader::ifindex(interface)?).ok()??;
            (Some(hook.program_id) == program_id).then_some(hook.mode)
        })
        .collect();
    let bans = maps.bans()?;
    let boot = clock::now_ns();
    let stats = maps.stats()?;
    let daemon = DaemonState::load(config.state_file()).ok();
    let daemon_running = daemon
        .as_ref()
        .is_some_and(|d| Path::new(&format!("/proc/{}", d.pid)).exists());
    let report = StatusReport {
        pin_dir: dir.to_path_buf(),
        interfaces: links.iter().map(|(i, _)| i.clone()).collect(),
        program_ids: program_ids.into_iter().flatten().collect(),
        xdp_modes,
        banned_v4: bans.iter().filter(|b| b.net.addr().is_ipv4()).count(),
        banned_v6: bans.iter().filter(|b| b.net.addr().is_ipv6()).count(),
        expired_awaiting_removal: bans.iter().filter(|b| b.expires_at_ns <= boot).count(),
        allowlisted_prefixes: maps.allows()?.len(),
        allowlist_overlaps: maps.allow_overlaps(),
        tables: maps.table_usage(),
        ports: maps.ports()?,
        observe: maps.settings()?.flags & blocker_common::flags::OBSERVE != 0,
        counters: [("ipv4", &stats[0]), ("ipv6", &stats[1])]
            .into_iter()
            .map(|(family, s)| FamilyReport {
                family,
                packets_seen: s.seen,
                syn_inspected: s.syn_protected,
                dropped_packets: s.dropped_packets.iter().sum(),
                dropped_bytes: s.dropped_bytes.iter().sum(),
                observed_packets: s.observed_packets.iter().sum(),
                allowlisted: s.allowlisted,
                malformed: s.malformed,
            })
            .collect(),
        daemon,
        daemon_running,
    };
    if json {
        return print_json(&report);
    }
    print_status(&report, config.state_file());
    Ok(())
}

fn print_status(report: &StatusReport, state_file: &Path) {
    let now = unix_seconds(SystemTime::now());
    println!("pins:        {}", report.pin_dir.display());
    let interfaces: Vec<String> = report
        .interfaces
        .iter()
        .zip(&report.xdp_modes)
        .map(|(interface, mode)| match mode {
            Some(mode) => format!("{interface} ({mode} XDP)"),
            None => interface.clone(),
        })
        .collect();
    println!(
        "interfaces:  {} (program ids {:?})",
        interfaces.join(", "),
        report.program_ids
    );
    println!(
        "mode:        {}",
        if report.observe {
            "observe (counting, not dropping)"
        } else {
            "enforce"
        }
    );
    println!("ports:       {:?}", report.ports);
    println!(
        "bans:        {} IPv4, {} IPv6 prefixes ({} expired, awaiting removal); {} allow-listed, overlapping {} ban{}",
        report.banned_v4,
        report.banned_v6,
        report.expired_awaiting_removal,
        report.allowlisted_prefixes,
        report.allowlist_overlaps,
        if report.allowlist_overlaps == 1 {
            ""
        } else {
            "s"
        }
    );
    let t = &report.tables;
    println!(
        "tables:      IPv4 {} of {} slots, IPv6 {} of {} slots, {} lifted not yet swept; {} overflowed to the range tries{}",
        t.v4_entries,
        t.v4_slots,
        t.v6_entries,
        t.v6_slots,
        t.tombstones,
        t.overflowed,
        if t.overflowed > 0 {
            " (raise max_addresses and restart blocker)"
        } else {
            ""
        }
    );
    for f in &report.counters {
        println!(
            "{}:        seen {}, SYNs inspected {}, dropped {} ({} bytes), observed {}, allow-listed {}, malformed {}",
            f.family,
            f.packets_seen,
            f.syn_inspected,
            f.dropped_packets,
            f.dropped_bytes,
            f.observed_packets,
            f.allowlisted,
            f.malformed
        );
    }
    match &report.daemon {
        None => println!("daemon:      no state file at {}", state_file.display()),
        Some(d) => {
            let running = if report.daemon_running {
                "running"
            } else {
                "NOT running (enforcement continues from the pins)"
            };
            println!(
                "daemon:      pid {} {running}, version {}, LAPI {}",
                d.pid, d.version, d.lapi_url
            );
            match d.last_sync {
                Some(t) => println!("last sync:   {} ago", ago(t, now)),
                None => println!("last sync:   never"),
            }
            match (d.last_full_sync, d.last_sync) {
                (Some(t), _) => println!("last full:   {} ago (startup=true)", ago(t, now)),
                (None, Some(_)) => {
                    println!("last full:   never: full pulls fail (last error), deltas go on");
                }
                (None, None) => {}
            }
            if let (Some(e), Some(t)) = (&d.last_error, d.last_error_at) {
                println!("last error:  {} ago: {e}", ago(t, now));
            }
            if d.pending_writes > 0 {
                println!(
                    "pending:     {} map writes the kernel refused, tried again, up to 1024 a second (see the log)",
                    d.pending_writes
                );
            }
        }
    }
}

fn link_program_id(path: &Path) -> Option<u32> {
    let link =
        aya::programs::links::FdLink::from(aya::programs::links::PinnedLink::from_pin(path).ok()?);
    link.info().ok().map(|info| info.program_id())
}

fn check(config: &Config, address: IpAddr, json: bool) -> anyhow::Result<()> {
    let maps = open_maps(config)?;
    let observe = maps.settings()?.flags & blocker_common::flags::OBSERVE != 0;
    let verdict = inspect::check(
        address,
        &maps.bans()?,
        &maps.allows()?,
        clock::now_ns(),
        SystemTime::now(),
    );
    if json {
        return print_json(
            &serde_json::json!({ "address": address, "observe": observe, "result": verdict }),
        );
    }
    let now = unix_seconds(SystemTime::now());
    let describe = |b: &BanView| {
        let until = match b.expires_at {
            None => "no expiry".to_owned(),
            Some(t) if t >= now => format!("expires in {}", ago(now, t)),
            Some(t) => format!("expired {} ago", ago(t, now)),
        };
        format!("{} (origin {}, {until})", b.prefix, b.origin)
    };
    match verdict {
        Verdict::Dropped { ban } if observe => println!(
            "{address}: would be dropped, but observe mode only counts it: banned by {}",
            describe(&ban)
        ),
        Verdict::Dropped { ban } => println!(
            "{address}: SYNs to protected ports are DROPPED: banned by {}",
            describe(&ban)
        ),
        Verdict::Allowlisted { allow, ban } => println!(
            "{address}: passes: allow-listed by {allow}, overriding the ban {}",
            describe(&ban)
        ),
        Verdict::Expired { ban } => {
            println!("{address}: passes: the ban {} has expired", describe(&ban));
        }
        Verdict::NotBanned => println!("{address}: passes: not banned"),
    }
    Ok(())
}

fn list(config: &Config, json: bool, v4: bool, v6: bool) -> anyhow::Result<()> {
    let maps = open_maps(config)?;
    let (boot, wall) = (clock::now_ns(), SystemTime::now());
    let mut bans: Vec<BanView> = maps
        .bans()?
        .iter()
        .filter(|b| (!v4 || b.net.addr().is_ipv4()) && (!v6 || b.net.addr().is_ipv6()))
        .map(|b| BanView::new(b, boot, wall))
        .collect();
    bans.sort_by_key(|b| b.prefix);
    if json {
        return print_json(&bans);
    }
    let now = unix_seconds(wall);
    for b in &bans {
        let until = match b.expires_at {
            None => "never".to_owned(),
            Some(_) if b.expired => "expired".to_owned(),
            Some(t) => format!("in {}", ago(now, t)),
        };
        println!("{:<44} {:<13} {until}", b.prefix.to_string(), b.origin);
    }
    Ok(())
}
