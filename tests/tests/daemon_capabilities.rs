//! The daemon needs only `CAP_BPF`, `CAP_NET_ADMIN` and `CAP_PERFMON`, as in a container given just
//! those: run under `setpriv` with every other capability dropped from the bounding set, it
//! loads, attaches, pins, syncs with LAPI and drops a banned host's SYNs; started again so, it
//! reads the pinned link and swaps its program in (a container restarted or replaced). With
//! `deny_log`, its log names the attacker it drops.

use std::{net::IpAddr, time::Duration};

use blocker_tests::{
    lapi::Lapi,
    netns::{Lan, Listeners, connects},
    privileged,
    process::{DaemonProcess, TestConfig, wait_for},
};

const BLOCKER: &str = env!("CARGO_BIN_EXE_blocker");
const CAP_NET_ADMIN: u32 = 12;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn effective_caps(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff line")
        .trim();
    u64::from_str_radix(hex, 16).expect("hex caps")
}

#[test]
fn runs_with_only_bpf_net_admin_and_perfmon() {
    if !privileged("runs_with_only_bpf_net_admin_and_perfmon") {
        return;
    }
    let lan = Lan::mail_scene();
    let (mail, attacker, _) = lan.roles();
    let lapi = mail.ns.run(Lapi::start);
    let key = mail.ns.run(|| lapi.add_bouncer("blocker-caps"));
    let _listeners = Listeners::start(mail, &[25]);
    let config = TestConfig::new("caps", &lapi.url(), &key);
    let mut yaml = std::fs::read_to_string(&config.path).expect("config");
    yaml.push_str("deny_log: true\n");
    std::fs::write(&config.path, yaml).expect("config");
    let setpriv = [
        "setpriv",
        "--bounding-set=-all,+bpf,+net_admin,+perfmon",
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
    ];
    let mut daemon = DaemonProcess::start(&mail.ns, &setpriv, BLOCKER, &config);

    let mail_v4 = IpAddr::V4(mail.v4);
    wait_for(
        "the daemon attaching",
        Duration::from_secs(10),
        || config.pins.path().join("link-eth0").exists(),
        || config.log(),
    );
    let caps = effective_caps(daemon.pid());
    assert_eq!(
        caps,
        (1 << CAP_NET_ADMIN) | (1 << CAP_PERFMON) | (1 << CAP_BPF),
        "effective capabilities {caps:#x}"
    );

    mail.ns
        .run(|| lapi.add_decision_ip("203.0.113.66", "4h", "ban"));
    wait_for(
        "the ban taking effect",
        Duration::from_secs(5),
        || !connects(attacker, mail_v4, 25, Duration::from_millis(300)),
        || config.log(),
    );
    wait_for(
        "deny_log naming the attacker",
        Duration::from_secs(5),
        || {
            config
                .log()
                .contains("dropped SYNs from banned sources (sampled): 203.0.113.66 (cscli) x")
        },
        || config.log(),
    );
    println!(
        "daemon with capabilities {caps:#x} (bpf, net_admin, perfmon only) enforced a cscli ban, and deny_log named the attacker"
    );

    let program = |config: &TestConfig| {
        config.json(BLOCKER, &["status", "--json"])["program_ids"][0]
            .as_u64()
            .expect("a program id")
    };
    let first_program = program(&config);
    daemon.signal(libc::SIGTERM);
    let again = DaemonProcess::start(&mail.ns, &setpriv, BLOCKER, &config);
    wait_for(
        "the second daemon swapping its program into the pinned link",
        Duration::from_secs(10),
        || program(&config) != first_program,
        || config.log(),
    );
    assert!(
        config.log().contains("kept (pinned link reused)"),
        "the second start reused the pinned link:\n{}",
        config.log()
    );
    assert!(
        !connects(attacker, mail_v4, 25, Duration::from_millis(300)),
        "the ban holds across the restart"
    );
    assert_eq!(effective_caps(again.pid()), caps);
    println!("started again with the same capabilities, it reused the pinned link");
}
