//! Enforcement outlives the daemon: while a banned host sends SYNs to port 25 without pause,
//! the real `blocker` process is killed with SIGKILL, started again, and replaced by another
//! one with a new `max_addresses` (a new program, with new address tables, swapped into the
//! pinned XDP link). Not one connection from the banned host is ever accepted, and a clean
//! host connects throughout. Then `blocker detach` ends enforcement. Also exercises `status`,
//! `check` and `list` on the pinned state, and a daemon in a time namespace.

use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use blocker_tests::{
    lapi::Lapi,
    netns::{Host, Lan, Listeners, Netns, connects},
    privileged,
    process::{DaemonProcess, TestConfig, wait_for},
};

const BLOCKER: &str = env!("CARGO_BIN_EXE_blocker");

/// Connects again and again from `from` until stopped; counts attempts and successes.
struct Prober {
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    successes: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start(from: &Host, to: SocketAddr, timeout: Duration) -> Prober {
        let (stop, attempts, successes) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let name = from.ns.name.clone();
        let (s, a, ok) = (
            Arc::clone(&stop),
            Arc::clone(&attempts),
            Arc::clone(&successes),
        );
        let thread = std::thread::spawn(move || {
            blocker_tests::netns::enter(&name);
            while !s.load(Ordering::Relaxed) {
                a.fetch_add(1, Ordering::Relaxed);
                if TcpStream::connect_timeout(&to, timeout).is_ok() {
                    ok.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Prober {
            stop,
            attempts,
            successes,
            thread: Some(thread),
        }
    }

    /// Stops and returns (attempts, successes).
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("prober");
        }
        (
            self.attempts.load(Ordering::Relaxed),
            self.successes.load(Ordering::Relaxed),
        )
    }
}

fn program_id(config: &TestConfig) -> u64 {
    config.json(BLOCKER, &["status", "--json"])["program_ids"][0]
        .as_u64()
        .expect("a program id")
}

/// The third daemon's new `max_addresses` (4096) made new tables, and the ban moved in.
fn assert_tables_resized(config: &TestConfig, slots_before: &serde_json::Value) {
    let status = config.json(BLOCKER, &["status", "--json"]);
    assert_eq!(
        (
            status["tables"]["v4_slots"].as_u64(),
            status["tables"]["v4_entries"].as_u64()
        ),
        (Some(4096 * 3 / 2), Some(1)),
        "new tables at start, the ban moved in (before: {slots_before} slots): {status}\nlog:\n{}",
        config.log()
    );
    assert!(
        config.log().contains("max_addresses changed"),
        "the resize is logged:\n{}",
        config.log()
    );
}

/// A daemon that reused the pinned link says "kept" in its state file; `status`, run in the
/// mail host's namespace, asks the kernel. (From another namespace it cannot tell.)
fn assert_mode_from_the_kernel(mail: &Netns, config: &TestConfig) {
    let status = mail.run(|| config.json(BLOCKER, &["status", "--json"]));
    assert_eq!(status["xdp_modes"][0], "native", "{status}");
    let status = config.json(BLOCKER, &["status", "--json"]);
    assert_eq!(status["xdp_modes"][0], serde_json::Value::Null, "{status}");
}

#[test]
fn kill_restart_and_replace_never_let_a_banned_syn_through() {
    if !privileged("kill_restart_and_replace_never_let_a_banned_syn_through") {
        return;
    }
    let lan = Lan::mail_scene();
    let (mail, attacker, client) = lan.roles();
    let lapi = mail.ns.run(Lapi::start);
    let key = mail.ns.run(|| lapi.add_bouncer("blocker-restarts"));
    mail.ns
        .run(|| lapi.add_decision_ip("203.0.113.66", "4h", "ban"));
    let listeners = Listeners::start(mail, &[25, 8080]);

    let config = TestConfig::new("restarts", &lapi.url(), &key);
    let mail_v4 = IpAddr::V4(mail.v4);
    let attacker_v4 = IpAddr::V4(attacker.v4);

    let mut first = DaemonProcess::start(&mail.ns, &[], BLOCKER, &config);
    wait_for(
        "the ban taking effect",
        Duration::from_secs(10),
        || !connects(attacker, mail_v4, 25, Duration::from_millis(300)),
        || config.log(),
    );
    let accepted_before = listeners.accepted_from(attacker_v4);

    let to = SocketAddr::new(mail_v4, 25);
    let flood = Prober::start(attacker, to, Duration::from_millis(100));
    let legit = Prober::start(client, to, Duration::from_secs(1));
    std::thread::sleep(Duration::from_secs(2));

    first.signal(libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(3));
    let status = config.json(BLOCKER, &["status", "--json"]);
    assert_eq!(
        status["daemon_running"], false,
        "status after kill -9: {status}"
    );
    assert_eq!(
        status["banned_v4"], 1,
        "the pinned ban is still there: {status}"
    );
    assert!(
        status["daemon"]["last_full_sync"].as_u64() >= status["daemon"]["started_at"].as_u64(),
        "the first pull, a full one, is recorded: {status}"
    );
    assert_eq!(
        (
            status["tables"]["v4_entries"].as_u64(),
            status["tables"]["overflowed"].as_u64()
        ),
        (Some(1), Some(0)),
        "it is in the pinned IPv4 address table: {status}"
    );

    let mut second = DaemonProcess::start(&mail.ns, &[], BLOCKER, &config);
    std::thread::sleep(Duration::from_secs(3));
    let second_program = program_id(&config);
    assert_mode_from_the_kernel(&mail.ns, &config);
    second.signal(libc::SIGTERM);

    let slots_before = config.json(BLOCKER, &["status", "--json"])["tables"]["v4_slots"].clone();
    let mut yaml = std::fs::read_to_string(&config.path).expect("config");
    yaml.push_str("max_addresses: 4096\n");
    std::fs::write(&config.path, yaml).expect("config");
    let third = DaemonProcess::start(&mail.ns, &[], BLOCKER, &config);
    std::thread::sleep(Duration::from_secs(3));
    let third_program = program_id(&config);
    assert_ne!(
        second_program,
        third_program,
        "the new daemon's program is swapped into the pinned link; log:\n{}",
        config.log()
    );
    assert_tables_resized(&config, &slots_before);

    let (attempts, through) = flood.finish();
    let (legit_attempts, legit_ok) = legit.finish();
    let accepted = listeners.accepted_from(attacker_v4) - accepted_before;
    println!(
        "banned host: {attempts} SYNs over a kill -9, a restart and a replacement with new tables, {through} connected, {accepted} accepted; clean host: {legit_ok}/{legit_attempts} connected; programs {second_program} -> {third_program}"
    );
    assert_eq!(
        (through, accepted),
        (0, 0),
        "banned SYNs got through; log:\n{}",
        config.log()
    );
    assert!(
        attempts > 50,
        "the banned host kept sending ({attempts} attempts)"
    );
    assert_eq!(legit_ok, legit_attempts, "every clean connection succeeds");

    let check = config.json(BLOCKER, &["check", "203.0.113.66", "--json"]);
    assert_eq!(check["result"]["verdict"], "dropped", "check: {check}");
    assert_eq!(check["result"]["ban"]["origin"], "cscli", "check: {check}");
    assert_eq!(
        config.json(BLOCKER, &["check", "203.0.113.10", "--json"])["result"]["verdict"],
        "not_banned"
    );
    let list = config.json(BLOCKER, &["list", "--json", "--v4"]);
    assert_eq!(list[0]["prefix"], "203.0.113.66/32", "list: {list}");

    // The third daemon swapped its program into a link it did not make: detach must still end
    // enforcement at once, with that daemon running.
    let _ = config.cli(BLOCKER, &["detach"]);
    assert!(
        connects(attacker, mail_v4, 25, Duration::from_secs(1)),
        "detach ends enforcement while a daemon runs"
    );
    drop(third);
    assert!(!config.pins.path().exists(), "detach removes the pins");
}

/// A daemon whose time namespace puts its monotonic clock a day ahead of the kernel's (as
/// `unshare --time` or a container restored by CRIU does) still writes ban ends on the
/// kernel's clock: `list` shows the end LAPI gave, and with the daemon killed the ban lapses
/// in the kernel on time, not a day late.
#[test]
fn a_daemon_in_a_time_namespace_ends_bans_on_the_kernels_clock() {
    const BAN: u64 = 15;
    if !privileged("a_daemon_in_a_time_namespace_ends_bans_on_the_kernels_clock") {
        return;
    }
    let lan = Lan::mail_scene();
    let (mail, attacker, _) = lan.roles();
    let lapi = mail.ns.run(Lapi::start);
    let key = mail.ns.run(|| lapi.add_bouncer("blocker-timens"));
    let _listeners = Listeners::start(mail, &[25]);
    let config = TestConfig::new("timens", &lapi.url(), &key);
    let mail_v4 = IpAddr::V4(mail.v4);

    mail.ns
        .run(|| lapi.add_decision_ip("203.0.113.66", &format!("{BAN}s"), "ban"));
    let added = std::time::Instant::now();
    let added_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let a_day_ahead = [
        "unshare",
        "--time",
        "--monotonic",
        "86400",
        "--fork",
        "--kill-child",
        "--",
    ];
    let mut daemon = DaemonProcess::start(&mail.ns, &a_day_ahead, BLOCKER, &config);
    wait_for(
        "the ban taking effect",
        Duration::from_secs(10),
        || !connects(attacker, mail_v4, 25, Duration::from_millis(300)),
        || config.log(),
    );
    // The premise: blocker (unshare's child) runs a day ahead.
    let unshare = daemon.pid();
    let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .expect("unshare's children");
    let offsets = std::fs::read_to_string(format!("/proc/{}/timens_offsets", children.trim()))
        .expect("blocker's time namespace offsets");
    assert!(
        offsets
            .lines()
            .any(|l| l.split_whitespace().eq(["monotonic", "86400", "0"])),
        "blocker runs a day ahead: {offsets}"
    );
    let list = config.json(BLOCKER, &["list", "--json", "--v4"]);
    let end = list[0]["expires_at"].as_u64().unwrap_or_else(|| {
        panic!("list: {list}\n{}", config.log());
    });
    assert!(
        end.abs_diff(added_unix + BAN) <= 2,
        "the ban ends at {end}, LAPI said {} (the daemon is in a time namespace): {list}",
        added_unix + BAN
    );

    daemon.signal(libc::SIGKILL);
    assert!(
        !connects(attacker, mail_v4, 25, Duration::from_millis(300)),
        "the pinned ban holds with the daemon gone"
    );
    // The kernel rounds a single address's end up to 1.07 s, and reads a coarse clock.
    wait_for(
        "the ban lapsing in the kernel",
        Duration::from_secs(BAN + 5).saturating_sub(added.elapsed()),
        || connects(attacker, mail_v4, 25, Duration::from_millis(300)),
        || config.log(),
    );
    println!(
        "a ban of {BAN} s from a daemon a day ahead lapsed {:.1} s after it was added",
        added.elapsed().as_secs_f64()
    );
    assert!(
        added.elapsed() >= Duration::from_secs(BAN - 1),
        "the ban lapsed early"
    );
}
