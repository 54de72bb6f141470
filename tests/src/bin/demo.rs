//! `cargo xtask demo`: blocker end to end on this machine, narrated for a mail admin.
//!
//! Builds three hosts in network namespaces on one bridge (a mail host, an attacker and a
//! legitimate client, on documentation addresses), starts a real `CrowdSec` LAPI on the mail
//! host, runs the real `blocker` binary there (`$BLOCKER_BIN`, set by xtask) on the mail
//! host's `eth0`, bans the attacker with `cscli`, shows its connections to the mail ports
//! failing while the client's succeed, lifts the ban, prints the kernel counters blocker logs
//! when it stops, and removes everything it made. Needs root.

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader, ErrorKind, Read},
    net::{IpAddr, SocketAddr, TcpStream},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, ExitStatus, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use blocker_tests::{
    lapi::Lapi,
    netns::{ATTACKER, Host, Lan, Listeners},
};

/// Steps narrated as `[n/STEPS]`.
const STEPS: usize = 8;
/// The mail ports the demo probes (blocker protects these among its defaults).
const MAIL_PORTS: [(u16, &str); 3] = [(25, "SMTP"), (587, "submission"), (993, "IMAPS")];
/// A port that is not a mail port: blocker leaves it alone, even for a banned address.
const OTHER_PORT: (u16, &str) = (443, "HTTPS, e.g. webmail");
/// How long a connection attempt may wait for the handshake. Across a bridge between
/// namespaces an answer takes well under a millisecond; none in this time means the SYN was
/// dropped.
const PROBE: Duration = Duration::from_millis(500);
/// How long a decision may take to reach the kernel, or to leave it (blocker polls LAPI every
/// second here).
const ENFORCE_WITHIN: Duration = Duration::from_secs(5);
/// How long blocker may take to load and attach its XDP program.
const START_WITHIN: Duration = Duration::from_secs(15);
/// How long blocker may take to stop after `SIGTERM` before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// The IPv6 ban: a /124 around the attacker (`::60` to `::6f`), not the client nor the mail
/// host.
const ATTACKER_V6_RANGE: &str = "2001:db8:25::60/124";

fn main() -> ExitCode {
    catch_interrupts();
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ndemo failed: {e:#}");
            eprintln!("(anything the demo had set up has been removed)");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo needs root (network namespaces, XDP): run it as root");
    }
    let blocker_bin = blocker_binary()?;
    intro();

    step(
        1,
        "Building a small network: three hosts on one switch (a Linux bridge)",
    );
    let lan = Lan::mail_scene();
    let (mail, attacker, client) = lan.roles();
    for (host, role) in [
        (mail, "mail host"),
        (attacker, "attacker"),
        (client, "legitimate client"),
    ] {
        println!(
            "  {role:<18} {:<14} {:<17} (namespace {})",
            host.v4, host.v6, host.ns.name
        );
    }
    let listeners = Listeners::start(mail, &all_ports());
    println!("  The mail host listens on ports {}.", list(&all_ports()));
    check_interrupted()?;

    step(2, "Starting CrowdSec's Local API (LAPI) on the mail host");
    let lapi = mail.ns.run(Lapi::start);
    println!(
        "  LAPI listens on {} (the mail host's loopback), as a packaged CrowdSec would.",
        lapi.url()
    );
    println!("  Registering blocker as a bouncer with: cscli bouncers add blocker-demo");
    let key = mail.ns.run(|| lapi.add_bouncer("blocker-demo"));
    println!("  (cscli printed the API key blocker authenticates with)");
    check_interrupted()?;

    step(3, "Starting blocker on the mail host's network card (eth0)");
    let dir = TempDir::create()?;
    let bpffs_dir = PathBuf::from(format!("/sys/fs/bpf/blocker-demo-{}", std::process::id()));
    let pins = RemoveOnDrop(bpffs_dir.clone());
    let config = write_config(&dir.0, &lapi.url(), &key, &bpffs_dir)?;
    blocker_cli(&blocker_bin, &config, &["check-config"])?;
    let mut blocker = Blocker::start(&mail.ns.name, &blocker_bin, &config)?;
    let took = blocker.wait_attached(&mail.ns.name)?;
    println!(
        "  blocker loaded its XDP program and attached it to eth0 in {}.",
        secs(took)
    );
    // Its first pull from LAPI follows at once; show it here if it comes soon (no failure
    // otherwise: the ban below is waited for on its own).
    blocker.wait_log("decisions applied", Duration::from_secs(3))?;
    blocker.show_log();

    let mut scene = Scene {
        mail,
        attacker,
        client,
        lapi: &lapi,
        blocker,
        bin: &blocker_bin,
        config: &config,
        drops: Drops::default(),
    };
    scene.ban_and_lift()?;

    scene.stop()?;

    step(8, "Cleaning up");
    let prefix = mail
        .ns
        .name
        .rsplit_once('-')
        .map(|(p, _)| p.to_owned())
        .unwrap_or_default();
    let lapi_pid = lapi.pid();
    let lapi_dir = lapi.config_path().parent().map(Path::to_path_buf);
    let dir_path = dir.0.clone();
    drop(scene);
    drop(listeners);
    drop(lapi);
    drop(lan);
    drop(dir);
    drop(pins);
    check_clean(&prefix, lapi_pid, lapi_dir.as_deref(), &dir_path)?;
    println!("\nDone. To protect a real mail server, point blocker's configuration at your LAPI,");
    println!("list the mail-facing interfaces, and run `blocker run` (see the README).");
    Ok(())
}

/// The hosts, LAPI and the running blocker, for steps 4 to 7.
struct Scene<'a> {
    mail: &'a Host,
    attacker: &'a Host,
    client: &'a Host,
    lapi: &'a Lapi,
    blocker: Blocker,
    bin: &'a Path,
    config: &'a Path,
    drops: Drops,
}

impl Scene<'_> {
    /// Runs each `cscli` command on the mail host, showing it first.
    fn cscli(&self, commands: &[&[&str]]) -> String {
        let mut out = String::new();
        for args in commands {
            println!("  cscli {}", args.join(" "));
            out += &self.mail.ns.run(|| self.lapi.cscli(args));
        }
        out
    }

    fn probe_all(&self) -> Table {
        probe_all(self.attacker, self.client, self.mail)
    }

    fn ban_and_lift(&mut self) -> Result<()> {
        println!("\n  Before any ban, everyone reaches the mail host:");
        let table = self.probe_all();
        print_table(&table);
        let names: Vec<String> = MAIL_PORTS.iter().map(|(p, n)| format!("{p} {n}")).collect();
        println!(
            "    (mail ports: {}; port {} is {}, not a mail port)",
            names.join(", "),
            OTHER_PORT.0,
            OTHER_PORT.1
        );
        table.expect(false)?;
        self.drops.add(&table);

        step(
            4,
            "Banning the attacker, as CrowdSec does when a scenario fires",
        );
        self.cscli(&[
            &["decisions", "add", "--ip", ATTACKER.0, "--duration", "4h"],
            &[
                "decisions",
                "add",
                "--range",
                ATTACKER_V6_RANGE,
                "--duration",
                "4h",
            ],
        ]);
        let (took, table) = self.wait_for(true)?;
        println!(
            "  blocker pulled the decisions and the kernel enforced them {} after cscli returned.",
            secs(took)
        );
        self.blocker.show_log();
        indent(&self.cscli(&[&["decisions", "list"]]));

        step(5, "Connections while the ban is on");
        print_table(&table);
        println!(
            "  blocked: the connection attempt got no answer at all within {} ms. XDP dropped",
            PROBE.as_millis()
        );
        println!("  the attacker's SYN before the mail host's TCP stack saw it, so no mail server");
        println!(
            "  process ever spends anything on it. Port {} is not a mail port: it stays open.",
            OTHER_PORT.0
        );
        println!("  The legitimate client, on the same network, is not affected.");

        step(6, "Lifting the ban");
        self.cscli(&[
            &["decisions", "delete", "--ip", ATTACKER.0],
            &["decisions", "delete", "--range", ATTACKER_V6_RANGE],
        ]);
        let (took, table) = self.wait_for(false)?;
        println!(
            "  The attacker connects again, {} after cscli returned:",
            secs(took)
        );
        print_table(&table);
        self.blocker.show_log();
        Ok(())
    }

    /// Step 7: stops blocker and shows the kernel's counters it logs.
    fn stop(&mut self) -> Result<()> {
        step(
            7,
            "Stopping blocker (SIGTERM, as systemd does); it logs the kernel's counters",
        );
        let status = self.blocker.stop()?;
        self.blocker.show_log();
        if !status.success() {
            bail!("blocker exited with {status}");
        }
        show_counters(&self.blocker.lines(), &self.drops);
        if !xdp_attached(&self.mail.ns.name)? {
            bail!("blocker's program left eth0 when blocker stopped: its pins should keep it");
        }
        println!(
            "  The XDP program stays on eth0, pinned: bans keep being enforced while blocker is"
        );
        println!(
            "  stopped or restarting. `blocker status` reads the pinned maps all the same (run"
        );
        println!(
            "  on the mail host, where eth0 is, it also reads eth0's XDP mode from the kernel):"
        );
        self.mail
            .ns
            .run(|| blocker_cli(self.bin, self.config, &["status"]))?;
        println!("  To stop enforcing altogether:");
        blocker_cli(self.bin, self.config, &["detach"])?;
        if xdp_attached(&self.mail.ns.name)? {
            bail!("eth0 still has an XDP program after blocker detach");
        }
        println!("  eth0 has no XDP program any more.");
        Ok(())
    }

    /// Probes until the attacker's mail ports are all blocked (`banned`) or all open, for up
    /// to [`ENFORCE_WITHIN`]; returns the time to the first probe round that saw it, and that
    /// round, checked cell by cell.
    fn wait_for(&mut self, banned: bool) -> Result<(Duration, Table)> {
        let start = Instant::now();
        loop {
            check_interrupted()?;
            self.blocker.check_running()?;
            let round = start.elapsed();
            let table = self.probe_all();
            self.drops.add(&table);
            if table.attacker_is(banned) {
                table.expect(banned)?;
                return Ok((round, table));
            }
            if start.elapsed() > ENFORCE_WITHIN {
                print_table(&table);
                self.blocker.show_log();
                bail!(
                    "the attacker was still {} after {}",
                    if banned { "connecting" } else { "blocked" },
                    secs(ENFORCE_WITHIN)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn blocker_binary() -> Result<PathBuf> {
    let path = std::env::var_os("BLOCKER_BIN").map(PathBuf::from).context(
        "BLOCKER_BIN is not set: run the demo with `cargo xtask demo`, which builds blocker \
         and sets it to the binary's path",
    )?;
    if !path.is_file() {
        bail!(
            "BLOCKER_BIN={} is not a file: build blocker first (`cargo xtask build`)",
            path.display()
        );
    }
    Ok(path)
}

fn intro() {
    println!(
        "blocker demo: a mail host protected by blocker, an attacker and a legitimate client."
    );
    println!("Everything runs in throwaway network namespaces on documentation addresses;");
    println!(
        "nothing on this machine's own network is touched, and all of it is removed at the end."
    );
}

fn step(n: usize, what: &str) {
    println!("\n[{n}/{STEPS}] {what}");
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The mail ports, then the other port.
fn all_ports() -> Vec<u16> {
    MAIL_PORTS
        .iter()
        .chain([&OTHER_PORT])
        .map(|(p, _)| *p)
        .collect()
}

fn list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn indent(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

// ---- Interrupts: Ctrl-C must still remove what the demo made.

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// `SIGINT` and `SIGTERM` set a flag that the demo checks between steps and while it waits,
/// and then unwinds, so that every guard cleans up.
fn catch_interrupts() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

// ---- blocker's configuration and process.

/// A private folder for blocker's configuration (it holds the API key), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("blocker-demo-{}", std::process::id()));
        // A leftover of an earlier demo with the same pid can only be ours.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes a folder on drop if it exists (where blocker would pin its maps).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn write_config(dir: &Path, api_url: &str, key: &str, bpffs_dir: &Path) -> Result<PathBuf> {
    let body = |key: &str| {
        format!(
            "api_url: {api_url}/\n\
             api_key: {key}\n\
             update_frequency: 1s\n\
             interfaces: [eth0]\n\
             xdp_mode: native\n\
             log_level: info\n\
             bpffs_dir: {}\n\
             state_file: {}\n",
            bpffs_dir.display(),
            dir.join("state.json").display()
        )
    };
    let path = dir.join("crowdsec-blocker.yaml");
    std::fs::write(
        &path,
        format!("# blocker's configuration for the demo\n{}", body(key)),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    println!("  Its configuration, {}:", path.display());
    indent(&body("<the key from cscli bouncers add>"));
    println!("  (ports: the defaults, i.e. the mail ports 25, 465, 587, 143, 993, 110 and 995;");
    println!(
        "  bpffs_dir and state_file are the demo's own, so an installed blocker is not disturbed)"
    );
    Ok(path)
}

/// Runs `blocker <args> -c <config>` as a user would, showing the command and its output.
fn blocker_cli(bin: &Path, config: &Path, args: &[&str]) -> Result<()> {
    let config = config.to_str().context("the config path is UTF-8")?;
    println!("  blocker {} -c {config}", args.join(" "));
    let out = Command::new(bin)
        .args(args)
        .args(["-c", config])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    indent(&String::from_utf8_lossy(&out.stdout));
    indent(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("blocker {} failed ({})", args.join(" "), out.status);
    }
    Ok(())
}

/// The `blocker run` process, started in the mail host's network namespace (like
/// `nsenter --net`: unlike `ip netns exec`, it keeps the host's /sys/fs/bpf, where the pins
/// that outlive the process go).
/// Its output is collected; dropping it kills the process if it still runs.
struct Blocker {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    shown: usize,
}

impl Blocker {
    fn start(netns: &str, bin: &Path, config: &Path) -> Result<Blocker> {
        let netns_file = std::fs::File::open(format!("/run/netns/{netns}"))
            .with_context(|| format!("opening the namespace {netns}"))?;
        let netns_fd = std::os::fd::AsRawFd::as_raw_fd(&netns_file);
        let mut command = Command::new(bin);
        command
            .arg("run")
            .arg("-c")
            .arg(config)
            // Plain log lines: no colour codes in what the demo shows.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let parent = libc::pid_t::try_from(std::process::id()).context("pid fits pid_t")?;
        // SAFETY: between fork and exec the closure only makes async-signal-safe syscalls.
        // The death signal makes blocker go if the demo dies without unwinding (the main
        // thread forks it and lives on).
        unsafe {
            command.pre_exec(move || {
                if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other(
                        "the demo died while starting blocker",
                    ));
                }
                Ok(())
            });
        }
        println!(
            "  nsenter --net=/run/netns/{netns} {} run -c {}",
            bin.display(),
            config.display()
        );
        let mut child = command.spawn().context("starting blocker")?;
        drop(netns_file);
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let outputs: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|o| Box::new(o) as Box<dyn Read + Send>),
        ];
        for output in outputs.into_iter().flatten() {
            let log = Arc::clone(&log);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(output).lines() {
                    let Ok(line) = line else { break };
                    log.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(strip_ansi(&line));
                }
            }));
        }
        Ok(Blocker {
            child,
            log,
            readers,
            shown: 0,
        })
    }

    fn lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Prints the log lines not shown yet.
    fn show_log(&mut self) {
        let lines = self.lines();
        if lines.len() > self.shown {
            println!("  blocker's log:");
            for line in &lines[self.shown..] {
                println!("    | {line}");
            }
        }
        self.shown = lines.len();
    }

    /// Fails, with blocker's log, if it is no longer running.
    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("waiting for blocker")? {
            // Let the readers catch the last lines.
            for reader in self.readers.drain(..) {
                let _ = reader.join();
            }
            self.show_log();
            bail!("blocker exited early ({status}); its log is above");
        }
        Ok(())
    }

    /// Waits up to `within` for a log line containing `needle`; whether one came.
    fn wait_log(&mut self, needle: &str, within: Duration) -> Result<bool> {
        let start = Instant::now();
        while start.elapsed() < within {
            check_interrupted()?;
            if self.lines().iter().any(|l| l.contains(needle)) {
                return Ok(true);
            }
            self.check_running()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(false)
    }

    /// Waits until an XDP program is attached to the mail host's `eth0`.
    fn wait_attached(&mut self, netns: &str) -> Result<Duration> {
        let start = Instant::now();
        loop {
            check_interrupted()?;
            self.check_running()?;
            if xdp_attached(netns)? {
                return Ok(start.elapsed());
            }
            if start.elapsed() > START_WITHIN {
                self.show_log();
                bail!(
                    "blocker did not attach to eth0 within {}",
                    secs(START_WITHIN)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `SIGTERM`, then `SIGKILL` if it has not exited within [`STOP_WITHIN`]; waits for its
    /// last log lines.
    fn stop(&mut self) -> Result<ExitStatus> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid fits pid_t")?;
        // SAFETY: a plain syscall on our own child, not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_WITHIN;
        let status = loop {
            if let Some(status) = self.child.try_wait().context("waiting for blocker")? {
                break status;
            }
            if Instant::now() > deadline {
                println!(
                    "  blocker did not stop within {}: killing it",
                    secs(STOP_WITHIN)
                );
                let _ = self.child.kill();
                break self.child.wait().context("waiting for blocker")?;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Ok(status)
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Whether an XDP program is attached to `eth0` in the namespace `netns`.
fn xdp_attached(netns: &str) -> Result<bool> {
    let out = Command::new("ip")
        .args(["-n", netns, "link", "show", "dev", "eth0"])
        .output()
        .context("running ip link show")?;
    if !out.status.success() {
        bail!(
            "ip -n {netns} link show dev eth0: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).contains("prog/xdp"))
}

/// Removes terminal colour sequences (`ESC [ … letter`), should the log carry any.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---- Connections.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Connected,
    /// No answer at all within [`PROBE`]: the SYN was dropped.
    Dropped,
    Refused,
    Failed(String),
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::Connected => "connected".into(),
            Outcome::Dropped => "blocked".into(),
            Outcome::Refused => "refused".into(),
            Outcome::Failed(e) => format!("error: {e}"),
        }
    }
}

/// One TCP handshake attempt from `from`, bounded by [`PROBE`].
fn probe(from: &Host, to: IpAddr, port: u16) -> Outcome {
    from.ns.run(
        || match TcpStream::connect_timeout(&SocketAddr::new(to, port), PROBE) {
            Ok(_) => Outcome::Connected,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                Outcome::Dropped
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Outcome::Refused,
            Err(e) => Outcome::Failed(e.to_string()),
        },
    )
}

/// Who tried to connect: a label, and whether it is the attacker.
struct Row {
    who: String,
    attacker: bool,
    ipv6: bool,
    outcomes: Vec<Outcome>,
}

struct Table {
    ports: Vec<u16>,
    rows: Vec<Row>,
}

impl Table {
    /// Checks every cell: the attacker's mail ports blocked iff `banned`; all else connects.
    fn expect(&self, banned: bool) -> Result<()> {
        let mut wrong = String::new();
        for row in &self.rows {
            for (port, outcome) in self.ports.iter().zip(&row.outcomes) {
                let want = if banned && row.attacker && is_mail_port(*port) {
                    Outcome::Dropped
                } else {
                    Outcome::Connected
                };
                if *outcome != want {
                    let _ = write!(
                        wrong,
                        "; {} port {port}: {} (expected {})",
                        row.who,
                        outcome.label(),
                        want.label()
                    );
                }
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            bail!("unexpected connection results{wrong}")
        }
    }

    /// Whether the attacker's mail ports are all blocked (`banned`) or all connect.
    fn attacker_is(&self, banned: bool) -> bool {
        let want = if banned {
            Outcome::Dropped
        } else {
            Outcome::Connected
        };
        self.rows.iter().filter(|r| r.attacker).all(|row| {
            self.ports
                .iter()
                .zip(&row.outcomes)
                .filter(|(p, _)| is_mail_port(**p))
                .all(|(_, o)| *o == want)
        })
    }
}

fn is_mail_port(port: u16) -> bool {
    MAIL_PORTS.iter().any(|(p, _)| *p == port)
}

/// Every port from the attacker and the client to the mail host, over IPv4 and IPv6, all at
/// once (a blocked attempt takes [`PROBE`]).
fn probe_all(attacker: &Host, client: &Host, mail: &Host) -> Table {
    let ports = all_ports();
    let sources = [
        (attacker, true, IpAddr::V4(attacker.v4), IpAddr::V4(mail.v4)),
        (attacker, true, IpAddr::V6(attacker.v6), IpAddr::V6(mail.v6)),
        (client, false, IpAddr::V4(client.v4), IpAddr::V4(mail.v4)),
        (client, false, IpAddr::V6(client.v6), IpAddr::V6(mail.v6)),
    ];
    let rows = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .map(|(host, attacker, from, to)| {
                let cells: Vec<_> = ports
                    .iter()
                    .map(|port| scope.spawn(move || probe(host, *to, *port)))
                    .collect();
                (*attacker, *from, cells)
            })
            .collect();
        handles
            .into_iter()
            .map(|(attacker, from, cells)| Row {
                who: format!("{} {from}", if attacker { "attacker" } else { "client" }),
                attacker,
                ipv6: from.is_ipv6(),
                outcomes: cells
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Outcome::Failed("probe panicked".into()))
                    })
                    .collect(),
            })
            .collect()
    });
    Table { ports, rows }
}

fn print_table(table: &Table) {
    let mut head = format!("    {:<26}", "from \\ to the mail host");
    for port in &table.ports {
        let _ = write!(head, "{:<12}", format!("port {port}"));
    }
    println!("{}", head.trim_end());
    for row in &table.rows {
        let mut line = format!("    {:<26}", row.who);
        for outcome in &row.outcomes {
            let _ = write!(line, "{:<12}", outcome.label());
        }
        println!("{}", line.trim_end());
    }
}

/// The attacker's connection attempts that got no answer, per family: each is one SYN the
/// kernel should count as dropped.
#[derive(Default)]
struct Drops {
    v4: u64,
    v6: u64,
}

impl Drops {
    fn add(&mut self, table: &Table) {
        for row in &table.rows {
            let n = row
                .outcomes
                .iter()
                .filter(|o| **o == Outcome::Dropped)
                .count() as u64;
            if row.ipv6 {
                self.v6 += n;
            } else {
                self.v4 += n;
            }
        }
    }
}

// ---- Counters and cleanup.

/// Shows blocker's "kernel counters" lines in plain words.
fn show_counters(log: &[String], drops: &Drops) {
    let lines: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("kernel counters"))
        .collect();
    if lines.is_empty() {
        println!("  blocker logged no kernel counters (its log is above).");
        return;
    }
    println!("  The kernel's counters, as blocker logged them at shutdown:");
    for line in lines {
        let fields: Vec<(&str, &str)> = line
            .split_once("kernel counters")
            .map(|(_, rest)| rest)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let (Some(family), Some(seen), Some(inspected), Some(dropped), Some(bytes)) = (
            get("family"),
            get("seen"),
            get("syn_inspected"),
            get("dropped"),
            get("dropped_bytes"),
        ) else {
            println!("    {line}");
            continue;
        };
        let ours = if family == "IPv6" { drops.v6 } else { drops.v4 };
        println!(
            "    {family}: {seen} packets seen on eth0, {inspected} SYNs to a mail port checked \
             against the bans, {dropped} dropped ({bytes} bytes)"
        );
        println!("          (the demo's unanswered {family} connection attempts: {ours})");
    }
}

/// Confirms that nothing the demo made is left: namespaces, LAPI, files.
fn check_clean(
    prefix: &str,
    lapi_pid: Option<u32>,
    lapi_dir: Option<&Path>,
    dir: &Path,
) -> Result<()> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("running ip netns list")?;
    let left: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| !prefix.is_empty() && n.starts_with(&format!("{prefix}-")))
        .map(str::to_owned)
        .collect();
    if !left.is_empty() {
        bail!("network namespaces left behind: {}", left.join(" "));
    }
    println!("  Removed the network namespaces {prefix}-* (hosts, switch, veth cables).");
    if let Some(pid) = lapi_pid {
        if Path::new(&format!("/proc/{pid}")).exists() {
            bail!("crowdsec (pid {pid}) is still running");
        }
        println!("  Stopped LAPI (crowdsec, pid {pid}) and blocker.");
    }
    for path in lapi_dir.into_iter().chain([dir]) {
        if path.exists() {
            bail!("{} was not removed", path.display());
        }
        println!("  Removed {}.", path.display());
    }
    println!("  Nothing the demo made is left on this machine.");
    Ok(())
}
