//! End to end across network namespaces: a mail host with listeners on 25, 993 and an
//! unprotected port, the program on its NIC, a banned and a clean client, IPv4 and IPv6. And a
//! NIC deleted and made again, or renamed while another takes its name, under a pinned link:
//! the next start attaches anew to the interface that has the name.

use std::{net::IpAddr, time::Duration};

use blocker::{
    loader::{self, AttachMode, Attached, Capacity, LinkChange, Loaded},
    maps::KernelMaps,
};
use blocker_common::{family, origin};
use blocker_tests::{
    PinDir,
    kernel::Program,
    netns::{Lan, Listeners, Netns, connects},
    privileged,
    reference::{Ban, World},
};

const TIMEOUT: Duration = Duration::from_millis(1500);

fn banned_client_is_refused_on_mail_ports_only(mode: AttachMode) {
    let lan = Lan::mail_scene();
    let (mail, attacker, client) = lan.roles();
    let now = blocker::clock::now_ns();
    let mut program = Program::load();
    program.install(&World {
        bans: vec![
            Ban {
                net: "203.0.113.64/30".parse().unwrap(),
                expires_at_ns: u64::MAX,
                origin: origin::CROWDSEC,
            },
            Ban {
                net: "2001:db8:25::66/128".parse().unwrap(),
                expires_at_ns: u64::MAX,
                origin: origin::CSCLI,
            },
        ],
        allow: vec![],
        ports: vec![25, 465, 587, 143, 993, 110, 995],
        now_ns: now,
        observe: false,
    });
    program.attach(&mail.ns, "eth0", mode);
    let _listeners = Listeners::start(mail, &[25, 993, 8080]);

    for to in [IpAddr::V4(mail.v4), IpAddr::V6(mail.v6)] {
        for port in [25, 993] {
            assert!(
                !connects(attacker, to, port, TIMEOUT),
                "{mode:?}: banned client reached {to} port {port}"
            );
            assert!(
                connects(client, to, port, TIMEOUT),
                "{mode:?}: clean client could not reach {to} port {port}"
            );
        }
        assert!(
            connects(attacker, to, 8080, TIMEOUT),
            "{mode:?}: banned client could not reach unprotected {to}:8080"
        );
        assert!(
            connects(client, to, 8080, TIMEOUT),
            "{mode:?}: clean client could not reach {to}:8080"
        );
    }
    let stats = program.stats();
    let v4 = &stats[family::IPV4 as usize];
    let v6 = &stats[family::IPV6 as usize];
    // Two refused connections per family, each at least one SYN (retransmits add more).
    assert!(
        v4.dropped_packets[origin::CROWDSEC as usize] >= 2,
        "{mode:?}: IPv4 drops {v4:?}"
    );
    assert!(
        v6.dropped_packets[origin::CSCLI as usize] >= 2,
        "{mode:?}: IPv6 drops {v6:?}"
    );
    assert!(
        v4.syn_protected >= 4 && v6.syn_protected >= 4,
        "{mode:?}: inspected {v4:?} {v6:?}"
    );
    println!(
        "end to end ({mode:?}): dropped {} IPv4 and {} IPv6 SYNs from the banned host, clean host connected everywhere",
        v4.dropped_packets[origin::CROWDSEC as usize],
        v6.dropped_packets[origin::CSCLI as usize]
    );
}

#[test]
fn native_xdp_on_veth() {
    if privileged("native_xdp_on_veth") {
        banned_client_is_refused_on_mail_ports_only(AttachMode::Native);
    }
}

#[test]
fn generic_xdp() {
    if privileged("generic_xdp") {
        banned_client_is_refused_on_mail_ports_only(AttachMode::Generic);
    }
}

/// blocker loaded on the maps pinned in `dir` (made there if none), port 25 protected.
fn load_pinned(dir: &std::path::Path) -> Program {
    let Loaded::Pinned(mut ebpf) = loader::load_pinned(dir, Capacity::default()).expect("load")
    else {
        panic!("same size: no resize")
    };
    let maps = KernelMaps::take(&mut ebpf).expect("maps");
    let mut program = Program::new(ebpf, maps);
    program.maps.set_ports(&[25]).expect("ports");
    program
}

/// A daemon attaches to the mail host's `eth0` and pins the link; `change` then gives the
/// name `eth0` to another interface. The next start must not fail on the pin, must enforce on
/// the interface now called `eth0`, and must leave none of blocker on any other.
fn the_next_start_enforces_on_the_new_eth0(name: &str, change: impl FnOnce(&Lan)) {
    let lan = Lan::mail_scene();
    let (mail, attacker, client) = lan.roles();
    let pins = PinDir::new(name);
    let dir = pins.path();
    let mut first = load_pinned(dir);
    first
        .maps
        .insert_ban(blocker::maps::Ban {
            net: IpAddr::V4(attacker.v4).into(),
            expires_at_ns: u64::MAX,
            origin: origin::CSCLI,
        })
        .expect("ban");
    let attached = first.attach_pinned(&mail.ns, dir, "eth0", AttachMode::Native);
    assert!(
        matches!(attached, Ok(Attached::New(AttachMode::Native))),
        "{attached:?}"
    );
    drop(first);

    change(&lan);
    // The next start: its reconcile drops the pin, its attach makes a new link.
    let (changes, attached) = daemon_start(&mail.ns, dir, &["eth0"]);
    assert_eq!(
        changes,
        [LinkChange::Dropped {
            interface: "eth0".into()
        }],
        "{name}: the link pin of the old interface goes"
    );
    assert_eq!(
        attached,
        [Attached::New(AttachMode::Native)],
        "{name}: the link pin of the old interface is replaced"
    );
    let _listeners = Listeners::start(mail, &[25]);
    let to = IpAddr::V4(mail.v4);
    assert!(
        !connects(attacker, to, 25, TIMEOUT),
        "{name}: the banned host is refused again"
    );
    assert!(
        connects(client, to, 25, TIMEOUT),
        "{name}: the clean host connects"
    );
    loader::detach(dir).expect("remove the pins");
    println!("{name}: the stale link pin was replaced and the ban enforced on the new eth0 alone");
}

/// The NIC is deleted and made again (networkd rebuilding a VLAN or a bond): the kernel lets
/// the link go, its pin stays.
#[test]
fn an_interface_made_again_gets_the_program_at_the_next_start() {
    if privileged("an_interface_made_again_gets_the_program_at_the_next_start") {
        the_next_start_enforces_on_the_new_eth0("made-again", |lan| lan.rewire(0));
    }
}

/// The NIC is renamed and another takes its name (udev after a driver reorder): the link is
/// still on the renamed one, which the config no longer names.
#[test]
fn a_renamed_interface_loses_the_program_to_the_one_now_named_so() {
    if privileged("a_renamed_interface_loses_the_program_to_the_one_now_named_so") {
        the_next_start_enforces_on_the_new_eth0("renamed", |lan| lan.rename_and_rewire(0));
    }
}

/// The interfaces of `ns` that have an XDP program, each once per program.
fn with_xdp(ns: &Netns) -> Vec<String> {
    let links = ns.exec("ip", &["-d", "-o", "link", "show"]);
    let mut names: Vec<String> = links
        .lines()
        .flat_map(|line| {
            let name = line.split(": ").nth(1).unwrap_or_default();
            let name = name.split('@').next().unwrap_or_default().to_owned();
            std::iter::repeat_n(name, line.matches("prog/xdp").count())
        })
        .collect();
    names.sort();
    names
}

/// [`with_xdp`] once it shows `want`, or after 3 s: the kernel releases an unpinned link
/// asynchronously.
fn settled_xdp(ns: &Netns, want: &[String]) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let now = with_xdp(ns);
        if now == want || start.elapsed() > Duration::from_secs(3) {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the daemon does at each start: reconcile the link pins in `dir`, then attach to every
/// one of `interfaces`; checks that each has one pin and one program, and no other interface.
fn daemon_start(
    ns: &Netns,
    dir: &std::path::Path,
    interfaces: &[&str],
) -> (Vec<LinkChange>, Vec<Attached>) {
    let mut program = load_pinned(dir);
    let names: Vec<String> = interfaces.iter().map(|&i| i.to_owned()).collect();
    let changes = ns
        .run(|| loader::reconcile_links(dir, &names))
        .expect("reconcile the link pins");
    let attached: Vec<Attached> = interfaces
        .iter()
        .map(|i| {
            program
                .attach_pinned(ns, dir, i, AttachMode::Native)
                .unwrap_or_else(|e| panic!("attach {i}: {}", blocker::error_chain(&e)))
        })
        .collect();
    let mut pinned: Vec<String> = loader::pins(dir)
        .expect("pins")
        .links
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    pinned.sort();
    let mut wanted = names.clone();
    wanted.sort();
    assert_eq!(pinned, wanted, "one pin per configured interface");
    assert_eq!(
        settled_xdp(ns, &wanted),
        wanted,
        "one program per configured interface"
    );
    (changes, attached)
}

/// Pins follow their interfaces: a VLAN-style name with a dot (which bpffs refuses in a pin
/// name), two configured interfaces whose names are swapped, one renamed with the config, one
/// dropped from it. Each time, every configured interface ends with exactly one program and
/// no other interface keeps one, and a link on a configured interface is never dropped.
#[test]
fn link_pins_follow_dotted_swapped_renamed_and_dropped_interfaces() {
    if !privileged("link_pins_follow_dotted_swapped_renamed_and_dropped_interfaces") {
        return;
    }
    let lan = Lan::mail_scene();
    let ns = &lan.roles().0.ns;
    let ip_in = |args: &[&str]| {
        let _ = ns.exec("ip", args);
    };
    for (name, peer) in [("v.100", "w.100"), ("a0", "b0")] {
        ip_in(&["link", "add", name, "type", "veth", "peer", "name", peer]);
        ip_in(&["link", "set", name, "up"]);
        ip_in(&["link", "set", peer, "up"]);
    }
    let rename = |from: &str, to: &str| {
        ip_in(&["link", "set", from, "down"]);
        ip_in(&["link", "set", from, "name", to]);
        ip_in(&["link", "set", to, "up"]);
    };
    let pins = PinDir::new("follow");
    let dir = pins.path();
    let start = |interfaces: &[&str]| daemon_start(ns, dir, interfaces);
    let (_, attached) = start(&["v.100", "a0"]);
    assert_eq!(attached, [Attached::New(AttachMode::Native); 2]);
    assert!(
        std::fs::read_dir(dir)
            .expect("pin dir")
            .any(|e| e.expect("entry").file_name() == "link-v:100"),
        "the dotted name is pinned with ':'"
    );

    rename("v.100", "tmp0");
    rename("a0", "v.100");
    rename("tmp0", "a0");
    let (mut changes, attached) = start(&["v.100", "a0"]);
    changes.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        changes,
        [
            LinkChange::Renamed {
                from: "a0".into(),
                to: "v.100".into()
            },
            LinkChange::Renamed {
                from: "v.100".into(),
                to: "a0".into()
            }
        ],
        "names swapped: both pins follow their interfaces"
    );
    assert_eq!(
        attached,
        [Attached::Replaced; 2],
        "names swapped: the program is swapped in on both, no gap"
    );

    rename("a0", "m0");
    let (changes, attached) = start(&["v.100", "m0"]);
    assert_eq!(
        changes,
        [LinkChange::Renamed {
            from: "a0".into(),
            to: "m0".into()
        }]
    );
    assert_eq!(
        attached,
        [Attached::Replaced; 2],
        "renamed with the config: the program is swapped in, no gap"
    );

    let (changes, _) = start(&["m0"]);
    assert_eq!(
        changes,
        [LinkChange::Dropped {
            interface: "v.100".into()
        }]
    );
    loader::detach(dir).expect("remove the pins");
    assert!(settled_xdp(ns, &[]).is_empty(), "detach leaves no program");
}
