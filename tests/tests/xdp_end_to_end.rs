//! End to end across network namespaces: a mail host with listeners on 25, 993 and an
//! unprotected port, the program on its NIC, a banned and a clean client, IPv4 and IPv6. And a
//! NIC deleted and made again, or renamed while another takes its name, under a pinned link:
//! the next start attaches anew to the interface that has the name.

use std::{net::IpAddr, time::Duration};

use blocker::{
    loader::{self, AttachMode, Attached, Capacity, Loaded},
    maps::KernelMaps,
};
use blocker_common::{family, origin};
use blocker_tests::{
    kernel::Program,
    netns::{Lan, Listeners, connects},
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

/// A daemon attaches to the mail host's `eth0` and pins the link; `change` then gives the
/// name `eth0` to another interface. The next start must not fail on the pin, must enforce on
/// the interface now called `eth0`, and must leave none of blocker on any other.
fn the_next_start_enforces_on_the_new_eth0(name: &str, change: impl FnOnce(&Lan)) {
    let lan = Lan::mail_scene();
    let (mail, attacker, client) = lan.roles();
    let dir = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/blocker-test-{name}-{}",
        std::process::id()
    ));
    let load = || {
        let Loaded::Pinned(mut ebpf) =
            loader::load_pinned(&dir, Capacity::default()).expect("load")
        else {
            panic!("same size: no resize")
        };
        let maps = KernelMaps::take(&mut ebpf).expect("maps");
        let mut program = Program::new(ebpf, maps);
        program.maps.set_ports(&[25]).expect("ports");
        program
    };
    let mut first = load();
    first
        .maps
        .insert_ban(blocker::maps::Ban {
            net: IpAddr::V4(attacker.v4).into(),
            expires_at_ns: u64::MAX,
            origin: origin::CSCLI,
        })
        .expect("ban");
    let attached = first.attach_pinned(&mail.ns, &dir, "eth0", AttachMode::Native);
    assert!(
        matches!(attached, Ok(Attached::New(AttachMode::Native))),
        "{attached:?}"
    );
    drop(first);

    change(&lan);
    let mut second = load();
    let attached = second.attach_pinned(&mail.ns, &dir, "eth0", AttachMode::Native);
    assert!(
        matches!(attached, Ok(Attached::New(AttachMode::Native))),
        "{name}: the link pin of the old interface is replaced: {attached:?}"
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
    let links = std::process::Command::new("ip")
        .args(["-n", &mail.ns.name, "-d", "link", "show"])
        .output()
        .expect("ip link show");
    let links = String::from_utf8_lossy(&links.stdout);
    assert_eq!(
        links.matches("prog/xdp").count(),
        1,
        "{name}: blocker is on eth0 alone:\n{links}"
    );
    drop(second);
    loader::detach(&dir).expect("remove the pins");
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
