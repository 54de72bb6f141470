//! Synthetic ban sets, deterministic for a seed, made only of addresses that never leave the
//! machine.
//!
//! Mostly single addresses, 1 % ranges, no two prefixes overlapping (so nftables can hold the
//! very same prefixes in an interval set without merging them):
//! - IPv4 singles: a permutation of `198.18.0.0/16` (the benchmarking range), then, past its
//!   65,536 addresses, a permutation of `240.0.0.0/8`; IPv4 ranges: disjoint /16../24 prefixes
//!   of `198.19.0.0/16` (256 at most), then of `241.0.0.0/8` ([`partition`]).
//! - IPv6 singles: `2001:db8:100::/64` with scrambled interface ids; IPv6 ranges: a random
//!   partition of `2001:db8:8000::/33` into /33../64 prefixes.
//!
//! Why `240.0.0.0/4`: a million IPv4 entries need more than the 131,072 addresses of
//! `198.18.0.0/15`. The reserved range is no host's address anywhere, and it is only ever map
//! (or nftables set) contents: every frame the benchmark makes or sends has a source in
//! `198.18.0.0/15` or `2001:db8::/32` ([`FamilySet::on_wire`]), so a set of any size is
//! looked up at entries placed among all the others.
//!
//! Clean sources (never banned): `203.0.113.10` and `2001:db8:25::10`.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::{Rng, SeedableRng as _, rngs::StdRng, seq::SliceRandom as _};

/// IPv4 singles from the benchmarking range, which frames may carry: all of `198.18.0.0/16`.
const V4_WIRE_SINGLES: usize = 1 << 16;
/// IPv4 ranges from the benchmarking range: at most the 256 /24s of `198.19.0.0/16`.
const V4_WIRE_RANGES: usize = 256;
const V4_SINGLES_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const V4_RANGE_REGION: (u128, u8) = (u32::from_be_bytes([198, 19, 0, 0]) as u128, 16);
/// The singles past the benchmarking range: `240.0.0.0/8` holds 2^24.
const V4_MAP_SINGLES_BASE: u32 = u32::from_be_bytes([240, 0, 0, 0]);
/// The ranges past the benchmarking range: up to 65,536 /24s.
const V4_MAP_RANGE_REGION: (u128, u8) = (u32::from_be_bytes([241, 0, 0, 0]) as u128, 8);
const V6_SINGLES_BASE: u128 = 0x2001_0db8_0100_0000_0000_0000_0000_0000;
const V6_RANGE_REGION: (u128, u8) = (0x2001_0db8_8000_0000_0000_0000_0000_0000, 33);

pub const CLEAN_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const CLEAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x25, 0, 0, 0, 0, 0x10);

/// The IPv4 source whose low 16 bits plus the IP ID that `packet.rs` writes (0x1234) make
/// 0xffff: the flood generator's starting frame (see `bpf::spraying_tx`).
pub const SPRAY_BASE_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0xED, 0xCB);

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Family {
    #[serde(rename = "IPv4")]
    V4,
    #[serde(rename = "IPv6")]
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    #[must_use]
    pub fn clean_source(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(CLEAN_V4),
            Family::V6 => IpAddr::V6(CLEAN_V6),
        }
    }
}

/// A prefix of a family as (network, length), the network right-aligned in a `u128`.
type Prefix = (u128, u8);

/// The banned prefixes of one family.
#[derive(Clone, Debug)]
pub struct FamilySet {
    family: Family,
    singles: Vec<u128>,
    ranges: Vec<Prefix>,
}

impl FamilySet {
    fn new(family: Family, entries: usize, rng: &mut StdRng) -> FamilySet {
        let range_count = entries / 100;
        let single_count = entries - range_count;
        let (mut singles, ranges) = match family {
            Family::V4 => {
                let wire_ranges = range_count.min(V4_WIRE_RANGES);
                let mut ranges = partition(32, V4_RANGE_REGION, 16, 24, wire_ranges, rng);
                ranges.extend(partition(
                    32,
                    V4_MAP_RANGE_REGION,
                    16,
                    24,
                    range_count - wire_ranges,
                    rng,
                ));
                assert!(
                    single_count <= V4_WIRE_SINGLES + (1 << 24) && ranges.len() == range_count,
                    "{entries} IPv4 entries: more than the bench's ranges hold"
                );
                // 40,503 and 10,368,889 are odd, so i -> i * k mod 2^n is a permutation.
                let singles = (0..single_count as u128)
                    .map(|i| {
                        u128::from(if i < V4_WIRE_SINGLES as u128 {
                            V4_SINGLES_BASE
                                + u32::try_from(i * 40_503 % (1 << 16)).expect("below 2^16")
                        } else {
                            V4_MAP_SINGLES_BASE
                                + u32::try_from(i * 10_368_889 % (1 << 24)).expect("below 2^24")
                        })
                    })
                    .collect::<Vec<_>>();
                (singles, ranges)
            }
            // Likewise for 2^64 and this odd constant: distinct, scattered interface ids.
            Family::V6 => (
                (0..single_count as u128)
                    .map(|i| {
                        V6_SINGLES_BASE
                            | (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & u128::from(u64::MAX))
                    })
                    .collect(),
                partition(128, V6_RANGE_REGION, 33, 64, range_count, rng),
            ),
        };
        // Written in random order, so the singles frames carry are placed among the others
        // (one written first finds its home bucket free).
        singles.shuffle(rng);
        FamilySet {
            family,
            singles,
            ranges,
        }
    }

    /// Whether a frame may carry sources of the prefix at `addr`: IPv4 only from the
    /// benchmarking range `198.18.0.0/15` (the rest is map contents alone).
    fn on_wire(&self, addr: u128) -> bool {
        self.family == Family::V6 || addr >> 17 == u128::from(V4_SINGLES_BASE >> 17)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.singles.len() + self.ranges.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[must_use]
    pub fn singles(&self) -> usize {
        self.singles.len()
    }

    /// Every banned prefix: singles first, then ranges.
    pub fn nets(&self) -> impl Iterator<Item = IpNet> + '_ {
        let bits = self.family.bits();
        self.singles
            .iter()
            .map(move |&a| (a, bits))
            .chain(self.ranges.iter().copied())
            .map(|p| self.net(p))
    }

    fn net(&self, (addr, len): Prefix) -> IpNet {
        match self.family {
            Family::V4 => IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(u32::try_from(addr).expect("IPv4")), len)
                    .expect("length <= 32"),
            ),
            Family::V6 => {
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), len).expect("length <= 128"))
            }
        }
    }

    fn addr(&self, addr: u128) -> IpAddr {
        match self.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(addr).expect("IPv4"))),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(addr)),
        }
    }

    /// One banned source, the same every time (the hot pattern).
    #[must_use]
    pub fn hot_source(&self) -> IpAddr {
        let first = self
            .singles
            .iter()
            .copied()
            .chain(self.ranges.iter().map(|r| r.0))
            .find(|&a| self.on_wire(a))
            .expect("a non-empty set");
        self.addr(first)
    }

    /// Banned sources for `count` distinct entries that frames may carry (all of them if
    /// fewer), in random order: a single's own address, or a random address inside a range.
    #[must_use]
    pub fn spread_sources(&self, count: usize, rng: &mut StdRng) -> Vec<IpAddr> {
        let bits = self.family.bits();
        let wire: Vec<Prefix> = self
            .singles
            .iter()
            .map(|&a| (a, bits))
            .chain(self.ranges.iter().copied())
            .filter(|p| self.on_wire(p.0))
            .collect();
        let picked = rand::seq::index::sample(rng, wire.len(), count.min(wire.len()));
        picked
            .into_iter()
            .map(|i| {
                let (net, len) = wire[i];
                let host_bits = u32::from(bits - len);
                let host = if host_bits == 0 {
                    0
                } else {
                    rng.random::<u128>() >> (128 - host_bits)
                };
                self.addr(net | host)
            })
            .collect()
    }
}

/// `count` disjoint prefixes of lengths `min_len..=max_len` inside `region`: the region cut
/// into its `min_len` prefixes, which are then split at random until there are `count`
/// pieces (fewer if they are all `max_len`), or `count` of them picked at random if they are
/// more.
fn partition(
    bits: u8,
    region: Prefix,
    min_len: u8,
    max_len: u8,
    count: usize,
    rng: &mut StdRng,
) -> Vec<Prefix> {
    if count == 0 {
        return Vec::new();
    }
    let (base, len) = region;
    let mut splittable: Vec<Prefix> = (0..1u128 << (min_len - len))
        .map(|i| (base | i << (bits - min_len), min_len))
        .collect();
    if splittable.len() >= count || min_len >= max_len {
        splittable.shuffle(rng);
        splittable.truncate(count);
        return splittable;
    }
    let mut done = Vec::new();
    while !splittable.is_empty() && splittable.len() + done.len() < count {
        let (net, len) = splittable.swap_remove(rng.random_range(0..splittable.len()));
        for half in [(net, len + 1), (net | 1 << (bits - len - 1), len + 1)] {
            if half.1 < max_len {
                splittable.push(half);
            } else {
                done.push(half);
            }
        }
    }
    done.extend(splittable);
    done.shuffle(rng);
    done
}

/// The ban set of one benchmark size: both families.
#[derive(Clone, Debug)]
pub struct BanSet {
    pub v4: FamilySet,
    pub v6: FamilySet,
}

impl BanSet {
    /// `v4` and `v6` entries, the same for the same `seed`.
    #[must_use]
    pub fn new(v4: usize, v6: usize, seed: u64) -> BanSet {
        let mut rng = StdRng::seed_from_u64(seed);
        BanSet {
            v4: FamilySet::new(Family::V4, v4, &mut rng),
            v6: FamilySet::new(Family::V6, v6, &mut rng),
        }
    }

    #[must_use]
    pub fn family(&self, family: Family) -> &FamilySet {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn nets(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.v4.nets().chain(self.v6.nets())
    }

    /// One entry: the range 198.18.0.0/16, which bans every source of the flood generator.
    #[must_use]
    pub fn spray_range() -> BanSet {
        let v4 = FamilySet {
            family: Family::V4,
            singles: Vec::new(),
            ranges: vec![(u128::from(V4_SINGLES_BASE), 16)],
        };
        let v6 = FamilySet {
            family: Family::V6,
            singles: Vec::new(),
            ranges: Vec::new(),
        };
        BanSet { v4, v6 }
    }

    /// Whether every address of 198.18.0.0/16, the flood generator's sources, is banned.
    #[must_use]
    pub fn bans_spray_range(&self) -> bool {
        self.v4.singles() >= V4_WIRE_SINGLES
            || self.v4.ranges.contains(&(u128::from(V4_SINGLES_BASE), 16))
    }

    /// A `startup=true` answer banning every prefix, shaped like LAPI 1.4.6's (the fields of a
    /// community blocklist decision), with empty `deleted` as `null`.
    #[must_use]
    pub fn stream_answer(&self) -> Vec<u8> {
        let mut body = String::with_capacity(self.len() * 170 + 32);
        body.push_str(r#"{"deleted":null,"new":["#);
        for (id, net) in self.nets().enumerate() {
            if id > 0 {
                body.push(',');
            }
            let (scope, value) = match net {
                IpNet::V4(n) if n.prefix_len() == 32 => ("Ip", n.addr().to_string()),
                IpNet::V6(n) if n.prefix_len() == 128 => ("Ip", n.addr().to_string()),
                net => ("Range", net.to_string()),
            };
            write!(
                body,
                r#"{{"duration":"167h59m58.5s","id":{},"origin":"CAPI","scenario":"crowdsecurity/postfix-spam","scope":"{scope}","type":"ban","value":"{value}"}}"#,
                id + 1
            )
            .expect("write to a String");
        }
        body.push_str("]}");
        body.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_disjoint_and_frames_carry_only_test_sources() {
        let bench_v4: Ipv4Net = "198.18.0.0/15".parse().unwrap();
        let reserved_v4: Ipv4Net = "240.0.0.0/4".parse().unwrap();
        let doc_v6: Ipv6Net = "2001:db8::/32".parse().unwrap();
        for (entries, v4_seen_on_wire) in [(20_000, 20_000), (300_000, 65_536 + 256)] {
            let set = BanSet::new(entries, 20_000, 7);
            assert_eq!(set.v4.len(), entries);
            assert_eq!(set.v6.len(), 20_000);
            let nets: Vec<IpNet> = set.nets().collect();
            for net in &nets {
                match net {
                    IpNet::V4(n) => assert!(
                        (bench_v4.contains(n) || reserved_v4.contains(n))
                            && (16..=32).contains(&n.prefix_len()),
                        "{n}"
                    ),
                    IpNet::V6(n) => assert!(doc_v6.contains(n) && n.prefix_len() > 32, "{n}"),
                }
                assert!(
                    !net.contains(&set.v4.family.clean_source())
                        && !net.contains(&set.v6.family.clean_source())
                );
            }
            let mut sorted = nets.clone();
            sorted.sort();
            assert!(
                sorted.windows(2).all(|w| !w[0].contains(&w[1].network())),
                "overlap"
            );
            let mut rng = StdRng::seed_from_u64(1);
            let v4 = set.v4.spread_sources(usize::MAX, &mut rng);
            assert_eq!(v4.len(), v4_seen_on_wire);
            for src in &v4 {
                assert!(
                    matches!(src, IpAddr::V4(a) if bench_v4.contains(a)),
                    "{src} on the wire"
                );
            }
            for src in v4
                .iter()
                .take(200)
                .chain(&set.v6.spread_sources(200, &mut rng))
            {
                assert!(nets.iter().any(|n| n.contains(src)), "{src} not banned");
                match src {
                    IpAddr::V4(a) => assert!(bench_v4.contains(a), "{a} on the wire"),
                    IpAddr::V6(a) => assert!(doc_v6.contains(a), "{a} on the wire"),
                }
            }
            let IpAddr::V4(hot) = set.v4.hot_source() else {
                panic!("an IPv4 source")
            };
            assert!(bench_v4.contains(&hot), "{hot}");
        }
        let big = BanSet::new(1_000_000, 10, 7);
        assert_eq!(big.v4.len(), 1_000_000);
        assert!(big.bans_spray_range());
    }
}
