//! The daemon's pull loop ([`Enforcer`]) against the FAKE, fault-injecting LAPI
//! ([`FakeLapi`]), for what the real one cannot do: 403 and 500, slow answers, a reset
//! mid-body, truncated JSON, garbage, wrong types, a ~56 MB answer, unknown scopes, invalid
//! addresses. The bans land in the real kernel maps of the loaded (unattached) XDP program.
//!
//! A fault that breaks the answer must fail the pull and leave every map entry as it was; bad
//! items must be skipped, the good ones beside them applied and nothing lost; and once the
//! fault clears, the next pull must bring the maps back in step with LAPI.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::Ebpf;
use blocker::{
    clock,
    daemon::{Enforcer, PullReport},
    error_chain,
    lapi::{ApiKey, LapiAuth, LapiClient, LapiError, LapiSettings, USER_AGENT},
    loader,
    maps::{Ban, KernelMaps},
};
use blocker_common::origin;
use blocker_tests::{
    daemon::{Daemon as Running, settings},
    fake_lapi::{FakeLapi, Fault, HUGE_DECISION_COUNT, decision},
    netns::Lan,
    privileged,
};
use ipnet::IpNet;
use serde_json::Value;

const API_KEY: &str = "fake-lapi-test-key";
/// The client's limit for a whole request: short, so that a `Slow` answer fails fast.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The first retry of a failed full pull waits half this to this (`set_full_retry_base`).
const FULL_RETRY: Duration = Duration::from_millis(400);
/// How long every decision of these tests lasts.
const DURATION: &str = "4h";
const DURATION_NS: u64 = 4 * 3_600 * 1_000_000_000;

/// What LAPI holds before the fault: an IPv4 address and range, an IPv6 address and range.
const SEED: [(&str, &str); 4] = [
    ("Ip", "198.51.100.7"),
    ("Range", "203.0.113.128/25"),
    ("Ip", "2001:db8:7::7"),
    ("Range", "2001:db8:100::/48"),
];
/// What changes in LAPI while the fault lasts: one decision added, one deleted.
const ADDED: [(&str, &str); 1] = [("Ip", "198.51.100.99")];
const DELETED: [&str; 1] = ["203.0.113.128/25"];

/// `"198.51.100.7"` → `198.51.100.7/32`, `"2001:db8:100::/48"` → itself.
fn net(value: &str) -> IpNet {
    value
        .parse()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .unwrap_or_else(|e| panic!("{value:?}: {e}"))
}

fn nets(bans: &[Ban]) -> BTreeSet<IpNet> {
    bans.iter().map(|b| b.net).collect()
}

/// The fake LAPI and, beside it, what its full (`startup=true`) answer holds, by prefix.
struct Fake {
    lapi: FakeLapi,
    current: BTreeMap<IpNet, Value>,
}

impl Fake {
    /// A fake LAPI holding the [`SEED`] decisions.
    fn seeded() -> Fake {
        let mut fake = Fake {
            lapi: FakeLapi::start(),
            current: BTreeMap::new(),
        };
        fake.change(&SEED, &[]);
        fake
    }

    /// Adds decisions on `added` (scope, value) and deletes those on `deleted`, like
    /// `cscli decisions add/delete`: the next delta answer carries them.
    fn change(&mut self, added: &[(&str, &str)], deleted: &[&str]) {
        // A deletion names the decision it ends by id: hand back the very item that was added.
        let deleted = deleted
            .iter()
            .map(|value| {
                self.current
                    .remove(&net(value))
                    .unwrap_or_else(|| panic!("no current decision on {value}"))
            })
            .collect();
        let added: Vec<Value> = added
            .iter()
            .map(|&(scope, value)| {
                let item = decision(scope, value, "ban", DURATION);
                self.current.insert(net(value), item.clone());
                item
            })
            .collect();
        self.lapi.set_decisions(added, deleted);
    }

    /// The prefixes of the full answer.
    fn nets(&self) -> BTreeSet<IpNet> {
        self.current.keys().copied().collect()
    }

    /// The `startup` query parameter of every request so far.
    fn startups(&self) -> Vec<String> {
        self.lapi
            .requests()
            .iter()
            .map(|r| r.query_param("startup").unwrap_or_default())
            .collect()
    }
}

/// The real program, loaded but not attached, and an [`Enforcer`] keeping its maps.
struct Daemon {
    enforcer: Enforcer,
    /// Keeps the program loaded beside its maps, as `daemon::run` does.
    _ebpf: Ebpf,
}

impl Daemon {
    /// An enforcer pulling from `fake`, each request limited to `timeout`; its maps are empty.
    fn start(fake: &Fake, timeout: Duration) -> Daemon {
        let daemon = Daemon::adopting(fake, timeout, &[]);
        assert!(daemon.bans().is_empty(), "freshly loaded maps hold bans");
        daemon
    }

    /// An enforcer as [`Daemon::start`] makes, over maps already holding `pinned`, as a
    /// restarted daemon finds them.
    fn adopting(fake: &Fake, timeout: Duration, pinned: &[Ban]) -> Daemon {
        Daemon::at(&fake.lapi.url(), timeout, pinned)
    }

    /// An enforcer as [`Daemon::adopting`] makes, pulling from `url`.
    fn at(url: &str, timeout: Duration, pinned: &[Ban]) -> Daemon {
        // Sized for the huge answer, as an admin sizes `max_addresses` for their lists.
        let capacity = blocker::loader::Capacity {
            addresses: u32::try_from(HUGE_DECISION_COUNT).expect("fits"),
        };
        let mut ebpf = loader::load(capacity)
            .unwrap_or_else(|e| panic!("load the XDP object: {}", error_chain(&e)));
        let mut maps = KernelMaps::take(&mut ebpf).expect("take the maps");
        for &ban in pinned {
            maps.insert_ban(ban).expect("a pinned ban");
        }
        let mut settings = LapiSettings::new(
            url.parse().expect("LAPI URL"),
            LapiAuth::ApiKey(ApiKey::new(API_KEY.to_owned())),
        );
        settings.timeout = timeout;
        let client = LapiClient::new(&settings).expect("LAPI client");
        let enforcer = Enforcer::new(client, maps, &["ban".to_owned()]).expect("enforcer");
        Daemon {
            enforcer,
            _ebpf: ebpf,
        }
    }

    async fn pull(&mut self) -> Result<PullReport, LapiError> {
        self.enforcer.pull().await
    }

    async fn pull_ok(&mut self, what: &str) -> PullReport {
        self.pull()
            .await
            .unwrap_or_else(|e| panic!("{what}: the pull failed: {}", error_chain(&e)))
    }

    /// Every ban in the kernel maps, sorted.
    fn bans(&self) -> Vec<Ban> {
        let mut bans = self.enforcer.maps().bans().expect("read the ban maps");
        bans.sort_by_key(|b| (b.net, b.expires_at_ns, b.origin));
        bans
    }

    /// The maps hold exactly `want`, each ban from `cscli` ending in about [`DURATION`].
    fn assert_holds(&self, want: &BTreeSet<IpNet>, what: &str) {
        let bans = self.bans();
        assert_eq!(&nets(&bans), want, "{what}: the prefixes in the maps");
        let now = clock::now_ns();
        // A single address's kernel expiry is rounded up to the address table's unit.
        let late = now + DURATION_NS + (1 << blocker_common::table::EXPIRY_SHIFT);
        let early = now + DURATION_NS - 60 * 1_000_000_000;
        for ban in &bans {
            assert_eq!(ban.origin, origin::CSCLI, "{what}: origin of {ban:?}");
            assert!(
                (early..=late).contains(&ban.expires_at_ns),
                "{what}: {ban:?} should end in about {DURATION} (clock now {now})"
            );
        }
    }

    /// The first pull: the maps then hold the whole [`SEED`].
    async fn seed(&mut self, fake: &Fake, what: &str) -> Vec<Ban> {
        let report = self.pull_ok(what).await;
        assert!(
            report.startup,
            "{what}: the first pull is a full one: {report:?}"
        );
        assert_eq!(
            (report.new, report.skipped),
            (SEED.len(), 0),
            "{what}: {report:?}"
        );
        self.assert_holds(&fake.nets(), &format!("{what}, after the first pull"));
        self.bans()
    }
}

/// Faults that break the whole answer, with what the error chain must say.
fn breaking_faults() -> [(Fault, &'static str); 7] {
    [
        (Fault::Status(403), "refused the api key (403 Forbidden)"),
        (Fault::Status(500), "answered 500 Internal Server Error"),
        (Fault::Slow(TIMEOUT * 2), "operation timed out"),
        (Fault::ResetMidBody, "Connection reset by peer"),
        (Fault::Truncated, "EOF while parsing"),
        (Fault::Garbage, "expected value at line 1 column 1"),
        (Fault::WrongTopLevelTypes, "as a list of decisions or null"),
    ]
}

#[tokio::test]
async fn breaking_faults_change_nothing_and_a_resync_recovers() {
    if !privileged("breaking_faults_change_nothing_and_a_resync_recovers") {
        return;
    }
    for (fault, cause) in breaking_faults() {
        let what = format!("fault {fault:?}");
        let mut fake = Fake::seeded();
        let mut daemon = Daemon::start(&fake, TIMEOUT);
        // 30 s in production.
        daemon.enforcer.set_full_retry_base(FULL_RETRY);
        let before = daemon.seed(&fake, &what).await;

        fake.change(&ADDED, &DELETED);
        fake.lapi.set_fault(fault.clone());
        // The delta fails; the retry, a full pull, fails too.
        let mut error = String::new();
        for attempt in ["delta", "retry"] {
            let e = daemon
                .pull()
                .await
                .err()
                .unwrap_or_else(|| panic!("{what}: the {attempt} pull succeeded"));
            error = error_chain(&e);
            assert!(
                error.contains(cause),
                "{what}: the {attempt} pull's error should say {cause:?}: {error}"
            );
            assert_eq!(
                daemon.bans(),
                before,
                "{what}: the {attempt} pull changed the maps"
            );
        }

        fake.lapi.clear_fault();
        // The failed full pull backs off on its own; a delta comes first. A `Slow` answer was
        // handed over (as real LAPI does) to the client that gave up on it: only the resync
        // brings its changes.
        let report = daemon.pull_ok(&format!("{what}, cleared")).await;
        assert!(
            !report.startup,
            "{what}: while the failed full pull backs off, a delta: {report:?}"
        );
        let handed_over = matches!(fault, Fault::Slow(_));
        let after_delta = if handed_over {
            nets(&before)
        } else {
            fake.nets()
        };
        daemon.assert_holds(&after_delta, &format!("{what}, after the delta"));
        let owed = daemon
            .enforcer
            .resync_owed()
            .unwrap_or_else(|| panic!("{what}: the failed full pull is still owed"));
        assert!(
            owed <= FULL_RETRY,
            "{what}: the first full retry waits {owed:?}"
        );
        tokio::time::sleep(owed).await;
        // A delta first, then the full pull, in one `pull`: should the full one fail again,
        // it would take with it only what came in between.
        let report = daemon.pull_ok(&format!("{what}, resync")).await;
        assert!(
            report.startup,
            "{what}: once its backoff is over, the owed full resync: {report:?}"
        );
        assert_eq!(report.skipped, 0, "{what}: {report:?}");
        daemon.assert_holds(&fake.nets(), &format!("{what}, after the resync"));
        assert_eq!(daemon.enforcer.resync_owed(), None, "{what}: resync done");
        assert_eq!(
            fake.startups(),
            ["true", "false", "true", "false", "false", "true"],
            "{what}: startup= of each request"
        );
        println!(
            "fault {fault:?}: pull failed with \"{error}\", maps unchanged ({} prefixes); \
             a delta while the full pull backed off {owed:?}, then the resync ({} prefixes)",
            before.len(),
            fake.nets().len()
        );
    }
}

/// A fault whose answer is whole but holds bad items.
struct BadItems {
    fault: Fault,
    /// Prefixes banned by the valid items the fault's answer carries.
    extra: &'static [&'static str],
    /// Whether the fault's answer carries the changes queued meanwhile (else the next does).
    hands_over: bool,
}

fn bad_item_faults() -> [BadItems; 3] {
    [
        BadItems {
            fault: Fault::WrongItemTypes,
            extra: &["203.0.113.7"],
            hands_over: false,
        },
        BadItems {
            fault: Fault::UnknownScopes,
            extra: &[],
            hands_over: true,
        },
        BadItems {
            fault: Fault::InvalidIps,
            extra: &[],
            hands_over: true,
        },
    ]
}

#[tokio::test]
async fn bad_items_are_skipped_and_the_rest_applied() {
    if !privileged("bad_items_are_skipped_and_the_rest_applied") {
        return;
    }
    for case in bad_item_faults() {
        let what = format!("fault {:?}", case.fault);
        let extra: BTreeSet<IpNet> = case.extra.iter().map(|v| net(v)).collect();
        let mut fake = Fake::seeded();
        let mut daemon = Daemon::start(&fake, TIMEOUT);
        // 30 s in production.
        daemon.enforcer.set_full_retry_base(FULL_RETRY);
        let before = daemon.seed(&fake, &what).await;

        fake.change(&ADDED, &DELETED);
        fake.lapi.set_fault(case.fault.clone());
        let report = daemon.pull_ok(&what).await;
        assert!(!report.startup, "{what}: {report:?}");
        assert!(report.skipped > 0, "{what}: no item skipped: {report:?}");
        assert_eq!(report.applied.failed, 0, "{what}: {report:?}");
        let delivered = if case.hands_over {
            fake.nets()
        } else {
            nets(&before)
        };
        let want = &delivered | &extra;
        daemon.assert_holds(&want, &format!("{what}, after the faulty pull"));
        let after = daemon.bans();
        for ban in before.iter().filter(|b| want.contains(&b.net)) {
            assert!(after.contains(ban), "{what}: {ban:?} was lost or rewritten");
        }

        fake.lapi.clear_fault();
        let cleared = daemon.pull_ok(&format!("{what}, cleared")).await;
        assert!(!cleared.startup, "{what}, cleared: {cleared:?}");
        assert_eq!(cleared.skipped, 0, "{what}, cleared: {cleared:?}");
        daemon.assert_holds(&(&fake.nets() | &extra), &format!("{what}, cleared"));
        println!(
            "fault {:?}: pull succeeded, {} items skipped, {} banned, {} unbanned, \
             nothing lost ({} prefixes); next delta in step ({} prefixes)",
            case.fault,
            report.skipped,
            report.applied.banned,
            report.applied.unbanned,
            want.len(),
            daemon.bans().len()
        );
    }
}

#[tokio::test]
async fn a_huge_answer_is_enforced_and_a_resync_removes_it() {
    if !privileged("a_huge_answer_is_enforced_and_a_resync_removes_it") {
        return;
    }
    let what = "fault Huge";
    let fake = Fake::seeded();
    // The whole request, ~56 MB generated and parsed by debug builds, within the default limit.
    let mut daemon = Daemon::start(&fake, blocker::lapi::DEFAULT_TIMEOUT);
    let seeded = daemon.seed(&fake, what).await;

    fake.lapi.set_fault(Fault::Huge);
    let start = Instant::now();
    let report = daemon.pull_ok(what).await;
    let pulled_in = start.elapsed();
    assert!(!report.startup, "{what}: {report:?}");
    assert_eq!(
        (
            report.new,
            report.skipped,
            report.applied.banned,
            report.applied.failed
        ),
        (HUGE_DECISION_COUNT, 0, HUGE_DECISION_COUNT, 0),
        "{what}: {report:?}"
    );
    let bans = daemon.bans();
    assert_eq!(
        bans.len(),
        HUGE_DECISION_COUNT + SEED.len(),
        "{what}: bans in the maps"
    );
    // What the fake streams: addresses of the benchmarking range, then of the documentation one.
    let huge_ranges: [IpNet; 2] = [net("198.18.0.0/15"), net("2001:db8::/32")];
    for ban in &bans {
        let host = ban.net.prefix_len() == ban.net.max_prefix_len();
        assert!(
            seeded.contains(ban) || (host && huge_ranges.iter().any(|r| r.contains(&ban.net))),
            "{what}: unexpected ban {ban:?}"
        );
    }
    daemon.assert_holds(&nets(&bans), what);
    println!(
        "fault Huge: {HUGE_DECISION_COUNT} decisions pulled and written in {pulled_in:?}, \
         the maps hold {} prefixes",
        bans.len()
    );

    // The huge bans were a delta; LAPI's full answer never lists them, so a resync must drop
    // them. A failed pull is what makes the next one a resync.
    fake.lapi.set_fault(Fault::Status(503));
    let e = daemon.pull().await.expect_err("a pull answered 503");
    assert!(error_chain(&e).contains("503"), "{}", error_chain(&e));
    assert_eq!(
        daemon.bans().len(),
        HUGE_DECISION_COUNT + SEED.len(),
        "{what}: 503 changed the maps"
    );
    fake.lapi.clear_fault();
    let start = Instant::now();
    let report = daemon.pull_ok(&format!("{what}, resync")).await;
    let resynced_in = start.elapsed();
    assert!(report.startup, "{what}, resync: {report:?}");
    assert_eq!(
        (report.applied.unbanned, report.applied.failed),
        (HUGE_DECISION_COUNT, 0),
        "{what}, resync: {report:?}"
    );
    daemon.assert_holds(&fake.nets(), &format!("{what}, after the resync"));
    println!(
        "fault Huge: resync removed {} bans in {resynced_in:?}, the maps hold {} prefixes",
        report.applied.unbanned,
        daemon.bans().len()
    );
}

#[tokio::test]
async fn requests_carry_the_key_the_agent_and_the_filters() {
    if !privileged("requests_carry_the_key_the_agent_and_the_filters") {
        return;
    }
    let mut fake = Fake::seeded();
    let mut daemon = Daemon::start(&fake, TIMEOUT);
    daemon.seed(&fake, "request shape").await;
    fake.change(&ADDED, &DELETED);
    let report = daemon.pull_ok("request shape, delta").await;
    assert!(!report.startup, "{report:?}");
    assert_eq!(
        (report.new, report.deleted),
        (ADDED.len(), DELETED.len()),
        "{report:?}"
    );
    daemon.assert_holds(&fake.nets(), "request shape, after the delta");

    let requests = fake.lapi.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(USER_AGENT.starts_with("crowdsec-blocker/"), "{USER_AGENT}");
    for (request, startup) in requests.iter().zip(["true", "false"]) {
        assert_eq!(request.method, "GET", "{request:#?}");
        assert!(
            request
                .path_and_query
                .starts_with(&format!("/v1/decisions/stream?startup={startup}")),
            "{request:#?}"
        );
        assert_eq!(
            request.query_param("scopes").as_deref(),
            Some("ip,range"),
            "{request:#?}"
        );
        assert_eq!(request.header("x-api-key"), Some(API_KEY), "{request:#?}");
        assert_eq!(
            request.header("user-agent"),
            Some(USER_AGENT),
            "{request:#?}"
        );
    }
    println!(
        "requests: GET {} then GET {}, X-Api-Key and User-Agent {USER_AGENT:?} on both",
        requests[0].path_and_query, requests[1].path_and_query
    );
}

/// Requests with `method` the fake has received so far.
fn received(lapi: &FakeLapi, method: &str) -> usize {
    lapi.requests()
        .iter()
        .filter(|r| r.method == method)
        .count()
}

/// Waits until the fake has received more than `count` requests with `method`.
fn wait_for_more(lapi: &FakeLapi, method: &str, count: usize) {
    let asked = Instant::now();
    while received(lapi, method) <= count {
        assert!(
            asked.elapsed() < Duration::from_mins(1),
            "the daemon sent no new {method}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stop_does_not_wait_for_a_hung_lapi() {
    if !privileged("a_stop_does_not_wait_for_a_hung_lapi") {
        return;
    }
    let lan = Lan::mail_scene();
    let (mail, _, _) = lan.roles();
    let lapi = mail.ns.run(FakeLapi::start);
    let hung = Fault::Slow(Duration::from_mins(10));
    let start = || {
        let mut settings = settings(&lapi.url(), API_KEY);
        settings.lapi.timeout = Duration::from_mins(5);
        Running::start(&mail.ns, settings)
    };
    // Our unit's TimeoutStopSec is 30 s; each hung request would take 300 (a usage report 10).
    let stop_quickly = |daemon: Running, stuck_in: &str| {
        let stopping = Instant::now();
        drop(daemon);
        let took = stopping.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "a stop while LAPI hangs in {stuck_in} took {took:?}"
        );
        println!("stop while LAPI hangs in {stuck_in}: {took:?}");
    };
    // Stuck in the check at start (HEAD).
    lapi.set_fault(hung.clone());
    let daemon = start();
    wait_for_more(&lapi, "HEAD", 0);
    stop_quickly(daemon, "the check");
    // Stuck in a pull (GET), after one went well.
    lapi.clear_fault();
    let daemon = start();
    let pulls = received(&lapi, "GET");
    wait_for_more(&lapi, "GET", pulls);
    lapi.set_fault(hung);
    wait_for_more(&lapi, "GET", pulls + 1);
    stop_quickly(daemon, "a pull");
    // Stuck in a usage-metrics report (its own timeout is 10 s).
    lapi.clear_fault();
    lapi.set_usage_metrics_delay(Duration::from_mins(10));
    let mut settings = settings(&lapi.url(), API_KEY);
    settings.usage_metrics = Some(Duration::from_millis(200));
    let daemon = Running::start(&mail.ns, settings);
    wait_for_more(&lapi, "POST", received(&lapi, "POST"));
    stop_quickly(daemon, "a usage-metrics report");
}

#[tokio::test]
async fn adopted_bans_that_lapse_while_lapi_is_down_leave_the_active_count() {
    if !privileged("adopted_bans_that_lapse_while_lapi_is_down_leave_the_active_count") {
        return;
    }
    let fake = Fake::seeded();
    fake.lapi.set_fault(Fault::Status(503));
    // Far enough ahead to outlast loading the program beside the other tests.
    let lapses = clock::now_ns() + 5_000_000_000;
    let pinned = [
        Ban {
            net: net("198.51.100.7/32"),
            expires_at_ns: lapses,
            origin: origin::CSCLI,
        },
        Ban {
            net: net("203.0.113.128/25"),
            expires_at_ns: u64::MAX,
            origin: origin::CSCLI,
        },
    ];
    let mut daemon = Daemon::adopting(&fake, TIMEOUT, &pinned);
    assert!(daemon.pull().await.is_err(), "LAPI is down");
    let active = |daemon: &Daemon| {
        let mut snapshot = blocker::metrics::Snapshot::default();
        daemon.enforcer.refresh(&mut snapshot).expect("refresh");
        snapshot.active.values().sum::<u64>()
    };
    assert_eq!(active(&daemon), 2, "both pinned bans count");
    // Past it, and past the address table's rounding of it.
    let rounded_up = lapses + (1 << blocker_common::table::EXPIRY_SHIFT);
    tokio::time::sleep(Duration::from_nanos(
        rounded_up.saturating_sub(clock::now_ns()),
    ))
    .await;
    daemon.enforcer.expire();
    assert_eq!(
        active(&daemon),
        1,
        "the ban that lapsed in the kernel no longer counts (blocker_active_decisions)"
    );
}

/// A newer LAPI closes its startup answer early but well-formed when its database fails
/// half-way: the full pull after a failure takes it as the whole list, and the deltas after it
/// never carry what it left out. The hourly `startup=true` pull (`FULL_RESYNC_EVERY`, due at
/// once here) brings those decisions back; being due by the clock alone, it only adds, so one
/// cut short lifts nothing.
#[tokio::test]
async fn bans_a_cut_short_startup_answer_left_out_come_back_with_the_hourly_full_pull() {
    if !privileged("bans_a_cut_short_startup_answer_left_out_come_back_with_the_hourly_full_pull") {
        return;
    }
    let fake = Fake::seeded();
    let mut daemon = Daemon::start(&fake, TIMEOUT);
    daemon.seed(&fake, "cut short").await;
    daemon.enforcer.set_full_resync_every(Duration::MAX);
    // A failed pull makes the next one a full pull, which LAPI cuts short.
    fake.lapi.set_fault(Fault::Status(500));
    assert!(daemon.pull().await.is_err(), "the pull during the 500");
    fake.lapi.set_fault(Fault::CutShortList);
    let report = daemon.pull_ok("the cut-short full pull").await;
    assert!(report.startup, "{report:?}");
    let held = nets(&daemon.bans()).len();
    assert!(
        held < fake.nets().len(),
        "the cut-short answer lifted bans: {held} held"
    );
    fake.lapi.clear_fault();
    let report = daemon.pull_ok("a delta").await;
    assert!(!report.startup, "{report:?}");
    assert_eq!(
        nets(&daemon.bans()).len(),
        held,
        "a delta does not repair it"
    );

    daemon.enforcer.set_full_resync_every(Duration::ZERO);
    let report = daemon.pull_ok("the hourly full pull").await;
    assert!(report.startup, "{report:?}");
    daemon.assert_holds(&fake.nets(), "after the hourly full pull");
    fake.lapi.set_fault(Fault::CutShortList);
    let report = daemon.pull_ok("an hourly full pull cut short").await;
    assert!(report.startup, "{report:?}");
    daemon.assert_holds(&fake.nets(), "after an hourly full pull cut short");
    println!(
        "a cut-short startup answer left {held} of {} bans; the hourly full pull restored all, and one cut short lifted none",
        fake.nets().len()
    );
}

/// LAPI down (connection refused) saw no request: no answer was lost, and its answer is not
/// what fails, so the owed full pull is not held back: it is the very next pull, and LAPI is
/// resynced as soon as it is back.
#[tokio::test]
async fn while_lapi_is_unreachable_the_full_pull_is_not_held_back() {
    if !privileged("while_lapi_is_unreachable_the_full_pull_is_not_held_back") {
        return;
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}/", closed.local_addr().expect("its address"));
    drop(closed);
    let mut daemon = Daemon::at(&url, TIMEOUT, &[]);
    daemon.enforcer.set_full_retry_base(Duration::from_mins(1));
    for attempt in 0..3 {
        let e = daemon.pull().await.expect_err("LAPI is down");
        assert!(
            matches!(e, LapiError::Unreachable { .. }),
            "attempt {attempt}: {}",
            error_chain(&e)
        );
        assert_eq!(
            daemon.enforcer.resync_owed(),
            Some(Duration::ZERO),
            "attempt {attempt}: the full pull is due at once"
        );
    }
}
