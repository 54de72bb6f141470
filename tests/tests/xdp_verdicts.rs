//! Table tests: crafted frames through `BPF_PROG_TEST_RUN` on the loaded program, each
//! verdict and counter increment checked against the case's expectation and against the
//! reference classifier.

use std::net::IpAddr;

use blocker_common::{origin, table};
use blocker_tests::{
    kernel::{Program, delta},
    packet::{
        ACK, CWR, ECE, Ext, FIN, Frame, Net, PSH, RST, SYN, TPID_8021AD, TPID_8021Q, URG, udp,
    },
    pin_to_cpu, privileged,
    reference::{Ban, World, XDP_DROP, XDP_PASS},
};

const MAIL_PORTS: [u16; 7] = [25, 465, 587, 143, 993, 110, 995];
const HOUR_NS: u64 = 3_600_000_000_000;
const MS: u64 = 1_000_000;
/// Past a ban's end, its end is only checked this much later: the coarse clock the program
/// reads lags by up to a tick, and the reading it keeps per CPU by another (20 ms at HZ=100).
const LAG: u64 = 100 * MS;
/// Instructions the kernel's verifier walks at most before it refuses a program
/// (`BPF_COMPLEXITY_LIMIT_INSNS`).
const VERIFIER_LIMIT: u32 = 1_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn ban(net: &str, live: bool, origin: u32, now: u64) -> Ban {
    let expires_at_ns = if live { now + HOUR_NS } else { now / 2 };
    Ban {
        net: net.parse().expect("test prefix"),
        expires_at_ns,
        origin,
    }
}

/// `bans` and `allow` at `now`, the mail ports protected, enforcing.
fn world(bans: Vec<Ban>, allow: &[&str], now: u64) -> World {
    World {
        bans,
        allow: allow
            .iter()
            .map(|net| net.parse().expect("test prefix"))
            .collect(),
        ports: MAIL_PORTS.to_vec(),
        now_ns: now,
        observe: false,
    }
}

/// Bans across both families, nested and expired entries, and an allow list.
fn standard_world(now: u64) -> World {
    world(
        vec![
            ban("198.51.100.0/24", true, origin::CROWDSEC, now),
            ban("198.51.100.128/25", false, origin::CSCLI, now),
            ban("203.0.113.7/32", true, origin::CSCLI, now),
            ban("203.0.113.9/32", false, origin::CSCLI, now),
            ban("203.0.113.64/26", false, origin::CSCLI, now),
            ban("2001:db8:bad::/48", true, origin::CAPI, now),
            ban("2001:db8::7/128", true, origin::LISTS, now),
            ban("2001:db8::9/128", false, origin::LISTS, now),
        ],
        &["198.51.100.42/32", "2001:db8:bad:1::/64"],
        now,
    )
}

/// Everything banned (/0 in both families), one allow-listed host in each.
fn ban_everything(now: u64) -> World {
    world(
        vec![
            ban("0.0.0.0/0", true, origin::CAPI, now),
            ban("::/0", true, origin::CAPI, now),
        ],
        &["203.0.113.1/32", "2001:db8:1::1/128"],
        now,
    )
}

struct Case {
    name: String,
    frame: Vec<u8>,
    expected: u32,
}

fn case(name: impl Into<String>, frame: &Frame, expected: u32) -> Case {
    Case {
        name: name.into(),
        frame: frame.bytes(),
        expected,
    }
}

fn raw(name: &str, frame: Vec<u8>, expected: u32) -> Case {
    Case {
        name: name.into(),
        frame,
        expected,
    }
}

#[expect(clippy::too_many_lines, reason = "a table reads best in one place")]
fn standard_cases() -> Vec<Case> {
    let banned = ip("198.51.100.1");
    let clean = ip("203.0.113.1");
    let banned6 = ip("2001:db8:bad::1");
    let clean6 = ip("2001:db8:1::1");
    let mut cases = Vec::new();
    for port in MAIL_PORTS {
        cases.push(case(
            format!("v4 banned SYN to {port}"),
            &Frame::syn(banned, port),
            XDP_DROP,
        ));
        cases.push(case(
            format!("v6 banned SYN to {port}"),
            &Frame::syn(banned6, port),
            XDP_DROP,
        ));
    }
    cases.extend([
        case(
            "v4 banned SYN to unprotected 8080",
            &Frame::syn(banned, 8080),
            XDP_PASS,
        ),
        case(
            "v6 banned SYN to unprotected 8080",
            &Frame::syn(banned6, 8080),
            XDP_PASS,
        ),
        case("v4 clean SYN to 25", &Frame::syn(clean, 25), XDP_PASS),
        case("v6 clean SYN to 25", &Frame::syn(clean6, 25), XDP_PASS),
        // Prefix boundaries.
        case(
            "v4 /24 first address",
            &Frame::syn(ip("198.51.100.0"), 25),
            XDP_DROP,
        ),
        case(
            "v4 /24 last address",
            &Frame::syn(ip("198.51.100.255"), 25),
            XDP_DROP,
        ),
        case(
            "v4 just above the /24",
            &Frame::syn(ip("198.51.101.0"), 25),
            XDP_PASS,
        ),
        case(
            "v4 just below the /24",
            &Frame::syn(ip("198.51.99.255"), 25),
            XDP_PASS,
        ),
        case(
            "v4 /32 banned",
            &Frame::syn(ip("203.0.113.7"), 993),
            XDP_DROP,
        ),
        case(
            "v4 /32 neighbour",
            &Frame::syn(ip("203.0.113.8"), 993),
            XDP_PASS,
        ),
        case(
            "v6 /48 last address",
            &Frame::syn(ip("2001:db8:bad:ffff:ffff:ffff:ffff:ffff"), 25),
            XDP_DROP,
        ),
        case(
            "v6 just above the /48",
            &Frame::syn(ip("2001:db8:bae::"), 25),
            XDP_PASS,
        ),
        case(
            "v6 just below the /48",
            &Frame::syn(ip("2001:db8:bac:ffff:ffff:ffff:ffff:ffff"), 25),
            XDP_PASS,
        ),
        case(
            "v6 /128 banned",
            &Frame::syn(ip("2001:db8::7"), 587),
            XDP_DROP,
        ),
        case(
            "v6 /128 neighbour",
            &Frame::syn(ip("2001:db8::8"), 587),
            XDP_PASS,
        ),
        // Allow list over ban.
        case(
            "v4 allow-listed inside a banned /24",
            &Frame::syn(ip("198.51.100.42"), 25),
            XDP_PASS,
        ),
        case(
            "v6 allow-listed /64 inside a banned /48",
            &Frame::syn(ip("2001:db8:bad:1::5"), 25),
            XDP_PASS,
        ),
        // Expiry.
        case(
            "v4 expired /32",
            &Frame::syn(ip("203.0.113.9"), 25),
            XDP_PASS,
        ),
        case(
            "v4 expired /26, nothing live around it",
            &Frame::syn(ip("203.0.113.70"), 25),
            XDP_PASS,
        ),
        case(
            "v4 expired /25 inside a live /24",
            &Frame::syn(ip("198.51.100.200"), 25),
            XDP_DROP,
        ),
        case(
            "v6 expired /128",
            &Frame::syn(ip("2001:db8::9"), 25),
            XDP_PASS,
        ),
        // IPv4-mapped IPv6 sources are judged as IPv4.
        case(
            "v6 ::ffff:198.51.100.1 (banned v4)",
            &Frame::syn(ip("::ffff:198.51.100.1"), 25),
            XDP_DROP,
        ),
        case(
            "v6 ::ffff:203.0.113.1 (clean v4)",
            &Frame::syn(ip("::ffff:203.0.113.1"), 25),
            XDP_PASS,
        ),
        case(
            "v6 ::ffff:198.51.100.42 (allow-listed v4)",
            &Frame::syn(ip("::ffff:198.51.100.42"), 25),
            XDP_PASS,
        ),
    ]);
    // TCP flags.
    for (name, flags, expected) in [
        ("SYN|ACK", SYN | ACK, XDP_PASS),
        ("SYN|RST", SYN | RST, XDP_PASS),
        ("ACK", ACK, XDP_PASS),
        ("RST", RST, XDP_PASS),
        ("FIN", FIN, XDP_PASS),
        ("no flags", 0, XDP_PASS),
        ("SYN|FIN", SYN | FIN, XDP_DROP),
        ("SYN|PSH", SYN | PSH, XDP_DROP),
        ("SYN|ECE|CWR", SYN | ECE | CWR, XDP_DROP),
        ("SYN|URG", SYN | URG, XDP_DROP),
        ("all but ACK and RST", !(ACK | RST), XDP_DROP),
    ] {
        cases.push(case(
            format!("v4 banned {name}"),
            &Frame::tcp(banned, 25, flags),
            expected,
        ));
        cases.push(case(
            format!("v6 banned {name}"),
            &Frame::tcp(banned6, 25, flags),
            expected,
        ));
    }
    // Link layer.
    cases.extend([
        case(
            "802.1Q tag",
            &Frame::syn(banned, 25).with_vlans(&[TPID_8021Q], 100),
            XDP_DROP,
        ),
        case(
            "priority tag (VID 0)",
            &Frame::syn(banned, 25).with_vlans(&[TPID_8021Q], 0),
            XDP_DROP,
        ),
        case(
            "QinQ 802.1ad + 802.1Q",
            &Frame::syn(banned, 25).with_vlans(&[TPID_8021AD, TPID_8021Q], 7),
            XDP_DROP,
        ),
        case(
            "QinQ v6",
            &Frame::syn(banned6, 25).with_vlans(&[TPID_8021AD, TPID_8021Q], 7),
            XDP_DROP,
        ),
        case(
            "three tags (not IP to Linux)",
            &Frame::syn(banned, 25).with_vlans(&[TPID_8021AD, TPID_8021Q, TPID_8021Q], 7),
            XDP_PASS,
        ),
        case(
            "ARP",
            &Frame {
                vlans: vec![],
                vid: 0,
                net: Net::Other {
                    ether_type: 0x0806,
                    payload: vec![0; 28],
                },
                trailer: vec![],
            },
            XDP_PASS,
        ),
    ]);
    // IPv4 header length and options.
    cases.extend([
        case(
            "v4 IHL 6 (one option word)",
            &Frame::syn(banned, 25).with_v4_options(vec![1, 1, 1, 0]),
            XDP_DROP,
        ),
        case(
            "v4 IHL 15 (40 bytes of options)",
            &Frame::syn(banned, 25).with_v4_options(vec![1; 40]),
            XDP_DROP,
        ),
        case("v4 UDP to 25", &Frame::ip(banned, 17, udp(25)), XDP_PASS),
        case(
            "v4 ICMP",
            &Frame::ip(banned, 1, vec![8, 0, 0, 0, 0, 0, 0, 0]),
            XDP_PASS,
        ),
        case("v6 UDP to 25", &Frame::ip(banned6, 17, udp(25)), XDP_PASS),
    ]);
    // IPv6 extension headers.
    for (name, exts) in [
        ("hop-by-hop", vec![Ext::HopByHop(0)]),
        ("routing", vec![Ext::Routing(2)]),
        ("destination options", vec![Ext::DestOpts(1)]),
        ("AH", vec![Ext::Ah(4)]),
        (
            "atomic fragment",
            vec![Ext::Fragment {
                offset: 0,
                more: false,
            }],
        ),
        (
            "chain of five",
            vec![
                Ext::HopByHop(0),
                Ext::DestOpts(0),
                Ext::Routing(0),
                Ext::Ah(1),
                Ext::DestOpts(3),
            ],
        ),
        ("chain of eight", vec![Ext::DestOpts(0); 8]),
    ] {
        cases.push(case(
            format!("v6 {name} banned"),
            &Frame::syn(banned6, 25).with_exts(exts.clone()),
            XDP_DROP,
        ));
        cases.push(case(
            format!("v6 {name} clean"),
            &Frame::syn(clean6, 25).with_exts(exts),
            XDP_PASS,
        ));
    }
    cases.extend([
        case(
            "v6 chain of nine from banned (undecidable)",
            &Frame::syn(banned6, 25).with_exts(vec![Ext::DestOpts(0); 9]),
            XDP_DROP,
        ),
        case(
            "v6 chain of nine from clean",
            &Frame::syn(clean6, 25).with_exts(vec![Ext::DestOpts(0); 9]),
            XDP_PASS,
        ),
        case(
            "v6 chain of nine to UDP",
            &Frame::ip(banned6, 17, udp(25)).with_exts(vec![Ext::DestOpts(0); 9]),
            XDP_DROP,
        ),
    ]);
    // Fragments.
    let first_v4 = |src| Frame::syn(src, 25).with_v4_fragment(0, true);
    let first_v6 = |src| {
        Frame::syn(src, 25).with_exts(vec![Ext::Fragment {
            offset: 0,
            more: true,
        }])
    };
    cases.extend([
        case(
            "v4 non-first fragment from banned",
            &Frame::syn(banned, 25).with_v4_fragment(185, false),
            XDP_PASS,
        ),
        case(
            "v4 first fragment, whole TCP header",
            &first_v4(banned),
            XDP_DROP,
        ),
        case(
            "v4 first fragment, 8 TCP bytes (flags cut)",
            &first_v4(banned).with_payload_len(8),
            XDP_DROP,
        ),
        case(
            "v4 first fragment, 8 TCP bytes to 8080",
            &Frame::syn(banned, 8080)
                .with_v4_fragment(0, true)
                .with_payload_len(8),
            XDP_PASS,
        ),
        case(
            "v4 first fragment, 2 TCP bytes (port cut)",
            &first_v4(banned).with_payload_len(2),
            XDP_DROP,
        ),
        case(
            "v4 first fragment, 0 TCP bytes",
            &first_v4(banned).with_payload_len(0),
            XDP_DROP,
        ),
        case(
            "v4 first fragment cut short, clean source",
            &first_v4(clean).with_payload_len(2),
            XDP_PASS,
        ),
        case(
            "v4 first fragment cut short, allow-listed",
            &first_v4(ip("198.51.100.42")).with_payload_len(2),
            XDP_PASS,
        ),
        // Ethernet pads a 42-byte frame to 60: the padding must not be read as TCP flags.
        case(
            "v4 first fragment of 8 bytes, padded with a fake SYN",
            &first_v4(banned)
                .with_payload_len(8)
                .with_trailer(vec![0x50, SYN, 0, 0, 0, 0, 0, 0, 0, 0]),
            XDP_DROP,
        ),
        case(
            "v6 non-first fragment from banned",
            &Frame::syn(banned6, 25).with_exts(vec![Ext::Fragment {
                offset: 100,
                more: true,
            }]),
            XDP_PASS,
        ),
        case(
            "v6 first fragment, whole TCP header",
            &first_v6(banned6),
            XDP_DROP,
        ),
        case(
            "v6 first fragment, 8 TCP bytes",
            &first_v6(banned6).with_payload_len(8),
            XDP_DROP,
        ),
        case(
            "v6 first fragment, 3 TCP bytes",
            &first_v6(banned6).with_payload_len(3),
            XDP_DROP,
        ),
        case(
            "v6 first fragment cut short, clean",
            &first_v6(clean6).with_payload_len(3),
            XDP_PASS,
        ),
        case(
            "v6 first fragment cut inside the next extension header",
            &Frame::syn(banned6, 25)
                .with_exts(vec![
                    Ext::Fragment {
                        offset: 0,
                        more: true,
                    },
                    Ext::DestOpts(4),
                ])
                .with_payload_len(0),
            XDP_DROP,
        ),
    ]);
    // Truncation at every header boundary, and lengths that lie.
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (as drivers do), so
    // truncation starts there.
    let whole = Frame::syn(banned, 25).with_vlans(&[TPID_8021Q], 5).bytes();
    for cut in [14, 16, 17, 18, 30, 37, 38, 41, 42, 50, 51] {
        cases.push(raw(
            &format!("v4 SYN truncated to {cut} bytes"),
            whole[..cut].to_vec(),
            XDP_PASS,
        ));
    }
    let whole6 = Frame::syn(banned6, 25)
        .with_exts(vec![Ext::HopByHop(0)])
        .bytes();
    for cut in [14, 20, 53, 54, 55, 61, 62, 65, 66, 75] {
        cases.push(raw(
            &format!("v6 SYN truncated to {cut} bytes"),
            whole6[..cut].to_vec(),
            XDP_PASS,
        ));
    }
    let mut short_total = Frame::syn(banned, 25).with_trailer(vec![0; 20]);
    if let Net::V4 { total_len, .. } = &mut short_total.net {
        *total_len = Some(28);
    }
    cases.push(case(
        "v4 total length cuts the TCP flags (rest is padding)",
        &short_total,
        XDP_PASS,
    ));
    let mut bad_version = Frame::syn(banned, 25).bytes();
    bad_version[14] = 0x65;
    cases.push(raw("v4 ethertype with version 6", bad_version, XDP_PASS));
    let mut ihl_short = Frame::syn(banned, 25).bytes();
    ihl_short[14] = 0x44;
    cases.push(raw("v4 IHL below 5", ihl_short, XDP_PASS));
    cases
}

fn check(program: &mut Program, world: &World, cases: &[Case]) -> usize {
    program.install(world);
    let mut failures = Vec::new();
    for c in cases {
        let expected = world.expect(&c.frame);
        assert_eq!(
            expected.action, c.expected,
            "case {:?}: the reference classifier disagrees with the table ({:?})",
            c.name, expected.judgement
        );
        let before = program.stats();
        let action = program.run(&c.frame);
        let after = program.stats();
        let family = expected.family as usize;
        let moved = delta(&after[family], &before[family]);
        if action != c.expected || moved != expected.stats {
            failures.push(format!(
                "{}: action {action} (want {}), counters {moved:?} (want {:?})",
                c.name, c.expected, expected.stats
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    cases.len()
}

#[test]
fn table_of_crafted_packets() {
    if !privileged("table_of_crafted_packets") {
        return;
    }
    let now = blocker::clock::now_ns();
    let mut program = Program::load();
    let standard = check(&mut program, &standard_world(now), &standard_cases());

    let mut program = Program::load();
    let everything = check(
        &mut program,
        &ban_everything(now),
        &[
            case(
                "/0: any v4 SYN",
                &Frame::syn(ip("198.51.100.77"), 25),
                XDP_DROP,
            ),
            case(
                "/0: any v6 SYN",
                &Frame::syn(ip("2001:db8:77::1"), 25),
                XDP_DROP,
            ),
            case(
                "/0: allow-listed v4",
                &Frame::syn(ip("203.0.113.1"), 25),
                XDP_PASS,
            ),
            case(
                "/0: allow-listed v6",
                &Frame::syn(ip("2001:db8:1::1"), 25),
                XDP_PASS,
            ),
            case(
                "/0: unprotected port",
                &Frame::syn(ip("198.51.100.77"), 8080),
                XDP_PASS,
            ),
        ],
    );

    let mut program = Program::load();
    let mut observe = standard_world(now);
    observe.observe = true;
    let observed = check(
        &mut program,
        &observe,
        &[
            case(
                "observe: banned SYN passes, counted",
                &Frame::syn(ip("198.51.100.1"), 25),
                XDP_PASS,
            ),
            case(
                "observe: banned v6 SYN passes, counted",
                &Frame::syn(ip("2001:db8:bad::1"), 25),
                XDP_PASS,
            ),
        ],
    );

    let mut program = Program::load();
    let mut custom = standard_world(now);
    custom.ports = vec![0, 4190, 65_535];
    let ports = check(
        &mut program,
        &custom,
        &[
            case(
                "custom ports: 4190 protected",
                &Frame::syn(ip("198.51.100.1"), 4190),
                XDP_DROP,
            ),
            case(
                "custom ports: 65535 protected",
                &Frame::syn(ip("198.51.100.1"), 65_535),
                XDP_DROP,
            ),
            case(
                "custom ports: 0 protected",
                &Frame::syn(ip("198.51.100.1"), 0),
                XDP_DROP,
            ),
            case(
                "custom ports: 25 no longer protected",
                &Frame::syn(ip("198.51.100.1"), 25),
                XDP_PASS,
            ),
        ],
    );
    println!(
        "table: {} crafted packets checked ({standard} standard, {everything} /0, {observed} observe, {ports} custom ports), all verdicts and counters as specified",
        standard + everything + observed + ports
    );
}

/// The kernel refuses a program whose verification walks more than a million instructions
/// ([`VERIFIER_LIMIT`]), and how far it walks depends on how well the kernel prunes
/// the paths it has seen, which older kernels do less well: a program near the limit here may
/// not load on the kernel a mail host runs. The program once walked 936,107 (each IPv6
/// extension chain brought its own pass over the lookups, see `parse::SourceAt::read`) and
/// walks 291,968 now (kernel 6.18); 40 % of the limit is the line.
#[test]
fn the_verifier_walks_well_under_its_limit() {
    if !privileged("the_verifier_walks_well_under_its_limit") {
        return;
    }
    let Some(walked) = Program::load().verified_instructions() else {
        // Not a missing privilege: the kernel does not say (5.15 and older).
        println!(
            "the_verifier_walks_well_under_its_limit: the kernel does not report verified_insns; not checked"
        );
        return;
    };
    let most = VERIFIER_LIMIT / 10 * 4;
    println!("the verifier walked {walked} instructions (the kernel's limit: {VERIFIER_LIMIT})");
    assert!(
        walked <= most,
        "the verifier walked {walked} instructions to accept the program, over {most} of its \
         limit of {VERIFIER_LIMIT}: an older kernel, which prunes less, may refuse it"
    );
}

/// Bans end in the kernel when they say, with no daemon to lift them: a range (kept to the
/// nanosecond) and single addresses (kept in units of 1.07 s, rounded up), each seen in
/// force before its end and gone after it. The program reads its clock once a jiffy per CPU,
/// so this is also the check that the reading it keeps moves on.
#[test]
fn bans_end_in_the_kernel_on_time_with_no_daemon() {
    if !privileged("bans_end_in_the_kernel_on_time_with_no_daemon") {
        return;
    }
    // On one CPU throughout, so that every packet meets the reading that CPU keeps: on a
    // fresh CPU even a reading that never moved on would look right.
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).expect("sched_getcpu");
    pin_to_cpu(0, cpu);
    // Loaded first: the verifier may take a while on a busy machine.
    let mut program = Program::load();
    let now = blocker::clock::now_ns();
    let range_ends = now + 600 * MS;
    let singles_end = now + 1_200 * MS;
    let ban = |net: &str, expires_at_ns| Ban {
        net: net.parse().expect("test prefix"),
        expires_at_ns,
        origin: origin::CSCLI,
    };
    program.install(&world(
        vec![
            ban("198.51.100.0/24", range_ends),
            ban("203.0.113.7/32", singles_end),
            ban("2001:db8::7/128", singles_end),
        ],
        &[],
        now,
    ));
    let syn = |addr: &str| program.run(&Frame::syn(ip(addr), 25).bytes());
    let sleep_until = |at: u64| {
        let left = at.saturating_sub(blocker::clock::now_ns());
        std::thread::sleep(std::time::Duration::from_nanos(left));
    };
    // In force until its end: a verdict taken before the end (a slow machine may take it
    // after, which proves nothing either way).
    let in_force = |addr: &str, ends: u64| {
        let verdict = syn(addr);
        assert!(
            verdict == XDP_DROP || blocker::clock::now_ns() >= ends,
            "{addr}: passed before its ban ended"
        );
    };
    let singles_end_in_kernel = table::expires_at_ns(table::tag(singles_end, origin::CSCLI));
    assert!(singles_end_in_kernel >= singles_end && singles_end_in_kernel - singles_end < 1 << 30);

    in_force("198.51.100.1", range_ends);
    in_force("203.0.113.7", singles_end_in_kernel);
    in_force("2001:db8::7", singles_end_in_kernel);
    sleep_until(range_ends + LAG);
    assert_eq!(syn("198.51.100.1"), XDP_PASS, "the range's ban has ended");
    sleep_until(singles_end_in_kernel - LAG);
    in_force("203.0.113.7", singles_end_in_kernel);
    in_force("2001:db8::7", singles_end_in_kernel);
    sleep_until(singles_end_in_kernel + LAG);
    for addr in ["203.0.113.7", "2001:db8::7"] {
        assert_eq!(syn(addr), XDP_PASS, "{addr}: its ban has ended");
    }
    println!(
        "bans ended in the kernel on time with no daemon: a range at {} ms, single addresses at {} ms (1.07 s units, rounded up), within {} ms",
        (range_ends - now) / MS,
        (singles_end_in_kernel - now) / MS,
        LAG / MS
    );
}

/// Whether the program looks each family's allow list up on a hit (IPv4, IPv6).
fn looked_up(program: &Program) -> (bool, bool) {
    let flags = program.maps.settings().expect("settings").flags;
    (
        flags & blocker_common::flags::ALLOW_V4 != 0,
        flags & blocker_common::flags::ALLOW_V6 != 0,
    )
}

/// One SYN from each of `addrs`: its verdict, and whether it counted as allow-listed.
fn syns(program: &Program, addrs: &[&str]) -> Vec<(u32, bool)> {
    addrs
        .iter()
        .map(|addr| {
            let source = ip(addr);
            let index = usize::from(source.is_ipv6());
            let before = program.stats()[index];
            let verdict = program.run(&Frame::syn(source, 25).bytes());
            let allowlisted = delta(&program.stats()[index], &before).allowlisted == 1;
            (verdict, allowlisted)
        })
        .collect()
}

/// The program looks a family's allow list up only while a ban of that family overlaps it,
/// and an allow-listed source passes throughout: when the overlap is there as the allow list
/// is written, when a ban brings it later, and after the last such ban has gone.
#[test]
fn the_allow_list_is_looked_up_only_while_a_ban_overlaps_it() {
    if !privileged("the_allow_list_is_looked_up_only_while_a_ban_overlaps_it") {
        return;
    }
    let mut program = Program::load();
    let now = blocker::clock::now_ns();
    let live = |net: &str| ban(net, true, origin::CSCLI, now);
    program.install(&world(
        vec![
            live("198.51.100.0/24"),
            live("203.0.113.7/32"),
            live("2001:db8::7/128"),
        ],
        &["198.51.100.42/32", "2001:db8:1::/48"],
        now,
    ));
    let allowed = (XDP_PASS, true);
    let dropped = (XDP_DROP, false);
    let clean = (XDP_PASS, false);

    // The /24 holds an allow-listed address as the list is written: IPv4's list is looked up.
    assert_eq!(looked_up(&program), (true, false));
    assert_eq!(program.maps.allow_overlaps(), 1);
    let sources = [
        "198.51.100.42",
        "198.51.100.1",
        "203.0.113.7",
        "2001:db8::7",
    ];
    assert_eq!(
        syns(&program, &sources),
        [allowed, dropped, dropped, dropped]
    );

    // The /24 lifted: the flag stays up until the runs that may have found it are over.
    let lifted = "198.51.100.0/24".parse().expect("test prefix");
    program.maps.remove_ban(lifted).expect("lift the /24");
    assert_eq!(looked_up(&program), (true, false));
    program.maps.settle_allow_flags().expect("settle");
    assert_eq!(looked_up(&program), (false, false));
    assert_eq!(program.maps.allow_overlaps(), 0);
    assert_eq!(syns(&program, &sources), [clean, clean, dropped, dropped]);

    // Bans that overlap arrive: each family's flag goes up with its ban. One that does not
    // changes nothing, and settling keeps what is still needed.
    for net in ["2001:db8:1::5/128", "198.51.0.0/16", "203.0.113.9/32"] {
        let Ban {
            net,
            expires_at_ns,
            origin,
        } = live(net);
        let ban = blocker::maps::Ban {
            net,
            expires_at_ns,
            origin,
        };
        program.maps.insert_ban(ban).expect("ban");
    }
    program.maps.settle_allow_flags().expect("settle");
    assert_eq!(looked_up(&program), (true, true));
    assert_eq!(program.maps.allow_overlaps(), 2);
    assert_eq!(
        syns(
            &program,
            &[
                "2001:db8:1::5",
                "198.51.100.42",
                "198.51.7.1",
                "203.0.113.9"
            ]
        ),
        [allowed, allowed, dropped, dropped]
    );

    // IPv6's overlap lifted: its flag goes, IPv4's stays, and an IPv4-mapped source is judged
    // by IPv4's.
    let lifted = "2001:db8:1::5/128".parse().expect("test prefix");
    program.maps.remove_ban(lifted).expect("lift");
    program.maps.settle_allow_flags().expect("settle");
    assert_eq!(looked_up(&program), (true, false));
    let mapped = ["::ffff:198.51.100.42", "::ffff:198.51.7.1", "2001:db8:1::5"];
    assert_eq!(syns(&program, &mapped), [allowed, dropped, clean]);

    // The same list written again, an entry with host bits: none is taken for stale and lost.
    let again = ["198.51.100.42/32", "2001:db8:1::77/48"].map(|n| n.parse().expect("a prefix"));
    program.maps.set_allowlist(&again).expect("allow list");
    assert_eq!(program.maps.allows().expect("the allow list").len(), 2);
    assert_eq!(syns(&program, &["198.51.100.42"]), [allowed]);
}

/// `deny_log`: with the flag set, each dropped SYN leaves its source and its ban's origin for
/// the daemon to log, and nothing else does (a clean SYN, an ACK, a SYN to another port, an
/// allow-listed or observed source); with the flag clear, nothing is written. A CPU keeps its
/// latest `DROP_SAMPLES`.
#[test]
fn deny_log_samples_the_sources_of_drops_and_nothing_else() {
    if !privileged("deny_log_samples_the_sources_of_drops_and_nothing_else") {
        return;
    }
    // The samples are per CPU: every run on one.
    pin_to_cpu(0, 0);
    let now = blocker::clock::now_ns();
    let mut program = Program::load();
    program.install(&standard_world(now));
    let mut log = program.drop_log();
    let (v4, v6) = (ip("203.0.113.7"), ip("2001:db8:bad::1"));
    let banned_syn = Frame::syn(v4, 25).bytes();
    assert_eq!(program.run(&banned_syn), XDP_DROP);
    assert!(
        log.drain().expect("read").is_empty(),
        "flag clear: no sample"
    );

    program.maps.set_deny_log(true).expect("set deny_log");
    assert_eq!(program.run_repeat(&banned_syn, 3), XDP_DROP);
    assert_eq!(program.run(&Frame::syn(v6, 993).bytes()), XDP_DROP);
    for (what, frame) in [
        ("clean SYN", Frame::syn(ip("203.0.113.1"), 25)),
        ("ACK", Frame::tcp(v4, 25, ACK)),
        ("SYN to 8080", Frame::syn(v4, 8080)),
        ("allow-listed", Frame::syn(ip("198.51.100.42"), 25)),
    ] {
        assert_eq!(program.run(&frame.bytes()), XDP_PASS, "{what}");
    }
    let sampled: Vec<_> = log.drain().expect("read").into_iter().collect();
    assert_eq!(sampled, [((v4, origin::CSCLI), 3), ((v6, origin::CAPI), 1)]);
    assert!(log.drain().expect("read").is_empty(), "read once");

    assert_eq!(program.run_repeat(&banned_syn, 100), XDP_DROP);
    let sampled: Vec<_> = log.drain().expect("read").into_iter().collect();
    let kept = u64::try_from(blocker_common::DROP_SAMPLES).expect("small");
    assert_eq!(sampled, [((v4, origin::CSCLI), kept)], "the latest only");

    program.maps.set_observe(true).expect("observe");
    assert_eq!(program.run(&banned_syn), XDP_PASS);
    assert!(
        log.drain().expect("read").is_empty(),
        "observed: not dropped"
    );
}
