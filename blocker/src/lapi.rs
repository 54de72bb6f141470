//! Client of `CrowdSec`'s Local API (LAPI): the decisions stream.
//!
//! The daemon pulls `/v1/decisions/stream?startup=true` once (the full list), then deltas with
//! `startup=false`. LAPI remembers one "last pull" time per bouncer, so every pull, and every
//! `HEAD` of the same path, moves it forward (see [`LapiClient::check`]).

use std::{
    fmt,
    io::{BufReader, Read},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use reqwest::{
    Certificate, Client, Identity, Method, RequestBuilder, Response, StatusCode, Url,
    header::{HeaderName, HeaderValue, InvalidHeaderValue},
    redirect,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::mpsc;

use crate::decisions::{DecisionsError, StreamBatch};

/// `User-Agent` of every request, as LAPI lists it in `cscli bouncers list`.
pub const USER_AGENT: &str = concat!("crowdsec-blocker/", env!("CARGO_PKG_VERSION"));

/// Path of the decisions stream, relative to the API URL.
const STREAM_PATH: &str = "v1/decisions/stream";

/// Header carrying the bouncer's API key.
const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// Default for [`LapiSettings::timeout`]: a whole request, body included. A startup pull of a
/// few hundred thousand decisions from a busy LAPI takes seconds, not minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_mins(2);

/// Time allowed to open a connection (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default for [`LapiSettings::max_body_bytes`]. One decision is about 250 bytes of JSON, so
/// this is about two million decisions; more than that is a misbehaving LAPI or proxy.
pub const DEFAULT_MAX_BODY_BYTES: usize = 512 << 20;

/// How much of an error answer's body is quoted in [`LapiError::Status`].
const BODY_EXCERPT_CHARS: usize = 200;

/// A bouncer API key. `Debug` and `Serialize` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    #[must_use]
    pub fn new(key: String) -> Self {
        Self(key)
    }

    /// The key itself, for the one place that sends it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for ApiKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

impl Serialize for ApiKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// How the bouncer proves who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LapiAuth {
    /// `X-Api-Key` header, a key made by `cscli bouncers add`.
    ApiKey(ApiKey),
    /// TLS client certificate (PEM files); needs an `https` URL.
    Tls {
        cert_path: PathBuf,
        key_path: PathBuf,
    },
}

/// Everything [`LapiClient::new`] needs. `Config::lapi_settings` builds it from the
/// configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LapiSettings {
    /// Base URL of LAPI, e.g. `http://127.0.0.1:8080/`; a path prefix is kept.
    pub api_url: Url,
    pub auth: LapiAuth,
    /// PEM bundle of extra CA certificates to trust (added to the built-in roots).
    pub ca_cert_path: Option<PathBuf>,
    /// Accept any server certificate. For tests only.
    pub insecure_skip_verify: bool,
    /// Limit of a whole request, body included.
    pub timeout: Duration,
    /// Largest answer accepted.
    pub max_body_bytes: usize,
    /// `scopes` filter, lowercase (`ip`, `range`).
    pub scopes: Vec<String>,
    /// `origins` filter; empty means all origins.
    pub origins: Vec<String>,
    /// `scenarios_containing` filter; empty means no filter.
    pub scenarios_containing: Vec<String>,
    /// `scenarios_not_containing` filter; empty means no filter.
    pub scenarios_not_containing: Vec<String>,
}

impl LapiSettings {
    /// Settings with the defaults: scopes `ip,range`, no other filter, [`DEFAULT_TIMEOUT`],
    /// [`DEFAULT_MAX_BODY_BYTES`], certificates verified against the built-in roots.
    #[must_use]
    pub fn new(api_url: Url, auth: LapiAuth) -> Self {
        Self {
            api_url,
            auth,
            ca_cert_path: None,
            insecure_skip_verify: false,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            scopes: vec!["ip".to_owned(), "range".to_owned()],
            origins: Vec::new(),
            scenarios_containing: Vec::new(),
            scenarios_not_containing: Vec::new(),
        }
    }
}

/// Errors of the LAPI client. Messages name the URL and the cause.
#[derive(Debug, thiserror::Error)]
pub enum LapiError {
    #[error("lapi url {url} must be http:// or https:// with a host")]
    UnsupportedUrl { url: String },
    #[error("tls client certificate auth needs an https lapi url, not {url}")]
    CertNeedsHttps { url: String },
    #[error("cannot read {what} {}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid PEM ca certificate bundle {}", path.display())]
    CaCert {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("no PEM certificate in ca certificate bundle {}", path.display())]
    NoCaCert { path: PathBuf },
    #[error(
        "invalid client certificate {} or key {} (PEM certificate chain, then a PEM key)",
        cert_path.display(),
        key_path.display()
    )]
    Identity {
        cert_path: PathBuf,
        key_path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("the api key is not a valid http header value (printable ascii only)")]
    InvalidApiKey {
        #[source]
        source: InvalidHeaderValue,
    },
    #[error("cannot set up the http client")]
    Client {
        #[source]
        source: reqwest::Error,
    },
    #[error("lapi at {url} refused the {credential} ({status}): {hint}")]
    Unauthorized {
        url: String,
        credential: &'static str,
        status: StatusCode,
        /// What to check, for this kind of credential.
        hint: &'static str,
    },
    #[error("lapi unreachable at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("request to lapi at {url} failed")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("lapi at {url} answered {status}: {body_excerpt}")]
    Status {
        url: String,
        status: StatusCode,
        body_excerpt: String,
    },
    #[error("answer of lapi at {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("bad answer from lapi at {url}")]
    Decisions {
        url: String,
        #[source]
        source: DecisionsError,
    },
    #[error("parsing the answer of lapi at {url} was cancelled")]
    ParseCancelled {
        url: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// The LAPI client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct LapiClient {
    http: Client,
    /// `{api_url}/v1/decisions/stream`, no query.
    endpoint: Url,
    /// `X-Api-Key`, marked sensitive; `None` with certificate auth.
    api_key: Option<HeaderValue>,
    /// Query pairs after `startup`.
    filters: Vec<(&'static str, String)>,
    max_body_bytes: usize,
}

impl fmt::Debug for LapiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LapiClient")
            .field("endpoint", &self.endpoint.as_str())
            .field(
                "auth",
                &if self.api_key.is_some() {
                    "api key <redacted>"
                } else {
                    "tls client certificate"
                },
            )
            .field("filters", &self.filters)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, LapiError> {
    std::fs::read(path).map_err(|source| LapiError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The certificate chain then the key, as `Identity::from_pem` wants them. The newline keeps a
/// certificate file without a final one from gluing its END line to the key's BEGIN line.
fn identity_pem(cert: &[u8], key: &[u8]) -> Vec<u8> {
    let mut pem = Vec::with_capacity(cert.len() + key.len() + 1);
    pem.extend_from_slice(cert);
    pem.push(b'\n');
    pem.extend_from_slice(key);
    pem
}

/// `url` with exactly one `/` at the end, so that joining keeps a path prefix.
fn with_trailing_slash(url: &Url) -> Url {
    let mut url = url.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// Up to [`BODY_EXCERPT_CHARS`] printable characters of an error body.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(BODY_EXCERPT_CHARS)
        .collect();
    if text.trim().chars().count() > BODY_EXCERPT_CHARS {
        out.push('…');
    }
    out
}

impl LapiClient {
    /// Builds the client: reads the CA and client certificate files, checks the URL.
    pub fn new(settings: &LapiSettings) -> Result<Self, LapiError> {
        let url = &settings.api_url;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => {
                return Err(LapiError::UnsupportedUrl {
                    url: url.to_string(),
                });
            }
        };
        if !url.has_host() {
            return Err(LapiError::UnsupportedUrl {
                url: url.to_string(),
            });
        }
        let endpoint =
            with_trailing_slash(url)
                .join(STREAM_PATH)
                .map_err(|_| LapiError::UnsupportedUrl {
                    url: url.to_string(),
                })?;

        let mut builder = Client::builder()
            .user_agent(USER_AGENT)
            // LAPI never redirects, and following one would send the API key elsewhere.
            .redirect(redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(settings.timeout)
            .danger_accept_invalid_certs(settings.insecure_skip_verify);
        if let Some(path) = &settings.ca_cert_path {
            let pem = read_file("ca certificate", path)?;
            let certs = Certificate::from_pem_bundle(&pem).map_err(|source| LapiError::CaCert {
                path: path.clone(),
                source,
            })?;
            if certs.is_empty() {
                return Err(LapiError::NoCaCert { path: path.clone() });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let api_key = match &settings.auth {
            LapiAuth::ApiKey(key) => {
                let mut value = HeaderValue::from_str(key.expose())
                    .map_err(|source| LapiError::InvalidApiKey { source })?;
                value.set_sensitive(true);
                Some(value)
            }
            LapiAuth::Tls {
                cert_path,
                key_path,
            } => {
                if !https {
                    return Err(LapiError::CertNeedsHttps {
                        url: url.to_string(),
                    });
                }
                let cert = read_file("client certificate", cert_path)?;
                let key = read_file("client key", key_path)?;
                let identity =
                    Identity::from_pem(&identity_pem(&cert, &key)).map_err(|source| {
                        LapiError::Identity {
                            cert_path: cert_path.clone(),
                            key_path: key_path.clone(),
                            source,
                        }
                    })?;
                builder = builder.identity(identity);
                None
            }
        };
        let http = builder
            .build()
            .map_err(|source| LapiError::Client { source })?;

        let mut filters = Vec::new();
        for (name, values) in [
            ("scopes", &settings.scopes),
            ("origins", &settings.origins),
            ("scenarios_containing", &settings.scenarios_containing),
            (
                "scenarios_not_containing",
                &settings.scenarios_not_containing,
            ),
        ] {
            if !values.is_empty() {
                filters.push((name, values.join(",")));
            }
        }

        Ok(Self {
            http,
            endpoint,
            api_key,
            filters,
            max_body_bytes: settings.max_body_bytes,
        })
    }

    /// `{api_url}/v1/decisions/stream`, without a query.
    #[must_use]
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The stream URL with its query: `startup`, `dedup=false`, then the filters that are set.
    ///
    /// `dedup=false`: by default LAPI answers only the longest decision on each value, and
    /// then says nothing when that one is deleted while a shorter one lasts, so the value would
    /// stay banned until the longer one's end. Every decision, tracked by id, ends when it does.
    #[must_use]
    pub fn stream_url(&self, startup: bool) -> Url {
        let mut url = self.endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("startup", if startup { "true" } else { "false" });
            query.append_pair("dedup", "false");
            for (name, value) in &self.filters {
                query.append_pair(name, value);
            }
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.api_key {
            Some(key) => request.header(API_KEY_HEADER, key.clone()),
            None => request,
        }
    }

    fn unauthorized(&self, url: String, status: StatusCode) -> LapiError {
        let (credential, hint) = if self.api_key.is_some() {
            (
                "api key",
                "check that this bouncer is listed by `cscli bouncers list`",
            )
        } else {
            (
                "tls client certificate",
                "check that its OU is in LAPI's `api.server.tls.bouncers_allowed_ou` and that LAPI's `ca_cert_path` holds its CA",
            )
        };
        LapiError::Unauthorized {
            url,
            credential,
            status,
            hint,
        }
    }

    /// Sends a request to `url`; a failure to connect is [`LapiError::Unreachable`], a non-2xx
    /// answer [`LapiError::Unauthorized`] or [`LapiError::Status`].
    async fn send(&self, request: RequestBuilder, url: &Url) -> Result<Response, LapiError> {
        let response = request.send().await.map_err(|source| {
            // Our message names the URL already.
            let (url, source) = (url.to_string(), source.without_url());
            if source.is_connect() {
                LapiError::Unreachable { url, source }
            } else {
                LapiError::Transport { url, source }
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let url = url.to_string();
        if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(url, status));
        }
        // A short, best-effort look at the body: LAPI puts its message there.
        let mut body = Vec::new();
        let mut response = response;
        while body.len() < 4 * BODY_EXCERPT_CHARS {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        Err(LapiError::Status {
            url,
            status,
            body_excerpt: excerpt(&body),
        })
    }

    /// Start-up check that LAPI is reachable and takes our credentials: `HEAD` of the stream.
    ///
    /// LAPI counts a `HEAD` as a pull: it moves this bouncer's "last pull" time forward, so a
    /// `HEAD` between two delta pulls hides the decisions made in between. Call it only before
    /// the `startup=true` pull.
    pub async fn check(&self) -> Result<(), LapiError> {
        let url = self.endpoint.clone();
        self.send(self.request(Method::HEAD, url.clone()), &url)
            .await
            .map(drop)
    }

    /// Pulls the decisions stream: the full list with `startup`, else what changed since the
    /// last pull. Each decision's duration is counted from `now()` as the item is parsed: LAPI
    /// has counted it down by then, so a slow query or a long answer (seconds, for a startup
    /// answer of a big list) never ends a ban early.
    pub async fn stream(
        &self,
        startup: bool,
        now: impl Fn() -> SystemTime + Send + 'static,
    ) -> Result<StreamBatch, LapiError> {
        let stream_url = self.stream_url(startup);
        let mut response = self
            .send(self.request(Method::GET, stream_url.clone()), &stream_url)
            .await?;
        let url = || self.endpoint.to_string();
        let limit = self.max_body_bytes;
        let too_large = || LapiError::TooLarge { url: url(), limit };

        let announced = response.content_length().unwrap_or(0);
        if announced > limit as u64 {
            return Err(too_large());
        }
        // The answer is parsed as it arrives, on a blocking thread fed through a channel, so
        // it is never held whole (a startup answer can be hundreds of MB).
        let (chunks, body) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let parser = tokio::task::spawn_blocking(move || {
            StreamBatch::from_reader(BufReader::new(BodyReader::new(body)), startup, now)
        });
        let mut received = 0;
        let mut transfer = Ok(());
        loop {
            let next = tokio::select! {
                next = response.chunk() => next,
                // The parser stopped: the answer is malformed, as it will say. Said now, not
                // after a server that goes quiet has run the request's timeout out.
                () = chunks.closed() => break,
            };
            let chunk = match next {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(source) => {
                    transfer = Err(LapiError::Transport {
                        url: url(),
                        source: source.without_url(),
                    });
                    break;
                }
            };
            received += chunk.len();
            if received > limit {
                transfer = Err(too_large());
                break;
            }
            if chunks.send(chunk).await.is_err() {
                // The parser stopped: the answer is malformed, as it will say.
                break;
            }
        }
        // The end of the body, or a cut: either way the parser sees the end of its input.
        drop(chunks);
        let parsed = parser.await;
        // A failed transfer explains a parse error, not the other way round.
        transfer?;
        match parsed {
            Ok(batch) => batch.map_err(|source| LapiError::Decisions { url: url(), source }),
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(source) => Err(LapiError::ParseCancelled { url: url(), source }),
        }
    }
}

/// How many chunks of an answer may wait for the parser: enough to keep the transfer going
/// while it works, few enough that a slow parse never buffers the answer.
const CHUNKS_IN_FLIGHT: usize = 16;

/// The body of an answer as a blocking `Read`, from the chunks the transfer hands over; its end
/// is when the sender goes away.
struct BodyReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl BodyReader {
    fn new(chunks: mpsc::Receiver<Bytes>) -> BodyReader {
        BodyReader {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Path of the usage metrics endpoint, relative to the stream's URL
/// (`{api_url}/v1/decisions/stream` → `{api_url}/v1/usage-metrics`).
const USAGE_METRICS_FROM_STREAM: &str = "../usage-metrics";

/// Limit of one usage metrics request, as go-cs-bouncer's: they are not worth waiting for.
const USAGE_METRICS_TIMEOUT: Duration = Duration::from_secs(10);

impl LapiClient {
    /// `{api_url}/v1/usage-metrics`.
    #[must_use]
    pub fn usage_metrics_url(&self) -> Url {
        self.endpoint
            .join(USAGE_METRICS_FROM_STREAM)
            .expect("a relative path joins onto an http(s) URL")
    }

    /// Sends usage metrics (`POST /v1/usage-metrics`, see `crate::usage`) with the same
    /// credentials and `User-Agent` as the stream. A LAPI without the endpoint (before 1.6.3)
    /// answers [`LapiError::Status`] with `StatusCode::NOT_FOUND`.
    pub async fn post_usage_metrics(&self, body: &serde_json::Value) -> Result<(), LapiError> {
        let url = self.usage_metrics_url();
        let request = self
            .request(Method::POST, url.clone())
            .timeout(USAGE_METRICS_TIMEOUT)
            .json(body);
        self.send(request, &url).await.map(drop)
    }
}

/// Capped exponential backoff with "equal jitter": the n-th delay is drawn uniformly in
/// `[d/2, d]` where `d = min(cap, base * 2^n)`, so retries spread out yet keep growing.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    /// 1 s doubling up to 60 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_mins(1))
    }
}

impl Backoff {
    #[must_use]
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The ceiling of the next delay, before jitter.
    fn ceiling(&self) -> Duration {
        // 2^31 times any base reaches any sensible cap; saturate rather than overflow.
        let factor = 1_u32 << self.attempt.min(31);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter_nanos =
            u64::try_from(ceiling.saturating_sub(half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rand::random_range(0..=jitter_nanos))
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> LapiSettings {
        LapiSettings::new(
            url.parse().unwrap(),
            LapiAuth::ApiKey(ApiKey::new("s3cr3t-key".to_owned())),
        )
    }

    fn client(settings: &LapiSettings) -> LapiClient {
        LapiClient::new(settings).unwrap()
    }

    #[test]
    fn stream_url_default_filters() {
        let c = client(&settings("http://127.0.0.1:8080"));
        assert_eq!(
            c.stream_url(true).as_str(),
            "http://127.0.0.1:8080/v1/decisions/stream?startup=true&dedup=false&scopes=ip%2Crange"
        );
        assert_eq!(
            c.stream_url(false).as_str(),
            "http://127.0.0.1:8080/v1/decisions/stream?startup=false&dedup=false&scopes=ip%2Crange"
        );
    }

    #[test]
    fn stream_url_keeps_path_prefix() {
        for base in [
            "https://lapi.example/crowdsec",
            "https://lapi.example/crowdsec/",
        ] {
            let c = client(&settings(base));
            assert_eq!(
                c.endpoint().as_str(),
                "https://lapi.example/crowdsec/v1/decisions/stream"
            );
        }
    }

    #[test]
    fn stream_url_all_filters() {
        let mut s = settings("http://127.0.0.1:8080/");
        s.origins = vec!["crowdsec".into(), "lists:firehol".into()];
        s.scenarios_containing = vec!["ssh".into(), "smtp".into()];
        s.scenarios_not_containing = vec!["http probing".into()];
        let url = client(&s).stream_url(false);
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let want = [
            ("startup", "false"),
            ("dedup", "false"),
            ("scopes", "ip,range"),
            ("origins", "crowdsec,lists:firehol"),
            ("scenarios_containing", "ssh,smtp"),
            ("scenarios_not_containing", "http probing"),
        ];
        assert_eq!(
            pairs,
            want.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
        assert_eq!(
            url.query(),
            Some(
                "startup=false&dedup=false&scopes=ip%2Crange&origins=crowdsec%2Clists%3Afirehol\
                 &scenarios_containing=ssh%2Csmtp&scenarios_not_containing=http+probing"
            )
        );
    }

    #[test]
    fn empty_scopes_are_not_sent() {
        let mut s = settings("http://127.0.0.1:8080/");
        s.scopes.clear();
        assert_eq!(
            client(&s).stream_url(true).query(),
            Some("startup=true&dedup=false")
        );
    }

    #[test]
    fn debug_redacts_the_key() {
        let s = settings("http://127.0.0.1:8080/");
        for shown in [
            format!("{s:?}"),
            format!("{s:#?}"),
            format!("{:?}", client(&s)),
            format!("{:?}", s.auth),
        ] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
    }

    #[test]
    fn rejects_bad_urls_and_keys() {
        assert!(matches!(
            LapiClient::new(&settings("ftp://127.0.0.1/")),
            Err(LapiError::UnsupportedUrl { .. })
        ));
        let mut s = settings("http://127.0.0.1:8080/");
        s.auth = LapiAuth::ApiKey(ApiKey::new("line\nbreak".to_owned()));
        assert!(matches!(
            LapiClient::new(&s),
            Err(LapiError::InvalidApiKey { .. })
        ));
        s.auth = LapiAuth::Tls {
            cert_path: "/nonexistent/cert.pem".into(),
            key_path: "/nonexistent/key.pem".into(),
        };
        let err = LapiClient::new(&s).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tls client certificate auth needs an https lapi url, not http://127.0.0.1:8080/"
        );
        s.api_url = "https://127.0.0.1:8080/".parse().unwrap();
        let err = LapiClient::new(&s).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read client certificate /nonexistent/cert.pem"
        );
    }

    #[test]
    fn unauthorized_message() {
        let err = LapiError::Unauthorized {
            url: "http://127.0.0.1:8080/v1/decisions/stream".into(),
            credential: "api key",
            status: StatusCode::FORBIDDEN,
            hint: "check that this bouncer is listed by `cscli bouncers list`",
        };
        assert_eq!(
            err.to_string(),
            "lapi at http://127.0.0.1:8080/v1/decisions/stream refused the api key \
             (403 Forbidden): check that this bouncer is listed by `cscli bouncers list`"
        );
    }

    #[tokio::test]
    async fn connection_refused_is_unreachable() {
        // Bind then drop a listener: its port is very likely closed right after.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let c = client(&settings(&format!("http://127.0.0.1:{port}/")));
        let err = c.check().await.unwrap_err();
        assert!(matches!(err, LapiError::Unreachable { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("lapi unreachable at http://127.0.0.1:{port}/v1/decisions/stream")
        );
    }

    #[tokio::test]
    async fn a_malformed_answer_is_named_even_if_the_server_then_goes_quiet() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (done, wait) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0_u8; 4096];
            let _ = socket.read(&mut buf).await.unwrap();
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(b"<html>").await.unwrap();
            // Then nothing, with the connection open, until the test is over.
            let _ = wait.await;
        });
        let mut settings = settings(&url);
        settings.timeout = Duration::from_secs(10);
        let err = client(&settings)
            .stream(true, || SystemTime::UNIX_EPOCH)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LapiError::Decisions { .. }),
            "the answer's fault, not a timeout: {}",
            crate::error_chain(&err)
        );
        let _ = done.send(());
        server.await.unwrap();
    }

    /// Serves one canned HTTP answer on a local port; hands back the request head it read.
    async fn serve_once(
        status: &'static str,
        body: String,
    ) -> (String, tokio::task::JoinHandle<String>) {
        serve_paced(status, vec![(Duration::ZERO, body)]).await
    }

    /// [`serve_once`], the body in pieces, each sent its pause after the one before (the
    /// headers go with the first).
    async fn serve_paced(
        status: &'static str,
        pieces: Vec<(Duration, String)>,
    ) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0_u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                socket.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let length: usize = pieces.iter().map(|(_, piece)| piece.len()).sum();
            let mut head_sent = false;
            for (pause, piece) in pieces {
                tokio::time::sleep(pause).await;
                if !head_sent {
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                         content-length: {length}\r\nconnection: close\r\n\r\n"
                    );
                    socket.write_all(answer.as_bytes()).await.unwrap();
                    head_sent = true;
                }
                socket.write_all(piece.as_bytes()).await.unwrap();
                socket.flush().await.unwrap();
            }
            socket.shutdown().await.unwrap();
            String::from_utf8(head).unwrap()
        });
        (url, server)
    }

    #[tokio::test]
    async fn stream_sends_key_and_agent_and_parses() {
        let body = r#"{"new":[{"id":1,"origin":"cscli","type":"ban","scope":"Ip",
            "value":"198.51.100.1","duration":"1h","scenario":"s"}],"deleted":null}"#;
        let (url, server) = serve_once("200 OK", body.to_owned()).await;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let batch = client(&settings(&url))
            .stream(true, move || now)
            .await
            .unwrap();
        assert_eq!(batch.new.len(), 1);
        assert_eq!(batch.new[0].until, now + Duration::from_hours(1));
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with(
                "get /v1/decisions/stream?startup=true&dedup=false&scopes=ip%2crange http/1.1\r\n"
            ),
            "{head}"
        );
        assert!(head.contains("\r\nx-api-key: s3cr3t-key\r\n"), "{head}");
        assert!(
            head.contains(&format!(
                "\r\nuser-agent: {}\r\n",
                USER_AGENT.to_ascii_lowercase()
            )),
            "{head}"
        );
    }

    #[tokio::test]
    async fn check_sends_head() {
        let (url, server) = serve_once("200 OK", String::new()).await;
        client(&settings(&url)).check().await.unwrap();
        let head = server.await.unwrap();
        assert!(
            head.starts_with("HEAD /v1/decisions/stream HTTP/1.1\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn forbidden_is_unauthorized() {
        let (url, _server) = serve_once(
            "403 Forbidden",
            r#"{"message":"access forbidden"}"#.to_owned(),
        )
        .await;
        let err = client(&settings(&url)).check().await.unwrap_err();
        assert!(
            matches!(
                err,
                LapiError::Unauthorized {
                    status: StatusCode::FORBIDDEN,
                    credential: "api key",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("cscli bouncers list"), "{err}");
    }

    #[tokio::test]
    async fn durations_count_from_when_each_item_arrives() {
        let item = |id: u32| {
            format!(
                r#"{{"id":{id},"origin":"cscli","type":"ban","scope":"Ip",
                "value":"198.51.100.{id}","duration":"1h","scenario":"s"}}"#
            )
        };
        // A slow query, then a second page long after the first (as LAPI streams big lists).
        let pause = Duration::from_millis(1_500);
        let (url, _server) = serve_paced(
            "200 OK",
            vec![
                (pause, format!(r#"{{"new":[{},"#, item(1))),
                (pause, format!(r#"{}],"deleted":null}}"#, item(2))),
            ],
        )
        .await;
        let asked = SystemTime::now();
        let batch = client(&settings(&url))
            .stream(true, SystemTime::now)
            .await
            .unwrap();
        for (decision, sent_after) in batch.new.iter().zip([pause, 2 * pause]) {
            let early_by = (asked + sent_after + Duration::from_hours(1))
                .duration_since(decision.until)
                .unwrap_or_default();
            assert_eq!(
                early_by,
                Duration::ZERO,
                "decision {} would end early",
                decision.id
            );
        }
    }

    #[tokio::test]
    async fn error_status_quotes_the_body() {
        let (url, _server) = serve_once(
            "500 Internal Server Error",
            r#"{"message":"database is locked"}"#.to_owned(),
        )
        .await;
        let err = client(&settings(&url))
            .stream(false, SystemTime::now)
            .await
            .unwrap_err();
        let LapiError::Status {
            status,
            body_excerpt,
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body_excerpt, r#"{"message":"database is locked"}"#);
    }

    #[tokio::test]
    async fn oversized_and_malformed_answers() {
        let (url, _server) = serve_once("200 OK", "x".repeat(2_000)).await;
        let mut s = settings(&url);
        s.max_body_bytes = 1_000;
        let err = client(&s).stream(true, SystemTime::now).await.unwrap_err();
        assert!(
            matches!(err, LapiError::TooLarge { limit: 1_000, .. }),
            "{err:?}"
        );

        let (url, _server) = serve_once("200 OK", r#"{"new": ["#.to_owned()).await;
        let err = client(&settings(&url))
            .stream(true, SystemTime::now)
            .await
            .unwrap_err();
        assert!(matches!(err, LapiError::Decisions { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("bad answer from lapi at {url}v1/decisions/stream")
        );
    }

    #[test]
    fn excerpt_is_short_and_printable() {
        assert_eq!(
            excerpt(b"  {\"message\":\"nope\"}\n"),
            "{\"message\":\"nope\"}"
        );
        assert_eq!(excerpt(b"a\tb\x00c"), "a b c");
        let long = excerpt(&[b'x'; 1000]);
        assert_eq!(long.chars().count(), BODY_EXCERPT_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_mins(1);
        let mut backoff = Backoff::new(base, cap);
        for round in 0..3 {
            let mut ceiling = base;
            for _ in 0..100 {
                let delay = backoff.next_delay();
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{delay:?} vs {ceiling:?}"
                );
                ceiling = (ceiling * 2).min(cap);
            }
            // Late delays sit between cap/2 and cap, far above the first one.
            assert!(backoff.next_delay() >= cap / 2, "round {round}");
            backoff.reset();
            assert!(backoff.next_delay() <= base);
            backoff.reset();
        }
    }

    #[test]
    fn backoff_survives_huge_attempts() {
        let mut backoff = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        for _ in 0..100 {
            let _ = backoff.next_delay();
        }
    }
}
