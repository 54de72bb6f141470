//! The program's contract as plain Rust: the executable specification the kernel's verdicts
//! are held to. Written from the contract (see `blocker-ebpf/src/main.rs`), on byte slices,
//! independently of the kernel code's cursor.
//!
//! Drop iff: TCP, SYN set with ACK and RST clear, to a protected port, from a source covered by
//! a live banned prefix and by no allow-list prefix. IPv4-mapped IPv6 sources are judged as
//! IPv4. The TCP header is read only within what the IP header says the datagram holds. A
//! first fragment whose TCP header is cut short, and an IPv6 extension chain longer than
//! `EXT_CHAIN` headers, are judged on the source alone (unless a readable port is unprotected).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use blocker_common::{FamilyStats, family};
use ipnet::IpNet;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// Extension headers the program walks.
pub const EXT_CHAIN: usize = 8;

/// A banned prefix as the maps hold it.
#[derive(Clone, Debug)]
pub struct Ban {
    pub net: IpNet,
    pub expires_at_ns: u64,
    pub origin: u32,
}

/// Everything a verdict depends on besides the packet.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub bans: Vec<Ban>,
    pub allow: Vec<IpNet>,
    pub ports: Vec<u16>,
    /// The program's clock (`blocker::clock::now_ns`) at the time of the test (entries far from it on either side).
    pub now_ns: u64,
    pub observe: bool,
}

/// What the contract says about one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Ignored,
    Malformed,
    /// A readable SYN to a protected port.
    Syn(IpAddr),
    /// TCP header unreadable; the source alone decides.
    Undecidable(IpAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    Ignored,
    Malformed,
    Clean { undecidable: bool },
    Allowlisted { undecidable: bool },
    Banned { origin: u32, undecidable: bool },
}

/// The expected outcome: action and the counters' increments in `family`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub action: u32,
    pub family: u32,
    pub judgement: Judgement,
    pub stats: FamilyStats,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Classifies a frame.
#[must_use]
pub fn classify(frame: &[u8], ports: &[u16]) -> (u32, Class) {
    if frame.len() < 14 {
        return (family::OTHER, Class::Malformed);
    }
    let mut ether_type = be16(frame, 12);
    let mut at = 14;
    for _ in 0..2 {
        if ether_type == 0x8100 || ether_type == 0x88A8 {
            if frame.len() < at + 4 {
                return (family::OTHER, Class::Malformed);
            }
            ether_type = be16(frame, at + 2);
            at += 4;
        }
    }
    let packet = &frame[at..];
    match ether_type {
        0x0800 => (family::IPV4, ipv4(packet, ports)),
        0x86DD => (family::IPV6, ipv6(packet, ports)),
        _ => (family::OTHER, Class::Ignored),
    }
}

fn ipv4(p: &[u8], ports: &[u16]) -> Class {
    if p.len() < 20 {
        return Class::Malformed;
    }
    let header_len = usize::from(p[0] & 0x0F) * 4;
    let total_len = usize::from(be16(p, 2));
    if p[0] >> 4 != 4 || header_len < 20 || total_len < header_len || p.len() < header_len {
        return Class::Malformed;
    }
    if p[9] != 6 {
        return Class::Ignored;
    }
    let frag = be16(p, 6);
    if frag & 0x1FFF != 0 {
        return Class::Ignored;
    }
    let src = IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
    let datagram = &p[..total_len.min(p.len())];
    tcp(&datagram[header_len..], src, frag & 0x2000 != 0, ports)
}

fn ipv6(p: &[u8], ports: &[u16]) -> Class {
    if p.len() < 40 || p[0] >> 4 != 6 {
        return Class::Malformed;
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&p[8..24]);
    let src = IpAddr::V6(Ipv6Addr::from(src));
    let payload_len = usize::from(be16(p, 4));
    let end = if payload_len == 0 {
        p.len()
    } else {
        (40 + payload_len).min(p.len())
    };
    let mut rest = &p[40..end];
    let mut next = p[6];
    let mut first_fragment = false;
    let cut = |first_fragment: bool| {
        if first_fragment {
            Class::Undecidable(src)
        } else {
            Class::Malformed
        }
    };
    for _ in 0..EXT_CHAIN {
        let len = match next {
            6 => return tcp(rest, src, first_fragment, ports),
            0 | 43 | 60 | 51 => {
                if rest.len() < 2 {
                    return cut(first_fragment);
                }
                if next == 51 {
                    (usize::from(rest[1]) + 2) * 4
                } else {
                    (usize::from(rest[1]) + 1) * 8
                }
            }
            44 => {
                if rest.len() < 8 {
                    return cut(first_fragment);
                }
                let field = be16(rest, 2);
                if field >> 3 != 0 {
                    return Class::Ignored;
                }
                first_fragment |= field & 1 != 0;
                8
            }
            _ => return Class::Ignored,
        };
        next = rest[0];
        if rest.len() < len {
            return cut(first_fragment);
        }
        rest = &rest[len..];
    }
    match next {
        6 => tcp(rest, src, first_fragment, ports),
        0 | 43 | 60 | 51 | 44 => Class::Undecidable(src),
        _ => Class::Ignored,
    }
}

fn tcp(segment: &[u8], src: IpAddr, first_fragment: bool, ports: &[u16]) -> Class {
    let cut = if first_fragment {
        Class::Undecidable(src)
    } else {
        Class::Malformed
    };
    if segment.len() < 4 {
        return cut;
    }
    if !ports.contains(&be16(segment, 2)) {
        return Class::Ignored;
    }
    if segment.len() < 14 {
        return cut;
    }
    let flags = segment[13];
    if flags & 0x02 != 0 && flags & (0x10 | 0x04) == 0 {
        Class::Syn(src)
    } else {
        Class::Ignored
    }
}

/// The source as the ban maps judge it: `::ffff:a.b.c.d` is IPv4.
#[must_use]
pub fn judged_address(src: IpAddr) -> IpAddr {
    match src {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(src, IpAddr::V4),
        IpAddr::V4(_) => src,
    }
}

impl World {
    fn judge(&self, src: IpAddr, undecidable: bool) -> Judgement {
        let src = judged_address(src);
        let live = self
            .bans
            .iter()
            .filter(|b| b.net.contains(&src) && b.expires_at_ns > self.now_ns)
            .max_by_key(|b| b.net.prefix_len());
        match live {
            None => Judgement::Clean { undecidable },
            Some(_) if self.allow.iter().any(|a| a.contains(&src)) => {
                Judgement::Allowlisted { undecidable }
            }
            Some(ban) => Judgement::Banned {
                origin: ban.origin,
                undecidable,
            },
        }
    }

    /// What the program must do with `frame`, and what it must count.
    #[must_use]
    pub fn expect(&self, frame: &[u8]) -> Expected {
        let (family, class) = classify(frame, &self.ports);
        let judgement = match class {
            Class::Ignored => Judgement::Ignored,
            Class::Malformed => Judgement::Malformed,
            Class::Syn(src) => self.judge(src, false),
            Class::Undecidable(src) => self.judge(src, true),
        };
        let mut stats = FamilyStats {
            seen: 1,
            ..FamilyStats::default()
        };
        let mut action = XDP_PASS;
        match judgement {
            Judgement::Ignored => {}
            Judgement::Malformed => stats.malformed = 1,
            Judgement::Clean { undecidable }
            | Judgement::Allowlisted { undecidable }
            | Judgement::Banned { undecidable, .. } => {
                if undecidable {
                    stats.malformed = 1;
                } else {
                    stats.syn_protected = 1;
                }
                if let Judgement::Allowlisted { .. } = judgement {
                    stats.allowlisted = 1;
                }
                if let Judgement::Banned { origin, .. } = judgement {
                    let slot = origin as usize;
                    if self.observe {
                        stats.observed_packets[slot] = 1;
                    } else {
                        action = XDP_DROP;
                        stats.dropped_packets[slot] = 1;
                        stats.dropped_bytes[slot] = frame.len() as u64;
                    }
                }
            }
        }
        Expected {
            action,
            family,
            judgement,
            stats,
        }
    }
}
