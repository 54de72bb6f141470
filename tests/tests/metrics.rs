//! Metrics end to end: the Prometheus endpoint scraped over HTTP after a flood of SYNs through
//! the real program, and `CrowdSec` usage metrics posted to the FAKE LAPI (schema, headers,
//! deltas, retries, a LAPI without the endpoint) and to the REAL LAPI 1.4.6, which has no
//! usage metrics endpoint and answers 404.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use blocker::{
    clock,
    lapi::{ApiKey, LapiAuth, LapiClient, LapiError, LapiSettings, USER_AGENT},
    metrics::{self, IpType, Snapshot},
    usage::{self, ReportOutcome, UsageReporter},
};
use blocker_common::{FamilyStats, family, origin};
use blocker_tests::{
    fake_lapi::FakeLapi,
    kernel::Program,
    lapi::{Lapi, http_get},
    packet::Frame,
    privileged,
    reference::{self, World, XDP_DROP, XDP_PASS},
};
use serde_json::{Value, json};

const MAIL_PORTS: [u16; 7] = [25, 465, 587, 143, 993, 110, 995];
const HOUR_NS: u64 = 3_600_000_000_000;
const API_KEY: &str = "metrics-test-key";
const USAGE_PATH: &str = "/v1/usage-metrics";

const BANNED_V4: u32 = 50_000;
const CLEAN_V4: u32 = 10_000;
const BANNED_V6: u32 = 5_000;

fn snapshot(program: &Program) -> Snapshot {
    let bans = program.maps.bans().expect("bans");
    Snapshot::from_bans(program.stats(), &bans, clock::now_ns())
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A scraped exposition: `(name, labels)` → value as written.
type Scrape = BTreeMap<(String, BTreeMap<String, String>), String>;

/// Parses the sample lines of an exposition (comments skipped). Label values here hold no
/// comma, quote or backslash, which keeps the parser small.
fn parse_exposition(text: &str) -> Scrape {
    let mut samples = Scrape::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                let labels = inner
                    .split(',')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once('=').expect("label is key=value");
                        (key.to_owned(), value.trim_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
        };
        let previous = samples.insert((name.to_owned(), labels), value.to_owned());
        assert!(previous.is_none(), "duplicate series {series}");
    }
    samples
}

/// The value of a series as written.
fn raw<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> &'a str {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    scrape
        .get(&(name.to_owned(), labels.clone()))
        .unwrap_or_else(|| panic!("no {name}{labels:?} in the scrape"))
}

/// The value of an integer series (counters and counts are written as integers).
fn sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> u64 {
    let value = raw(scrape, name, labels);
    value
        .parse()
        .unwrap_or_else(|e| panic!("{name}{labels:?} = {value}: {e}"))
}

/// Sum of every series of `name`.
fn total(scrape: &Scrape, name: &str) -> u64 {
    scrape
        .iter()
        .filter(|((n, _), _)| n == name)
        .map(|(_, v)| v.parse::<u64>().expect("integer value"))
        .sum()
}

fn client(url: &str) -> LapiClient {
    let mut settings = LapiSettings::new(
        url.parse().expect("LAPI URL"),
        LapiAuth::ApiKey(ApiKey::new(API_KEY.to_owned())),
    );
    settings.timeout = Duration::from_secs(5);
    LapiClient::new(&settings).expect("LAPI client")
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn is_int(v: &Value) -> bool {
    v.is_i64() || v.is_u64()
}

fn short_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.chars().count() <= 255)
}

/// Checks `body` against `AllMetrics` of `CrowdSec`'s `localapi_swagger.yaml`, as LAPI
/// validates it (`RemediationComponentsMetrics` = `BaseMetrics` + `type`, `name`,
/// `last_pull`), plus what LAPI's handler checks beyond the schema (exactly one remediation
/// component, no log processor). Panics with the reason.
fn check_schema(body: &Value) {
    let top = body.as_object().expect("body is an object");
    for key in top.keys() {
        assert!(
            ["remediation_components", "log_processors", "lapi"].contains(&key.as_str()),
            "unknown top-level key {key}"
        );
    }
    assert!(
        top.get("log_processors")
            .is_none_or(|lp| lp.as_array().is_some_and(Vec::is_empty)),
        "a bouncer sends no log processor"
    );
    let rcs = body["remediation_components"]
        .as_array()
        .expect("remediation_components is an array");
    assert_eq!(rcs.len(), 1, "LAPI takes exactly one remediation component");
    let rc = rcs[0].as_object().expect("component is an object");
    // BaseMetrics: version and utc_startup_timestamp are required.
    assert!(
        short_string(&rc["version"]),
        "version: {:?}",
        rc.get("version")
    );
    assert!(
        is_int(&rc["utc_startup_timestamp"]),
        "utc_startup_timestamp"
    );
    if let Some(os) = rc.get("os") {
        assert!(
            short_string(&os["name"]) && short_string(&os["version"]),
            "os: {os}"
        );
    }
    if let Some(ff) = rc.get("feature_flags") {
        let ff = ff.as_array().expect("feature_flags is an array");
        assert!(ff.iter().all(Value::is_string), "feature_flags: {ff:?}");
    }
    for optional in ["type", "name"] {
        if let Some(v) = rc.get(optional) {
            assert!(v.is_string(), "{optional}: {v}");
        }
    }
    if let Some(v) = rc.get("last_pull") {
        assert!(is_int(v), "last_pull: {v}");
    }
    let metrics = rc["metrics"].as_array().expect("metrics is an array");
    for m in metrics {
        let meta = &m["meta"];
        assert!(
            is_int(&meta["utc_now_timestamp"]),
            "utc_now_timestamp: {meta}"
        );
        assert!(
            is_int(&meta["window_size_seconds"]),
            "window_size_seconds: {meta}"
        );
        let items = m["items"].as_array().expect("items is an array (required)");
        for item in items {
            assert!(short_string(&item["name"]), "name: {item}");
            assert!(short_string(&item["unit"]), "unit: {item}");
            assert!(item["value"].is_number(), "value: {item}");
            if let Some(labels) = item.get("labels") {
                let labels = labels.as_object().expect("labels is an object");
                assert!(labels.values().all(short_string), "labels: {item}");
            }
        }
    }
}

/// The value of the one item of `name`/`unit` with exactly `labels`; 0 if absent.
fn item_value(body: &Value, name: &str, unit: &str, labels: &Value) -> u64 {
    let items = body["remediation_components"][0]["metrics"][0]["items"]
        .as_array()
        .expect("items");
    let found: Vec<&Value> = items
        .iter()
        .filter(|i| i["name"] == name && i["unit"] == unit && &i["labels"] == labels)
        .collect();
    assert!(
        found.len() <= 1,
        "{name}/{unit} {labels} sent twice: {body}"
    );
    found
        .first()
        .map_or(0, |i| i["value"].as_u64().expect("integer value"))
}

fn window(body: &Value) -> u64 {
    body["remediation_components"][0]["metrics"][0]["meta"]["window_size_seconds"]
        .as_u64()
        .expect("window")
}

fn labels(origin: &str, ip_type: &str) -> Value {
    json!({"origin": origin, "ip_type": ip_type})
}

/// A snapshot whose only movement is `CrowdSec` drops over IPv4 and CAPI drops over IPv6.
fn counters(crowdsec_v4: u64, capi_v6: u64) -> Snapshot {
    let mut stats = [FamilyStats::default(); family::COUNT as usize];
    let v4 = &mut stats[family::IPV4 as usize];
    v4.dropped_packets[origin::CROWDSEC as usize] = crowdsec_v4;
    v4.dropped_bytes[origin::CROWDSEC as usize] = crowdsec_v4 * 54;
    v4.syn_protected = crowdsec_v4;
    let v6 = &mut stats[family::IPV6 as usize];
    v6.dropped_packets[origin::CAPI as usize] = capi_v6;
    v6.dropped_bytes[origin::CAPI as usize] = capi_v6 * 74;
    v6.syn_protected = capi_v6;
    let mut s = Snapshot {
        stats,
        ..Snapshot::default()
    };
    s.active.insert(("crowdsec".into(), IpType::Ipv4), 3);
    s
}

fn usage_posts(fake: &FakeLapi) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path() == USAGE_PATH)
        .count()
}

/// The ban world of the flood: a `CrowdSec` /24 and a CAPI /48, live for an hour.
fn flood_world(now: u64) -> World {
    let ban = |net: &str, origin| reference::Ban {
        net: net.parse().expect("test prefix"),
        expires_at_ns: now + HOUR_NS,
        origin,
    };
    World {
        bans: vec![
            ban("198.51.100.0/24", origin::CROWDSEC),
            ban("2001:db8:bad::/48", origin::CAPI),
        ],
        allow: Vec::new(),
        ports: MAIL_PORTS.to_vec(),
        now_ns: now,
        observe: false,
    }
}

/// Serves `snapshot` on a free loopback port, scrapes it once over HTTP, stops the server.
async fn serve_and_scrape(snapshot: &Snapshot) -> Scrape {
    let listener = metrics::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metrics::serve_on(
        listener,
        metrics::shared(snapshot.clone()),
        async {
            let _ = stopped.await;
        },
    ));
    let url = format!("http://{addr}{}", metrics::PATH);
    let answer = tokio::task::spawn_blocking(move || http_get(&url, &[]))
        .await
        .expect("scrape thread")
        .expect("scrape");
    stop.send(()).expect("server still running");
    server.await.expect("server task").expect("server");

    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some(metrics::CONTENT_TYPE));
    let text = String::from_utf8(answer.body).expect("UTF-8 exposition");
    assert!(text.ends_with("# EOF\n"), "{text}");
    parse_exposition(&text)
}

/// The scrape after the flood: exactly what was sent, per origin and family.
fn assert_flood_scrape(scrape: &Scrape, v4_bytes: u64, v6_bytes: u64) {
    let v4_crowdsec = [("origin", "crowdsec"), ("ip_type", "ipv4")];
    let v6_capi = [("origin", "CAPI"), ("ip_type", "ipv6")];
    let dropped = "blocker_dropped_packets_total";
    assert_eq!(sample(scrape, dropped, &v4_crowdsec), u64::from(BANNED_V4));
    assert_eq!(sample(scrape, dropped, &v6_capi), u64::from(BANNED_V6));
    assert_eq!(total(scrape, dropped), u64::from(BANNED_V4 + BANNED_V6));
    let bytes = "blocker_dropped_bytes_total";
    assert_eq!(sample(scrape, bytes, &v4_crowdsec), v4_bytes);
    assert_eq!(sample(scrape, bytes, &v6_capi), v6_bytes);
    assert_eq!(total(scrape, bytes), v4_bytes + v6_bytes);
    assert_eq!(total(scrape, "blocker_observed_packets_total"), 0);
    for name in ["blocker_syn_inspected_total", "blocker_packets_seen_total"] {
        let v4 = sample(scrape, name, &[("ip_type", "ipv4")]);
        let v6 = sample(scrape, name, &[("ip_type", "ipv6")]);
        assert_eq!(v4, u64::from(BANNED_V4 + CLEAN_V4), "{name}");
        assert_eq!(v6, u64::from(BANNED_V6), "{name}");
    }
    let other = [("ip_type", "other")];
    assert_eq!(sample(scrape, "blocker_packets_seen_total", &other), 0);
    assert_eq!(total(scrape, "blocker_allowlisted_total"), 0);
    assert_eq!(total(scrape, "blocker_malformed_total"), 0);
    let active = "blocker_active_decisions";
    assert_eq!(sample(scrape, active, &v4_crowdsec), 1);
    assert_eq!(sample(scrape, active, &v6_capi), 1);
    assert_eq!(total(scrape, active), 2);
    assert_eq!(sample(scrape, "blocker_lapi_requests_total", &[]), 3);
    assert_eq!(sample(scrape, "blocker_lapi_failures_total", &[]), 1);
    let last_sync = raw(scrape, "blocker_last_sync_timestamp_seconds", &[]);
    assert_eq!(last_sync, "1700000000.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_figures_reach_the_scrape_and_the_usage_report() {
    if !privileged("flood_figures_reach_the_scrape_and_the_usage_report") {
        return;
    }
    let world = flood_world(clock::now_ns());
    let mut flood = Program::load();
    flood.install(&world);
    let before = snapshot(&flood);
    assert_eq!(
        before.stats,
        [FamilyStats::default(); 3],
        "fresh maps count nothing"
    );

    let banned = Frame::syn(ip("198.51.100.77"), 25).bytes();
    let clean = Frame::syn(ip("203.0.113.5"), 587).bytes();
    let banned6 = Frame::syn(ip("2001:db8:bad::9"), 465).bytes();
    let started = std::time::Instant::now();
    assert_eq!(flood.run_repeat(&banned, BANNED_V4), XDP_DROP);
    assert_eq!(flood.run_repeat(&clean, CLEAN_V4), XDP_PASS);
    assert_eq!(flood.run_repeat(&banned6, BANNED_V6), XDP_DROP);
    eprintln!(
        "{} SYNs through BPF_PROG_TEST_RUN in {:?}",
        BANNED_V4 + CLEAN_V4 + BANNED_V6,
        started.elapsed()
    );

    // What the reference classifier says each frame costs, times the repeat count.
    let bytes = |frame: &[u8], slot: u32, count: u32| {
        world.expect(frame).stats.dropped_bytes[slot as usize] * u64::from(count)
    };
    let v4_bytes = bytes(&banned, origin::CROWDSEC, BANNED_V4);
    let v6_bytes = bytes(&banned6, origin::CAPI, BANNED_V6);
    assert_eq!(v4_bytes, u64::from(BANNED_V4) * banned.len() as u64);
    assert_eq!(v6_bytes, u64::from(BANNED_V6) * banned6.len() as u64);

    let mut snapshot = snapshot(&flood);
    snapshot.lapi_requests = 3;
    snapshot.lapi_failures = 1;
    snapshot.last_sync = Some(at(1_700_000_000));

    assert_flood_scrape(&serve_and_scrape(&snapshot).await, v4_bytes, v6_bytes);

    // The same figures in a usage report, counted from the snapshot before the flood.
    let fake = FakeLapi::start();
    let mut reporter = UsageReporter::new(at(1_700_000_000), before);
    let outcome = reporter
        .report_at(&client(&fake.url()), &snapshot, at(1_700_000_900))
        .await;
    assert!(matches!(outcome, ReportOutcome::Sent), "{outcome:?}");
    let bodies = fake.usage_metrics();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    check_schema(body);
    let (crowdsec4, capi6) = (labels("crowdsec", "ipv4"), labels("CAPI", "ipv6"));
    assert_eq!(
        item_value(body, "dropped", "packet", &crowdsec4),
        u64::from(BANNED_V4)
    );
    assert_eq!(item_value(body, "dropped", "byte", &crowdsec4), v4_bytes);
    assert_eq!(
        item_value(body, "dropped", "packet", &capi6),
        u64::from(BANNED_V6)
    );
    assert_eq!(item_value(body, "dropped", "byte", &capi6), v6_bytes);
    assert_eq!(item_value(body, "active_decisions", "ip", &crowdsec4), 1);
    assert_eq!(item_value(body, "active_decisions", "ip", &capi6), 1);
    assert_eq!(
        item_value(body, "processed", "packet", &json!({"ip_type": "ipv4"})),
        u64::from(BANNED_V4 + CLEAN_V4)
    );
    assert_eq!(window(body), 900);
}

#[tokio::test]
async fn usage_metrics_to_fake_lapi_schema_headers_and_deltas() {
    let fake = FakeLapi::start();
    let lapi = client(&fake.url());
    assert_eq!(
        lapi.usage_metrics_url().as_str(),
        format!("{}{USAGE_PATH}", fake.url())
    );
    let startup = at(1_700_000_000);
    // Counters a previous daemon left in the pinned maps: never reported again.
    let mut reporter = UsageReporter::new(startup, counters(1_000, 10));
    assert!(reporter.is_supported());

    let mut first = counters(1_250, 17);
    first.last_sync = Some(at(1_700_000_899));
    let outcome = reporter.report_at(&lapi, &first, at(1_700_000_900)).await;
    assert!(matches!(outcome, ReportOutcome::Sent), "{outcome:?}");
    let second = counters(1_300, 17);
    let outcome = reporter.report_at(&lapi, &second, at(1_700_001_800)).await;
    assert!(matches!(outcome, ReportOutcome::Sent), "{outcome:?}");

    let posts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path() == USAGE_PATH)
        .collect();
    assert_eq!(posts.len(), 2);
    for post in &posts {
        assert_eq!(post.method, "POST");
        assert_eq!(post.header("x-api-key"), Some(API_KEY));
        assert_eq!(post.header("user-agent"), Some(USER_AGENT));
        assert!(
            post.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "{:?}",
            post.header("content-type")
        );
    }

    let bodies = fake.usage_metrics();
    assert_eq!(bodies.len(), 2);
    for body in &bodies {
        check_schema(body);
        let rc = &body["remediation_components"][0];
        assert_eq!(rc["type"], usage::COMPONENT_TYPE);
        assert_eq!(rc["version"], usage::VERSION);
        assert_eq!(rc["utc_startup_timestamp"], 1_700_000_000);
        assert_eq!(rc["feature_flags"], json!([]));
        assert!(!rc["os"]["name"].as_str().unwrap().is_empty(), "{rc}");
        assert_eq!(window(body), 900);
    }
    let (crowdsec4, capi6) = (labels("crowdsec", "ipv4"), labels("CAPI", "ipv6"));
    // First report: what moved since start-up.
    let b = &bodies[0];
    assert_eq!(b["remediation_components"][0]["last_pull"], 1_700_000_899);
    assert_eq!(
        b["remediation_components"][0]["metrics"][0]["meta"]["utc_now_timestamp"],
        1_700_000_900
    );
    assert_eq!(item_value(b, "dropped", "packet", &crowdsec4), 250);
    assert_eq!(item_value(b, "dropped", "byte", &crowdsec4), 250 * 54);
    assert_eq!(item_value(b, "dropped", "packet", &capi6), 7);
    assert_eq!(item_value(b, "dropped", "byte", &capi6), 7 * 74);
    assert_eq!(item_value(b, "active_decisions", "ip", &crowdsec4), 3);
    assert_eq!(
        item_value(b, "processed", "packet", &json!({"ip_type": "ipv4"})),
        250
    );
    // Second report: only the new drops; CAPI dropped nothing and has no decision: not sent.
    let b = &bodies[1];
    assert!(b["remediation_components"][0].get("last_pull").is_none());
    assert_eq!(item_value(b, "dropped", "packet", &crowdsec4), 50);
    assert_eq!(item_value(b, "dropped", "byte", &crowdsec4), 50 * 54);
    assert_eq!(item_value(b, "active_decisions", "ip", &crowdsec4), 3);
    let items = b["remediation_components"][0]["metrics"][0]["items"]
        .as_array()
        .unwrap();
    assert!(
        !items.iter().any(|i| i["labels"] == capi6),
        "nothing moved for CAPI over IPv6: {b}"
    );
}

#[tokio::test]
async fn a_failed_report_is_covered_by_the_next_one() {
    let fake = FakeLapi::start();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let mut reporter = UsageReporter::new(at(1_000), counters(0, 0));

    let outcome = reporter
        .report_at(&client(&dead), &counters(10, 0), at(1_900))
        .await;
    assert!(
        matches!(
            outcome,
            ReportOutcome::Failed(LapiError::Unreachable { .. })
        ),
        "{outcome:?}"
    );
    assert!(reporter.is_supported(), "a failure is not a 404");

    let outcome = reporter
        .report_at(&client(&fake.url()), &counters(25, 0), at(2_800))
        .await;
    assert!(matches!(outcome, ReportOutcome::Sent), "{outcome:?}");
    let bodies = fake.usage_metrics();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    check_schema(body);
    // Both windows: from start-up to now.
    assert_eq!(window(body), 1_800);
    assert_eq!(
        item_value(body, "dropped", "packet", &labels("crowdsec", "ipv4")),
        25
    );
}

#[tokio::test]
async fn a_lapi_without_usage_metrics_is_asked_once() {
    let fake = FakeLapi::start();
    fake.set_usage_metrics_supported(false);
    let lapi = client(&fake.url());

    let err = lapi
        .post_usage_metrics(&json!({"remediation_components": []}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LapiError::Status { status, .. } if status.as_u16() == 404),
        "{err:?}"
    );
    assert_eq!(usage_posts(&fake), 1);

    let mut reporter = UsageReporter::new(at(1_000), counters(0, 0));
    let outcome = reporter.report_at(&lapi, &counters(5, 5), at(1_900)).await;
    assert!(matches!(outcome, ReportOutcome::Unsupported), "{outcome:?}");
    assert!(!reporter.is_supported());
    assert_eq!(usage_posts(&fake), 2);
    for _ in 0..3 {
        let outcome = reporter.report(&lapi, &counters(9, 9)).await;
        assert!(matches!(outcome, ReportOutcome::Unsupported), "{outcome:?}");
    }
    assert_eq!(usage_posts(&fake), 2, "nothing sent after the 404");
    assert!(fake.usage_metrics().is_empty());
}

#[tokio::test]
async fn real_lapi_1_4_6_has_no_usage_metrics_endpoint() {
    let lapi = Lapi::start();
    let key = lapi.add_bouncer("metrics-test");
    let settings = LapiSettings::new(
        lapi.url().parse().expect("LAPI URL"),
        LapiAuth::ApiKey(ApiKey::new(key)),
    );
    let client = LapiClient::new(&settings).expect("LAPI client");
    // The key is good: the stream answers.
    client.check().await.expect("LAPI takes the key");

    let startup = SystemTime::now();
    let body = usage::payload(
        &Snapshot::default(),
        &counters(3, 1),
        Duration::from_mins(15),
        startup,
        SystemTime::now(),
    );
    check_schema(&body);
    let err = client.post_usage_metrics(&body).await.unwrap_err();
    let LapiError::Status { status, url, .. } = &err else {
        panic!("expected a status error: {err:?}");
    };
    assert_eq!(status.as_u16(), 404, "{err}");
    assert_eq!(url, &format!("{}{USAGE_PATH}", lapi.url()));

    let mut reporter = UsageReporter::new(startup, Snapshot::default());
    let outcome = reporter.report(&client, &counters(3, 1)).await;
    assert!(matches!(outcome, ReportOutcome::Unsupported), "{outcome:?}");
    let outcome = reporter.report(&client, &counters(4, 1)).await;
    assert!(matches!(outcome, ReportOutcome::Unsupported), "{outcome:?}");
    assert!(!reporter.is_supported());
}
