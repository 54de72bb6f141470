//! A FAKE `CrowdSec` LAPI for fault injection, for what the real one ([`crate::lapi::Lapi`])
//! cannot do: error statuses, stalls, resets mid-body, truncated or malformed JSON, huge
//! answers, unknown scopes, invalid addresses.
//!
//! It is a hand-written HTTP/1.1 server on `127.0.0.1:<free port>`, so it can misbehave at
//! the byte level, run by its own thread and tokio runtime, so it keeps answering whatever
//! the test thread does (blocking calls included). Every connection carries one request
//! (`Connection: close`). Without a fault it answers like LAPI 1.4.6 does, closely enough for
//! fault tests only: behaviour tests belong on the real LAPI. It does not check API keys
//! (use [`Fault::Status`]`(403)`).
//!
//! Its log lines on stderr start with "fake LAPI (fault injection)".

use std::fmt::Display;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::lapi::find_header;

/// How many decisions [`Fault::Huge`] streams: ~56 MB of JSON.
pub const HUGE_DECISION_COUNT: usize = 400_000;

const LOG_PREFIX: &str = "fake LAPI (fault injection)";
const JSON: &str = "application/json; charset=utf-8";
/// Request bodies above this are refused (they would be a client bug).
const MAX_REQUEST_BODY: usize = 16 << 20;

/// How `GET`/`HEAD /v1/decisions/stream` misbehave until [`FakeLapi::clear_fault`].
///
/// Faults that break the answer leave the queued delta for the next good answer. [`Fault::Slow`],
/// [`Fault::UnknownScopes`] and [`Fault::InvalidIps`] hand it over like a normal answer (as real
/// LAPI does, even to a client that gives up waiting). On `HEAD` only `Status` and `Slow` apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// This status (403, 500, 503…) with a small JSON `{"message": …}` body.
    Status(u16),
    /// The normal answer after this delay (make it longer than the client's timeout).
    Slow(Duration),
    /// Headers announcing the normal body, half of it, then a TCP reset (`SO_LINGER` 0).
    ResetMidBody,
    /// `200` with the first half of the normal body and a `Content-Length` that matches it:
    /// the transfer is complete, the JSON is cut.
    Truncated,
    /// `200`, `Content-Type: application/json`, an HTML body with bytes that are not UTF-8.
    Garbage,
    /// `{"new": "yes", "deleted": 3}`.
    WrongTopLevelTypes,
    /// Lists whose items have fields of the wrong types, followed by one valid item.
    WrongItemTypes,
    /// A valid, chunked answer of [`HUGE_DECISION_COUNT`] `new` bans (`198.18.0.0/15`, then
    /// `2001:db8::/32`), generated while it is sent.
    Huge,
    /// The normal answer with decisions of scopes `Country`, `AS` and `Username` spread
    /// through `new` and `deleted`.
    UnknownScopes,
    /// The normal answer with `Ip`/`Range` decisions whose values do not parse (`999.1.1.1`,
    /// `198.51.100.0/33`…) spread through `new` and `deleted`.
    InvalidIps,
    /// A well-formed `startup=true` answer holding only the first half of the list: what a
    /// LAPI that streams its answer page by page sends when its database fails half-way (the
    /// status is sent already, and the document is closed as usual). Deltas are normal.
    CutShortList,
}

/// One request as the fake LAPI received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target, e.g. `/v1/decisions/stream?startup=true`.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first header of that name (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    #[must_use]
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(&self.path_and_query, |(path, _)| path)
    }

    /// The first query parameter of that name, percent-decoded (`%2C` → `,`, `+` → space).
    #[must_use]
    pub fn query_param(&self, name: &str) -> Option<String> {
        let (_, query) = self.path_and_query.split_once('?')?;
        query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }
}

/// A running fake LAPI; dropping it stops the server and its thread.
pub struct FakeLapi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<thread::JoinHandle<()>>,
}

impl FakeLapi {
    /// Starts an empty fake LAPI (no decisions, no fault, usage metrics accepted).
    #[must_use]
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .expect("fake LAPI (fault injection): bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("fake LAPI (fault injection): non-blocking listener");
        let addr = listener.local_addr().expect("fake LAPI address");
        let state = Arc::new(Mutex::new(State::new()));
        let (shutdown, stopped) = oneshot::channel();
        let server_state = Arc::clone(&state);
        let server = thread::Builder::new()
            .name("fake-lapi".into())
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake LAPI (fault injection): tokio runtime")
                    .block_on(serve(listener, server_state, stopped));
            })
            .expect("fake LAPI (fault injection): start the server thread");
        eprintln!("{LOG_PREFIX} listening on {addr}");
        Self {
            addr,
            state,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds `new` decisions and removes `deleted` ones, like `cscli decisions add/delete`.
    ///
    /// `startup=true` then answers the whole current set (one decision per scope and value,
    /// the last one set wins); `startup=false` answers what was queued since the previous
    /// answer, then `{"deleted":null,"new":null}`. Build items with [`decision`].
    pub fn set_decisions(&self, new: Vec<Value>, deleted: Vec<Value>) {
        let mut state = self.state();
        for gone in &deleted {
            state.current.retain(|d| !same_target(d, gone));
            state.pending_new.retain(|d| !same_target(d, gone));
        }
        for added in &new {
            state.current.retain(|d| !same_target(d, added));
        }
        state.current.extend(new.iter().cloned());
        state.pending_new.extend(new);
        state.pending_deleted.extend(deleted);
    }

    pub fn set_fault(&self, fault: Fault) {
        eprintln!("{LOG_PREFIX} {}: fault {fault:?}", self.addr);
        self.state().fault = Some(fault);
    }

    pub fn clear_fault(&self) {
        eprintln!("{LOG_PREFIX} {}: fault cleared", self.addr);
        self.state().fault = None;
    }

    /// Every request received so far, oldest first.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Whether `POST /v1/usage-metrics` is accepted (`201`, the default) or unknown (`404`,
    /// as LAPI before 1.6 answers).
    pub fn set_usage_metrics_supported(&self, supported: bool) {
        self.state().usage_metrics_supported = supported;
    }

    /// How long an accepted `POST /v1/usage-metrics` waits for its answer (none by default).
    pub fn set_usage_metrics_delay(&self, delay: Duration) {
        self.state().usage_metrics_delay = delay;
    }

    /// The bodies of the accepted `POST /v1/usage-metrics`; panics on one that is not JSON.
    #[must_use]
    pub fn usage_metrics(&self) -> Vec<Value> {
        self.state()
            .usage_metrics
            .iter()
            .map(|body| {
                serde_json::from_slice(body).unwrap_or_else(|e| {
                    panic!(
                        "{LOG_PREFIX}: usage metrics body is not JSON ({e}): {}",
                        String::from_utf8_lossy(body)
                    )
                })
            })
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for FakeLapi {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // Fails only if the server already ended, which `join` reports.
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take()
            && server.join().is_err()
        {
            eprintln!("{LOG_PREFIX} {}: the server thread panicked", self.addr);
        }
    }
}

/// A decision as LAPI 1.4.6 serializes it, e.g. `decision("Ip", "203.0.113.7", "ban", "4h")`;
/// `id`s count up across the process.
#[must_use]
pub fn decision(scope: &str, value: impl Display, decision_type: &str, duration: &str) -> Value {
    let value = value.to_string();
    serde_json::to_value(Decision::new(scope, &value, decision_type, duration))
        .expect("decisions serialize")
}

/// The one place that knows a decision's fields, shared by [`decision`] and [`Fault::Huge`],
/// which serializes it directly: building 400,000 `Value` maps takes seconds in a debug build.
#[derive(serde::Serialize)]
struct Decision<'a> {
    duration: &'a str,
    id: u64,
    origin: &'a str,
    scenario: &'a str,
    scope: &'a str,
    r#type: &'a str,
    value: &'a str,
}

impl<'a> Decision<'a> {
    fn new(scope: &'a str, value: &'a str, decision_type: &'a str, duration: &'a str) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            duration,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            origin: "cscli",
            scenario: LOG_PREFIX,
            scope,
            r#type: decision_type,
            value,
        }
    }
}

struct State {
    /// What `startup=true` answers.
    current: Vec<Value>,
    /// What the next `startup=false` answers.
    pending_new: Vec<Value>,
    pending_deleted: Vec<Value>,
    fault: Option<Fault>,
    requests: Vec<RecordedRequest>,
    usage_metrics_supported: bool,
    usage_metrics_delay: Duration,
    usage_metrics: Vec<Vec<u8>>,
}

impl State {
    fn new() -> Self {
        Self {
            current: Vec::new(),
            pending_new: Vec::new(),
            pending_deleted: Vec::new(),
            fault: None,
            requests: Vec::new(),
            usage_metrics_supported: true,
            usage_metrics_delay: Duration::ZERO,
            usage_metrics: Vec::new(),
        }
    }

    /// Records `request` and decides the answer and how long to wait before sending it.
    fn answer(&mut self, request: &RecordedRequest) -> (Duration, Reply) {
        self.requests.push(request.clone());
        match (request.method.as_str(), request.path()) {
            ("GET" | "HEAD", "/v1/decisions/stream") => self.stream_answer(request),
            ("POST", "/v1/usage-metrics") if self.usage_metrics_supported => {
                self.usage_metrics.push(request.body.clone());
                (
                    self.usage_metrics_delay,
                    Reply::complete(201, JSON, Vec::new()),
                )
            }
            // What LAPI's router (gin) answers for a route it does not have.
            _ => (
                Duration::ZERO,
                Reply::complete(404, "text/plain", b"404 page not found".to_vec()),
            ),
        }
    }

    fn stream_answer(&mut self, request: &RecordedRequest) -> (Duration, Reply) {
        let startup = request.query_param("startup").as_deref() == Some("true");
        let fault = match self.fault.clone() {
            Some(f @ (Fault::Status(_) | Fault::Slow(_))) => Some(f),
            Some(_) if request.method == "HEAD" => None,
            Some(Fault::CutShortList) if !startup => None,
            other => other,
        };
        let reply = match fault {
            None | Some(Fault::Slow(_)) => Reply::json(200, &self.decisions(startup, true)),
            Some(Fault::Status(status)) => {
                let message = format!("{LOG_PREFIX}: status {status}");
                Reply::json(status, &json!({ "message": message }))
            }
            Some(Fault::ResetMidBody) => {
                Reply::ResetMidBody(to_json(&self.decisions(startup, false)))
            }
            Some(Fault::Truncated) => {
                let mut body = to_json(&self.decisions(startup, false));
                body.truncate(body.len() / 2);
                Reply::complete(200, JSON, body)
            }
            Some(Fault::Garbage) => Reply::complete(
                200,
                JSON,
                b"<html><body>fake LAPI (fault injection): garbage \xff\xfe\x00</body></html>"
                    .to_vec(),
            ),
            Some(Fault::WrongTopLevelTypes) => {
                Reply::json(200, &json!({"new": "yes", "deleted": 3}))
            }
            Some(Fault::WrongItemTypes) => Reply::json(200, &wrong_item_types()),
            Some(Fault::Huge) => Reply::Huge,
            Some(Fault::UnknownScopes) => Reply::json(
                200,
                &with_junk(&self.decisions(startup, true), &unknown_scope_items()),
            ),
            Some(Fault::InvalidIps) => Reply::json(
                200,
                &with_junk(&self.decisions(startup, true), &invalid_ip_items()),
            ),
            Some(Fault::CutShortList) => {
                let half = self.current[..self.current.len() / 2].to_vec();
                self.pending_new.clear();
                self.pending_deleted.clear();
                Reply::json(200, &stream_body(half, Vec::new()))
            }
        };
        let delay = match fault {
            Some(Fault::Slow(delay)) => delay,
            _ => Duration::ZERO,
        };
        (delay, reply)
    }

    /// The fault-free answer. With `hand_over`, the queued delta counts as delivered, as
    /// LAPI moves the bouncer's "last pull" time forward on every request (`HEAD` included).
    fn decisions(&mut self, startup: bool, hand_over: bool) -> Value {
        let (new, deleted) = if startup {
            (self.current.clone(), Vec::new())
        } else {
            (self.pending_new.clone(), self.pending_deleted.clone())
        };
        if hand_over {
            self.pending_new.clear();
            self.pending_deleted.clear();
        }
        stream_body(new, deleted)
    }
}

/// `{"deleted": […], "new": […]}` with empty lists as `null`, as LAPI 1.4.6 sends them.
fn stream_body(new: Vec<Value>, deleted: Vec<Value>) -> Value {
    let list = |items: Vec<Value>| {
        if items.is_empty() {
            Value::Null
        } else {
            Value::Array(items)
        }
    };
    json!({ "deleted": list(deleted), "new": list(new) })
}

fn same_target(a: &Value, b: &Value) -> bool {
    let scope = |d: &Value| d["scope"].as_str().map(str::to_ascii_lowercase);
    a["value"] == b["value"] && scope(a) == scope(b)
}

/// Spreads `junk` through both lists of a stream answer: before, between and after the
/// valid items, so a client that stops at (or only checks) the first item is caught.
fn with_junk(answer: &Value, junk: &[Value]) -> Value {
    let spread = |list: &Value| {
        let valid = list.as_array().cloned().unwrap_or_default();
        let step = valid.len().div_ceil(junk.len()).max(1);
        let mut junk = junk.iter().cloned();
        let mut out = Vec::new();
        for chunk in valid.chunks(step) {
            out.extend(junk.next());
            out.extend_from_slice(chunk);
        }
        out.extend(junk);
        out
    };
    stream_body(spread(&answer["new"]), spread(&answer["deleted"]))
}

fn unknown_scope_items() -> Vec<Value> {
    vec![
        decision("Country", "FR", "ban", "4h"),
        decision("AS", "64496", "ban", "4h"),
        decision("Username", "mallory", "ban", "4h"),
    ]
}

fn invalid_ip_items() -> Vec<Value> {
    vec![
        decision("Ip", "999.1.1.1", "ban", "4h"),
        decision("Ip", "203.0.113.300", "ban", "4h"),
        decision("Ip", "not-an-ip", "ban", "4h"),
        decision("Ip", "", "ban", "4h"),
        decision("Ip", "2001:db8::g", "ban", "4h"),
        decision("Range", "198.51.100.0/33", "ban", "4h"),
        decision("Range", "2001:db8::/129", "ban", "4h"),
        decision("Range", "198.51.100.0/abc", "ban", "4h"),
    ]
}

fn wrong_item_types() -> Value {
    json!({
        "new": [
            {"duration": 14400, "id": "seven", "origin": null, "scenario": [],
             "scope": true, "type": {"ban": 1}, "value": 3_405_803_783_u32},
            decision("Ip", "203.0.113.7", "ban", "4h"),
        ],
        "deleted": [
            {"duration": "4h", "id": -1, "origin": "cscli", "scenario": "",
             "scope": "Ip", "type": "ban", "value": ["203.0.113.8"]},
        ],
    })
}

/// The value of decision `i` of [`Fault::Huge`]: all of `198.18.0.0/15` (the benchmarking
/// range), then `2001:db8::/32`; benchmarking and documentation ranges only, written to maps, never sent traffic.
fn huge_value(i: usize) -> String {
    const V4_COUNT: usize = 1 << 17;
    if i < V4_COUNT {
        let offset = u32::try_from(i).expect("below 2^17");
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + offset).to_string()
    } else {
        let offset = u128::try_from(i).expect("usize fits u128");
        Ipv6Addr::from(u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)) + offset)
            .to_string()
    }
}

fn to_json(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON values serialize")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What to send back, decided under the state lock, sent without it.
enum Reply {
    Complete {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// [`Fault::ResetMidBody`] of this body.
    ResetMidBody(Vec<u8>),
    /// [`Fault::Huge`].
    Huge,
}

impl Reply {
    fn complete(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Self::Complete {
            status,
            content_type,
            body,
        }
    }

    fn json(status: u16, body: &Value) -> Self {
        Self::complete(status, JSON, to_json(body))
    }

    fn summary(&self) -> String {
        match self {
            Self::Complete { status, body, .. } => format!("{status}, {} bytes", body.len()),
            Self::ResetMidBody(body) => {
                format!("reset after {} of {} bytes", body.len() / 2, body.len())
            }
            Self::Huge => format!("200, {HUGE_DECISION_COUNT} decisions chunked"),
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<Mutex<State>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = TcpListener::from_std(listener).expect("fake LAPI (fault injection): listener");
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(handle(stream, Arc::clone(&state)));
                }
                Err(e) => eprintln!("{LOG_PREFIX}: accept: {e}"),
            },
        }
    }
}

async fn handle(stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut conn = BufReader::new(stream);
    let request = match read_request(&mut conn).await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(e) => {
            eprintln!("{LOG_PREFIX}: unreadable request: {e}");
            return;
        }
    };
    let (delay, reply) = lock(&state).answer(&request);
    let after = if delay.is_zero() {
        String::new()
    } else {
        format!(" after {delay:?}")
    };
    eprintln!(
        "{LOG_PREFIX}: {} {} -> {}{after}",
        request.method,
        request.path_and_query,
        reply.summary()
    );
    tokio::time::sleep(delay).await;
    if let Err(e) = send(conn.into_inner(), request.method == "HEAD", reply).await {
        eprintln!("{LOG_PREFIX}: sending the answer: {e}");
    }
}

/// Reads one request; `None` if the client closed without sending one.
async fn read_request(conn: &mut BufReader<TcpStream>) -> io::Result<Option<RecordedRequest>> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Err(bad(format!("bad request line {line:?}")));
    };
    let (method, path_and_query) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(bad("connection closed in the headers".into()));
        }
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {header:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length = match find_header(&headers, "content-length") {
        None => 0,
        Some(length) => length
            .parse()
            .ok()
            .filter(|&n| n <= MAX_REQUEST_BODY)
            .ok_or_else(|| bad(format!("bad Content-Length {length:?}")))?,
    };
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok(Some(RecordedRequest {
        method,
        path_and_query,
        headers,
        body,
    }))
}

async fn send(mut stream: TcpStream, head_only: bool, reply: Reply) -> io::Result<()> {
    match reply {
        Reply::Complete {
            status,
            content_type,
            body,
        } => {
            stream
                .write_all(response_head(status, content_type, Some(body.len())).as_bytes())
                .await?;
            if !head_only {
                stream.write_all(&body).await?;
            }
        }
        Reply::ResetMidBody(body) => {
            stream
                .write_all(response_head(200, JSON, Some(body.len())).as_bytes())
                .await?;
            stream.write_all(&body[..body.len() / 2]).await?;
            // A zero-linger close drops unsent bytes: give loopback time to deliver them.
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.set_zero_linger()?;
            // Dropping the socket now sends a RST instead of a FIN.
            return Ok(());
        }
        Reply::Huge => {
            stream
                .write_all(response_head(200, JSON, None).as_bytes())
                .await?;
            send_huge(&mut stream).await?;
        }
    }
    stream.shutdown().await
}

/// A `Content-Length` head, or a chunked one without a length.
fn response_head(status: u16, content_type: &str, length: Option<usize>) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Fault",
    };
    let framing = length.map_or_else(
        || "Transfer-Encoding: chunked".to_owned(),
        |n| format!("Content-Length: {n}"),
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{framing}\r\nConnection: close\r\n\r\n"
    )
}

/// Streams the [`Fault::Huge`] body in chunks of ~64 KiB, never holding more than one.
async fn send_huge(stream: &mut TcpStream) -> io::Result<()> {
    const CHUNK: usize = 64 << 10;
    let mut buf = Vec::with_capacity(CHUNK + 256);
    buf.extend_from_slice(br#"{"deleted":null,"new":["#);
    for i in 0..HUGE_DECISION_COUNT {
        if i > 0 {
            buf.push(b',');
        }
        let value = huge_value(i);
        serde_json::to_writer(&mut buf, &Decision::new("Ip", &value, "ban", "4h"))
            .expect("decisions serialize");
        if buf.len() >= CHUNK {
            send_chunk(stream, &buf).await?;
            buf.clear();
        }
    }
    buf.extend_from_slice(b"]}");
    send_chunk(stream, &buf).await?;
    stream.write_all(b"0\r\n\r\n").await
}

async fn send_chunk(stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    stream
        .write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    stream.write_all(data).await?;
    stream.write_all(b"\r\n").await
}
