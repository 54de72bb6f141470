//! The Prometheus endpoint: `GET /metrics`, on `127.0.0.1:60602` by default (the firewall
//! bouncer serves its own the same way, on 60601).
//!
//! The daemon keeps a [`SharedSnapshot`] up to date (about once a second): the kernel's
//! counters summed over CPUs, the active decisions counted by origin and address family, and
//! its own LAPI counters. A scrape renders the latest snapshot with `prometheus-client` in the
//! `OpenMetrics` text format, so a scrape never touches the maps.
//!
//! Every origin slot (`blocker_common::origin::NAMES`) is emitted for both address families,
//! zero or not: a series that appears only with its first drop would hide that drop from
//! `rate()`/`increase()`, and 8 origins × 2 families is few series.

use std::{
    borrow::Borrow,
    collections::BTreeMap,
    fmt,
    future::Future,
    net::SocketAddr,
    sync::{Arc, PoisonError, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use blocker_common::{FamilyStats, family, origin};
use ipnet::IpNet;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::{Registry, Unit},
};

use crate::maps::Ban;

/// Path of the scrape endpoint.
pub const PATH: &str = "/metrics";

/// `Content-Type` of a scrape: what `prometheus-client`'s text encoder writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label value of the non-IP family (`family::OTHER`) on the per-family counters.
const OTHER_FAMILY: &str = "other";

/// Address family of a ban or a counter: the `ip_type` label, as the firewall bouncer writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpType {
    Ipv4,
    Ipv6,
}

impl IpType {
    /// Both families, in label order.
    pub const ALL: [IpType; 2] = [IpType::Ipv4, IpType::Ipv6];

    /// `"ipv4"` or `"ipv6"`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            IpType::Ipv4 => "ipv4",
            IpType::Ipv6 => "ipv6",
        }
    }

    /// The family of a prefix.
    #[must_use]
    pub fn of(net: &IpNet) -> IpType {
        match net {
            IpNet::V4(_) => IpType::Ipv4,
            IpNet::V6(_) => IpType::Ipv6,
        }
    }

    /// Index of the family's slot in the kernel's `STATS` map.
    #[must_use]
    pub fn stats_slot(self) -> usize {
        let slot = match self {
            IpType::Ipv4 => family::IPV4,
            IpType::Ipv6 => family::IPV6,
        };
        slot as usize
    }
}

impl fmt::Display for IpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The origin label of a kernel origin slot; an unknown slot is `"other"`.
#[must_use]
pub fn origin_label(slot: u32) -> &'static str {
    usize::try_from(slot)
        .ok()
        .and_then(|slot| origin::NAMES.get(slot))
        .copied()
        .unwrap_or(origin::NAMES[origin::OTHER as usize])
}

/// Everything the metrics show, read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Kernel counters summed over CPUs, indexed by `family::*`.
    pub stats: [FamilyStats; family::COUNT as usize],
    /// Active decisions (banned prefixes the kernel enforces) by origin label and family.
    /// Only non-zero entries need be present.
    pub active: BTreeMap<(String, IpType), u64>,
    /// Requests the daemon made to LAPI (decision pulls).
    pub lapi_requests: u64,
    /// Of those, the ones that failed.
    pub lapi_failures: u64,
    /// End of the last successful pull; `None` before the first one.
    pub last_sync: Option<SystemTime>,
    /// End of the last successful full (`startup=true`) pull; `None` before the first one.
    pub last_full_sync: Option<SystemTime>,
    /// Bans and removals the kernel refused, waiting to be tried again.
    pub pending_writes: u64,
}

impl Snapshot {
    /// A snapshot of `stats` and of the bans that are live at `clock_now`
    /// (`clock::now_ns`, what the kernel compares `expires_at_ns` with: an expired entry
    /// the daemon has not removed yet no longer blocks, so it is not counted). LAPI fields
    /// are left at zero for the caller to fill in.
    #[must_use]
    pub fn from_bans(
        stats: [FamilyStats; family::COUNT as usize],
        bans: impl IntoIterator<Item = impl Borrow<Ban>>,
        clock_now: u64,
    ) -> Snapshot {
        let mut active = BTreeMap::new();
        for ban in bans {
            let ban = ban.borrow();
            if ban.expires_at_ns <= clock_now {
                continue;
            }
            let key = (origin_label(ban.origin).to_owned(), IpType::of(&ban.net));
            *active.entry(key).or_insert(0) += 1;
        }
        Snapshot {
            stats,
            active,
            ..Snapshot::default()
        }
    }

    /// The kernel counters of one family.
    #[must_use]
    pub fn family(&self, ip_type: IpType) -> &FamilyStats {
        &self.stats[ip_type.stats_slot()]
    }

    /// Active decisions of one origin label and family.
    #[must_use]
    pub fn active_decisions(&self, origin: &str, ip_type: IpType) -> u64 {
        self.active
            .get(&(origin.to_owned(), ip_type))
            .copied()
            .unwrap_or(0)
    }
}

/// The snapshot the daemon writes and scrapes read.
pub type SharedSnapshot = Arc<RwLock<Snapshot>>;

/// A new [`SharedSnapshot`] holding `snapshot`.
#[must_use]
pub fn shared(snapshot: Snapshot) -> SharedSnapshot {
    Arc::new(RwLock::new(snapshot))
}

/// Seconds since the Unix epoch, as a float (0 for times before it).
fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// Renders `snapshot` in the `OpenMetrics` text format, `# EOF` included.
#[must_use]
pub fn render(snapshot: &Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot.clone())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// Writes one snapshot's metric families on each scrape.
#[derive(Debug)]
struct SnapshotCollector(Snapshot);

/// One metric family: name (without `_total`), help, unit, type.
struct Descriptor {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
}

impl Descriptor {
    const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            unit: None,
            kind: MetricType::Counter,
        }
    }

    const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            unit: None,
            kind: MetricType::Gauge,
        }
    }

    fn with_unit(mut self, unit: Unit) -> Self {
        self.unit = Some(unit);
        self
    }

    /// Writes the family and its series: `(labels, value)`.
    fn encode<'l, V>(
        &self,
        encoder: &mut DescriptorEncoder,
        series: impl IntoIterator<Item = (Vec<(&'static str, &'l str)>, V)>,
    ) -> fmt::Result
    where
        V: Value,
    {
        let mut family =
            encoder.encode_descriptor(self.name, self.help, self.unit.as_ref(), self.kind)?;
        for (labels, value) in series {
            let labels = labels.as_slice();
            value.encode_as(self.kind, family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// Writes the family with its one unlabelled series.
    fn encode_one(&self, encoder: &mut DescriptorEncoder, value: impl Value) -> fmt::Result {
        let family =
            encoder.encode_descriptor(self.name, self.help, self.unit.as_ref(), self.kind)?;
        value.encode_as(self.kind, family)
    }
}

/// A series value: counters and gauges of `u64`, gauges of `f64`.
trait Value {
    fn encode_as(
        self,
        kind: MetricType,
        encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> fmt::Result;
}

impl Value for u64 {
    fn encode_as(
        self,
        kind: MetricType,
        encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> fmt::Result {
        match kind {
            MetricType::Counter => ConstCounter::new(self).encode(encoder),
            _ => ConstGauge::new(self).encode(encoder),
        }
    }
}

impl Value for f64 {
    fn encode_as(
        self,
        _kind: MetricType,
        encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> fmt::Result {
        ConstGauge::new(self).encode(encoder)
    }
}

impl SnapshotCollector {
    /// One series per origin slot and family, of a per-origin kernel counter.
    fn per_origin(
        &self,
        counter: fn(&FamilyStats) -> &[u64; origin::COUNT],
    ) -> Vec<(Vec<(&'static str, &'static str)>, u64)> {
        let mut series = Vec::with_capacity(origin::COUNT * IpType::ALL.len());
        for ip_type in IpType::ALL {
            let values = counter(self.0.family(ip_type));
            for (name, value) in origin::NAMES.iter().zip(values) {
                series.push((
                    vec![("origin", *name), ("ip_type", ip_type.label())],
                    *value,
                ));
            }
        }
        series
    }

    /// One series per family of a per-family counter; `with_other` adds the non-IP family.
    fn per_family(
        &self,
        counter: fn(&FamilyStats) -> u64,
        with_other: bool,
    ) -> Vec<(Vec<(&'static str, &'static str)>, u64)> {
        let mut series: Vec<_> = IpType::ALL
            .iter()
            .map(|ip_type| {
                (
                    vec![("ip_type", ip_type.label())],
                    counter(self.0.family(*ip_type)),
                )
            })
            .collect();
        if with_other {
            let other = &self.0.stats[family::OTHER as usize];
            series.push((vec![("ip_type", OTHER_FAMILY)], counter(other)));
        }
        series
    }

    /// Active decisions: every origin slot for both families, then any other origin label
    /// the snapshot holds.
    fn active(&self) -> Vec<(Vec<(&'static str, &str)>, u64)> {
        let mut series = Vec::new();
        for ip_type in IpType::ALL {
            for name in origin::NAMES {
                let value = self.0.active_decisions(name, ip_type);
                series.push((vec![("origin", name), ("ip_type", ip_type.label())], value));
            }
        }
        for ((name, ip_type), value) in &self.0.active {
            if !origin::NAMES.contains(&name.as_str()) {
                series.push((
                    vec![("origin", name.as_str()), ("ip_type", ip_type.label())],
                    *value,
                ));
            }
        }
        series
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        let s = &self.0;
        Descriptor::counter(
            "blocker_dropped_packets",
            "SYNs dropped because their source is banned, by decision origin",
        )
        .encode(e, self.per_origin(|f| &f.dropped_packets))?;
        Descriptor::counter(
            "blocker_dropped",
            "Bytes (whole frames) of the dropped SYNs, by decision origin",
        )
        .with_unit(Unit::Bytes)
        .encode(e, self.per_origin(|f| &f.dropped_bytes))?;
        Descriptor::counter(
            "blocker_observed_packets",
            "SYNs that would have been dropped, in observe mode, by decision origin",
        )
        .encode(e, self.per_origin(|f| &f.observed_packets))?;
        Descriptor::counter(
            "blocker_syn_inspected",
            "SYNs to a protected port, each looked up in the ban maps",
        )
        .encode(e, self.per_family(|f| f.syn_protected, false))?;
        Descriptor::counter(
            "blocker_packets_seen",
            "Every packet the XDP program saw (ip_type other: not IP)",
        )
        .encode(e, self.per_family(|f| f.seen, true))?;
        Descriptor::counter(
            "blocker_allowlisted",
            "Banned SYNs passed because an allow-list prefix covers the source",
        )
        .encode(e, self.per_family(|f| f.allowlisted, false))?;
        Descriptor::counter(
            "blocker_malformed",
            "Packets with truncated or malformed headers",
        )
        .encode(e, self.per_family(|f| f.malformed, true))?;
        Descriptor::gauge(
            "blocker_active_decisions",
            "Banned prefixes the kernel enforces now, by decision origin",
        )
        .encode(e, self.active())?;
        Descriptor::counter(
            "blocker_lapi_requests",
            "Decision pulls sent to the CrowdSec LAPI",
        )
        .encode_one(e, s.lapi_requests)?;
        Descriptor::counter(
            "blocker_lapi_failures",
            "Decision pulls to the CrowdSec LAPI that failed",
        )
        .encode_one(e, s.lapi_failures)?;
        Descriptor::gauge(
            "blocker_map_writes_pending",
            "Bans and removals the kernel refused, waiting to be tried again",
        )
        .encode_one(e, s.pending_writes)?;
        Descriptor::gauge(
            "blocker_last_sync_timestamp",
            "Unix time of the last successful decision pull (0: none yet)",
        )
        .with_unit(Unit::Seconds)
        .encode_one(e, s.last_sync.map_or(0.0, unix_seconds))?;
        Descriptor::gauge(
            "blocker_last_full_sync_timestamp",
            "Unix time of the last successful full (startup=true) decision pull (0: none yet)",
        )
        .with_unit(Unit::Seconds)
        .encode_one(e, s.last_full_sync.map_or(0.0, unix_seconds))
    }
}

/// Errors of the Prometheus endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for prometheus scrapes on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the prometheus listening socket has no local address")]
    LocalAddr {
        #[source]
        source: std::io::Error,
    },
    #[error("the prometheus endpoint on {addr} failed")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The scrape handler: renders the latest snapshot, read under the lock and rendered after.
async fn scrape(State(shared): State<SharedSnapshot>) -> impl IntoResponse {
    let snapshot = shared
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&snapshot))
}

/// The endpoint's routes: `GET /metrics`; anything else is 404.
pub fn router(shared: SharedSnapshot) -> Router {
    Router::new().route(PATH, get(scrape)).with_state(shared)
}

/// Binds the endpoint's socket, so the daemon can fail at start-up (or a test can learn the
/// port it got for `127.0.0.1:0`) before serving.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, MetricsError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serves scrapes on `listener` until `shutdown` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    shared: SharedSnapshot,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError> {
    let addr = listener
        .local_addr()
        .map_err(|source| MetricsError::LocalAddr { source })?;
    tracing::info!(%addr, path = PATH, "serving prometheus metrics");
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| MetricsError::Serve { addr, source })
}

/// Binds `addr` and serves scrapes until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    shared: SharedSnapshot,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError> {
    serve_on(bind(addr).await?, shared, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut stats = [FamilyStats::default(); family::COUNT as usize];
        let v4 = &mut stats[family::IPV4 as usize];
        v4.seen = 1_000;
        v4.syn_protected = 600;
        v4.allowlisted = 3;
        v4.malformed = 2;
        v4.dropped_packets[origin::CROWDSEC as usize] = 500;
        v4.dropped_bytes[origin::CROWDSEC as usize] = 27_000;
        let v6 = &mut stats[family::IPV6 as usize];
        v6.seen = 70;
        v6.syn_protected = 50;
        v6.dropped_packets[origin::CAPI as usize] = 40;
        v6.dropped_bytes[origin::CAPI as usize] = 2_960;
        v6.observed_packets[origin::LISTS as usize] = 9;
        stats[family::OTHER as usize].seen = 11;
        stats[family::OTHER as usize].malformed = 1;
        let bans = [
            Ban {
                net: "198.51.100.0/24".parse().unwrap(),
                expires_at_ns: 2_000,
                origin: origin::CROWDSEC,
            },
            Ban {
                net: "203.0.113.7/32".parse().unwrap(),
                expires_at_ns: u64::MAX,
                origin: origin::CROWDSEC,
            },
            Ban {
                net: "2001:db8:bad::/48".parse().unwrap(),
                expires_at_ns: 2_000,
                origin: origin::CAPI,
            },
            // Expired: not active any more.
            Ban {
                net: "192.0.2.1/32".parse().unwrap(),
                expires_at_ns: 999,
                origin: origin::CSCLI,
            },
            // Unknown slot: counted as "other".
            Ban {
                net: "2001:db8::1/128".parse().unwrap(),
                expires_at_ns: 2_000,
                origin: 42,
            },
        ];
        let mut s = Snapshot::from_bans(stats, bans, 1_000);
        s.lapi_requests = 12;
        s.lapi_failures = 2;
        s.pending_writes = 3;
        s.last_sync = Some(UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_500));
        s.last_full_sync = Some(UNIX_EPOCH + std::time::Duration::from_secs(1_699_999_000));
        s
    }

    #[test]
    fn from_bans_counts_live_bans_by_origin_and_family() {
        let s = sample();
        let want: BTreeMap<(String, IpType), u64> = [
            (("CAPI".to_owned(), IpType::Ipv6), 1),
            (("crowdsec".to_owned(), IpType::Ipv4), 2),
            (("other".to_owned(), IpType::Ipv6), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(s.active, want);
        assert_eq!(s.active_decisions("crowdsec", IpType::Ipv4), 2);
        assert_eq!(s.active_decisions("cscli", IpType::Ipv4), 0);
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn render_has_every_series_with_its_labels() {
        let text = render(&sample());
        let lines = lines(&text);
        for want in [
            r#"blocker_dropped_packets_total{origin="crowdsec",ip_type="ipv4"} 500"#,
            r#"blocker_dropped_packets_total{origin="CAPI",ip_type="ipv6"} 40"#,
            r#"blocker_dropped_packets_total{origin="cscli",ip_type="ipv4"} 0"#,
            r#"blocker_dropped_bytes_total{origin="crowdsec",ip_type="ipv4"} 27000"#,
            r#"blocker_dropped_bytes_total{origin="CAPI",ip_type="ipv6"} 2960"#,
            r#"blocker_observed_packets_total{origin="lists",ip_type="ipv6"} 9"#,
            r#"blocker_syn_inspected_total{ip_type="ipv4"} 600"#,
            r#"blocker_syn_inspected_total{ip_type="ipv6"} 50"#,
            r#"blocker_packets_seen_total{ip_type="ipv4"} 1000"#,
            r#"blocker_packets_seen_total{ip_type="other"} 11"#,
            r#"blocker_allowlisted_total{ip_type="ipv4"} 3"#,
            r#"blocker_malformed_total{ip_type="ipv4"} 2"#,
            r#"blocker_malformed_total{ip_type="other"} 1"#,
            r#"blocker_active_decisions{origin="crowdsec",ip_type="ipv4"} 2"#,
            r#"blocker_active_decisions{origin="CAPI",ip_type="ipv6"} 1"#,
            r#"blocker_active_decisions{origin="other",ip_type="ipv6"} 1"#,
            r#"blocker_active_decisions{origin="cscli",ip_type="ipv4"} 0"#,
            "blocker_lapi_requests_total 12",
            "blocker_lapi_failures_total 2",
            "blocker_map_writes_pending 3",
            "# TYPE blocker_map_writes_pending gauge",
            "blocker_last_sync_timestamp_seconds 1700000000.5",
            "blocker_last_full_sync_timestamp_seconds 1699999000.0",
            "# TYPE blocker_dropped_packets counter",
            "# TYPE blocker_dropped_bytes counter",
            "# UNIT blocker_dropped_bytes bytes",
            "# TYPE blocker_active_decisions gauge",
            "# TYPE blocker_last_sync_timestamp_seconds gauge",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
        }
        assert_eq!(lines.last(), Some(&"# EOF"));
        // 8 origins x 2 families for each per-origin family.
        let dropped = lines
            .iter()
            .filter(|l| l.starts_with("blocker_dropped_packets_total{"))
            .count();
        assert_eq!(dropped, origin::COUNT * 2);
        // Only the per-family counters that can move for non-IP packets have an "other".
        assert!(!text.contains(r#"blocker_syn_inspected_total{ip_type="other"}"#));
    }

    #[test]
    fn render_of_nothing_says_never_synced() {
        let text = render(&Snapshot::default());
        assert!(
            text.contains("\nblocker_last_sync_timestamp_seconds 0.0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nblocker_last_full_sync_timestamp_seconds 0.0\n"),
            "{text}"
        );
        assert!(text.contains("\nblocker_lapi_requests_total 0\n"), "{text}");
    }

    #[test]
    fn origin_labels() {
        assert_eq!(origin_label(origin::CAPI), "CAPI");
        assert_eq!(origin_label(origin::CSCLI_IMPORT), "cscli-import");
        assert_eq!(origin_label(99), "other");
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(addr, shared(Snapshot::default()), std::future::pending())
            .await
            .unwrap_err();
        assert!(matches!(err, MetricsError::Bind { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot listen for prometheus scrapes on {addr}")
        );
    }

    #[tokio::test]
    async fn serves_the_latest_snapshot_and_404_elsewhere() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        async fn get(addr: SocketAddr, path: &str) -> String {
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            conn.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).await.unwrap();
            answer
        }

        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let snapshot = shared(Snapshot::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, Arc::clone(&snapshot), async {
            let _ = stopped.await;
        }));

        let first = get(addr, PATH).await;
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
        assert!(
            first
                .to_ascii_lowercase()
                .contains(&format!("content-type: {CONTENT_TYPE}")),
            "{first}"
        );
        assert!(
            first.contains("\nblocker_lapi_requests_total 0\n"),
            "{first}"
        );

        snapshot.write().unwrap().lapi_requests = 7;
        let second = get(addr, PATH).await;
        assert!(
            second.contains("\nblocker_lapi_requests_total 7\n"),
            "{second}"
        );

        let missing = get(addr, "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
