//! Synthetic ban sets, deterministic for a seed, made only of addresses that never leave the
//! machine: IPv4 from `198.18.0.0/15` (the benchmarking range), IPv6 from `2001:db8::/32`.
//!
//! Mostly single addresses, 1 % ranges, no two prefixes overlapping (so nftables can hold the
//! very same prefixes in an interval set without merging them):
//! - IPv4 singles: a permutation of `198.18.0.0/16`, so at most 65,536; IPv4 ranges: a random
//!   partition of `198.19.0.0/16` into /16../24 prefixes, so at most 256. An IPv4 family is
//!   therefore capped at [`V4_CAPACITY`] entries: the address rule allows no more.
//! - IPv6 singles: `2001:db8:100::/64` with scrambled interface ids; IPv6 ranges: a random
//!   partition of `2001:db8:8000::/33` into /33../64 prefixes.
//!
//! Clean sources (never banned): `203.0.113.10` and `2001:db8:25::10`.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::{Rng, SeedableRng as _, rngs::StdRng, seq::SliceRandom as _};

/// Most IPv4 entries a set can hold: 65,536 singles and 256 ranges.
pub const V4_CAPACITY: usize = V4_SINGLES + V4_RANGES;
const V4_SINGLES: usize = 1 << 16;
const V4_RANGES: usize = 256;
const V4_SINGLES_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const V4_RANGE_REGION: (u128, u8) = (u32::from_be_bytes([198, 19, 0, 0]) as u128, 16);
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
        let (max_ranges, region) = match family {
            Family::V4 => (V4_RANGES, V4_RANGE_REGION),
            Family::V6 => (usize::MAX, V6_RANGE_REGION),
        };
        let range_count = (entries / 100).min(max_ranges);
        let single_count = match family {
            Family::V4 => (entries - range_count).min(V4_SINGLES),
            Family::V6 => entries - range_count,
        };
        let max_len = match family {
            Family::V4 => 24,
            Family::V6 => 64,
        };
        let singles = (0..single_count as u128)
            .map(|i| match family {
                // 40,503 is odd, so i -> i * 40,503 mod 2^16 is a permutation.
                Family::V4 => u128::from(
                    V4_SINGLES_BASE + u32::try_from(i * 40_503 % (1 << 16)).expect("below 2^16"),
                ),
                // Likewise for 2^64 and this odd constant: distinct, scattered interface ids.
                Family::V6 => {
                    V6_SINGLES_BASE | (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & u128::from(u64::MAX))
                }
            })
            .collect();
        let ranges = if range_count == 0 {
            Vec::new()
        } else {
            partition(family.bits(), region, max_len, range_count, rng)
        };
        FamilySet {
            family,
            singles,
            ranges,
        }
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
            .first()
            .copied()
            .or_else(|| self.ranges.first().map(|r| r.0))
            .expect("a non-empty set");
        self.addr(first)
    }

    /// Banned sources for `count` distinct entries (all of them if fewer), in random order: a
    /// single's own address, or a random address inside a range.
    #[must_use]
    pub fn spread_sources(&self, count: usize, rng: &mut StdRng) -> Vec<IpAddr> {
        let bits = self.family.bits();
        let picked = rand::seq::index::sample(rng, self.len(), count.min(self.len()));
        picked
            .into_iter()
            .map(|i| {
                if let Some(&addr) = self.singles.get(i) {
                    return self.addr(addr);
                }
                let (net, len) = self.ranges[i - self.singles.len()];
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

/// `count` disjoint prefixes of lengths `region.1..=max_len` that together cover `region`: the
/// region, split at random until there are `count` pieces (fewer if they are all `max_len`).
fn partition(bits: u8, region: Prefix, max_len: u8, count: usize, rng: &mut StdRng) -> Vec<Prefix> {
    let mut splittable = vec![region];
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
    /// `v4` and `v6` entries (IPv4 capped at [`V4_CAPACITY`]), the same for the same `seed`.
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
        self.v4.singles() == V4_SINGLES
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
    fn sets_are_disjoint_documentation_prefixes() {
        let set = BanSet::new(20_000, 20_000, 7);
        assert_eq!(set.v4.len(), 20_000);
        assert_eq!(set.v6.len(), 20_000);
        let bench_v4: Ipv4Net = "198.18.0.0/15".parse().unwrap();
        let doc_v6: Ipv6Net = "2001:db8::/32".parse().unwrap();
        let nets: Vec<IpNet> = set.nets().collect();
        for net in &nets {
            match net {
                IpNet::V4(n) => assert!(
                    bench_v4.contains(n) && (16..=32).contains(&n.prefix_len()),
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
        for src in set.v6.spread_sources(1000, &mut rng) {
            assert!(nets.iter().any(|n| n.contains(&src)), "{src} not banned");
        }
        let big = BanSet::new(1_000_000, 10, 7);
        assert_eq!(big.v4.len(), V4_CAPACITY);
        assert!(big.bans_spray_range());
    }
}
