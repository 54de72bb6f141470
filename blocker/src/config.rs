//! The configuration file, validated once at load.
//!
//! One YAML file (default [`DEFAULT_CONFIG_PATH`]). Keys shared with
//! crowdsec-firewall-bouncer mean the same thing there and here: `api_url`, `api_key`,
//! `cert_path`, `key_path`, `ca_cert_path`, `insecure_skip_verify`, `update_frequency`,
//! `log_level`, `log_mode`, `scopes`, `origins`, `scenarios_containing`,
//! `scenarios_not_containing`, `supported_decisions_types` and `prometheus`. Note that `mode`
//! is ours (`enforce` or `observe`), not the firewall bouncer's backend name.
//!
//! Before parsing, `${NAME}` is replaced by the environment variable `NAME`, strictly: an
//! unset variable is an error. Lines that are whole comments (`#` first) are left alone.
//!
//! Beside the file, `FILE.local` (as every `CrowdSec` bouncer reads it) is laid over it if it
//! exists: local changes kept there survive a package upgrade that replaces the file. Its
//! mappings merge key by key into the file's, any other value replaces the file's, and a
//! `null` removes the key (its default applies).
//!
//! Unknown keys are errors. Values are checked in two steps: their syntax while parsing (the
//! YAML error then names the key path and line), and their meaning in `Config::validate`,
//! after parsing.

use std::{
    collections::HashSet,
    env::VarError,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use reqwest::Url;
use serde::{Deserialize, Deserializer, Serialize, de};

use crate::{
    decisions::{format_go_duration, parse_go_duration, parse_net},
    error_chain,
    lapi::{ApiKey, LapiAuth, LapiSettings},
};

/// Where the daemon looks for its configuration.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/crowdsec/bouncers/crowdsec-blocker.yaml";

/// Errors of loading and validating the configuration. Each names the key or the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration file {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: Box<ConfigError>,
    },
    #[error("cannot expand ${{{name}}} on line {line}")]
    EnvVar {
        name: String,
        line: usize,
        #[source]
        source: VarError,
    },
    #[error("unterminated ${{ on line {line}")]
    EnvUnterminated { line: usize },
    #[error("invalid environment variable name {name:?} on line {line}")]
    EnvName { name: String, line: usize },
    #[error("invalid configuration file {} with its overlay {}", path.display(), overlay.display())]
    Overlaid {
        path: PathBuf,
        overlay: PathBuf,
        #[source]
        source: Box<ConfigError>,
    },
    #[error(
        "{keys}: crowdsec-firewall-bouncer's settings, not blocker's (blocker filters both families in XDP, drops silently, logs to the journal, and its mode is enforce or observe): remove them"
    )]
    FirewallBouncerKeys { keys: String },
    #[error("cannot expand ${{{name}}} in {key}: environment variable not found")]
    EnvUnset { key: String, name: String },
    #[error("{key}: a {over} cannot replace the file's {base}")]
    OverlayMismatch {
        key: String,
        over: &'static str,
        base: &'static str,
    },
    #[error("cannot parse the configuration")]
    Yaml {
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("api_url {url} must be an http:// or https:// url with a host")]
    ApiUrl { url: String },
    #[error("no lapi credentials: set api_key, api_key_file, or cert_path and key_path")]
    NoAuth,
    #[error("{first} and {second} are exclusive: authenticate one way only")]
    AuthConflict {
        first: &'static str,
        second: &'static str,
    },
    #[error("{present} is set without {missing}")]
    IncompleteCert {
        present: &'static str,
        missing: &'static str,
    },
    #[error("cert_path and key_path need an https api_url, not {url}")]
    CertNeedsHttps { url: String },
    #[error("{key} is empty")]
    EmptyApiKey { key: &'static str },
    #[error("{key} must be printable ascii without spaces")]
    BadApiKey { key: &'static str },
    #[error("cannot read api_key_file {}", path.display())]
    ApiKeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} must be at least {min:?}")]
    TooShort { key: &'static str, min: Duration },
    #[error("{key} must list at least one entry")]
    EmptyList { key: &'static str },
    #[error("{key} lists {count} {family} prefixes; the kernel's list holds at most {max}")]
    TooLong {
        key: &'static str,
        family: &'static str,
        count: usize,
        max: u32,
    },
    #[error("{key} entry {value:?} is invalid: {problem}")]
    BadEntry {
        key: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error("{key} must not be 0")]
    PortZero { key: &'static str },
    #[error("{key} is {value}; it must be between {min} and {max}")]
    OutOfRange {
        key: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("{key} must be an absolute path, not {path:?}")]
    RelativePath { key: &'static str, path: PathBuf },
    #[error("bpffs_dir {} has a dot in a name, which bpffs refuses", path.display())]
    DotInPinDir { path: PathBuf },
    #[error(
        "bpffs_dir must be a folder of its own under a BPF filesystem, not {} (detach removes every link pinned there)",
        path.display()
    )]
    PinDirIsRoot { path: PathBuf },
    #[error("cannot write the configuration as yaml")]
    Serialize {
        #[source]
        source: serde_yaml_ng::Error,
    },
}

/// The daemon's configuration, with defaults filled in and validated.
///
/// `Debug` and [`Config::to_yaml_redacted`] never show the API key.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// LAPI's URL (required).
    #[serde(with = "url_serde")]
    api_url: Url,
    /// Bouncer key from `cscli bouncers add`; or `api_key_file`; or `cert_path` + `key_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_key: Option<ApiKey>,
    /// A file holding the key (surrounding whitespace is ignored), read by
    /// [`Config::lapi_settings`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert_path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_path: Option<PathBuf>,
    /// Extra CA certificates (PEM) that LAPI's certificate may chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_cert_path: Option<PathBuf>,
    /// Default false.
    #[serde(default)]
    insecure_skip_verify: bool,
    /// Time between two pulls; default 10s, like the firewall bouncer.
    #[serde(default = "default_update_frequency", with = "duration_serde")]
    update_frequency: Duration,
    /// Default info.
    #[serde(default)]
    log_level: LogLevel,
    /// Only stdout (journald picks it up); default stdout.
    #[serde(default)]
    log_mode: LogMode,
    /// Decision scopes to pull; default `[ip, range]`, the only two an XDP filter enforces.
    #[serde(default = "default_scopes")]
    scopes: Vec<Scope>,
    /// Pull only decisions of these origins; default empty, all origins.
    #[serde(default)]
    origins: Vec<String>,
    /// Pull only decisions whose scenario contains one of these; default empty, no filter.
    #[serde(default)]
    scenarios_containing: Vec<String>,
    /// Skip decisions whose scenario contains one of these; default empty, no filter.
    #[serde(default)]
    scenarios_not_containing: Vec<String>,
    /// Decision types to enforce (lowercased); default `[ban]`.
    #[serde(default = "default_decision_types")]
    supported_decisions_types: Vec<String>,
    /// Network interfaces to attach to (required).
    interfaces: Vec<String>,
    /// XDP attach mode; default auto (native, falling back to generic).
    #[serde(default)]
    xdp_mode: XdpMode,
    /// Destination ports whose TCP SYNs are checked; default the mail ports
    /// `[25, 465, 587, 143, 993, 110, 995]`. Duplicates are dropped.
    #[serde(default = "default_ports")]
    ports: Vec<u16>,
    /// Addresses or CIDRs never blocked, whatever LAPI says; default empty. A bare address is
    /// a /32 or /128; host bits are cleared.
    #[serde(default, deserialize_with = "de_allowlist")]
    allowlist: Vec<IpNet>,
    /// enforce (drop) or observe (count only); default enforce.
    #[serde(default)]
    mode: Mode,
    /// Log the sources of dropped SYNs, sampled, once a second; default false (the firewall
    /// bouncer's key, which logs every dropped packet).
    #[serde(default)]
    deny_log: bool,
    /// Single banned addresses per family the kernel's address tables are sized for; default
    /// 131,072 (1.5 MB for IPv4, 4 MB for IPv6). More still work, from the slower range
    /// trie. A change resizes the pinned tables at the next start, enforcing throughout.
    #[serde(default = "default_max_addresses")]
    max_addresses: u32,
    /// Where maps and programs are pinned, so a restart keeps blocking; default
    /// `/sys/fs/bpf/blocker`.
    #[serde(default = "default_bpffs_dir")]
    bpffs_dir: PathBuf,
    /// Where the daemon records its LAPI sync state for `blocker status`; default
    /// `/run/blocker/state.json`.
    #[serde(default = "default_state_file")]
    state_file: PathBuf,
    /// Prometheus endpoint; default enabled on 127.0.0.1:60602.
    #[serde(default)]
    prometheus: PrometheusConfig,
    /// Usage metrics pushed to LAPI (`cscli metrics`); default enabled every 15m.
    #[serde(default)]
    usage_metrics: UsageMetricsConfig,
}

/// The `prometheus` section, as in the firewall bouncer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusConfig {
    enabled: bool,
    #[serde(deserialize_with = "de_ip")]
    listen_addr: IpAddr,
    /// A number or, as the firewall bouncer writes it, a string.
    #[serde(deserialize_with = "de_port")]
    listen_port: u16,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            // On by default, as in the firewall bouncer.
            enabled: true,
            // Loopback only: metrics are not for the world.
            listen_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            // One above the firewall bouncer's 60601: the two may run side by side.
            listen_port: 60602,
        }
    }
}

impl PrometheusConfig {
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    #[must_use]
    pub fn listen_addr(&self) -> IpAddr {
        self.listen_addr
    }

    #[must_use]
    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    #[must_use]
    pub fn listen_socket(&self) -> SocketAddr {
        SocketAddr::new(self.listen_addr, self.listen_port)
    }
}

/// The `usage_metrics` section: what LAPI shows in `cscli metrics` for this bouncer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageMetricsConfig {
    enabled: bool,
    /// Must be more than 0s when enabled.
    #[serde(with = "duration_serde")]
    interval: Duration,
}

impl Default for UsageMetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            // What go-cs-bouncer sends at; LAPIs too old for the endpoint only answer 404.
            interval: Duration::from_mins(15),
        }
    }
}

impl UsageMetricsConfig {
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    /// `warning` is accepted too, as logrus does.
    #[serde(alias = "warning")]
    Warn,
    Error,
}

impl LogLevel {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    #[must_use]
    pub fn tracing_level(self) -> tracing::Level {
        match self {
            Self::Trace => tracing::Level::TRACE,
            Self::Debug => tracing::Level::DEBUG,
            Self::Info => tracing::Level::INFO,
            Self::Warn => tracing::Level::WARN,
            Self::Error => tracing::Level::ERROR,
        }
    }
}

/// Only `stdout`: the firewall bouncer's `file` mode (and its `log_dir`, rotation keys) is not
/// supported; systemd's journal keeps the logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogMode {
    #[default]
    Stdout,
}

/// A decision scope the XDP program can enforce. Read case-insensitively (`Ip`, `ip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ip,
    Range,
}

impl Scope {
    /// The lowercase name LAPI's `scopes` filter takes.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Range => "range",
        }
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_str(deserializer, "a scope (ip or range)", |scope| {
            if scope.eq_ignore_ascii_case("ip") {
                Ok(Self::Ip)
            } else if scope.eq_ignore_ascii_case("range") {
                Ok(Self::Range)
            } else {
                Err(format!(
                    "unsupported scope {scope:?}: blocker enforces only ip and range"
                ))
            }
        })
    }
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic where the driver has no XDP.
    #[default]
    Auto,
    /// Driver mode only; fails where the driver has no XDP.
    Native,
    /// Generic (skb) mode: works everywhere, slower.
    Generic,
}

/// What a banned SYN meets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Drop it.
    #[default]
    Enforce,
    /// Let it through and count it: a dry run.
    Observe,
}

/// The shortest `update_frequency` (and usage-metrics interval).
const MIN_UPDATE_FREQUENCY: Duration = Duration::from_millis(100);

fn default_update_frequency() -> Duration {
    Duration::from_secs(10)
}

fn default_scopes() -> Vec<Scope> {
    vec![Scope::Ip, Scope::Range]
}

fn default_decision_types() -> Vec<String> {
    vec!["ban".to_owned()]
}

fn default_max_addresses() -> u32 {
    crate::loader::Capacity::default().addresses
}

/// Bounds of `max_addresses`: 16 Mi addresses already make a 512 MiB IPv6 table.
const MAX_ADDRESSES: std::ops::RangeInclusive<u32> = 1..=1 << 24;

fn default_ports() -> Vec<u16> {
    // SMTP, submissions, submission, IMAP, IMAPS, POP3, POP3S.
    vec![25, 465, 587, 143, 993, 110, 995]
}

fn default_state_file() -> PathBuf {
    PathBuf::from("/run/blocker/state.json")
}

fn default_bpffs_dir() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/blocker")
}

/// Durations written as `CrowdSec` writes them (Go syntax: `10s`, `500ms`, `4h`, `1m30s`).
mod duration_serde {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    use super::{format_go_duration, parse_go_duration, parse_str};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse_str(d, "a duration such as 10s, 500ms or 4h", |text| {
            parse_go_duration(text)
                .map_err(|e| e.to_string())?
                .to_unsigned()
                .ok_or_else(|| format!("invalid duration {text:?}: negative"))
        })
    }

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_go_duration(*d))
    }
}

mod url_serde {
    use reqwest::Url;
    use serde::{Deserializer, Serializer};

    use super::parse_str;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
        parse_str(d, "an http or https url", |text| {
            Url::parse(text).map_err(|e| format!("invalid url {text:?}: {e}"))
        })
    }

    pub(super) fn serialize<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(url.as_str())
    }
}

/// Reads a string and parses it inside the visitor: an error raised there carries the key path
/// and line of the scalar in `serde_yaml_ng`'s message (one raised after `String::deserialize`
/// returns would only get the enclosing map's).
fn parse_str<'de, D, T, F>(
    deserializer: D,
    expecting: &'static str,
    parse: F,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct StrVisitor<F> {
        expecting: &'static str,
        parse: F,
    }

    impl<T, F: FnOnce(&str) -> Result<T, String>> de::Visitor<'_> for StrVisitor<F> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.expecting)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(v).map_err(E::custom)
        }
    }

    deserializer.deserialize_str(StrVisitor { expecting, parse })
}

/// One allowlist entry, read on its own so a bad one is reported with its index.
struct AllowEntry(IpNet);

impl<'de> Deserialize<'de> for AllowEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_str(deserializer, "an IP address or CIDR", |text| {
            parse_net(text).map(Self).map_err(|e| {
                format!(
                    "invalid allowlist entry {text:?}: {}; expected an IP address or CIDR",
                    error_chain(&e)
                )
            })
        })
    }
}

fn de_allowlist<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let entries = Vec::<AllowEntry>::deserialize(deserializer)?;
    Ok(entries.into_iter().map(|AllowEntry(net)| net).collect())
}

/// An IP address, or `localhost` (127.0.0.1), which the firewall bouncer's configurations use
/// too; no other name, which would need a resolver at start.
fn de_ip<'de, D: Deserializer<'de>>(deserializer: D) -> Result<IpAddr, D::Error> {
    parse_str(deserializer, "an IP address", |text| {
        if text == "localhost" {
            return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        text.parse()
            .map_err(|e| format!("invalid IP address {text:?}: {e}"))
    })
}

fn de_port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    struct PortVisitor;

    impl de::Visitor<'_> for PortVisitor {
        type Value = u16;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a port number")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u16, E> {
            u16::try_from(v).map_err(|_| E::custom(format_args!("invalid port {v}")))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u16, E> {
            u16::try_from(v).map_err(|_| E::custom(format_args!("invalid port {v}")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u16, E> {
            v.parse()
                .map_err(|_| E::custom(format_args!("invalid port {v:?}")))
        }
    }

    deserializer.deserialize_any(PortVisitor)
}

/// crowdsec-firewall-bouncer's keys that have no meaning here: its backends' set, chain and
/// hook names, its log files, its process, and what blocker does one way only.
const FIREWALL_BOUNCER_KEYS: [&str; 21] = [
    "pid_dir",
    "daemonize",
    "log_dir",
    "log_compression",
    "log_max_backups",
    "compress_logs",
    "log_max_size",
    "log_max_files",
    "log_max_age",
    "disable_ipv6",
    "deny_action",
    "deny_log_prefix",
    "blacklists_ipv4",
    "blacklists_ipv6",
    "ipset_type",
    "ipset_size",
    "iptables_chains",
    "iptables_add_rule_comments",
    "nftables",
    "nftables_hooks",
    "pf",
];
/// Its values, for keys that blocker reads otherwise: its backends for `mode`, and a log file.
const FIREWALL_BOUNCER_VALUES: [(&str, &str); 6] = [
    ("mode", "nftables"),
    ("mode", "iptables"),
    ("mode", "ipset"),
    ("mode", "pf"),
    ("mode", "dry-run"),
    ("log_mode", "file"),
];

/// A configuration copied from crowdsec-firewall-bouncer: all its own keys named at once,
/// rather than the first one serde meets as unknown.
fn firewall_bouncer_keys(value: &serde_yaml_ng::Value) -> Option<ConfigError> {
    let map = value.as_mapping()?;
    let mut keys: Vec<String> = map
        .keys()
        .filter_map(serde_yaml_ng::Value::as_str)
        .filter(|key| FIREWALL_BOUNCER_KEYS.contains(key))
        .map(str::to_owned)
        .collect();
    for (key, value) in FIREWALL_BOUNCER_VALUES {
        if map.get(key).and_then(serde_yaml_ng::Value::as_str) == Some(value) {
            keys.push(format!("{key}: {value}"));
        }
    }
    (!keys.is_empty()).then(|| ConfigError::FirewallBouncerKeys {
        keys: keys.join(", "),
    })
}

/// Appended to the configuration file's path, the overlay's (`crowdsec-blocker.yaml.local`).
const OVERLAY_SUFFIX: &str = ".local";

/// An optional file's text; `None` if there is no such file.
fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Configuration text, `${ENV}` expanded, as a YAML tree.
fn yaml_value(
    text: &str,
    lookup: &dyn Fn(&str) -> Result<String, VarError>,
) -> Result<serde_yaml_ng::Value, ConfigError> {
    serde_yaml_ng::from_str(&expand_env(text, lookup)?)
        .map_err(|source| ConfigError::Yaml { source })
}

/// What an unset `${NAME}` reads as until an overlay's merge, `UNSET-ENV(NAME)`: no value of
/// ours looks like it, and it is a plain YAML scalar anywhere, even in `[...]`, where `${` is
/// not.
const UNSET: &str = "UNSET-ENV(";

/// The key and the variable name of an unset `${NAME}` left in `value`, if any.
fn unexpanded(value: &serde_yaml_ng::Value, key: &mut String) -> Option<(String, String)> {
    use serde_yaml_ng::Value;
    match value {
        Value::String(text) => {
            let name = text.split_once(UNSET)?.1.split_once(')')?.0;
            Some((key.clone(), name.to_owned()))
        }
        Value::Sequence(items) => items.iter().find_map(|item| unexpanded(item, key)),
        Value::Mapping(map) => map
            .iter()
            .find_map(|(name, item)| below(key, name, |key| unexpanded(item, key))),
        _ => None,
    }
}

/// `f` with `key`, a dotted path, one step further down, at `name`.
fn below<R>(key: &mut String, name: &serde_yaml_ng::Value, f: impl FnOnce(&mut String) -> R) -> R {
    let start = key.len();
    if !key.is_empty() {
        key.push('.');
    }
    key.push_str(name.as_str().unwrap_or("?"));
    let result = f(key);
    key.truncate(start);
    result
}

/// `over` laid over `base` as `CrowdSec`'s `yamlpatch` does: mappings merge key by key, a `null`
/// removes the key, any other value replaces the base's if it is of the same kind (a scalar
/// for a scalar, a sequence for a sequence). `key` is the path to here, for errors.
fn lay_over(
    base: serde_yaml_ng::Value,
    over: serde_yaml_ng::Value,
    key: &mut String,
) -> Result<serde_yaml_ng::Value, ConfigError> {
    use serde_yaml_ng::Value;
    let kind = |value: &Value| match value {
        Value::Mapping(_) => "mapping",
        Value::Sequence(_) => "sequence",
        _ => "scalar",
    };
    match (base, over) {
        // An empty file, or one of comments only.
        (base, Value::Null) if key.is_empty() => Ok(base),
        (Value::Null, over) => Ok(over),
        (Value::Mapping(mut base), Value::Mapping(over)) => {
            for (name, value) in over {
                match (base.remove(&name), value) {
                    (_, Value::Null) => {}
                    (None, value) => {
                        base.insert(name, value);
                    }
                    (Some(old), value) => {
                        let merged = below(key, &name, |key| lay_over(old, value, key))?;
                        base.insert(name, merged);
                    }
                }
            }
            Ok(Value::Mapping(base))
        }
        (base, over) if kind(&base) == kind(&over) => Ok(over),
        (base, over) => Err(ConfigError::OverlayMismatch {
            key: if key.is_empty() {
                "the top level".to_owned()
            } else {
                key.clone()
            },
            over: kind(&over),
            base: kind(&base),
        }),
    }
}

/// Replaces `${NAME}` with `lookup(NAME)`. Whole-line comments are copied as they are.
fn expand_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Result<String, VarError>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or(ConfigError::EnvUnterminated { line: number })?;
            let name = &after[..end];
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ConfigError::EnvName {
                    name: name.to_owned(),
                    line: number,
                });
            }
            let value = lookup(name).map_err(|source| ConfigError::EnvVar {
                name: name.to_owned(),
                line: number,
                source,
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

fn check_api_key(key: &str, name: &'static str) -> Result<(), ConfigError> {
    if key.is_empty() {
        return Err(ConfigError::EmptyApiKey { key: name });
    }
    if !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ConfigError::BadApiKey { key: name });
    }
    Ok(())
}

/// Drops later duplicates, keeping the order.
fn dedupe<T: Eq + std::hash::Hash + Clone>(items: &mut Vec<T>) {
    let mut seen = HashSet::new();
    items.retain(|item| seen.insert(item.clone()));
}

/// Linux's `dev_valid_name`: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
fn check_interface(name: &str) -> Result<(), ConfigError> {
    let problem = if name.is_empty() {
        Some("empty")
    } else if name.len() > 15 {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("not a name")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::BadEntry {
            key: "interfaces",
            value: name.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Entries of a LAPI filter are joined with commas, so they can't hold one.
fn check_filter(key: &'static str, values: &[String]) -> Result<(), ConfigError> {
    for value in values {
        let problem = if value.is_empty() {
            "empty"
        } else if value.contains(',') {
            "contains a comma"
        } else {
            continue;
        };
        return Err(ConfigError::BadEntry {
            key,
            value: value.clone(),
            problem,
        });
    }
    Ok(())
}

impl Config {
    /// Reads, expands, parses and validates a configuration file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path.as_ref(), &|name| std::env::var(name))
    }

    /// Like [`Config::load`], for commands that only read the pinned maps (`status`, `check`,
    /// `list`, `detach`): a `${VAR}` that is unset (typically the API key, given to the
    /// service only) is not an error there.
    pub fn load_for_inspection(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path.as_ref(), &|name| {
            Ok(std::env::var(name).unwrap_or_else(|_| format!("unset-{name}")))
        })
    }

    fn load_with_env(
        path: &Path,
        lookup: &dyn Fn(&str) -> Result<String, VarError>,
    ) -> Result<Self, ConfigError> {
        let in_file = |path: &Path| {
            let path = path.to_owned();
            move |source| ConfigError::File {
                path,
                source: Box::new(source),
            }
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut overlay_path = path.as_os_str().to_owned();
        overlay_path.push(OVERLAY_SUFFIX);
        let overlay_path = PathBuf::from(overlay_path);
        let Some(overlay) = read_optional(&overlay_path)? else {
            return Self::from_yaml_with_env(&text, lookup).map_err(in_file(path));
        };
        // An unset variable is marked until the merge: the overlay may replace the value that
        // names it (the packaged file's `api_key: ${API_KEY}`, the key set in the overlay).
        let keep_unset = |name: &str| match lookup(name) {
            Err(VarError::NotPresent) => Ok(format!("{UNSET}{name})")),
            found => found,
        };
        let base = yaml_value(&text, &keep_unset).map_err(in_file(path))?;
        let overlay = yaml_value(&overlay, &keep_unset).map_err(in_file(&overlay_path))?;
        let merged = lay_over(base, overlay, &mut String::new()).map_err(in_file(&overlay_path))?;
        let overlaid = |source| ConfigError::Overlaid {
            path: path.to_owned(),
            overlay: overlay_path.clone(),
            source: Box::new(source),
        };
        if let Some((key, name)) = unexpanded(&merged, &mut String::new()) {
            return Err(overlaid(ConfigError::EnvUnset { key, name }));
        }
        // Back to text, so that the result parses as one file would (a plain `12345678` is a
        // string where a string is wanted, which a YAML tree has already made a number).
        serde_yaml_ng::to_string(&merged)
            .map_err(|source| ConfigError::Serialize { source })
            .and_then(|text| Self::from_expanded(&text))
            .map_err(overlaid)
    }

    /// Expands `${ENV}`, parses and validates configuration text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        Self::from_yaml_with_env(text, &|name| std::env::var(name))
    }

    fn from_yaml_with_env(
        text: &str,
        lookup: &dyn Fn(&str) -> Result<String, VarError>,
    ) -> Result<Self, ConfigError> {
        Self::from_expanded(&expand_env(text, lookup)?)
    }

    /// Parses and validates configuration text whose `${ENV}` are expanded.
    fn from_expanded(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_yaml_ng::from_str(text).map_err(|source| {
            serde_yaml_ng::from_str(text)
                .ok()
                .and_then(|value| firewall_bouncer_keys(&value))
                .unwrap_or(ConfigError::Yaml { source })
        })?;
        config.validate()
    }

    /// Shorter would poll LAPI in a tight loop.
    fn check_durations(&self) -> Result<(), ConfigError> {
        if self.update_frequency < MIN_UPDATE_FREQUENCY {
            return Err(ConfigError::TooShort {
                key: "update_frequency",
                min: MIN_UPDATE_FREQUENCY,
            });
        }
        if self.usage_metrics.enabled && self.usage_metrics.interval < MIN_UPDATE_FREQUENCY {
            return Err(ConfigError::TooShort {
                key: "usage_metrics.interval",
                min: MIN_UPDATE_FREQUENCY,
            });
        }
        Ok(())
    }

    /// Files live at fixed places: relative paths would depend on the cwd, which `check-config`
    /// run by hand and the service do not share.
    fn check_paths(&self) -> Result<(), ConfigError> {
        let optional = [
            ("api_key_file", &self.api_key_file),
            ("cert_path", &self.cert_path),
            ("key_path", &self.key_path),
            ("ca_cert_path", &self.ca_cert_path),
        ];
        for (key, path) in [
            ("bpffs_dir", &self.bpffs_dir),
            ("state_file", &self.state_file),
        ]
        .into_iter()
        .chain(
            optional
                .into_iter()
                .filter_map(|(key, path)| Some((key, path.as_ref()?))),
        ) {
            if !path.is_absolute() {
                return Err(ConfigError::RelativePath {
                    key,
                    path: path.clone(),
                });
            }
        }
        let pins = &self.bpffs_dir;
        if pins.iter().any(|name| name.to_string_lossy().contains('.')) {
            return Err(ConfigError::DotInPinDir { path: pins.clone() });
        }
        if pins == Path::new("/sys/fs/bpf") || pins.parent().is_none() {
            return Err(ConfigError::PinDirIsRoot { path: pins.clone() });
        }
        Ok(())
    }

    /// Checks what the syntax alone doesn't, and normalizes lists (lowercase, no duplicates).
    fn validate(mut self) -> Result<Self, ConfigError> {
        let url = &self.api_url;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(ConfigError::ApiUrl {
                url: url.to_string(),
            });
        }

        // Exactly one way to authenticate.
        let cert = self.cert_path.is_some() || self.key_path.is_some();
        let ways = [
            ("api_key", self.api_key.is_some()),
            ("api_key_file", self.api_key_file.is_some()),
            ("cert_path/key_path", cert),
        ];
        let mut set = ways.iter().filter(|(_, on)| *on).map(|(name, _)| *name);
        match (set.next(), set.next()) {
            (None, _) => return Err(ConfigError::NoAuth),
            (Some(first), Some(second)) => {
                return Err(ConfigError::AuthConflict { first, second });
            }
            (Some(_), None) => {}
        }
        if let Some(key) = &self.api_key {
            check_api_key(key.expose(), "api_key")?;
        }
        match (&self.cert_path, &self.key_path) {
            (Some(_), None) => {
                return Err(ConfigError::IncompleteCert {
                    present: "cert_path",
                    missing: "key_path",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::IncompleteCert {
                    present: "key_path",
                    missing: "cert_path",
                });
            }
            _ => {}
        }
        if cert && url.scheme() != "https" {
            return Err(ConfigError::CertNeedsHttps {
                url: url.to_string(),
            });
        }

        self.check_durations()?;

        dedupe(&mut self.scopes);
        if self.scopes.is_empty() {
            return Err(ConfigError::EmptyList { key: "scopes" });
        }
        check_filter("origins", &self.origins)?;
        check_filter("scenarios_containing", &self.scenarios_containing)?;
        check_filter("scenarios_not_containing", &self.scenarios_not_containing)?;

        for kind in &mut self.supported_decisions_types {
            kind.make_ascii_lowercase();
        }
        dedupe(&mut self.supported_decisions_types);
        if self.supported_decisions_types.is_empty() {
            return Err(ConfigError::EmptyList {
                key: "supported_decisions_types",
            });
        }
        check_filter("supported_decisions_types", &self.supported_decisions_types)?;

        dedupe(&mut self.interfaces);
        if self.interfaces.is_empty() {
            return Err(ConfigError::EmptyList { key: "interfaces" });
        }
        for name in &self.interfaces {
            check_interface(name)?;
        }

        dedupe(&mut self.ports);
        if self.ports.is_empty() {
            return Err(ConfigError::EmptyList { key: "ports" });
        }
        if self.ports.contains(&0) {
            return Err(ConfigError::PortZero { key: "ports" });
        }
        self.tidy_allowlist()?;
        if !MAX_ADDRESSES.contains(&self.max_addresses) {
            return Err(ConfigError::OutOfRange {
                key: "max_addresses",
                value: self.max_addresses.into(),
                min: (*MAX_ADDRESSES.start()).into(),
                max: (*MAX_ADDRESSES.end()).into(),
            });
        }

        self.check_paths()?;
        if self.prometheus.enabled && self.prometheus.listen_port == 0 {
            return Err(ConfigError::PortZero {
                key: "prometheus.listen_port",
            });
        }
        Ok(self)
    }

    /// Drops repeated allow-list entries; the rest must fit in the kernel's tries, per family.
    fn tidy_allowlist(&mut self) -> Result<(), ConfigError> {
        dedupe(&mut self.allowlist);
        let v4 = self
            .allowlist
            .iter()
            .filter(|n| matches!(n, IpNet::V4(_)))
            .count();
        for (family, count) in [("IPv4", v4), ("IPv6", self.allowlist.len() - v4)] {
            if count > blocker_common::capacity::ALLOW as usize {
                return Err(ConfigError::TooLong {
                    key: "allowlist",
                    family,
                    count,
                    max: blocker_common::capacity::ALLOW,
                });
            }
        }
        Ok(())
    }

    /// The client settings; reads `api_key_file` if that is how the key is given.
    pub fn lapi_settings(&self) -> Result<LapiSettings, ConfigError> {
        let auth = match (
            &self.api_key,
            &self.api_key_file,
            &self.cert_path,
            &self.key_path,
        ) {
            (Some(key), _, _, _) => LapiAuth::ApiKey(key.clone()),
            (None, Some(path), _, _) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ApiKeyFile {
                        path: path.clone(),
                        source,
                    })?;
                let key = text.trim();
                check_api_key(key, "api_key_file")?;
                LapiAuth::ApiKey(ApiKey::new(key.to_owned()))
            }
            (None, None, Some(cert_path), Some(key_path)) => LapiAuth::Tls {
                cert_path: cert_path.clone(),
                key_path: key_path.clone(),
            },
            // `validate` already refused these.
            (None, None, _, _) => return Err(ConfigError::NoAuth),
        };
        let mut settings = LapiSettings::new(self.api_url.clone(), auth);
        settings.ca_cert_path.clone_from(&self.ca_cert_path);
        settings.insecure_skip_verify = self.insecure_skip_verify;
        settings.scopes = self.scopes.iter().map(|s| s.as_str().to_owned()).collect();
        settings.origins.clone_from(&self.origins);
        settings
            .scenarios_containing
            .clone_from(&self.scenarios_containing);
        settings
            .scenarios_not_containing
            .clone_from(&self.scenarios_not_containing);
        Ok(settings)
    }

    /// The merged configuration (defaults filled in) as YAML, for `blocker show-config`. The
    /// API key shows as `<redacted>`.
    pub fn to_yaml_redacted(&self) -> Result<String, ConfigError> {
        serde_yaml_ng::to_string(self).map_err(|source| ConfigError::Serialize { source })
    }

    #[must_use]
    pub fn api_url(&self) -> &Url {
        &self.api_url
    }

    #[must_use]
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_cert_path.as_deref()
    }

    #[must_use]
    pub fn insecure_skip_verify(&self) -> bool {
        self.insecure_skip_verify
    }

    #[must_use]
    pub fn update_frequency(&self) -> Duration {
        self.update_frequency
    }

    #[must_use]
    pub fn log_level(&self) -> LogLevel {
        self.log_level
    }

    #[must_use]
    pub fn log_mode(&self) -> LogMode {
        self.log_mode
    }

    #[must_use]
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    #[must_use]
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    #[must_use]
    pub fn scenarios_containing(&self) -> &[String] {
        &self.scenarios_containing
    }

    #[must_use]
    pub fn scenarios_not_containing(&self) -> &[String] {
        &self.scenarios_not_containing
    }

    /// Lowercase, no duplicates.
    #[must_use]
    pub fn supported_decisions_types(&self) -> &[String] {
        &self.supported_decisions_types
    }

    /// Whether decisions of this `type` are enforced (case-insensitive).
    #[must_use]
    pub fn supports_decision_type(&self, kind: &str) -> bool {
        self.supported_decisions_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(kind))
    }

    /// No duplicates, never empty.
    #[must_use]
    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    #[must_use]
    pub fn xdp_mode(&self) -> XdpMode {
        self.xdp_mode
    }

    /// What the address tables are sized for.
    #[must_use]
    pub fn capacity(&self) -> crate::loader::Capacity {
        crate::loader::Capacity {
            addresses: self.max_addresses,
        }
    }

    /// No duplicates, no 0, never empty.
    #[must_use]
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Networks with host bits cleared, IPv4-mapped entries as IPv4, no duplicates.
    #[must_use]
    pub fn allowlist(&self) -> &[IpNet] {
        &self.allowlist
    }

    #[must_use]
    pub fn deny_log(&self) -> bool {
        self.deny_log
    }

    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    #[must_use]
    pub fn bpffs_dir(&self) -> &Path {
        &self.bpffs_dir
    }

    #[must_use]
    pub fn state_file(&self) -> &Path {
        &self.state_file
    }

    #[must_use]
    pub fn prometheus(&self) -> &PrometheusConfig {
        &self.prometheus
    }

    #[must_use]
    pub fn usage_metrics(&self) -> &UsageMetricsConfig {
        &self.usage_metrics
    }

    /// The usage metrics period, or `None` when they are off.
    #[must_use]
    pub fn usage_metrics_interval(&self) -> Option<Duration> {
        self.usage_metrics
            .enabled
            .then_some(self.usage_metrics.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "\
api_url: http://127.0.0.1:8080/
api_key: s3cr3t-key
interfaces: [eth0]
";

    fn no_env(_: &str) -> Result<String, VarError> {
        Err(VarError::NotPresent)
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_with_env(text, &no_env)
    }

    fn parse_err(text: &str) -> String {
        error_chain(&parse(text).unwrap_err())
    }

    fn with(extra: &str) -> String {
        format!("{MINIMAL}{extra}\n")
    }

    #[test]
    fn minimal_config_has_all_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.api_url().as_str(), "http://127.0.0.1:8080/");
        assert!(!c.insecure_skip_verify());
        assert_eq!(c.update_frequency(), Duration::from_secs(10));
        assert_eq!(c.log_level(), LogLevel::Info);
        assert_eq!(c.log_mode(), LogMode::Stdout);
        assert_eq!(c.scopes(), [Scope::Ip, Scope::Range]);
        assert!(c.origins().is_empty());
        assert!(c.scenarios_containing().is_empty());
        assert!(c.scenarios_not_containing().is_empty());
        assert_eq!(c.supported_decisions_types(), ["ban"]);
        assert_eq!(c.interfaces(), ["eth0"]);
        assert_eq!(c.xdp_mode(), XdpMode::Auto);
        assert_eq!(c.ports(), [25, 465, 587, 143, 993, 110, 995]);
        assert!(c.allowlist().is_empty());
        assert_eq!(c.mode(), Mode::Enforce);
        assert_eq!(c.bpffs_dir(), Path::new("/sys/fs/bpf/blocker"));
        assert!(c.prometheus().enabled());
        assert_eq!(
            c.prometheus().listen_socket(),
            "127.0.0.1:60602".parse().unwrap()
        );
        assert_eq!(c.usage_metrics_interval(), Some(Duration::from_mins(15)));

        let s = c.lapi_settings().unwrap();
        assert_eq!(
            s.auth,
            LapiAuth::ApiKey(ApiKey::new("s3cr3t-key".to_owned()))
        );
        assert_eq!(s.scopes, ["ip", "range"]);
        assert!(s.origins.is_empty());
    }

    #[test]
    fn full_config() {
        let c = parse(
            "\
api_url: https://lapi.example:8080
cert_path: /etc/crowdsec/tls/bouncer.pem
key_path: /etc/crowdsec/tls/bouncer-key.pem
ca_cert_path: /etc/crowdsec/tls/ca.pem
insecure_skip_verify: true
update_frequency: 1m30s
log_level: warning
log_mode: stdout
scopes: [Ip]
origins: [crowdsec, 'lists:firehol']
scenarios_containing: [smtp]
scenarios_not_containing: [http]
supported_decisions_types: [Ban, captcha]
interfaces: [eth0, eth1, eth0]
xdp_mode: generic
ports: [25, 587, 25]
allowlist: [198.51.100.7, 203.0.113.9/24, '2001:db8::1', '::ffff:198.51.100.1']
mode: observe
bpffs_dir: /sys/fs/bpf/other
prometheus:
  enabled: false
  listen_addr: '::1'
  listen_port: '9999'
usage_metrics:
  enabled: false
  interval: 0s
",
        )
        .unwrap();
        assert_eq!(c.update_frequency(), Duration::from_secs(90));
        assert_eq!(c.log_level(), LogLevel::Warn);
        assert_eq!(c.scopes(), [Scope::Ip]);
        assert_eq!(c.supported_decisions_types(), ["ban", "captcha"]);
        assert!(c.supports_decision_type("CAPTCHA"));
        assert!(!c.supports_decision_type("throttle"));
        assert_eq!(c.interfaces(), ["eth0", "eth1"]);
        assert_eq!(c.xdp_mode(), XdpMode::Generic);
        assert_eq!(c.ports(), [25, 587]);
        let allow: Vec<String> = c.allowlist().iter().map(ToString::to_string).collect();
        assert_eq!(
            allow,
            [
                "198.51.100.7/32",
                "203.0.113.0/24",
                "2001:db8::1/128",
                "198.51.100.1/32"
            ]
        );
        assert_eq!(c.mode(), Mode::Observe);
        assert!(!c.prometheus().enabled());
        assert_eq!(
            c.prometheus().listen_socket(),
            "[::1]:9999".parse().unwrap()
        );
        assert_eq!(c.usage_metrics_interval(), None);

        let s = c.lapi_settings().unwrap();
        assert_eq!(
            s.auth,
            LapiAuth::Tls {
                cert_path: "/etc/crowdsec/tls/bouncer.pem".into(),
                key_path: "/etc/crowdsec/tls/bouncer-key.pem".into(),
            }
        );
        assert_eq!(s.ca_cert_path, Some("/etc/crowdsec/tls/ca.pem".into()));
        assert!(s.insecure_skip_verify);
        assert_eq!(s.scopes, ["ip"]);
        assert_eq!(s.origins, ["crowdsec", "lists:firehol"]);
        assert_eq!(s.scenarios_containing, ["smtp"]);
        assert_eq!(s.scenarios_not_containing, ["http"]);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse_err(&with("deny_actoin: DROP"));
        assert!(err.contains("unknown field `deny_actoin`"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        let err = parse_err(&with("prometheus:\n  listen_adr: 127.0.0.1"));
        assert!(err.contains("prometheus"), "{err}");
        assert!(err.contains("unknown field `listen_adr`"), "{err}");
    }

    #[test]
    fn missing_required_keys() {
        let err = parse_err("api_key: k\ninterfaces: [eth0]\n");
        assert!(err.contains("missing field `api_url`"), "{err}");
        let err = parse_err("api_url: http://127.0.0.1:8080/\napi_key: k\n");
        assert!(err.contains("missing field `interfaces`"), "{err}");
        let err = parse_err(&with("").replace("[eth0]", "[]"));
        assert_eq!(err, "interfaces must list at least one entry");
    }

    #[test]
    fn bad_values_are_named() {
        for (extra, want) in [
            (
                "update_frequency: 10x",
                "update_frequency: invalid duration \"10x\"",
            ),
            (
                "update_frequency: 10",
                "update_frequency: invalid duration \"10\": missing unit",
            ),
            (
                "update_frequency: -1s",
                "update_frequency: invalid duration \"-1s\": negative",
            ),
            (
                "update_frequency: 0s",
                "update_frequency must be at least 100ms",
            ),
            (
                "update_frequency: 1ns",
                "update_frequency must be at least 100ms",
            ),
            (
                "usage_metrics: {interval: 4 days}",
                "usage_metrics.interval: invalid duration \"4 days\"",
            ),
            (
                "usage_metrics: {interval: 0s}",
                "usage_metrics.interval must be at least 100ms",
            ),
            ("log_level: verbose", "log_level: unknown variant `verbose`"),
            ("log_mode: syslog", "log_mode: unknown variant `syslog`"),
            ("xdp_mode: offload", "xdp_mode: unknown variant `offload`"),
            ("mode: drop", "mode: unknown variant `drop`"),
            (
                "scopes: [ip, country]",
                "scopes[1]: unsupported scope \"country\"",
            ),
            ("scopes: []", "scopes must list at least one entry"),
            (
                "ports: [25, 70000]",
                "ports[1]: invalid value: integer `70000`",
            ),
            ("ports: [25, 0]", "ports must not be 0"),
            ("ports: []", "ports must list at least one entry"),
            (
                "origins: ['a,b']",
                "origins entry \"a,b\" is invalid: contains a comma",
            ),
            (
                "supported_decisions_types: []",
                "supported_decisions_types must list at least one entry",
            ),
            (
                "bpffs_dir: relative/dir",
                "bpffs_dir must be an absolute path, not \"relative/dir\"",
            ),
            (
                "bpffs_dir: /sys/fs/bpf/blocker.v2",
                "bpffs_dir /sys/fs/bpf/blocker.v2 has a dot in a name, which bpffs refuses",
            ),
            (
                "bpffs_dir: /sys/fs/bpf",
                "bpffs_dir must be a folder of its own under a BPF filesystem, not /sys/fs/bpf",
            ),
            (
                "ca_cert_path: certs/ca.pem",
                "ca_cert_path must be an absolute path, not \"certs/ca.pem\"",
            ),
            (
                // Empty is not "unset" (leave the key out for that): say what was there.
                "ca_cert_path: \"\"",
                "ca_cert_path must be an absolute path, not \"\"",
            ),
            (
                "prometheus: {listen_addr: mailhost}",
                "prometheus.listen_addr: invalid IP address \"mailhost\"",
            ),
            (
                "prometheus: {listen_port: 0}",
                "prometheus.listen_port must not be 0",
            ),
            (
                "prometheus: {listen_port: '99999'}",
                "prometheus.listen_port: invalid port \"99999\"",
            ),
            (
                "insecure_skip_verify: maybe",
                "insecure_skip_verify: invalid type: string \"maybe\"",
            ),
        ] {
            let err = parse_err(&with(extra));
            assert!(err.contains(want), "{extra}: {err}");
        }
    }

    #[test]
    fn bad_allowlist_entry_is_named() {
        let err = parse_err(&with("allowlist:\n  - 198.51.100.1\n  - 198.51.100.300/24"));
        assert!(err.contains("allowlist[1]"), "{err}");
        assert!(err.contains("\"198.51.100.300/24\""), "{err}");
        assert!(err.contains("line 6"), "{err}");
    }

    #[test]
    fn bad_interface_names() {
        for name in ["'a/b'", "'eth0:1'", "'.'", "averyveryverylongname", "''"] {
            let err = parse_err(&with("").replace("[eth0]", &format!("[{name}]")));
            assert!(err.starts_with("interfaces entry"), "{name}: {err}");
        }
    }

    #[test]
    fn api_url_checks() {
        let err = parse_err(&MINIMAL.replace("http://127.0.0.1:8080/", "127.0.0.1:8080"));
        assert!(
            err.contains("api_url: invalid url \"127.0.0.1:8080\""),
            "{err}"
        );
        let err = parse_err(&MINIMAL.replace("http://127.0.0.1:8080/", "localhost:8080"));
        assert_eq!(
            err,
            "api_url localhost:8080 must be an http:// or https:// url with a host"
        );
    }

    #[test]
    fn exactly_one_auth() {
        let base = "api_url: https://127.0.0.1:8080/\ninterfaces: [eth0]\n";
        let err = parse_err(base);
        assert_eq!(
            err,
            "no lapi credentials: set api_key, api_key_file, or cert_path and key_path"
        );
        let err = parse_err(&format!("{base}api_key: k\napi_key_file: /k"));
        assert_eq!(
            err,
            "api_key and api_key_file are exclusive: authenticate one way only"
        );
        let err = parse_err(&format!("{base}api_key: k\ncert_path: /c\nkey_path: /k"));
        assert_eq!(
            err,
            "api_key and cert_path/key_path are exclusive: authenticate one way only"
        );
        let err = parse_err(&format!("{base}cert_path: /c"));
        assert_eq!(err, "cert_path is set without key_path");
        let err = parse_err(&format!("{base}key_path: /k"));
        assert_eq!(err, "key_path is set without cert_path");
        let err = parse_err(&format!("{base}api_key: ''"));
        assert_eq!(err, "api_key is empty");
        let err = parse_err(&format!("{base}api_key: 'a b'"));
        assert_eq!(err, "api_key must be printable ascii without spaces");
        let err = parse_err(
            "api_url: http://127.0.0.1:8080/\ninterfaces: [eth0]\ncert_path: /c\nkey_path: /k\n",
        );
        assert_eq!(
            err,
            "cert_path and key_path need an https api_url, not http://127.0.0.1:8080/"
        );
    }

    #[test]
    fn api_key_file_is_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("blocker-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "  from-file-key\n").unwrap();
        let text = format!(
            "api_url: http://127.0.0.1:8080/\ninterfaces: [eth0]\napi_key_file: {}\n",
            path.display()
        );
        let c = parse(&text).unwrap();
        assert_eq!(
            c.lapi_settings().unwrap().auth,
            LapiAuth::ApiKey(ApiKey::new("from-file-key".to_owned()))
        );
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(
            error_chain(&c.lapi_settings().unwrap_err()),
            "api_key_file is empty"
        );
        std::fs::remove_file(&path).unwrap();
        let err = error_chain(&c.lapi_settings().unwrap_err());
        assert!(err.starts_with("cannot read api_key_file /"), "{err}");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn env_expansion() {
        let env = |name: &str| match name {
            "API_KEY" => Ok("from-env".to_owned()),
            "NIC" => Ok("eth7".to_owned()),
            _ => Err(VarError::NotPresent),
        };
        let text = "\
api_url: http://127.0.0.1:8080/
api_key: ${API_KEY}
# a comment may mention ${UNSET_IN_COMMENT}
interfaces: [${NIC}, lo]
";
        let c = Config::from_yaml_with_env(text, &env).unwrap();
        assert_eq!(c.interfaces(), ["eth7", "lo"]);
        assert_eq!(
            c.lapi_settings().unwrap().auth,
            LapiAuth::ApiKey(ApiKey::new("from-env".to_owned()))
        );

        let err = Config::from_yaml_with_env(&text.replace("${NIC}", "${MISSING_NIC}"), &env)
            .unwrap_err();
        assert_eq!(
            error_chain(&err),
            "cannot expand ${MISSING_NIC} on line 4: environment variable not found"
        );
        let err = Config::from_yaml_with_env(&text.replace("${NIC}", "${NIC"), &env).unwrap_err();
        assert_eq!(error_chain(&err), "unterminated ${ on line 4");
        let err = Config::from_yaml_with_env(&text.replace("${NIC}", "${1NIC}"), &env).unwrap_err();
        assert_eq!(
            error_chain(&err),
            "invalid environment variable name \"1NIC\" on line 4"
        );
        // `$NAME` without braces is not expanded.
        let c = Config::from_yaml_with_env(&with("origins: [$NIC]"), &env).unwrap();
        assert_eq!(c.origins(), ["$NIC"]);
    }

    #[test]
    fn the_metrics_listen_on_localhost_as_the_firewall_bouncer_writes_it() {
        let c = parse(&with(
            "prometheus: {listen_addr: localhost, listen_port: '60603'}",
        ))
        .unwrap();
        assert_eq!(
            c.prometheus().listen_socket(),
            "127.0.0.1:60603".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn a_firewall_bouncer_configuration_has_all_its_own_keys_named_at_once() {
        // Every key of the firewall bouncer's packaged file, nftables chosen at install.
        let copied = "mode: nftables\nupdate_frequency: 10s\nlog_mode: file\nlog_dir: /var/log/\n\
            log_level: info\nlog_compression: true\nlog_max_size: 100\nlog_max_backups: 3\n\
            log_max_age: 30\napi_url: http://127.0.0.1:8080/\napi_key: s3cr3t-key\n\
            insecure_skip_verify: false\ndisable_ipv6: false\ndeny_action: DROP\n\
            deny_log: false\nsupported_decisions_types: [ban]\n\
            blacklists_ipv4: crowdsec-blacklists\nblacklists_ipv6: crowdsec6-blacklists\n\
            ipset_type: nethash\niptables_chains: [INPUT]\n\
            nftables:\n  ipv4: {enabled: true, table: crowdsec, chain: crowdsec-chain}\n\
            nftables_hooks: [input, forward]\npf: {anchor_name: ''}\n\
            prometheus: {enabled: false, listen_addr: 127.0.0.1, listen_port: 60601}\n";
        assert_eq!(
            parse_err(copied),
            "log_dir, log_compression, log_max_size, log_max_backups, log_max_age, \
             disable_ipv6, deny_action, blacklists_ipv4, blacklists_ipv6, ipset_type, \
             iptables_chains, nftables, nftables_hooks, pf, mode: nftables, log_mode: file: \
             crowdsec-firewall-bouncer's settings, not blocker's (blocker filters both families \
             in XDP, drops silently, logs to the journal, and its mode is enforce or observe): \
             remove them"
        );
        // A key of its own alone, too; a shared key it sets right is fine.
        assert!(parse_err(&with("disable_ipv6: false")).starts_with("disable_ipv6: "));
        assert!(parse(&with("deny_log: true\nmode: enforce")).is_ok());
    }

    #[test]
    fn load_names_the_file() {
        let err = Config::load("/nonexistent/blocker.yaml").unwrap_err();
        assert!(
            error_chain(&err)
                .starts_with("cannot read configuration file /nonexistent/blocker.yaml: "),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("blocker-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("blocker.yaml");
        std::fs::write(&path, with("bogus: 1")).unwrap();
        let err = error_chain(&Config::load(&path).unwrap_err());
        assert!(
            err.starts_with(&format!("invalid configuration file {}: ", path.display())),
            "{err}"
        );
        assert!(err.contains("unknown field `bogus`"), "{err}");
        std::fs::write(&path, MINIMAL).unwrap();
        assert!(Config::load(&path).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `files` (name, text) written to a fresh folder, and `blocker.yaml` loaded from it.
    fn load_from(test: &str, files: &[(&str, &str)]) -> (Result<Config, ConfigError>, PathBuf) {
        let dir = std::env::temp_dir().join(format!("blocker-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let loaded = Config::load_with_env(&dir.join("blocker.yaml"), &no_env);
        std::fs::remove_dir_all(&dir).unwrap();
        (loaded, dir)
    }

    #[test]
    fn the_local_overlay_merges_mappings_replaces_values_and_null_removes_a_key() {
        let base = with(
            "update_frequency: 30s\nports: [25, 587]\nallowlist: [198.51.100.0/24]\n\
             prometheus: {enabled: true, listen_port: 60700}",
        );
        let overlay = "# kept across upgrades\nports: [993]\nprometheus: {listen_port: 60701}\n\
                       allowlist: null\n";
        let (c, _) = load_from(
            "overlay",
            &[("blocker.yaml", &base), ("blocker.yaml.local", overlay)],
        );
        let c = c.unwrap();
        assert_eq!(c.ports(), [993]);
        assert_eq!(
            (c.prometheus().enabled(), c.prometheus().listen_port()),
            (true, 60701)
        );
        assert!(c.allowlist().is_empty(), "null removed the key");
        assert_eq!(c.update_frequency(), Duration::from_secs(30));
        assert_eq!(c.api_url().as_str(), "http://127.0.0.1:8080/");

        // The file names a variable that is unset, in a value the overlay replaces: fine, and
        // a plain number is a string where a string is wanted, as in one file.
        let (c, _) = load_from(
            "overlay-env",
            &[
                ("blocker.yaml", &MINIMAL.replace("s3cr3t-key", "${API_KEY}")),
                ("blocker.yaml.local", "api_key: 12345678\n"),
            ],
        );
        let c = c.unwrap();
        assert_eq!(c.api_key.as_ref().map(ApiKey::expose), Some("12345678"));

        // One of comments only changes nothing.
        let (c, _) = load_from(
            "overlay-empty",
            &[
                ("blocker.yaml", &base),
                ("blocker.yaml.local", "# nothing\n"),
            ],
        );
        assert_eq!(c.unwrap().ports(), [25, 587]);
    }

    #[test]
    fn overlay_errors_name_the_file_and_the_key() {
        let base = with("prometheus: {listen_port: 60700}");
        let cases = [
            (
                "prometheus: 60701\n",
                "invalid configuration file DIR/blocker.yaml.local: \
                 prometheus: a scalar cannot replace the file's mapping",
            ),
            (
                "interfaces: eth1\n",
                "invalid configuration file DIR/blocker.yaml.local: \
                 interfaces: a scalar cannot replace the file's sequence",
            ),
            (
                "\napi_key: ${BLOCKER_KEY}\n",
                "invalid configuration file DIR/blocker.yaml with its overlay \
                 DIR/blocker.yaml.local: cannot expand ${BLOCKER_KEY} in api_key: environment \
                 variable not found",
            ),
            (
                "update_frequency: 10ms\n",
                "invalid configuration file DIR/blocker.yaml with its overlay \
                 DIR/blocker.yaml.local: update_frequency must be at least 100ms",
            ),
        ];
        for (overlay, want) in cases {
            let (c, dir) = load_from(
                "overlay-errors",
                &[("blocker.yaml", &base), ("blocker.yaml.local", overlay)],
            );
            let want = want.replace("DIR", &dir.display().to_string());
            assert_eq!(error_chain(&c.unwrap_err()), want, "overlay {overlay:?}");
        }
        // A variable that is unset in a value the overlay keeps, even in a flow sequence.
        let (c, dir) = load_from(
            "overlay-unset",
            &[
                ("blocker.yaml", &MINIMAL.replace("[eth0]", "[${MAIL_NIC}]")),
                ("blocker.yaml.local", "ports: [25]\n"),
            ],
        );
        let err = error_chain(&c.unwrap_err());
        assert!(
            err.ends_with(&format!(
                "blocker.yaml with its overlay {}/blocker.yaml.local: cannot expand ${{MAIL_NIC}} \
                 in interfaces: environment variable not found",
                dir.display()
            )),
            "{err}"
        );
        let (c, _) = load_from(
            "overlay-unknown",
            &[
                ("blocker.yaml", &base),
                ("blocker.yaml.local", "bogus: 1\n"),
            ],
        );
        let err = error_chain(&c.unwrap_err());
        assert!(err.contains("with its overlay"), "{err}");
        assert!(err.contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn redaction() {
        let c = parse(&with("allowlist: [198.51.100.0/24]")).unwrap();
        let yaml = c.to_yaml_redacted().unwrap();
        assert!(!yaml.contains("s3cr3t"), "{yaml}");
        assert!(yaml.contains("api_key: <redacted>"), "{yaml}");
        assert!(yaml.contains("update_frequency: 10s"), "{yaml}");
        assert!(yaml.contains("interval: 15m"), "{yaml}");
        assert!(yaml.contains("- 198.51.100.0/24"), "{yaml}");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");

        // What show-config prints reads back as the same configuration (bar the key).
        let back = parse(&yaml.replace("<redacted>", "s3cr3t-key")).unwrap();
        assert_eq!(back.to_yaml_redacted().unwrap(), yaml);
    }
}
