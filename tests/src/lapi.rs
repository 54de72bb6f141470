//! A real `CrowdSec` Local API for tests, and a tiny loopback-only HTTP/1.1 client.
//!
//! [`Lapi`] runs Debian's `crowdsec` 1.4.6 as a Local API alone (`-no-cs -no-capi`: no agent,
//! no central API) on `127.0.0.1:<free port>`, with its config, `SQLite` database and logs in a
//! throwaway folder, and drives it with `cscli -c <that config>`.
//!
//! What LAPI 1.4.6 does that tests must expect (checked against the real daemon):
//! - empty lists come as `null`: `{"deleted":null,"new":null}`;
//! - several decisions for one value collapse to the longest one;
//! - with `startup=true`, expired and deleted decisions are listed under `deleted` too;
//! - a delta (`startup=false`) lists what expired since the bouncer's previous pull *minus
//!   2 seconds*, so a deletion shows up under `deleted` in every delta pulled within 2 s of it;
//! - every authenticated request, `HEAD` included, moves the bouncer's "last pull" time forward:
//!   a `HEAD` between two delta pulls hides the decisions made in between.
//!
//! [`Lapi::start_tls`] runs the same LAPI on HTTPS only (its `api.server.tls` section).

use std::fmt::{Display, Write as _};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distr::Alphanumeric;

/// How long `crowdsec` may take to answer its first request (it takes ~0.2 s here).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a `SIGTERM`ed `crowdsec` may take to exit before it is killed (it takes
/// 20-50 ms here).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The machine `cscli` logs in as for `decisions add/delete/import`.
const MACHINE: &str = "blocker-tests";
/// Read timeout of [`http_get`].
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each log shown when LAPI fails or a test panics.
const LOG_TAIL_LINES: usize = 30;

/// A running `CrowdSec` Local API, owned by one test.
///
/// Dropping it kills `crowdsec` and removes its folder; if the thread is panicking, the tail of
/// the LAPI's logs is printed first. `crowdsec` is also killed by the kernel if the test
/// process dies without unwinding (see [`spawn_tied_to_process`]).
///
/// Every method takes `&self`, so a test can share the guard (e.g. in an `Arc`) with the code
/// under test and still `restart()` it.
pub struct Lapi {
    dir: PathBuf,
    config: PathBuf,
    addr: SocketAddr,
    child: Mutex<Option<Child>>,
    /// The body of `api.server.tls` given to [`Lapi::start_tls`]; `None`: plain HTTP.
    server_tls_yaml: Option<String>,
}

impl Lapi {
    /// Writes a config into a fresh folder, registers the `cscli` machine and starts LAPI.
    ///
    /// Panics (after cleaning up) if LAPI does not become ready.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with_tls(None)
    }

    /// Like [`Lapi::start`], but LAPI serves HTTPS only. `server_tls_yaml` is the body of its
    /// `api.server.tls` section, unindented (`cert_file`, `key_file`, `client_verification`,
    /// `ca_cert_path`, `bouncers_allowed_ou`, `crl_path`...: LAPI 1.4.6 has no default
    /// `bouncers_allowed_ou`, so certificate auth needs it here). Then [`Lapi::url`] is
    /// `https://…`, `cscli` reaches LAPI with `api.client.insecure_skip_verify: true` (it is
    /// the tests' admin tool, not under test), and readiness is Go's `400` answer to plain
    /// HTTP on a TLS port ("Client sent an HTTP request to an HTTPS server").
    #[must_use]
    pub fn start_tls(server_tls_yaml: &str) -> Self {
        Self::start_with_tls(Some(server_tls_yaml.to_owned()))
    }

    fn start_with_tls(server_tls_yaml: Option<String>) -> Self {
        let dir = unique_temp_dir();
        let addr = free_loopback_addr();
        let lapi = Self {
            config: dir.join("config.yaml"),
            dir,
            addr,
            child: Mutex::new(None),
            server_tls_yaml,
        };
        lapi.write_config();
        // cscli writes machines and bouncers into SQLite directly: LAPI need not be up yet.
        let credentials = lapi.dir.join("local_api_credentials.yaml");
        lapi.cscli(&[
            "machines",
            "add",
            MACHINE,
            "--password",
            &random_token(32),
            "--url",
            &lapi.url(),
            "-f",
            path_str(&credentials),
            "--force",
        ]);
        lapi.spawn_and_wait_ready();
        lapi
    }

    /// `http://127.0.0.1:<port>` (`https://` after [`Lapi::start_tls`]), without a trailing
    /// slash.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.server_tls_yaml.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `config.yaml` to pass to `crowdsec -c` or `cscli -c`.
    #[must_use]
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The pid of `crowdsec`, `None` while stopped. Lets a test freeze LAPI (`SIGSTOP`).
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// Registers a bouncer and returns its API key (random, 32 alphanumerics).
    #[must_use]
    pub fn add_bouncer(&self, name: &str) -> String {
        let key = random_token(32);
        self.cscli(&["bouncers", "add", name, "-k", &key]);
        key
    }

    /// `cscli decisions add --ip IP --duration D --type T` (e.g. `"4h"`, `"ban"`).
    pub fn add_decision_ip(&self, ip: impl Display, duration: &str, decision_type: &str) {
        self.add_decision("--ip", ip, duration, decision_type);
    }

    /// `cscli decisions add --range CIDR --duration D --type T`.
    pub fn add_decision_range(&self, range: impl Display, duration: &str, decision_type: &str) {
        self.add_decision("--range", range, duration, decision_type);
    }

    /// `cscli decisions delete --ip IP`.
    pub fn delete_decisions_ip(&self, ip: impl Display) {
        self.cscli(&["decisions", "delete", "--ip", &ip.to_string()]);
    }

    /// `cscli decisions delete --range CIDR`.
    pub fn delete_decisions_range(&self, range: impl Display) {
        self.cscli(&["decisions", "delete", "--range", &range.to_string()]);
    }

    /// Loads many decisions at once through `cscli decisions import` (100,000 take ~7 s),
    /// and returns how many were written to the import file.
    pub fn import_decisions(&self, decisions: impl IntoIterator<Item = ImportDecision>) -> usize {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = self.dir.join(format!(
            "import-{}.csv",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut csv = String::from("duration,scope,value,type\n");
        let mut count = 0;
        for d in decisions {
            writeln!(
                csv,
                "{},{},{},{}",
                d.duration,
                d.scope(),
                d.value,
                d.decision_type
            )
            .expect("write to a String");
            count += 1;
        }
        fs::write(&path, csv).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        // Without `--scope ""`, cscli 1.4.6 overrides the file's scope column with `Ip`.
        self.cscli(&["decisions", "import", "-i", path_str(&path), "--scope", ""]);
        fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
        count
    }

    /// Runs `cscli -c <config> ARGS` and returns its stdout; panics with stdout and stderr
    /// if it fails. `decisions` commands need LAPI up; `machines`/`bouncers` do not.
    pub fn cscli(&self, args: &[&str]) -> String {
        let output = Command::new("cscli")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run cscli (is Debian's crowdsec installed?): {e}"));
        let Output {
            status,
            stdout,
            stderr,
        } = output;
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        assert!(
            status.success(),
            "cscli {args:?} failed ({status})\n--- stdout\n{stdout}\n--- stderr\n{}",
            String::from_utf8_lossy(&stderr)
        );
        stdout
    }

    /// Stops LAPI like a service manager would: `SIGTERM`, then `SIGKILL` after 10 s.
    /// The database and port are kept for [`Lapi::restart`]. No-op if already stopped.
    pub fn stop(&self) {
        let Some(mut child) = self.child().take() else {
            return;
        };
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: plain syscall on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait().expect("wait for crowdsec").is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        kill_and_reap(&mut child);
    }

    /// Stops LAPI (if running) and starts it again with the same config, database and port;
    /// returns once it answers again.
    pub fn restart(&self) {
        self.stop();
        self.spawn_and_wait_ready();
    }

    /// The last lines of `crowdsec`'s own log and of its stdout/stderr, for failure messages.
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in ["log/crowdsec.log", "crowdsec.out"] {
            let text = fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            write!(out, "--- {name}\n{}\n", tail.join("\n")).expect("write to a String");
        }
        out
    }

    fn add_decision(&self, flag: &str, target: impl Display, duration: &str, kind: &str) {
        let target = target.to_string();
        let args = [
            "decisions",
            "add",
            flag,
            &target,
            "--duration",
            duration,
            "--type",
            kind,
        ];
        self.cscli(&args);
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The smallest config 1.4.6 runs with: no `online_client` (no central API), no
    /// Prometheus listener (a fixed port would clash between tests), everything it writes
    /// inside `self.dir`. `profiles_path` is required even for a LAPI alone.
    fn write_config(&self) {
        let dir = path_str(&self.dir);
        // Empty for plain HTTP, which leaves the config as it always was.
        let (client_tls, server_tls) = match &self.server_tls_yaml {
            None => (String::new(), String::new()),
            Some(yaml) => {
                let mut server = String::from("    tls:\n");
                for line in yaml.lines().filter(|l| !l.trim().is_empty()) {
                    writeln!(server, "      {line}").expect("write to a String");
                }
                ("    insecure_skip_verify: true\n".to_owned(), server)
            }
        };
        fs::create_dir(self.dir.join("log")).expect("create the LAPI log folder");
        fs::create_dir(self.dir.join("data")).expect("create the LAPI data folder");
        let config = format!(
            r#"# Written by blocker-tests (tests/src/lapi.rs): a throwaway Local API for one test.
common:
  daemonize: false
  log_media: file
  log_level: info
  log_dir: "{dir}/log/"
  working_dir: "{dir}"
config_paths:
  config_dir: "{dir}/"
  data_dir: "{dir}/data/"
cscli:
  output: human
  color: "no"
db_config:
  type: sqlite
  db_path: "{dir}/data/crowdsec.db"
  use_wal: true
api:
  client:
    credentials_path: "{dir}/local_api_credentials.yaml"
{client_tls}  server:
    listen_uri: "{addr}"
    profiles_path: "{dir}/profiles.yaml"
{server_tls}prometheus:
  enabled: false
"#,
            addr = self.addr,
        );
        // The package's default profile: alerts on an `Ip` get a 4 h ban.
        let profiles = r#"name: default_ip_remediation
filters:
 - Alert.Remediation == true && Alert.GetScope() == "Ip"
decisions:
 - type: ban
   duration: 4h
on_success: break
"#;
        fs::write(&self.config, config).expect("write the LAPI config");
        fs::write(self.dir.join("profiles.yaml"), profiles).expect("write the LAPI profiles");
    }

    fn spawn_and_wait_ready(&self) {
        let out = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("crowdsec.out"))
            .expect("open crowdsec.out");
        let mut command = Command::new("crowdsec");
        command
            .arg("-c")
            .arg(&self.config)
            .args(["-no-cs", "-no-capi"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone crowdsec.out"))
            .stderr(out);
        let child = spawn_tied_to_process(command)
            .unwrap_or_else(|e| panic!("start crowdsec (is Debian's crowdsec installed?): {e}"));
        *self.child() = Some(child);
        self.wait_ready();
    }

    /// Ready means an unauthenticated stream request is refused with 403: the HTTP server is
    /// up and has reached the database to look the (missing) key up.
    ///
    /// With TLS the same plain-HTTP request gets Go's `400` "Client sent an HTTP request to an
    /// HTTPS server": the TLS listener is up (it only starts after the database is open).
    fn wait_ready(&self) {
        let url = format!("http://{}/v1/decisions/stream", self.addr);
        let tls = self.server_tls_yaml.is_some();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self
                .child()
                .as_mut()
                .expect("crowdsec was started")
                .try_wait()
                .expect("wait for crowdsec");
            if let Some(status) = exited {
                panic!(
                    "crowdsec (LAPI on {}) exited with {status} before it was ready\n{}",
                    self.addr,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            match http_get(&url, &[]) {
                Ok(r) if !tls && r.status == 403 => return,
                Ok(r) if tls && r.status == 400 && r.body.ends_with(b"HTTPS server.\n") => return,
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(25));
                }
                answer => panic!(
                    "LAPI on {} not ready after {READY_TIMEOUT:?} (last answer: {:?})\n{}",
                    self.addr,
                    answer.map(|r| r.status),
                    self.log_tail(LOG_TAIL_LINES)
                ),
            }
        }
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        if let Some(child) = self.child().as_mut() {
            kill_and_reap(child);
        }
        if thread::panicking() {
            eprintln!(
                "LAPI on {} at panic:\n{}",
                self.addr,
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("remove LAPI folder {}: {e}", self.dir.display());
        }
    }
}

/// One row for [`Lapi::import_decisions`]; the scope is `Range` when the value has a `/`,
/// else `Ip`.
#[derive(Clone, Debug)]
pub struct ImportDecision {
    value: String,
    duration: String,
    decision_type: String,
}

impl ImportDecision {
    /// E.g. `ImportDecision::new("203.0.113.9", "4h", "ban")`.
    #[must_use]
    pub fn new(value: impl Display, duration: &str, decision_type: &str) -> Self {
        Self {
            value: value.to_string(),
            duration: duration.to_owned(),
            decision_type: decision_type.to_owned(),
        }
    }

    fn scope(&self) -> &'static str {
        if self.value.contains('/') {
            "Range"
        } else {
            "Ip"
        }
    }
}

fn kill_and_reap(child: &mut Child) {
    // Fails only if it has already exited; `wait` reaps it either way.
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts `command` so that the kernel `SIGKILL`s it when this test process dies without
/// running destructors (abort, `kill -9`, a harness timeout).
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process.
/// Forking from the caller's thread would kill LAPI when that thread ends while the guard
/// lives on (a `spawn_blocking` worker idling out, a `static` LAPI), so all children are
/// forked by one thread that lives as long as the process.
fn spawn_tied_to_process(mut command: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("lapi-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    // The requester waits on `reply`, so the child cannot be dropped unseen.
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the LAPI spawner thread");
        tx
    });
    let parent = libc::pid_t::try_from(std::process::id()).expect("pid fits pid_t");
    // The spawner thread stays in the namespace it was born in; the child must start in the
    // caller's (a test host's LAPI lives on that host's loopback).
    let netns = File::open("/proc/thread-self/ns/net")?;
    let netns_fd = std::os::fd::AsRawFd::as_raw_fd(&netns);
    // SAFETY: between fork and exec the closure only makes async-signal-safe syscalls.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl: then the signal will never come.
            if libc::getppid() != parent {
                return Err(io::Error::other("test process died while spawning"));
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((command, reply_tx))
        .expect("LAPI spawner thread is alive");
    reply_rx.recv().expect("LAPI spawner thread answers")
}

/// A new folder under the system temp dir; `create_dir` (not `_all`) proves it is ours.
fn unique_temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "blocker-lapi-{}-{}",
        std::process::id(),
        random_token(12)
    ));
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A port the kernel just handed out on 127.0.0.1; it is released for `crowdsec` to bind,
/// so another process could take it in between, which is unlikely enough for tests.
fn free_loopback_addr() -> SocketAddr {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free port on 127.0.0.1")
}

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// An HTTP answer read by [`http_request`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Decoded from chunked transfer encoding if it was used.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that name (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
    }
}

/// `GET url` with a 30 s read timeout; see [`http_request`].
pub fn http_get(url: &str, headers: &[(&str, &str)]) -> io::Result<HttpResponse> {
    http_request("GET", url, headers, &[], HTTP_TIMEOUT)
}

/// `GET <base_url>/v1/decisions/stream?startup=…` as a bouncer does it.
pub fn get_decisions_stream(
    base_url: &str,
    api_key: &str,
    startup: bool,
) -> io::Result<HttpResponse> {
    let url = format!("{base_url}/v1/decisions/stream?startup={startup}");
    http_get(&url, &[("X-Api-Key", api_key)])
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), on purpose without an
/// HTTP library so that byte-level faults surface as they are: a reset or a short body is an
/// `Err`, a truncated but complete body is an `Ok` whose body does not parse.
///
/// Only `http://<IP literal>:<port>/…` URLs on a loopback address are accepted (tests must
/// not reach the network, and no name is resolved). `timeout` bounds each read and write.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {why}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("only http:// URLs"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let addr: SocketAddr = authority
        .parse()
        .map_err(|_| invalid("the host must be an IP literal with a port"))?;
    if !addr.ip().is_loopback() {
        return Err(invalid("tests may only talk to loopback addresses"));
    }

    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        write!(head, "{name}: {value}\r\n").expect("write to a String");
    }
    if !body.is_empty() {
        write!(head, "Content-Length: {}\r\n", body.len()).expect("write to a String");
    }
    head.push_str("\r\n");
    (&stream).write_all(head.as_bytes())?;
    (&stream).write_all(body)?;

    let mut reader = BufReader::new(stream);
    let status_line = read_line(&mut reader)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| io::Error::other(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }

    let mut body = Vec::new();
    if method == "HEAD" || status == 204 || status == 304 {
        // No body, whatever Content-Length says.
    } else if find_header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(&mut reader, &mut body)?;
    } else if let Some(length) = find_header(&headers, "content-length") {
        let length = length
            .parse()
            .map_err(|_| io::Error::other(format!("bad Content-Length {length:?}")))?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A CRLF-terminated line without its terminator; EOF before the end is an error.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    line.strip_suffix("\r\n")
        .map(str::to_owned)
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-line"))
}

fn read_chunked(reader: &mut impl BufRead, body: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Skip trailers up to the final empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(io::Error::other("chunk longer than its size"));
        }
    }
}
