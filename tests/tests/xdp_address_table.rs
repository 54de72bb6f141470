//! The address table in the kernel, made tiny so that most addresses overflow: every banned
//! address is still dropped (from the table or the range trie), lifting a ban works wherever
//! it lives, a lifted slot is reused, and the maps list exactly what was banned. Then resized
//! (a new `max_addresses` at start), even after a resize cut short: every ban moves into the
//! new tables, overflowed ones included. And swept: lifted slots no lookup needs become empty
//! again, and every ban still in force is still found.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use blocker::{
    loader::{self, Capacity, Loaded},
    maps::{Ban, KernelMaps},
};
use blocker_common::origin;
use blocker_tests::{
    kernel::Program,
    packet::Frame,
    privileged,
    reference::{XDP_DROP, XDP_PASS},
};
use ipnet::IpNet;

/// 200 IPv4 and 200 IPv6 documentation addresses.
fn addresses() -> Vec<IpAddr> {
    let v4 = (0..200u8).map(|i| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)));
    let v6 = (0..200u16).map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 7, i)));
    v4.chain(v6).collect()
}

fn ban(program: &mut Program, addr: IpAddr, expires_at_ns: u64) {
    program
        .maps
        .insert_ban(Ban {
            net: IpNet::from(addr),
            expires_at_ns,
            origin: origin::CSCLI,
        })
        .unwrap_or_else(|e| panic!("ban {addr}: {}", blocker::error_chain(&e)));
}

fn verdict(program: &Program, addr: IpAddr) -> u32 {
    program.run(&Frame::syn(addr, 25).bytes())
}

fn listed(program: &Program) -> Vec<IpNet> {
    let mut nets: Vec<IpNet> = program
        .maps
        .bans()
        .expect("list bans")
        .into_iter()
        .map(|b| b.net)
        .collect();
    nets.sort();
    nets
}

/// Bans every address in `all` for ever, then checks that the maps list each once and the
/// program drops each.
fn ban_all(program: &mut Program, all: &[IpAddr]) {
    for &addr in all {
        ban(program, addr, u64::MAX);
    }
    let mut want: Vec<IpNet> = all.iter().copied().map(IpNet::from).collect();
    want.sort();
    assert_eq!(listed(program), want, "the maps list every ban once");
    for &addr in all {
        assert_eq!(verdict(program, addr), XDP_DROP, "{addr} is banned");
    }
}

#[test]
fn a_tiny_table_overflows_into_the_trie_and_every_ban_holds() {
    if !privileged("a_tiny_table_overflows_into_the_trie_and_every_ban_holds") {
        return;
    }
    // One address asked for: the smallest tables, 4 buckets each (32 IPv4, 12 IPv6 slots).
    let mut program = Program::load_with(Capacity { addresses: 1 });
    assert_eq!(program.maps.table_buckets(), (4, 4));
    program.maps.set_ports(&[25]).expect("ports");
    let all = addresses();
    ban_all(&mut program, &all);
    let clean = [
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 250)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 7, 999)),
    ];
    for addr in clean {
        assert_eq!(verdict(&program, addr), XDP_PASS, "{addr} is not banned");
    }

    // Lift every other ban, wherever it lives.
    let (lifted, kept): (Vec<_>, Vec<_>) = all.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, addr) in &lifted {
        program.maps.remove_ban(IpNet::from(**addr)).expect("lift");
    }
    for (_, addr) in &lifted {
        assert_eq!(verdict(&program, **addr), XDP_PASS, "{addr} was lifted");
    }
    for (_, addr) in &kept {
        assert_eq!(
            verdict(&program, **addr),
            XDP_DROP,
            "{addr} is still banned"
        );
    }
    assert_eq!(listed(&program).len(), kept.len());

    // Banned again, this time already expired: nothing drops them.
    for (_, addr) in &lifted {
        ban(&mut program, **addr, 1);
        assert_eq!(
            verdict(&program, **addr),
            XDP_PASS,
            "{addr}'s ban has expired"
        );
    }
    // And live again, after the lifted slots have been quiet long enough to be reused.
    std::thread::sleep(blocker::table::QUIET);
    for (_, addr) in &lifted {
        ban(&mut program, **addr, u64::MAX);
    }
    for &addr in &all {
        assert_eq!(verdict(&program, addr), XDP_DROP, "{addr} is banned again");
    }
    println!(
        "tiny tables: {} addresses banned, lifted and banned again; all verdicts right",
        all.len()
    );
}

#[test]
fn lifted_slots_are_swept_and_every_kept_ban_still_drops() {
    if !privileged("lifted_slots_are_swept_and_every_kept_ban_still_drops") {
        return;
    }
    // Crowded tables (96 slots a family for 80 addresses), so that many addresses sit past
    // their home bucket and lookups walk past the lifted slots.
    let mut program = Program::load_with(Capacity { addresses: 64 });
    program.maps.set_ports(&[25]).expect("ports");
    let all: Vec<IpAddr> = addresses()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 200 < 80)
        .map(|(_, a)| a)
        .collect();
    for &addr in &all {
        ban(&mut program, addr, u64::MAX);
    }
    let (kept, lifted): (Vec<_>, Vec<_>) = all.iter().enumerate().partition(|(i, _)| i % 3 == 0);
    for (_, addr) in &lifted {
        program.maps.remove_ban(IpNet::from(**addr)).expect("lift");
    }
    let tombstones = program.maps.table_usage().tombstones;
    assert_eq!(
        program.maps.sweep_tables(),
        0,
        "nothing is swept before a quiet second"
    );
    std::thread::sleep(blocker::table::QUIET);
    let freed = program.maps.sweep_tables();
    let left = program.maps.table_usage().tombstones;
    assert!(
        freed > 0 && left == tombstones - freed,
        "{freed} of {tombstones} swept, {left} left"
    );
    for (_, addr) in &kept {
        assert_eq!(
            verdict(&program, **addr),
            XDP_DROP,
            "{addr} is still banned"
        );
    }
    for (_, addr) in &lifted {
        assert_eq!(verdict(&program, **addr), XDP_PASS, "{addr} was lifted");
    }
    ban_all(&mut program, &all);
    println!(
        "sweep: {freed} of {tombstones} lifted slots freed ({left} stay: kept bans are looked up past them); every verdict right"
    );
}

/// Loads with the maps pinned in `dir`, at `capacity`; panics unless that is a resize.
fn load_resized(dir: &std::path::Path, capacity: Capacity) -> (aya::Ebpf, KernelMaps) {
    let Loaded::Resized { mut ebpf, .. } = loader::load_pinned(dir, capacity).expect("load") else {
        panic!("pinned tables of another size (or cut short) make a resize")
    };
    loader::pin_beside(&ebpf, dir).expect("pin beside");
    let mut maps = KernelMaps::take(&mut ebpf).expect("maps");
    let old = KernelMaps::from_pins(dir).expect("the old pins");
    maps.move_addresses_from(&old, blocker::clock::now_ns())
        .expect("move the addresses");
    (ebpf, maps)
}

#[test]
fn a_resize_moves_every_ban_even_after_one_cut_short() {
    if !privileged("a_resize_moves_every_ban_even_after_one_cut_short") {
        return;
    }
    let pins = blocker_tests::PinDir::new("resize");
    let dir = pins.path();
    let Loaded::Pinned(mut ebpf) =
        loader::load_pinned(dir, Capacity { addresses: 1 }).expect("load")
    else {
        panic!("fresh pins are no resize")
    };
    let maps = KernelMaps::take(&mut ebpf).expect("maps");
    let mut tiny = Program::new(ebpf, maps);
    tiny.maps.set_ports(&[25]).expect("ports");
    let all = addresses();
    for &addr in &all {
        ban(&mut tiny, addr, u64::MAX);
    }
    let overflowed = tiny.maps.table_usage().overflowed;
    assert!(overflowed > all.len() / 2, "most overflow: {overflowed}");

    // Killed after renaming the new tables over the old pins, before the settings: the new
    // tables' hash keys are lost with it.
    let roomy = Capacity { addresses: 1000 };
    let cut_short = load_resized(dir, roomy);
    for name in [
        blocker_common::map::BANNED_V4_ADDRS,
        blocker_common::map::BANNED_V6_ADDRS,
    ] {
        std::fs::rename(loader::beside(dir, name), dir.join(name)).expect("rename");
    }
    drop(cut_short);

    let (ebpf, mut maps) = load_resized(dir, roomy);
    loader::promote(dir).expect("promote");
    maps.drop_stale_overflow().expect("drop the trie copies");
    maps.set_ports(&[25]).expect("ports");
    let resized = Program::new(ebpf, maps);
    let usage = resized.maps.table_usage();
    assert_eq!(
        (usage.v4_entries + usage.v6_entries, usage.overflowed),
        (all.len(), 0),
        "every ban in the new tables, none left in the tries: {usage:?}"
    );
    let mut want: Vec<IpNet> = all.iter().copied().map(IpNet::from).collect();
    want.sort();
    assert_eq!(listed(&resized), want, "the maps list every ban once");
    for &addr in &all {
        assert_eq!(
            verdict(&resized, addr),
            XDP_DROP,
            "{addr} is banned after the resize"
        );
    }
    assert!(
        loader::load_pinned(dir, roomy).is_ok_and(|l| matches!(l, Loaded::Pinned(_))),
        "a finished resize leaves nothing to redo"
    );
    loader::detach(dir).expect("remove the pins");
    println!(
        "resize: {} addresses ({overflowed} overflowed) moved from 4-bucket tables into {:?}, after a resize cut short",
        all.len(),
        resized.maps.table_buckets()
    );
}
