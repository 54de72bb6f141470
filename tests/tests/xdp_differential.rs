//! Differential test: random and mutated frames through the kernel program and through the
//! reference classifier, in random worlds of bans, allow lists and ports. Every verdict and
//! every counter increment must agree. `BLOCKER_DIFF_SEED` replays a run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use blocker_common::origin;
use blocker_tests::{
    kernel::{Program, delta},
    packet::{ACK, Ext, Frame, Net, RST, SYN, TPID_8021AD, TPID_8021Q, udp},
    privileged,
    reference::{Ban, World},
};
use ipnet::IpNet;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

const WORLDS: usize = 10;
const PACKETS_PER_WORLD: usize = 10_000;

/// A random world: bans of every length (some nested, some expired), an allow list, ports.
fn random_world(rng: &mut StdRng, now: u64) -> World {
    let mut bans = Vec::new();
    for _ in 0..rng.random_range(1..40) {
        let v6 = rng.random_bool(0.5);
        let len = if rng.random_bool(0.5) {
            if v6 { 128 } else { 32 }
        } else if v6 {
            rng.random_range(0..128)
        } else {
            rng.random_range(0..32)
        };
        // Keep most bans inside the documentation ranges so sources hit them often; a few
        // short prefixes cover everything.
        let addr = if v6 {
            IpAddr::V6(doc_v6(rng))
        } else {
            IpAddr::V4(doc_v4(rng))
        };
        let net = IpNet::new(addr, len).expect("valid length").trunc();
        let expires_at_ns = if rng.random_bool(0.3) {
            now / 2
        } else {
            now + 3_600_000_000_000
        };
        #[expect(clippy::cast_possible_truncation, reason = "COUNT is 8")]
        let origin = rng.random_range(0..origin::COUNT) as u32;
        bans.push(Ban {
            net,
            expires_at_ns,
            origin,
        });
    }
    bans.sort_by_key(|b| b.net);
    bans.dedup_by_key(|b| b.net);
    // Most inside a ban; some anywhere in the documentation ranges, which may overlap none
    // (the program then skips the allow list).
    let allow = (0..rng.random_range(0..4))
        .map(|_| {
            let (addr, len) = if rng.random_bool(0.7) {
                let ban = bans.choose(rng).expect("at least one ban");
                let extra = rng.random_range(0..=8);
                let len = (ban.net.prefix_len() + extra).min(ban.net.max_prefix_len());
                (random_inside(rng, ban.net), len)
            } else if rng.random_bool(0.5) {
                (IpAddr::V6(doc_v6(rng)), rng.random_range(48..=128))
            } else {
                (IpAddr::V4(doc_v4(rng)), rng.random_range(24..=32))
            };
            IpNet::new(addr, len).expect("valid").trunc()
        })
        .collect();
    let mut ports = vec![25, 465, 587, 143, 993, 110, 995];
    if rng.random_bool(0.3) {
        ports = (0..rng.random_range(1..10)).map(|_| rng.random()).collect();
    }
    World {
        bans,
        allow,
        ports,
        now_ns: now,
        observe: rng.random_bool(0.1),
    }
}

fn doc_v4(rng: &mut StdRng) -> Ipv4Addr {
    let base: [u8; 3] = *[[198, 51, 100], [203, 0, 113]].choose(rng).expect("two");
    Ipv4Addr::new(base[0], base[1], base[2], rng.random())
}

fn doc_v6(rng: &mut StdRng) -> Ipv6Addr {
    Ipv6Addr::new(
        0x2001,
        0xdb8,
        rng.random_range(0..4),
        0,
        0,
        0,
        0,
        rng.random_range(0..16),
    )
}

/// A random address inside `net`.
fn random_inside(rng: &mut StdRng, net: IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let host_bits = 32 - u32::from(n.prefix_len());
            let mask = if host_bits == 32 {
                u32::MAX
            } else {
                (1u32 << host_bits) - 1
            };
            IpAddr::V4(Ipv4Addr::from(
                u32::from(n.network()) | (rng.random::<u32>() & mask),
            ))
        }
        IpNet::V6(n) => {
            let host_bits = 128 - u32::from(n.prefix_len());
            let mask = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            IpAddr::V6(Ipv6Addr::from(
                u128::from(n.network()) | (rng.random::<u128>() & mask),
            ))
        }
    }
}

/// A source near the world's prefixes: inside one, just outside one, allow-listed, or mapped.
fn random_source(rng: &mut StdRng, world: &World) -> IpAddr {
    let ban = world.bans.choose(rng).expect("at least one ban");
    let addr = match rng.random_range(0..10) {
        0 => {
            // Just past either end of a prefix.
            let outside = if rng.random_bool(0.5) {
                ban.net.broadcast()
            } else {
                ban.net.network()
            };
            match outside {
                IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
                    u32::from(a).wrapping_add(if rng.random_bool(0.5) { 1 } else { u32::MAX }),
                )),
                IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
                    u128::from(a).wrapping_add(if rng.random_bool(0.5) { 1 } else { u128::MAX }),
                )),
            }
        }
        1 => world
            .allow
            .choose(rng)
            .map_or(ban.net.addr(), |a| random_inside(rng, *a)),
        2 => IpAddr::V4(doc_v4(rng)),
        3 => IpAddr::V6(doc_v6(rng)),
        _ => random_inside(rng, ban.net),
    };
    match addr {
        IpAddr::V4(a) if rng.random_bool(0.1) => IpAddr::V6(a.to_ipv6_mapped()),
        other => other,
    }
}

fn random_ext(rng: &mut StdRng) -> Ext {
    match rng.random_range(0..5) {
        0 => Ext::HopByHop(rng.random_range(0..3)),
        1 => Ext::Routing(rng.random_range(0..3)),
        2 => Ext::DestOpts(rng.random_range(0..3)),
        3 => Ext::Ah(rng.random_range(1..5)),
        _ => Ext::Fragment {
            offset: if rng.random_bool(0.7) {
                0
            } else {
                rng.random_range(1..100)
            },
            more: rng.random_bool(0.5),
        },
    }
}

/// A valid frame with random fields: mostly SYNs to protected ports from sources near bans.
fn random_frame(rng: &mut StdRng, world: &World) -> Frame {
    let src = random_source(rng, world);
    let port = if rng.random_bool(0.8) {
        *world.ports.choose(rng).expect("ports")
    } else {
        rng.random()
    };
    let flags = match rng.random_range(0..4) {
        0 => rng.random(),
        1 => SYN | ACK,
        2 => SYN | (rng.random::<u8>() & !(ACK | RST)),
        _ => SYN,
    };
    let mut frame = match rng.random_range(0..20) {
        0 => Frame::ip(src, 17, udp(port)),
        1 => Frame::ip(src, rng.random(), vec![0; 20]),
        _ => Frame::tcp(src, port, flags),
    };
    let tpids = [TPID_8021Q, TPID_8021AD];
    let vlans: Vec<u16> = (0..rng.random_range(0..=3))
        .map(|_| *tpids.choose(rng).expect("two"))
        .collect();
    frame = frame.with_vlans(&vlans, rng.random_range(0..4));
    match &mut frame.net {
        Net::V4 {
            options,
            frag_offset,
            more_fragments,
            ..
        } => {
            if rng.random_bool(0.2) {
                *options = vec![1; 4 * rng.random_range(0..=10)];
            }
            if rng.random_bool(0.2) {
                *more_fragments = true;
                *frag_offset = if rng.random_bool(0.7) {
                    0
                } else {
                    rng.random_range(1..100)
                };
            }
        }
        Net::V6 { exts, .. } => {
            if rng.random_bool(0.5) {
                *exts = (0..rng.random_range(0..=10))
                    .map(|_| random_ext(rng))
                    .collect();
            }
        }
        Net::Other { .. } => {}
    }
    if rng.random_bool(0.15) {
        frame = frame.with_payload_len(rng.random_range(0..20));
    }
    if rng.random_bool(0.1) {
        frame = frame.with_trailer((0..rng.random_range(1..30)).map(|_| rng.random()).collect());
    }
    frame
}

/// Flips, truncates or lies about lengths in a built frame.
fn mutate(rng: &mut StdRng, frame: &Frame) -> Vec<u8> {
    let mut frame = frame.clone();
    if rng.random_bool(0.1) {
        match &mut frame.net {
            Net::V4 { total_len, .. } => *total_len = Some(rng.random_range(0..100)),
            Net::V6 { payload_len, .. } => *payload_len = Some(rng.random_range(0..100)),
            Net::Other { .. } => {}
        }
    }
    let mut bytes = frame.bytes();
    if rng.random_bool(0.3) {
        for _ in 0..rng.random_range(1..=3) {
            let at = rng.random_range(0..bytes.len());
            bytes[at] ^= 1 << rng.random_range(0..8);
        }
    }
    if rng.random_bool(0.2) {
        // Not below an Ethernet header: BPF_PROG_TEST_RUN refuses those, as drivers do.
        let len = rng.random_range(14..=bytes.len());
        bytes.truncate(len);
    }
    bytes
}

#[test]
fn kernel_agrees_with_the_reference_classifier() {
    if !privileged("kernel_agrees_with_the_reference_classifier") {
        return;
    }
    let seed = std::env::var("BLOCKER_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut rng = StdRng::seed_from_u64(seed);
    let now = blocker::clock::now_ns();
    let (mut packets, mut drops, mut disagreements) = (0usize, 0usize, Vec::new());
    for _ in 0..WORLDS {
        let world = random_world(&mut rng, now);
        let mut program = Program::load();
        program.install_in_order(&world, rng.random_bool(0.5));
        for _ in 0..PACKETS_PER_WORLD {
            let frame = random_frame(&mut rng, &world);
            let bytes = mutate(&mut rng, &frame);
            let expected = world.expect(&bytes);
            let before = program.stats();
            let action = program.run(&bytes);
            let after = program.stats();
            let family = expected.family as usize;
            let moved = delta(&after[family], &before[family]);
            packets += 1;
            drops += usize::from(action == blocker_tests::reference::XDP_DROP);
            if action != expected.action || moved != expected.stats {
                disagreements.push(format!(
                    "action {action} vs {} ({:?}), counters {moved:?} vs {:?}, frame {bytes:02x?}",
                    expected.action, expected.judgement, expected.stats
                ));
            }
        }
    }
    println!(
        "differential: {packets} packets in {WORLDS} random worlds (seed {seed}), {drops} dropped, {} disagreements",
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "seed {seed}: {} disagreements, first ones:\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
