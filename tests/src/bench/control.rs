//! Part 3: the control plane.
//!
//! Apply: a `startup=true` answer of N decisions (1 % ranges, half IPv4, half IPv6), pulled
//! and applied by `blocker::daemon::Enforcer` (what the daemon runs on every pull) in a fresh
//! child process, so its peak RSS (`VmHWM`) is the daemon's work alone; the answer is served from this process by a minimal HTTP server on loopback. The
//! child also reports the maps' kernel memory (`memlock` in `/proc/self/fdinfo`).
//!
//! Latency: a real LAPI and the daemon (1 s `update_frequency`) on a mail host, a client on the
//! LAN. Each trial bans a fresh client address with `cscli decisions add`, then connects from it
//! to port 25 every 2 ms until a connection attempt fails: add-to-first-drop is the time from
//! `cscli` returning (the decision is in LAPI) to the start of that attempt.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use blocker::{
    daemon::Enforcer,
    lapi::{ApiKey, LapiAuth, LapiClient, LapiSettings},
    maps::KernelMaps,
};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

use super::{Stat, bpf, sets::BanSet};
use crate::{
    daemon::{self, Daemon},
    lapi::Lapi,
    netns::{Lan, Listeners},
};

pub struct Config {
    /// Decisions per `startup=true` answer.
    pub sizes: Vec<usize>,
    pub rounds: usize,
    pub trials: usize,
    /// The `bench` executable, run with `--apply-child URL`.
    pub helper: PathBuf,
}

impl Config {
    #[must_use]
    pub fn new(quick: bool, helper: PathBuf) -> Config {
        if quick {
            Config {
                sizes: vec![1_000],
                rounds: 1,
                trials: 3,
                helper,
            }
        } else {
            Config {
                sizes: vec![100_000, 1_000_000],
                rounds: 3,
                trials: 20,
                helper,
            }
        }
    }
}

/// What the child process measured applying one answer.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    /// Wall-clock time of `Enforcer::pull` (transfer, parse, plan, map writes).
    pub seconds: f64,
    pub banned: usize,
    pub failed: usize,
    /// `VmRSS` before the pull and `VmHWM` after it, bytes.
    pub rss_before: u64,
    pub peak_rss: u64,
    /// Of that, the address tables the daemon maps from the kernel to write them directly:
    /// resident from the start, and the maps' memory (also in `map_memory`), not the
    /// daemon's own.
    pub tables_mapped: u64,
    /// Kernel memory of each map after the pull, bytes.
    pub map_memory: Vec<(String, u64)>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ApplyResult {
    pub decisions: usize,
    pub answer_bytes: usize,
    pub seconds: Stat,
    /// Peak RSS in MB (10^6 bytes).
    pub peak_rss_mb: Stat,
    /// Peak RSS less the mapped address tables: the daemon's own memory, MB.
    pub own_rss_mb: Stat,
    pub runs: Vec<Applied>,
}

impl ApplyResult {
    /// Kernel memory of the maps (last run), bytes.
    #[must_use]
    pub fn map_bytes(&self) -> u64 {
        self.runs
            .last()
            .map_or(0, |r| r.map_memory.iter().map(|m| m.1).sum())
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Latency {
    pub update_frequency_s: f64,
    /// Add-to-first-drop per trial, seconds.
    pub seconds: Stat,
    /// How long each `cscli decisions add` took, seconds.
    pub cscli_seconds: Stat,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Results {
    pub apply: Vec<ApplyResult>,
    pub latency: Option<Latency>,
}

/// Runs part 3.
pub fn run(config: &Config, log: &mut impl FnMut(&str)) -> Results {
    let apply = config
        .sizes
        .iter()
        .map(|&n| apply(config, n, log))
        .collect();
    let latency = (config.trials > 0).then(|| latency(config.trials, log));
    Results { apply, latency }
}

fn apply(config: &Config, decisions: usize, log: &mut impl FnMut(&str)) -> ApplyResult {
    let v4 = decisions / 2;
    let set = BanSet::new(v4, decisions - v4, super::SEED);
    let body = set.stream_answer();
    let answer_bytes = body.len();
    let server = Server::start(body);
    let mut result = ApplyResult {
        decisions,
        answer_bytes,
        seconds: Stat::default(),
        peak_rss_mb: Stat::default(),
        own_rss_mb: Stat::default(),
        runs: Vec::new(),
    };
    for _ in 0..config.rounds {
        let out = Command::new(&config.helper)
            .args(["--apply-child", &server.url()])
            .output()
            .unwrap_or_else(|e| panic!("run {} --apply-child: {e}", config.helper.display()));
        assert!(
            out.status.success(),
            "apply child failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let applied: Applied = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "apply child's answer ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(
            applied.banned,
            set.len(),
            "the child applied {} of {} decisions",
            applied.banned,
            set.len()
        );
        #[expect(clippy::cast_precision_loss, reason = "bytes")]
        let (answer_mb, peak_mb, own_mb) = (
            answer_bytes as f64 / 1e6,
            applied.peak_rss as f64 / 1e6,
            applied.peak_rss.saturating_sub(applied.tables_mapped) as f64 / 1e6,
        );
        log(&format!(
            "control: {decisions} decisions ({answer_mb:.0} MB answer) applied in {:.2} s, peak RSS {peak_mb:.0} MB ({own_mb:.0} MB without the mapped tables), maps {} MiB",
            applied.seconds,
            applied.map_memory.iter().map(|m| m.1).sum::<u64>() >> 20
        ));
        result.seconds.push(applied.seconds);
        result.peak_rss_mb.push(peak_mb);
        result.own_rss_mb.push(own_mb);
        result.runs.push(applied);
    }
    result
}

/// The `--apply-child URL` side: loads the program, pulls `startup=true` from `URL` with the
/// daemon's `Enforcer`, applies it, and prints an [`Applied`] as JSON on stdout.
pub fn apply_child(url: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Sized for the largest answer, as an admin sizes `max_addresses` for their lists.
    let capacity = blocker::loader::Capacity {
        addresses: 1_000_000,
    };
    let mut ebpf = blocker::loader::load(capacity)
        .unwrap_or_else(|e| panic!("load: {}", blocker::error_chain(&e)));
    let maps = KernelMaps::take(&mut ebpf).expect("maps");
    let tables_mapped = maps.mapped_bytes() as u64;
    let settings = LapiSettings::new(
        url.parse().expect("a URL"),
        LapiAuth::ApiKey(ApiKey::new("bench".into())),
    );
    let client = LapiClient::new(&settings)
        .unwrap_or_else(|e| panic!("LAPI client: {}", blocker::error_chain(&e)));
    let mut enforcer = Enforcer::new(client, maps, &["ban".to_owned()]).expect("enforcer");
    let rss_before = status_kib("VmRSS") << 10;
    let started = Instant::now();
    let report = runtime
        .block_on(enforcer.pull())
        .unwrap_or_else(|e| panic!("pull: {}", blocker::error_chain(&e)));
    let seconds = started.elapsed().as_secs_f64();
    let applied = Applied {
        seconds,
        banned: report.applied.banned,
        failed: report.applied.failed,
        rss_before,
        peak_rss: status_kib("VmHWM") << 10,
        tables_mapped,
        map_memory: bpf::map_memory(),
    };
    println!("{}", serde_json::to_string(&applied).expect("serialize"));
}

/// A `kB` field of `/proc/self/status`.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Answers every request on `127.0.0.1:<free port>` with `200` and one fixed JSON body (none for
/// `HEAD`), one request per connection, until dropped.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(body: Vec<u8>) -> Server {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    // A client that goes away mid-answer is its own problem.
                    let _ = answer(stream, &body);
                }
            }
        });
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

fn answer(stream: TcpStream, body: &[u8]) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut stream = reader.into_inner();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !request_line.starts_with("HEAD") {
        stream.write_all(body)?;
    }
    stream.flush()
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn latency(trials: usize, log: &mut impl FnMut(&str)) -> Latency {
    let lan = Lan::new(&[
        ("203.0.113.25", "2001:db8:25::25"),
        ("203.0.113.66", "2001:db8:25::66"),
    ]);
    let [mail, client] = &lan.hosts[..] else {
        unreachable!("two hosts")
    };
    let lapi = mail.ns.run(Lapi::start);
    let key = mail.ns.run(|| lapi.add_bouncer("blocker-bench"));
    let _listeners = Listeners::start(mail, &[25]);
    let settings = daemon::settings(&lapi.url(), &key);
    let update_frequency_s = settings.update_frequency.as_secs_f64();
    let _daemon = Daemon::start(&mail.ns, settings);
    let to = SocketAddr::new(IpAddr::V4(mail.v4), 25);
    let mut rng = StdRng::seed_from_u64(super::SEED);
    let (mut seconds, mut cscli_seconds) = (Stat::default(), Stat::default());
    for trial in 0..trials {
        let source = Ipv4Addr::new(
            203,
            0,
            113,
            101 + u8::try_from(trial).expect("< 150 trials"),
        );
        crate::netns::ip(&[
            "-n",
            &client.ns.name,
            "addr",
            "add",
            &format!("{source}/24"),
            "dev",
            "eth0",
        ]);
        let probe = Probe {
            from: IpAddr::V4(source),
            to,
        };
        assert!(
            client
                .ns
                .run(|| probe.first_failure(Duration::ZERO))
                .is_none(),
            "{source} cannot connect before its ban"
        );
        // Decorrelates the trials from the daemon's 1 s polling.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1000)));
        let before = Instant::now();
        mail.ns.run(|| lapi.add_decision_ip(source, "4h", "ban"));
        let added = Instant::now();
        let failed = client
            .ns
            .run(|| probe.first_failure(Duration::from_secs(10)))
            .unwrap_or_else(|| panic!("{source} still connects 10 s after its ban"));
        let took = failed.saturating_duration_since(added).as_secs_f64();
        log(&format!(
            "control: trial {trial}: ban of {source} enforced {took:.3} s after cscli returned"
        ));
        seconds.push(took);
        cscli_seconds.push((added - before).as_secs_f64());
    }
    Latency {
        update_frequency_s,
        seconds,
        cscli_seconds,
    }
}

/// Connection attempts from one source address.
struct Probe {
    from: IpAddr,
    to: SocketAddr,
}

impl Probe {
    /// How long an attempt may take: far above a LAN handshake, far below a SYN retransmit.
    const TIMEOUT: Duration = Duration::from_millis(200);
    const PAUSE: Duration = Duration::from_millis(2);

    /// Connects every 2 ms for up to `within` (at least once); returns when the first attempt
    /// that failed started, or `None`. Call it from a thread inside the client's namespace.
    fn first_failure(&self, within: Duration) -> Option<Instant> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async {
            let start = Instant::now();
            loop {
                let attempt = Instant::now();
                if !self.connects().await {
                    return Some(attempt);
                }
                if start.elapsed() >= within {
                    return None;
                }
                tokio::time::sleep(Self::PAUSE).await;
            }
        })
    }

    async fn connects(&self) -> bool {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        // RST on close: thousands of probes leave no TIME_WAIT behind.
        socket.set_zero_linger().expect("SO_LINGER");
        socket
            .bind(SocketAddr::new(self.from, 0))
            .expect("bind the probe's source");
        matches!(
            tokio::time::timeout(Self::TIMEOUT, socket.connect(self.to)).await,
            Ok(Ok(_))
        )
    }
}
