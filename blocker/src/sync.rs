//! Decisions → the prefixes that must be banned → the map operations that make the kernel
//! agree. Pure logic, no kernel: the maps sit behind [`BanMaps`], so this is unit-tested
//! against an in-memory fake.
//!
//! A prefix is banned while at least one live decision covers it; its kernel expiry is the
//! latest `until` among them (and its origin that decision's). A prefix that stays banned is
//! only ever updated in place, never removed and re-added, so it is never absent from the map.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    time::SystemTime,
};

use ipnet::IpNet;

use crate::{
    clock,
    decisions::{Decision, StreamBatch},
    maps::{Ban, KernelMaps, MapsError},
};

/// Expiry differences below this are clock-conversion noise, not a change worth a write.
const EXPIRY_TOLERANCE_NS: u64 = 1_000_000_000;

/// The ban maps as the sync sees them (add, delete); [`KernelMaps`] is the real one.
pub trait BanMaps {
    fn insert_ban(&mut self, ban: Ban) -> Result<(), MapsError>;
    fn remove_ban(&mut self, net: IpNet) -> Result<(), MapsError>;
}

impl BanMaps for KernelMaps {
    fn insert_ban(&mut self, ban: Ban) -> Result<(), MapsError> {
        KernelMaps::insert_ban(self, ban)
    }
    fn remove_ban(&mut self, net: IpNet) -> Result<(), MapsError> {
        KernelMaps::remove_ban(self, net)
    }
}

/// One live decision, as held for its prefix.
#[derive(Clone, Debug)]
struct Held {
    id: i64,
    until: SystemTime,
    origin: u32,
}

/// A change to make in the maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Unban(IpNet),
    Ban(Ban),
}

/// What one application of ops did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub banned: usize,
    pub unbanned: usize,
    pub failed: usize,
}

/// The live decisions, by prefix, and what the maps hold.
pub struct Sync {
    supported_types: Vec<String>,
    /// Decision types seen and ignored, so each is logged once.
    ignored_types: HashSet<String>,
    by_net: HashMap<IpNet, Vec<Held>>,
    net_of: HashMap<i64, IpNet>,
    /// (until, id) of every held decision, to find expired ones without a scan.
    expiries: BTreeSet<(SystemTime, i64)>,
    /// What we believe the maps hold (adopted from the kernel at start, then kept in step).
    applied: HashMap<IpNet, Ban>,
}

impl Sync {
    /// `supported_types`: decision types to enforce (`ban` by default), compared
    /// case-insensitively. `in_maps`: what the maps already hold (a restarted daemon adopts
    /// them; the first full resync reconciles).
    #[must_use]
    pub fn new(supported_types: &[String], in_maps: Vec<Ban>) -> Sync {
        Sync {
            supported_types: supported_types
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
            ignored_types: HashSet::new(),
            by_net: HashMap::new(),
            net_of: HashMap::new(),
            expiries: BTreeSet::new(),
            applied: in_maps.into_iter().map(|b| (b.net, b)).collect(),
        }
    }

    /// Number of prefixes the maps hold.
    #[must_use]
    pub fn banned_prefixes(&self) -> usize {
        self.applied.len()
    }

    /// What the maps hold, as the sync believes.
    pub fn applied(&self) -> impl Iterator<Item = &Ban> {
        self.applied.values()
    }

    /// Takes a `startup=true` answer: it replaces everything held. Returns the ops that bring
    /// the maps to it (removals only for prefixes no longer banned).
    pub fn resync(&mut self, batch: &StreamBatch, wall_now: SystemTime, clock_now: u64) -> Vec<Op> {
        self.by_net.clear();
        self.net_of.clear();
        self.expiries.clear();
        for decision in &batch.new {
            self.hold(decision);
        }
        self.expire(wall_now);
        let mut ops: Vec<Op> = self
            .applied
            .keys()
            .filter(|net| !self.by_net.contains_key(net))
            .map(|net| Op::Unban(*net))
            .collect();
        let nets: Vec<IpNet> = self.by_net.keys().copied().collect();
        ops.extend(
            nets.into_iter()
                .filter_map(|net| self.ban_op(net, wall_now, clock_now)),
        );
        ops
    }

    /// Takes a delta: deletions (by decision id, idempotent), then new decisions.
    pub fn delta(&mut self, batch: &StreamBatch, wall_now: SystemTime, clock_now: u64) -> Vec<Op> {
        let mut touched = HashSet::new();
        for decision in &batch.deleted {
            touched.extend(self.release(decision.id));
        }
        for decision in &batch.new {
            touched.extend(self.hold(decision));
        }
        touched.extend(self.expire(wall_now));
        self.plan(touched, wall_now, clock_now)
    }

    /// Drops decisions that have ended; returns the ops that follow.
    pub fn tick(&mut self, wall_now: SystemTime, clock_now: u64) -> Vec<Op> {
        let touched = self.expire(wall_now);
        self.plan(touched, wall_now, clock_now)
    }

    /// Applies `ops` (removals first, to free room), keeping our view in step with what
    /// succeeded. A failed op is counted and logged; the others go on.
    pub fn apply(&mut self, mut ops: Vec<Op>, maps: &mut impl BanMaps) -> Applied {
        ops.sort_by_key(|op| matches!(op, Op::Ban(_)));
        let mut applied = Applied::default();
        for op in ops {
            let result = match op {
                Op::Unban(net) => maps.remove_ban(net).map(|()| {
                    self.applied.remove(&net);
                    applied.unbanned += 1;
                }),
                Op::Ban(ban) => maps.insert_ban(ban).map(|()| {
                    self.applied.insert(ban.net, ban);
                    applied.banned += 1;
                }),
            };
            if let Err(e) = result {
                applied.failed += 1;
                tracing::warn!(error = %crate::error_chain(&e), ?op, "map update failed");
            }
        }
        applied
    }

    fn plan(&self, touched: HashSet<IpNet>, wall_now: SystemTime, clock_now: u64) -> Vec<Op> {
        touched
            .into_iter()
            .filter_map(|net| {
                if self.by_net.contains_key(&net) {
                    self.ban_op(net, wall_now, clock_now)
                } else {
                    self.applied.contains_key(&net).then_some(Op::Unban(net))
                }
            })
            .collect()
    }

    /// The write that makes `net`'s map entry match its decisions, if it does not already.
    fn ban_op(&self, net: IpNet, wall_now: SystemTime, clock_now: u64) -> Option<Op> {
        let latest = self.by_net.get(&net)?.iter().max_by_key(|h| h.until)?;
        let ban = Ban {
            net,
            expires_at_ns: clock::expiry_ns(Some(latest.until), wall_now, clock_now),
            origin: latest.origin,
        };
        match self.applied.get(&net) {
            Some(old)
                if old.origin == ban.origin
                    && old.expires_at_ns.abs_diff(ban.expires_at_ns) < EXPIRY_TOLERANCE_NS =>
            {
                None
            }
            _ => Some(Op::Ban(ban)),
        }
    }

    /// Holds a new decision; returns its prefix if it is one we enforce.
    fn hold(&mut self, decision: &Decision) -> Option<IpNet> {
        let kind = decision.kind.to_ascii_lowercase();
        if !self.supported_types.contains(&kind) {
            if self.ignored_types.insert(kind.clone()) {
                tracing::info!(decision_type = %kind, "ignoring decisions of this type (not in supported_decisions_types)");
            }
            return None;
        }
        // The same id again replaces what it said before.
        self.release(decision.id);
        let held = Held {
            id: decision.id,
            until: decision.until,
            origin: blocker_common::origin::from_name(&decision.origin),
        };
        self.expiries.insert((held.until, held.id));
        self.net_of.insert(held.id, decision.net);
        self.by_net.entry(decision.net).or_default().push(held);
        Some(decision.net)
    }

    /// Lets go of a decision by id; returns its prefix if it was held.
    fn release(&mut self, id: i64) -> Option<IpNet> {
        let net = self.net_of.remove(&id)?;
        if let Some(held) = self.by_net.get_mut(&net) {
            if let Some(pos) = held.iter().position(|h| h.id == id) {
                let gone = held.swap_remove(pos);
                self.expiries.remove(&(gone.until, gone.id));
            }
            if held.is_empty() {
                self.by_net.remove(&net);
            }
        }
        Some(net)
    }

    /// Releases every decision whose `until` has passed; returns their prefixes.
    fn expire(&mut self, wall_now: SystemTime) -> HashSet<IpNet> {
        let mut touched = HashSet::new();
        while let Some(&(until, id)) = self.expiries.first() {
            if until > wall_now {
                break;
            }
            touched.extend(self.release(id));
        }
        touched
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The maps as a plain hash map.
    #[derive(Default)]
    struct FakeMaps {
        bans: HashMap<IpNet, Ban>,
        /// Every prefix that was ever removed, to prove kept ones never were.
        removed: Vec<IpNet>,
    }

    impl BanMaps for FakeMaps {
        fn insert_ban(&mut self, ban: Ban) -> Result<(), MapsError> {
            self.bans.insert(ban.net, ban);
            Ok(())
        }
        fn remove_ban(&mut self, net: IpNet) -> Result<(), MapsError> {
            self.bans.remove(&net);
            self.removed.push(net);
            Ok(())
        }
    }

    const T0: u64 = 1_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn decision(id: i64, net: &str, kind: &str, until_secs: u64) -> Decision {
        Decision {
            id,
            net: net.parse().unwrap(),
            origin: "crowdsec".into(),
            scenario: "crowdsecurity/postfix-spam".into(),
            kind: kind.into(),
            until: at(until_secs),
        }
    }

    fn batch(new: Vec<Decision>, deleted: Vec<Decision>) -> StreamBatch {
        StreamBatch {
            new,
            deleted,
            skipped: Vec::new(),
        }
    }

    fn sync() -> Sync {
        Sync::new(&["ban".to_owned()], Vec::new())
    }

    /// Boottime is wall time minus T0 seconds, in ns, in these tests.
    fn boot(secs: u64) -> u64 {
        secs * 1_000_000_000
    }

    fn step(s: &mut Sync, maps: &mut FakeMaps, ops: Vec<Op>) {
        let applied = s.apply(ops, maps);
        assert_eq!(applied.failed, 0);
        assert_eq!(s.applied.len(), maps.bans.len());
    }

    #[test]
    fn a_prefix_stays_banned_while_any_decision_covers_it() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let ops = s.delta(
            &batch(
                vec![
                    decision(1, "203.0.113.7/32", "ban", 100),
                    decision(2, "203.0.113.7/32", "ban", 50),
                ],
                vec![],
            ),
            at(0),
            boot(0),
        );
        step(&mut s, &mut maps, ops);
        let ban = maps.bans[&"203.0.113.7/32".parse().unwrap()];
        assert_eq!(ban.expires_at_ns, boot(100), "expiry is the latest until");

        let ops = s.delta(
            &batch(vec![], vec![decision(1, "203.0.113.7/32", "ban", 100)]),
            at(1),
            boot(1),
        );
        step(&mut s, &mut maps, ops);
        let ban = maps.bans[&"203.0.113.7/32".parse().unwrap()];
        assert_eq!(
            ban.expires_at_ns,
            boot(50),
            "the other decision still bans it"
        );
        assert!(maps.removed.is_empty());

        let ops = s.delta(
            &batch(vec![], vec![decision(2, "203.0.113.7/32", "ban", 50)]),
            at(2),
            boot(2),
        );
        step(&mut s, &mut maps, ops);
        assert!(maps.bans.is_empty());
    }

    #[test]
    fn repeated_deletions_are_harmless() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let ops = s.delta(
            &batch(vec![decision(1, "198.51.100.0/24", "ban", 100)], vec![]),
            at(0),
            boot(0),
        );
        step(&mut s, &mut maps, ops);
        for _ in 0..3 {
            let ops = s.delta(
                &batch(vec![], vec![decision(1, "198.51.100.0/24", "ban", 100)]),
                at(1),
                boot(1),
            );
            step(&mut s, &mut maps, ops);
        }
        assert!(maps.bans.is_empty());
        let ops = s.delta(
            &batch(vec![], vec![decision(99, "198.51.100.0/24", "ban", 100)]),
            at(1),
            boot(1),
        );
        assert!(ops.is_empty(), "an unknown id changes nothing");
    }

    #[test]
    fn other_decision_types_are_ignored() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let ops = s.delta(
            &batch(
                vec![
                    decision(1, "203.0.113.7/32", "captcha", 100),
                    decision(2, "203.0.113.8/32", "BAN", 100),
                ],
                vec![],
            ),
            at(0),
            boot(0),
        );
        step(&mut s, &mut maps, ops);
        assert_eq!(maps.bans.len(), 1);
        assert!(maps.bans.contains_key(&"203.0.113.8/32".parse().unwrap()));
        assert!(s.ignored_types.contains("captcha"));
    }

    #[test]
    fn expired_decisions_leave_the_maps_on_tick() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let ops = s.delta(
            &batch(
                vec![
                    decision(1, "203.0.113.7/32", "ban", 5),
                    decision(2, "2001:db8::/48", "ban", 100),
                ],
                vec![],
            ),
            at(0),
            boot(0),
        );
        step(&mut s, &mut maps, ops);
        assert!(s.tick(at(4), boot(4)).is_empty());
        let ops = s.tick(at(5), boot(5));
        assert_eq!(ops, vec![Op::Unban("203.0.113.7/32".parse().unwrap())]);
        step(&mut s, &mut maps, ops);
        assert_eq!(maps.bans.len(), 1);
    }

    #[test]
    fn resync_keeps_what_stays_and_removes_only_what_went() {
        let adopted = vec![
            Ban {
                net: "203.0.113.7/32".parse().unwrap(),
                expires_at_ns: boot(100),
                origin: 1,
            },
            Ban {
                net: "203.0.113.8/32".parse().unwrap(),
                expires_at_ns: boot(100),
                origin: 1,
            },
        ];
        let mut maps = FakeMaps {
            bans: adopted.iter().map(|b| (b.net, *b)).collect(),
            removed: vec![],
        };
        let mut s = Sync::new(&["ban".to_owned()], adopted);
        let ops = s.resync(
            &batch(
                vec![
                    decision(1, "203.0.113.7/32", "ban", 100),
                    decision(3, "198.51.100.0/24", "ban", 200),
                ],
                vec![],
            ),
            at(0),
            boot(0),
        );
        assert!(
            !ops.contains(&Op::Unban("203.0.113.7/32".parse().unwrap())),
            "a prefix that stays banned is never removed"
        );
        assert!(
            !ops.iter().any(
                |op| matches!(op, Op::Ban(b) if b.net == "203.0.113.7/32".parse::<IpNet>().unwrap())
            ),
            "unchanged: no write"
        );
        step(&mut s, &mut maps, ops);
        assert_eq!(
            maps.removed,
            vec!["203.0.113.8/32".parse::<IpNet>().unwrap()]
        );
        assert_eq!(maps.bans.len(), 2);
    }

    #[test]
    fn an_already_expired_decision_bans_nothing() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let ops = s.delta(
            &batch(vec![decision(1, "203.0.113.7/32", "ban", 0)], vec![]),
            at(1),
            boot(1),
        );
        step(&mut s, &mut maps, ops);
        assert!(maps.bans.is_empty());
    }
}
