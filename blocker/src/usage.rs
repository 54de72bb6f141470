//! `CrowdSec` usage metrics: what LAPI shows for this bouncer in `cscli metrics show bouncers`
//! and forwards to the console.
//!
//! Every `usage_metrics.interval` (15 min by default, as go-cs-bouncer) the daemon sends
//! `POST {api_url}/v1/usage-metrics` with one remediation component, in the schema of
//! `CrowdSec`'s `pkg/models/localapi_swagger.yaml` (`AllMetrics` → `RemediationComponentsMetrics`
//! = `BaseMetrics` + `type`/`name`/`last_pull`; `DetailedMetrics` = `meta` + `items`):
//!
//! ```json
//! {"remediation_components": [{
//!   "type": "crowdsec-blocker", "version": "0.1.0",
//!   "os": {"name": "debian", "version": "12"}, "feature_flags": [],
//!   "utc_startup_timestamp": 1700000000, "last_pull": 1700000890,
//!   "metrics": [{
//!     "meta": {"utc_now_timestamp": 1700000900, "window_size_seconds": 900},
//!     "items": [
//!       {"name": "dropped", "unit": "packet", "value": 12, "labels": {"origin": "CAPI", "ip_type": "ipv4"}},
//!       {"name": "dropped", "unit": "byte", "value": 648, "labels": {"origin": "CAPI", "ip_type": "ipv4"}},
//!       {"name": "active_decisions", "unit": "ip", "value": 1500, "labels": {"origin": "CAPI", "ip_type": "ipv4"}},
//!       {"name": "processed", "unit": "packet", "value": 80, "labels": {"ip_type": "ipv4"}}
//!     ]}]}]}
//! ```
//!
//! Names, units and labels are the firewall bouncer's (`pkg/metrics/metrics.go`): `dropped`
//! and `processed` are deltas over the window, `active_decisions` is the current value (LAPI
//! treats it as a gauge). LAPI before 1.6.3 has no such endpoint and answers 404: the
//! reporter then says so once and stops.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use blocker_common::origin;
use reqwest::StatusCode;
use serde::Serialize;

use crate::{
    error_chain,
    lapi::{LapiClient, LapiError},
    metrics::{IpType, Snapshot},
};

/// `type` of this remediation component, as `cscli bouncers list` shows it.
pub const COMPONENT_TYPE: &str = "crowdsec-blocker";

/// `version` of this remediation component.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The operating system, as go-cs-lib's `version.DetectOS()` reports it: the `os-release`
/// `ID` and `VERSION_ID` (e.g. `debian`, `12`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OsVersion {
    pub name: String,
    pub version: String,
}

impl OsVersion {
    /// From the text of an `os-release` file; `None` without an `ID`. A distribution without
    /// `VERSION_ID` (a rolling one) gets `rolling`.
    #[must_use]
    pub fn from_os_release(text: &str) -> Option<OsVersion> {
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            fields.insert(key.trim(), value);
        }
        let name = fields.get("ID").filter(|id| !id.is_empty())?;
        let version = fields
            .get("VERSION_ID")
            .filter(|v| !v.is_empty())
            .copied()
            .unwrap_or("rolling");
        Some(OsVersion {
            name: (*name).to_owned(),
            version: version.to_owned(),
        })
    }

    /// This machine's, read once: `/etc/os-release`, else `/usr/lib/os-release`, else
    /// `linux`/`unknown`.
    #[must_use]
    pub fn detect() -> &'static OsVersion {
        static OS: OnceLock<OsVersion> = OnceLock::new();
        OS.get_or_init(|| {
            ["/etc/os-release", "/usr/lib/os-release"]
                .iter()
                .filter_map(|path| std::fs::read_to_string(path).ok())
                .find_map(|text| OsVersion::from_os_release(&text))
                .unwrap_or_else(|| OsVersion {
                    name: "linux".to_owned(),
                    version: "unknown".to_owned(),
                })
        })
    }
}

/// `AllMetrics`, with one remediation component and no log processor.
#[derive(Serialize)]
struct AllMetrics<'a> {
    remediation_components: [RemediationComponent<'a>; 1],
}

/// `RemediationComponentsMetrics`. `name` is left out: LAPI files the metrics under the name
/// the API key was registered with.
#[derive(Serialize)]
struct RemediationComponent<'a> {
    r#type: &'static str,
    version: &'static str,
    os: &'a OsVersion,
    /// Expected to be empty for remediation components.
    feature_flags: [&'static str; 0],
    utc_startup_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_pull: Option<i64>,
    metrics: [DetailedMetrics<'a>; 1],
}

#[derive(Serialize)]
struct DetailedMetrics<'a> {
    meta: MetricsMeta,
    items: Vec<MetricsDetailItem<'a>>,
}

#[derive(Serialize)]
struct MetricsMeta {
    utc_now_timestamp: i64,
    window_size_seconds: i64,
}

/// `MetricsDetailItem`; `value` is a JSON number (LAPI reads a `float64`).
#[derive(Serialize)]
struct MetricsDetailItem<'a> {
    name: &'static str,
    unit: &'static str,
    value: u64,
    labels: BTreeMap<&'static str, &'a str>,
}

/// Whole seconds since the Unix epoch (0 before it, saturated far after it).
fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    })
}

/// What a counter moved by since `prev`. A counter that went down was reset (the program was
/// loaded afresh, without the pinned maps): all of its value is new since then.
fn delta(now: u64, prev: u64) -> u64 {
    now.checked_sub(prev).unwrap_or(now)
}

/// The usage metrics body for the window from `prev` to `now`, with this machine's OS.
///
/// `dropped` packets and bytes are deltas, sent for each (origin, `ip_type`) that dropped
/// something in the window or has active decisions now; `active_decisions` is the current
/// count, sent for each (origin, `ip_type`) that has some now or had some in `prev` (so a
/// count that fell to zero is reported as zero rather than left at its last value);
/// `processed` is the delta of inspected SYNs per `ip_type`.
#[must_use]
pub fn payload(
    prev: &Snapshot,
    now: &Snapshot,
    window: Duration,
    startup: SystemTime,
    now_time: SystemTime,
) -> serde_json::Value {
    payload_with_os(OsVersion::detect(), prev, now, window, startup, now_time)
}

/// [`payload`] with a given OS.
#[must_use]
pub fn payload_with_os(
    os: &OsVersion,
    prev: &Snapshot,
    now: &Snapshot,
    window: Duration,
    startup: SystemTime,
    now_time: SystemTime,
) -> serde_json::Value {
    let mut items = Vec::new();
    let labels = |origin: &'static str, ip_type: IpType| {
        BTreeMap::from([("origin", origin), ("ip_type", ip_type.label())])
    };
    for ip_type in IpType::ALL {
        let (was, is) = (prev.family(ip_type), now.family(ip_type));
        for (slot, name) in origin::NAMES.iter().enumerate() {
            let packets = delta(is.dropped_packets[slot], was.dropped_packets[slot]);
            let bytes = delta(is.dropped_bytes[slot], was.dropped_bytes[slot]);
            if packets == 0 && bytes == 0 && now.active_decisions(name, ip_type) == 0 {
                continue;
            }
            for (unit, value) in [("packet", packets), ("byte", bytes)] {
                items.push(MetricsDetailItem {
                    name: "dropped",
                    unit,
                    value,
                    labels: labels(name, ip_type),
                });
            }
        }
    }
    let active_keys: BTreeSet<&(String, IpType)> =
        prev.active.keys().chain(now.active.keys()).collect();
    for key in active_keys {
        let (origin, ip_type) = key;
        items.push(MetricsDetailItem {
            name: "active_decisions",
            unit: "ip",
            value: now.active.get(key).copied().unwrap_or(0),
            labels: BTreeMap::from([("origin", origin.as_str()), ("ip_type", ip_type.label())]),
        });
    }
    for ip_type in IpType::ALL {
        items.push(MetricsDetailItem {
            name: "processed",
            unit: "packet",
            value: delta(
                now.family(ip_type).syn_protected,
                prev.family(ip_type).syn_protected,
            ),
            labels: BTreeMap::from([("ip_type", ip_type.label())]),
        });
    }

    let body = AllMetrics {
        remediation_components: [RemediationComponent {
            r#type: COMPONENT_TYPE,
            version: VERSION,
            os,
            feature_flags: [],
            utc_startup_timestamp: unix_seconds(startup),
            last_pull: now.last_sync.map(unix_seconds),
            metrics: [DetailedMetrics {
                meta: MetricsMeta {
                    utc_now_timestamp: unix_seconds(now_time),
                    window_size_seconds: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
                },
                items,
            }],
        }],
    };
    serde_json::to_value(body).expect("usage metrics serialize to JSON")
}

/// What one [`UsageReporter::report`] did.
#[derive(Debug)]
pub enum ReportOutcome {
    /// LAPI took the metrics; the next report counts from here.
    Sent,
    /// LAPI has no usage metrics endpoint (404, LAPI before 1.6.3): nothing was sent, and
    /// nothing will be.
    Unsupported,
    /// The request failed (logged); the next report covers this window too.
    Failed(LapiError),
}

/// Sends usage metrics, keeping the baseline the deltas are counted from.
#[derive(Debug)]
pub struct UsageReporter {
    startup: SystemTime,
    /// What the last accepted report counted up to.
    baseline: Snapshot,
    baseline_at: SystemTime,
    supported: bool,
}

impl UsageReporter {
    /// A reporter for a daemon started at `startup`, counting from `baseline`: the snapshot
    /// at start-up. The kernel counters live in pinned maps and survive a restart, so counting
    /// from zero would report a previous daemon's drops again.
    #[must_use]
    pub fn new(startup: SystemTime, baseline: Snapshot) -> UsageReporter {
        UsageReporter {
            startup,
            baseline,
            baseline_at: startup,
            supported: true,
        }
    }

    /// `false` once LAPI answered that it has no usage metrics endpoint.
    #[must_use]
    pub fn is_supported(&self) -> bool {
        self.supported
    }

    /// Sends the metrics from the baseline to `now`, timed now.
    pub async fn report(&mut self, client: &LapiClient, now: &Snapshot) -> ReportOutcome {
        self.report_at(client, now, SystemTime::now()).await
    }

    /// Sends the metrics from the baseline to `now`, timed `now_time`. On success `now`
    /// becomes the baseline; on a failure the baseline stays, so the next report covers both
    /// windows; after a 404 nothing is sent any more.
    pub async fn report_at(
        &mut self,
        client: &LapiClient,
        now: &Snapshot,
        now_time: SystemTime,
    ) -> ReportOutcome {
        if !self.supported {
            return ReportOutcome::Unsupported;
        }
        let window = now_time
            .duration_since(self.baseline_at)
            .unwrap_or(Duration::ZERO);
        let body = payload(&self.baseline, now, window, self.startup, now_time);
        match client.post_usage_metrics(&body).await {
            Ok(()) => {
                tracing::debug!(window = ?window, "usage metrics sent to LAPI");
                self.baseline = now.clone();
                self.baseline_at = now_time;
                ReportOutcome::Sent
            }
            Err(LapiError::Status { status, url, .. }) if status == StatusCode::NOT_FOUND => {
                tracing::info!(
                    %url,
                    "LAPI does not support usage metrics (it answered 404; LAPI 1.6.3 and later do): not sending them"
                );
                self.supported = false;
                ReportOutcome::Unsupported
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "sending usage metrics to LAPI failed; the next report covers this window too");
                ReportOutcome::Failed(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use blocker_common::{FamilyStats, family};
    use serde_json::{Value, json};

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn debian() -> OsVersion {
        OsVersion {
            name: "debian".into(),
            version: "12".into(),
        }
    }

    fn snapshot(crowdsec_v4: (u64, u64), capi_v6: (u64, u64), syn_v4: u64) -> Snapshot {
        let mut stats = [FamilyStats::default(); family::COUNT as usize];
        let v4 = &mut stats[family::IPV4 as usize];
        v4.dropped_packets[origin::CROWDSEC as usize] = crowdsec_v4.0;
        v4.dropped_bytes[origin::CROWDSEC as usize] = crowdsec_v4.1;
        v4.syn_protected = syn_v4;
        let v6 = &mut stats[family::IPV6 as usize];
        v6.dropped_packets[origin::CAPI as usize] = capi_v6.0;
        v6.dropped_bytes[origin::CAPI as usize] = capi_v6.1;
        Snapshot {
            stats,
            ..Snapshot::default()
        }
    }

    fn item<'a>(items: &'a [Value], name: &str, unit: &str, labels: &Value) -> Option<&'a Value> {
        items
            .iter()
            .find(|i| i["name"] == name && i["unit"] == unit && &i["labels"] == labels)
    }

    #[test]
    fn payload_has_the_schema_and_deltas() {
        let prev = snapshot((100, 5_400), (0, 0), 1_000);
        let mut now = snapshot((250, 13_500), (7, 518), 1_400);
        now.active.insert(("crowdsec".into(), IpType::Ipv4), 3);
        now.active.insert(("cscli".into(), IpType::Ipv6), 1);
        now.last_sync = Some(at(1_700_000_890));
        let mut prev = prev;
        prev.active.insert(("lists".into(), IpType::Ipv4), 2);

        let body = payload_with_os(
            &debian(),
            &prev,
            &now,
            Duration::from_mins(15),
            at(1_700_000_000),
            at(1_700_000_900),
        );
        let rcs = body["remediation_components"].as_array().unwrap();
        assert_eq!(rcs.len(), 1);
        let rc = &rcs[0];
        assert_eq!(rc["type"], "crowdsec-blocker");
        assert_eq!(rc["version"], VERSION);
        assert_eq!(rc["os"], json!({"name": "debian", "version": "12"}));
        assert_eq!(rc["feature_flags"], json!([]));
        assert_eq!(rc["utc_startup_timestamp"], 1_700_000_000);
        assert_eq!(rc["last_pull"], 1_700_000_890);
        assert!(rc.get("name").is_none());
        let metrics = rc["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 1);
        assert_eq!(
            metrics[0]["meta"],
            json!({"utc_now_timestamp": 1_700_000_900, "window_size_seconds": 900})
        );
        let items = metrics[0]["items"].as_array().unwrap();
        let v4_crowdsec = json!({"origin": "crowdsec", "ip_type": "ipv4"});
        let v6_capi = json!({"origin": "CAPI", "ip_type": "ipv6"});
        let v6_cscli = json!({"origin": "cscli", "ip_type": "ipv6"});
        let v4_lists = json!({"origin": "lists", "ip_type": "ipv4"});
        let value = |name, unit, labels: &Value| {
            item(items, name, unit, labels)
                .unwrap_or_else(|| panic!("no {name}/{unit} {labels} in {body:#}"))["value"]
                .clone()
        };
        assert_eq!(value("dropped", "packet", &v4_crowdsec), 150);
        assert_eq!(value("dropped", "byte", &v4_crowdsec), 8_100);
        assert_eq!(value("dropped", "packet", &v6_capi), 7);
        assert_eq!(value("dropped", "byte", &v6_capi), 518);
        // Active decisions but no drop: dropped 0 is sent, so the origin shows up.
        assert_eq!(value("dropped", "packet", &v6_cscli), 0);
        assert_eq!(value("active_decisions", "ip", &v4_crowdsec), 3);
        assert_eq!(value("active_decisions", "ip", &v6_cscli), 1);
        // Gone since the previous report: sent as zero.
        assert_eq!(value("active_decisions", "ip", &v4_lists), 0);
        assert_eq!(
            value("processed", "packet", &json!({"ip_type": "ipv4"})),
            400
        );
        assert_eq!(value("processed", "packet", &json!({"ip_type": "ipv6"})), 0);
        // Nothing for origins that neither dropped nor have decisions.
        assert!(
            item(
                items,
                "dropped",
                "packet",
                &json!({"origin": "appsec", "ip_type": "ipv4"})
            )
            .is_none()
        );
        for i in items {
            assert!(i["value"].is_u64(), "{i}");
            assert!(i["name"].is_string() && i["unit"].is_string(), "{i}");
        }
    }

    #[test]
    fn a_reset_counter_counts_from_zero() {
        let prev = snapshot((1_000, 54_000), (0, 0), 0);
        let now = snapshot((10, 540), (0, 0), 0);
        let body = payload_with_os(
            &debian(),
            &prev,
            &now,
            Duration::from_mins(1),
            at(0),
            at(60),
        );
        let items = body["remediation_components"][0]["metrics"][0]["items"]
            .as_array()
            .unwrap()
            .clone();
        let labels = json!({"origin": "crowdsec", "ip_type": "ipv4"});
        assert_eq!(
            item(&items, "dropped", "packet", &labels).unwrap()["value"],
            10
        );
        assert_eq!(
            item(&items, "dropped", "byte", &labels).unwrap()["value"],
            540
        );
    }

    #[test]
    fn never_synced_has_no_last_pull() {
        let s = Snapshot::default();
        let body = payload_with_os(&debian(), &s, &s, Duration::ZERO, at(5), at(5));
        let rc = &body["remediation_components"][0];
        assert!(rc.get("last_pull").is_none(), "{rc}");
        // Only the two `processed` items.
        assert_eq!(rc["metrics"][0]["items"].as_array().unwrap().len(), 2);
    }

    /// Answers every request with gin's 404 (what LAPI before 1.6.3 says); counts them.
    async fn lapi_without_usage_metrics() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>)
    {
        use std::sync::{Arc, atomic::AtomicUsize, atomic::Ordering};
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let mut conn = BufReader::new(socket);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    conn.read_line(&mut line).await.unwrap();
                    let line = line.trim_end().to_ascii_lowercase();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(value) = line.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                conn.read_exact(&mut body).await.unwrap();
                let answer = "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n\
                              content-length: 18\r\nconnection: close\r\n\r\n404 page not found";
                let mut socket = conn.into_inner();
                socket.write_all(answer.as_bytes()).await.unwrap();
                socket.shutdown().await.unwrap();
            }
        });
        (url, hits)
    }

    #[tokio::test]
    async fn a_404_is_said_once_at_info_and_never_asked_again() {
        use std::sync::atomic::Ordering;

        use crate::lapi::{ApiKey, LapiAuth, LapiSettings};

        let (captured, _guard) = crate::captured_log::CapturedLog::start();

        let (url, hits) = lapi_without_usage_metrics().await;
        let client = LapiClient::new(&LapiSettings::new(
            url.parse().unwrap(),
            LapiAuth::ApiKey(ApiKey::new("k".into())),
        ))
        .unwrap();
        let mut reporter = UsageReporter::new(at(1_000), Snapshot::default());
        for _ in 0..3 {
            let outcome = reporter.report(&client, &Snapshot::default()).await;
            assert!(matches!(outcome, ReportOutcome::Unsupported), "{outcome:?}");
        }
        assert!(!reporter.is_supported());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let logs = captured.text();
        let said: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("LAPI does not support usage metrics"))
            .collect();
        assert_eq!(said.len(), 1, "{logs}");
        assert!(said[0].contains(" INFO "), "{logs}");
        assert!(
            said[0].contains(&format!("{url}v1/usage-metrics")),
            "{logs}"
        );
    }

    #[test]
    fn os_release_parsing() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                      VERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(OsVersion::from_os_release(debian), Some(self::debian()));
        assert_eq!(
            OsVersion::from_os_release("ID=arch\nBUILD_ID=rolling\n"),
            Some(OsVersion {
                name: "arch".into(),
                version: "rolling".into()
            })
        );
        assert_eq!(OsVersion::from_os_release("NAME=nothing\n"), None);
        let detected = OsVersion::detect();
        assert!(!detected.name.is_empty() && !detected.version.is_empty());
    }
}
