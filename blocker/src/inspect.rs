//! Answers about the pinned maps for `blocker check` and `blocker list`: what would happen to
//! a SYN from an address, and which prefixes are banned. Pure functions over map contents, by
//! the same rules as the XDP program (longest live prefix; allow list wins; expired entries
//! ignored; `::ffff:a.b.c.d` judged as IPv4).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::maps::Ban;

/// What a SYN from an address to a protected port meets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Dropped, because of `ban` (the longest live prefix covering the address).
    Dropped {
        ban: BanView,
    },
    /// A live ban covers it, but the allow list wins.
    Allowlisted {
        allow: IpNet,
        ban: BanView,
    },
    /// Only expired bans cover it (the program ignores them until the daemon removes them).
    Expired {
        ban: BanView,
    },
    NotBanned,
}

/// A ban as shown to a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BanView {
    pub prefix: IpNet,
    pub origin: &'static str,
    /// Unix seconds, or `None` for a ban with no end.
    pub expires_at: Option<u64>,
    pub expired: bool,
}

impl BanView {
    #[must_use]
    pub fn new(ban: &Ban, clock_now: u64, wall_now: std::time::SystemTime) -> BanView {
        let origin = blocker_common::origin::NAMES
            .get(ban.origin as usize)
            .copied()
            .unwrap_or("other");
        BanView {
            prefix: ban.net,
            origin,
            expires_at: crate::clock::wall_time(ban.expires_at_ns, wall_now, clock_now)
                .map(crate::state::unix_seconds),
            expired: ban.expires_at_ns <= clock_now,
        }
    }
}

/// The verdict for `addr` given the maps' bans and allow list.
#[must_use]
pub fn check(
    addr: IpAddr,
    bans: &[Ban],
    allow: &[IpNet],
    clock_now: u64,
    wall_now: std::time::SystemTime,
) -> Verdict {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    };
    let covering = bans.iter().filter(|b| b.net.contains(&addr));
    let live = covering
        .clone()
        .filter(|b| b.expires_at_ns > clock_now)
        .max_by_key(|b| b.net.prefix_len());
    let Some(ban) = live else {
        return match covering.max_by_key(|b| b.net.prefix_len()) {
            Some(expired) => Verdict::Expired {
                ban: BanView::new(expired, clock_now, wall_now),
            },
            None => Verdict::NotBanned,
        };
    };
    let ban = BanView::new(ban, clock_now, wall_now);
    match allow
        .iter()
        .filter(|a| a.contains(&addr))
        .max_by_key(|a| a.prefix_len())
    {
        Some(allow) => Verdict::Allowlisted { allow: *allow, ban },
        None => Verdict::Dropped { ban },
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn ban(net: &str, expires_at_ns: u64, origin: u32) -> Ban {
        Ban {
            net: net.parse().unwrap(),
            expires_at_ns,
            origin,
        }
    }

    #[test]
    fn verdicts_follow_the_program_rules() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let now = 100;
        let bans = [
            ban("198.51.100.0/24", 200, 1),
            ban("198.51.100.128/25", 50, 2),
            ban("203.0.113.9/32", 50, 2),
        ];
        let allow: [IpNet; 1] = ["198.51.100.42/32".parse().unwrap()];
        let at = |a: &str| check(a.parse().unwrap(), &bans, &allow, now, wall);
        assert!(
            matches!(at("198.51.100.200"), Verdict::Dropped { ban } if ban.prefix.prefix_len() == 24 && ban.origin == "crowdsec")
        );
        assert!(matches!(at("::ffff:198.51.100.1"), Verdict::Dropped { .. }));
        assert!(matches!(at("198.51.100.42"), Verdict::Allowlisted { .. }));
        assert!(matches!(at("203.0.113.9"), Verdict::Expired { ban } if ban.expired));
        assert_eq!(at("203.0.113.10"), Verdict::NotBanned);
    }
}
