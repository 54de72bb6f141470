//! The daemon against a real `CrowdSec` LAPI (Debian's package), end to end across network
//! namespaces: decisions made with `cscli` reach the kernel within seconds and lift on time.
//! LAPI and the daemon both run on the mail host (its loopback), as in production.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use blocker::state::DaemonState;
use blocker_tests::{
    daemon::{self, Daemon},
    lapi::{ImportDecision, Lapi, http_get},
    netns::{Host, Lan, Listeners, connects},
    privileged,
};

/// How long a decision may take to reach the kernel, or to leave it (the promise at
/// `update_frequency: 1s`).
const WITHIN: Duration = Duration::from_secs(3);
const PROBE: Duration = Duration::from_millis(300);

/// The daemon's Prometheus endpoint, on the mail host's own loopback.
const METRICS: &str = "127.0.0.1:60602";

/// The value of the series `name` whose labels include every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(&format!("{name}{{")) && labels.iter().all(|label| l.contains(label))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} with {labels:?} in:\n{text}"))
}

/// Waits up to `within` for `reachable(port)` to be `want` on every port; panics otherwise.
fn until(
    what: &str,
    within: Duration,
    from: &Host,
    to: IpAddr,
    ports: &[u16],
    want: bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if ports.iter().all(|p| connects(from, to, *p, PROBE) == want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what}: not {} within {within:?}",
            if want { "reachable" } else { "blocked" }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn blocked(what: &str, from: &Host, to: IpAddr) -> Duration {
    let took = until(what, WITHIN, from, to, &[25, 993], false);
    assert!(
        connects(from, to, 8080, Duration::from_secs(1)),
        "{what}: unprotected port 8080 must stay reachable"
    );
    took
}

fn reachable(what: &str, from: &Host, to: IpAddr) -> Duration {
    until(what, WITHIN, from, to, &[25, 993], true)
}

/// The mail host's side of a test: a real LAPI on its loopback with a bouncer key for
/// blocker, listeners on 25, 993 and the unprotected 8080, and a test daemon's settings.
fn serve_mail(mail: &Host) -> (Lapi, blocker::daemon::DaemonSettings, Listeners) {
    let lapi = mail.ns.run(Lapi::start);
    let key = mail.ns.run(|| lapi.add_bouncer("blocker-test"));
    let listeners = Listeners::start(mail, &[25, 993, 8080]);
    let settings = daemon::settings(&lapi.url(), &key);
    (lapi, settings, listeners)
}

#[test]
fn decisions_from_cscli_are_enforced_and_lifted() {
    if !privileged("decisions_from_cscli_are_enforced_and_lifted") {
        return;
    }
    let lan = Lan::mail_scene();
    let (mail, attacker, client) = lan.roles();
    let (v4, v6) = (IpAddr::V4(mail.v4), IpAddr::V6(mail.v6));
    let (lapi, mut settings, _listeners) = serve_mail(mail);
    settings.prometheus = Some(METRICS.parse().expect("metrics address"));
    let _daemon = Daemon::start(&mail.ns, settings);

    reachable("before any decision", attacker, v4);

    mail.ns
        .run(|| lapi.add_decision_ip("203.0.113.66", "4h", "ban"));
    let took = blocked("--ip ban (IPv4)", attacker, v4);
    println!("IPv4 --ip ban enforced after {took:?}");
    reachable("clean client during the ban", client, v4);
    reachable("the attacker over IPv6 (not banned)", attacker, v6);
    std::thread::sleep(Duration::from_millis(1100)); // the metrics snapshot refreshes every second
    let scrape = mail
        .ns
        .run(|| http_get(&format!("http://{METRICS}/metrics"), &[]).expect("scrape"));
    let text = String::from_utf8(scrape.body).expect("utf-8");
    let dropped = metric(
        &text,
        "blocker_dropped_packets_total",
        &["origin=\"cscli\"", "ip_type=\"ipv4\""],
    );
    assert!(
        dropped >= 2.0,
        "the daemon's metrics show the drops:\n{text}"
    );
    let active = metric(
        &text,
        "blocker_active_decisions",
        &["origin=\"cscli\"", "ip_type=\"ipv4\""],
    );
    assert!(
        (active - 1.0).abs() < f64::EPSILON,
        "one active cscli decision, not {active}"
    );
    println!("Prometheus on the daemon: {dropped} IPv4 SYNs dropped, 1 active cscli decision");

    mail.ns.run(|| lapi.delete_decisions_ip("203.0.113.66"));
    let took = reachable("after delete", attacker, v4);
    println!("IPv4 ban lifted after {took:?}");

    mail.ns
        .run(|| lapi.add_decision_range("203.0.113.64/30", "4h", "ban"));
    blocked("--range ban (IPv4)", attacker, v4);
    reachable("clean client outside the range", client, v4);
    mail.ns
        .run(|| lapi.delete_decisions_range("203.0.113.64/30"));
    reachable("after range delete", attacker, v4);

    mail.ns
        .run(|| lapi.add_decision_range("2001:db8:25::60/124", "4h", "ban"));
    let took = blocked("--range ban (IPv6)", attacker, v6);
    println!("IPv6 --range ban enforced after {took:?}");
    reachable("clean IPv6 client outside the range", client, v6);
    mail.ns
        .run(|| lapi.delete_decisions_range("2001:db8:25::60/124"));
    reachable("after IPv6 range delete", attacker, v6);

    mail.ns
        .run(|| lapi.add_decision_ip("2001:db8:25::66", "5s", "ban"));
    blocked("5 s IPv6 ban", attacker, v6);
    let start = Instant::now();
    until(
        "5 s ban lifting by itself",
        Duration::from_secs(5) + WITHIN,
        attacker,
        v6,
        &[25, 993],
        true,
    );
    println!(
        "5 s ban lifted by itself {:?} after it was seen",
        start.elapsed()
    );

    mail.ns
        .run(|| lapi.add_decision_ip("203.0.113.66", "4h", "captcha"));
    std::thread::sleep(WITHIN);
    assert!(
        connects(attacker, v4, 25, Duration::from_secs(1)),
        "a captcha decision must be ignored"
    );
}

#[test]
fn enforcement_survives_a_lapi_restart() {
    if !privileged("enforcement_survives_a_lapi_restart") {
        return;
    }
    let lan = Lan::mail_scene();
    let (mail, attacker, _) = lan.roles();
    let (v4, v6) = (IpAddr::V4(mail.v4), IpAddr::V6(mail.v6));
    let (lapi, settings, _listeners) = serve_mail(mail);
    let _daemon = Daemon::start(&mail.ns, settings);

    mail.ns
        .run(|| lapi.add_decision_ip("203.0.113.66", "4h", "ban"));
    blocked("ban before the restart", attacker, v4);

    mail.ns.run(|| lapi.stop());
    // Several failed pulls: the ban must hold all along.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            !connects(attacker, v4, 25, PROBE),
            "the ban lapsed while LAPI was down"
        );
    }
    mail.ns.run(|| lapi.restart());
    // The daemon is backing off: this decision lands before its next pull, a delta or the
    // full resync, either of which picks it up (LAPI saw none of the failed pulls).
    mail.ns
        .run(|| lapi.add_decision_ip("2001:db8:25::66", "4h", "ban"));
    let took = until(
        "IPv6 ban made after the restart",
        Duration::from_secs(15),
        attacker,
        v6,
        &[25, 993],
        false,
    );
    println!("decision made after the LAPI restart enforced after {took:?}");
    assert!(
        !connects(attacker, v4, 25, PROBE),
        "the ban from before the restart still holds"
    );
}

/// Two decisions on one address, 4 h and 1 h: deleting the longer one by id leaves the shorter
/// in force, ending when it does; deleting that one too lifts the ban. (By default LAPI
/// answers only the longest decision on a value, and says nothing when it is deleted while a
/// shorter one lasts: the address stayed banned for the 4 h.)
#[test]
fn deleting_one_of_two_decisions_on_an_address_leaves_the_other() {
    if !privileged("deleting_one_of_two_decisions_on_an_address_leaves_the_other") {
        return;
    }
    let lan = Lan::mail_scene();
    let (mail, attacker, _) = lan.roles();
    let v4 = IpAddr::V4(mail.v4);
    let (lapi, settings, _listeners) = serve_mail(mail);
    let pins = settings.pin_dir.clone();
    let _daemon = Daemon::start(&mail.ns, settings);

    mail.ns.run(|| {
        lapi.add_decision_ip("203.0.113.66", "4h", "ban");
        lapi.add_decision_ip("203.0.113.66", "1h", "ban");
    });
    blocked("two bans on one address", attacker, v4);
    // A fresh database numbers the decisions as they come: 1 is the 4 h one.
    let (long, short) = ("1", "2");
    let ends_in = || {
        let bans = blocker::maps::KernelMaps::from_pins(&pins)
            .and_then(|maps| maps.bans())
            .expect("read the pinned bans");
        let ban = bans
            .iter()
            .find(|b| b.net == "203.0.113.66/32".parse().expect("a prefix"))
            .expect("the address is banned");
        Duration::from_nanos(ban.expires_at_ns.saturating_sub(blocker::clock::now_ns()))
    };
    assert!(ends_in() > Duration::from_hours(3), "{:?}", ends_in());

    mail.ns
        .run(|| lapi.cscli(&["decisions", "delete", "--id", long]));
    let start = Instant::now();
    while ends_in() > Duration::from_hours(1) {
        assert!(
            start.elapsed() < WITHIN,
            "after the 4 h decision's deletion the ban still ends in {:?}",
            ends_in()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !connects(attacker, v4, 25, PROBE),
        "the 1 h decision still bans"
    );
    println!(
        "the 4 h decision deleted: the ban now ends with the 1 h one, in {:?}",
        ends_in()
    );

    mail.ns
        .run(|| lapi.cscli(&["decisions", "delete", "--id", short]));
    reachable("both decisions deleted", attacker, v4);
}

/// An allow-listed client inside a banned range keeps reaching the mail ports while the
/// attacker beside it is refused. The daemon has the program look its family's allow list up
/// only while that ban lasts (`blocker status`: "overlapping N bans"), and stops once it is
/// deleted.
#[test]
fn an_allow_listed_host_inside_a_banned_range_stays_reachable() {
    if !privileged("an_allow_listed_host_inside_a_banned_range_stays_reachable") {
        return;
    }
    let lan = Lan::mail_scene();
    let (mail, attacker, client) = lan.roles();
    let v4 = IpAddr::V4(mail.v4);
    let (lapi, mut settings, _listeners) = serve_mail(mail);
    settings.allowlist = vec![IpAddr::V4(client.v4).into()];
    let pins = settings.pin_dir.clone();
    let _daemon = Daemon::start(&mail.ns, settings);
    reachable("before any decision", attacker, v4);
    // (IPv4's allow list looked up, bans it overlaps), as `blocker status` reads them.
    let allow_lookups = || {
        let start = Instant::now();
        let maps = loop {
            match blocker::maps::KernelMaps::from_pins(&pins) {
                Ok(maps) => break maps,
                // Not pinned yet: the daemon is still starting.
                Err(e) => assert!(start.elapsed() < WITHIN, "{}", blocker::error_chain(&e)),
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let flags = maps.settings().expect("settings").flags;
        (
            flags & blocker_common::flags::ALLOW_V4 != 0,
            maps.allow_overlaps(),
        )
    };
    assert_eq!(
        allow_lookups(),
        (false, 0),
        "no ban overlaps the allow list"
    );

    let range = "203.0.113.0/24";
    mail.ns.run(|| lapi.add_decision_range(range, "4h", "ban"));
    blocked("the attacker in the banned range", attacker, v4);
    reachable("the allow-listed client in the banned range", client, v4);
    assert_eq!(allow_lookups(), (true, 1));

    mail.ns.run(|| lapi.delete_decisions_range(range));
    reachable("the attacker, the range deleted", attacker, v4);
    let start = Instant::now();
    while allow_lookups() != (false, 0) {
        assert!(
            start.elapsed() < WITHIN,
            "the allow list is still looked up {:?} after the ban went",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "allow-listed client reachable inside a banned /24; its allow list looked up only while the ban lasted"
    );
}

/// Decisions in the list of [`new_bans_are_enforced_while_the_full_list_is_over_max_body_bytes`].
const LIST: u32 = 400;

/// A block list grown past the answer size limit (`max_body_bytes`, lowered here) makes every
/// full (`startup=true`) pull fail, the first one at start-up included; the daemon says why, retries the full pull on its own
/// backoff, and pulls deltas meanwhile, so a ban `cscli` makes now still reaches the kernel
/// within seconds.
#[test]
fn new_bans_are_enforced_while_the_full_list_is_over_max_body_bytes() {
    if !privileged("new_bans_are_enforced_while_the_full_list_is_over_max_body_bytes") {
        return;
    }
    let lan = Lan::mail_scene();
    let (mail, attacker, _) = lan.roles();
    let v4 = IpAddr::V4(mail.v4);
    let (lapi, mut settings, _listeners) = serve_mail(mail);
    // About 250 bytes of JSON a decision: the full answer is ~100 KB, a delta of one ~300 B.
    mail.ns.run(|| {
        lapi.import_decisions(
            (0..LIST).map(|i| ImportDecision::new(Ipv4Addr::from(0xF000_0000 + i), "4h", "ban")),
        )
    });
    settings.lapi.max_body_bytes = 16 << 10;
    let state_file = settings.state_file.clone();
    let _daemon = Daemon::start(&mail.ns, settings);

    // LAPI marks its last pull for us even for the answer we refused: a decision made before
    // the first pull's answer would be neither in it (refused) nor in the deltas after it.
    let start = Instant::now();
    let error = loop {
        if let Some(error) = DaemonState::load(&state_file)
            .ok()
            .and_then(|s| s.last_error)
        {
            break error;
        }
        assert!(
            start.elapsed() < WITHIN,
            "the first full pull has not failed within {WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        error.contains("larger than 16384 bytes"),
        "the error names the limit: {error}"
    );

    mail.ns
        .run(|| lapi.add_decision_ip("203.0.113.66", "4h", "ban"));
    let took = blocked("a ban made while full pulls fail", attacker, v4);
    let state = DaemonState::load(&state_file).expect("the state file");
    assert!(
        state.last_sync.is_some() && state.last_full_sync.is_none(),
        "`blocker status` shows deltas synced, the full list never: {state:?}"
    );
    println!(
        "full answer of {LIST} decisions over max_body_bytes (\"{error}\"): a new ban enforced \
         after {took:?} by a delta"
    );
}
