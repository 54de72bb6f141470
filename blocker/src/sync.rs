//! Decisions → the prefixes that must be banned → the map writes that make the kernel agree.
//! Pure logic, no kernel: the maps sit behind [`BanMaps`], so this is unit-tested against an
//! in-memory fake.
//!
//! A prefix is banned while at least one live decision covers it; its kernel expiry is the
//! latest `until` among them (and its origin that decision's). A prefix that stays banned is
//! only ever updated in place, never removed and re-added, so it is never absent from the map.
//!
//! A startup answer can hold millions of decisions, so the state is laid out for size: one
//! packed slot per prefix in a dense array (its decision inline, since a prefix nearly always
//! has one, and what the maps hold for it), found through a table of slot numbers hashed by
//! prefix, and one heap of (until, slot) for expiries. A decision is found by its prefix and
//! id: a deletion from LAPI carries the deleted decision's value, and an id that comes back
//! replaces what it said before on the same prefix.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet, hash_map::RandomState},
    hash::BuildHasher as _,
    time::SystemTime,
};

use hashbrown::{HashTable, hash_table::Entry};
use ipnet::IpNet;

use crate::{
    clock,
    decisions::{self, Decision, StreamBatch},
    maps::{Ban, KernelMaps, MapsError},
};

/// Expiry differences below this are clock-conversion noise, not a change worth a write.
const EXPIRY_NOISE_NS: u64 = 1_000_000_000;

/// How much later than asked the address table may keep an expiry (read back from a pinned
/// table, it is rounded up to the table's unit): not a change worth a write either. Only
/// later: an entry that would end early by more than [`EXPIRY_NOISE_NS`] is rewritten (the
/// daemon removes it on time while it runs; stopped, that is how early the kernel may end it).
const EXPIRY_ROUNDING_NS: u64 = 1 << blocker_common::table::EXPIRY_SHIFT;

/// Failed map writes tried again per step, at most (the rest wait for the next steps).
const RETRIES_PER_STEP: usize = 1024;

/// Ignored decision types remembered (each is logged once).
const IGNORED_TYPES_KEPT: usize = 64;

/// Stale expiry entries (of decisions since released) tolerated beyond the live ones before
/// the heap is rebuilt.
const STALE_EXPIRIES: usize = 1024;

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

/// One live decision, as held for its prefix. Packed, as is [`InMaps`]: millions are held,
/// and alignment padding would add half to their size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, packed)]
struct Held {
    id: i64,
    /// When it ends on the program's clock (`clock`), converted once, on arrival: a step of
    /// the wall clock (NTP, a resumed VM) later must not end bans early or late.
    until: u64,
    origin: u8,
}

/// The live decisions on one prefix.
#[derive(Clone, Copy, Debug)]
enum Decisions {
    None,
    /// Nearly every prefix: one decision, inline.
    One(Held),
    /// Two or more, in [`Sync::crowded`] under the prefix's slot number.
    Several,
}

/// The ban the maps hold for a prefix, as last written (or found there at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, packed)]
struct InMaps {
    expires_at_ns: u64,
    origin: u32,
}

/// A prefix with a live decision or a ban in the maps (or both).
#[derive(Debug)]
struct Slot {
    net: IpNet,
    decisions: Decisions,
    in_maps: Option<InMaps>,
}

/// When a decision held in a slot ends. The entry may outlive that decision (released early,
/// its slot freed or reused): whoever pops it checks what the slot holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(C, packed)]
struct Due {
    until: u64,
    slot: u32,
}

/// What one pull or expiry round did to the maps.
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
    /// Indexed by slot number; `None` is a free slot (listed in `free`).
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// The number of every occupied slot, hashed by its prefix.
    by_net: HashTable<u32>,
    hasher: RandomState,
    /// The decisions of the slots that hold [`Decisions::Several`].
    crowded: HashMap<u32, Vec<Held>>,
    /// Soonest first.
    expiries: BinaryHeap<Reverse<Due>>,
    /// Live decisions, to know when `expiries` is mostly stale.
    held: usize,
    /// Slots with a ban in the maps.
    banned: usize,
    /// Slots whose last map write failed, oldest first: tried again at the next steps (the
    /// expiry tick runs each second), so a ban the kernel refused once is not left out for
    /// good.
    retry: Vec<u32>,
}

impl Sync {
    /// `supported_types`: decision types to enforce (`ban` by default), compared
    /// case-insensitively. `in_maps`: what the maps already hold (a restarted daemon adopts
    /// them; the first full resync reconciles).
    #[must_use]
    pub fn new(supported_types: &[String], in_maps: Vec<Ban>) -> Sync {
        let mut sync = Sync {
            supported_types: supported_types
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
            ignored_types: HashSet::new(),
            slots: Vec::new(),
            free: Vec::new(),
            by_net: HashTable::new(),
            hasher: RandomState::new(),
            crowded: HashMap::new(),
            expiries: BinaryHeap::new(),
            held: 0,
            banned: 0,
            retry: Vec::new(),
        };
        for ban in in_maps {
            let slot = sync.slot_for(ban.net);
            sync.slot_mut(slot).in_maps = Some(InMaps {
                expires_at_ns: ban.expires_at_ns,
                origin: ban.origin,
            });
            sync.banned += 1;
        }
        sync
    }

    /// Number of prefixes the maps hold.
    #[must_use]
    pub fn banned_prefixes(&self) -> usize {
        self.banned
    }

    /// Map writes that failed and wait to be tried again.
    #[must_use]
    pub fn pending_writes(&self) -> usize {
        self.retry.len()
    }

    /// What the maps hold, as the sync believes.
    pub fn applied(&self) -> impl Iterator<Item = Ban> + '_ {
        self.slots.iter().flatten().filter_map(|slot| {
            let in_maps = slot.in_maps?;
            Some(Ban {
                net: slot.net,
                expires_at_ns: in_maps.expires_at_ns,
                origin: in_maps.origin,
            })
        })
    }

    /// Takes a `startup=true` answer: it replaces every decision held. Brings the maps to it,
    /// removing only prefixes no longer banned.
    pub fn resync(
        &mut self,
        batch: StreamBatch,
        wall_now: SystemTime,
        clock_now: u64,
        maps: &mut impl BanMaps,
    ) -> Applied {
        for slot in self.slots.iter_mut().flatten() {
            slot.decisions = Decisions::None;
        }
        self.crowded.clear();
        self.expiries.clear();
        self.held = 0;
        let mut touched = Vec::new();
        self.hold_all(batch.new, &batch.kinds, wall_now, clock_now, &mut touched);
        self.expire(clock_now, &mut touched);
        // Every prefix is applied, touched or not: the ones no decision names any more go.
        drop(touched);
        let everything = self.occupied_slots();
        self.apply(everything, maps)
    }

    /// Takes a delta: deletions (idempotent), then new decisions.
    pub fn delta(
        &mut self,
        batch: StreamBatch,
        wall_now: SystemTime,
        clock_now: u64,
        maps: &mut impl BanMaps,
    ) -> Applied {
        let mut touched = Vec::new();
        for decision in &batch.deleted {
            if let Some(slot) = self.find(&decision.net)
                && self.release(slot, |held| held.id == decision.id)
            {
                touched.push(slot);
            }
        }
        self.hold_all(batch.new, &batch.kinds, wall_now, clock_now, &mut touched);
        self.expire(clock_now, &mut touched);
        self.apply(touched, maps)
    }

    /// Drops decisions that have ended, and their bans if no other decision covers them.
    pub fn tick(&mut self, clock_now: u64, maps: &mut impl BanMaps) -> Applied {
        let mut touched = Vec::new();
        self.expire(clock_now, &mut touched);
        self.apply(touched, maps)
    }

    /// Makes the maps agree with the decisions of the `touched` slots (removals first, to
    /// free room), keeping our view in step with what succeeded, and frees the slots left with
    /// nothing. A failed write is counted, logged (once per call, with the count) and tried
    /// again at the next call; the others go on.
    fn apply(&mut self, mut touched: Vec<u32>, maps: &mut impl BanMaps) -> Applied {
        // A bounded share each step: a kernel that keeps refusing (a full trie) must not cost
        // a system call per refused ban every second.
        let retried = self.retry.len().min(RETRIES_PER_STEP);
        touched.extend(self.retry.drain(..retried));
        touched.sort_unstable();
        touched.dedup();
        if !self.retry.is_empty() {
            // Those written now leave the queue: written, they are done; refused, they go back
            // to its end, once.
            self.retry.retain(|n| touched.binary_search(n).is_err());
        }
        let mut applied = Applied::default();
        let mut first_failure = None;
        for &number in &touched {
            let Some(slot) = &self.slots[number as usize] else {
                continue;
            };
            if !matches!(slot.decisions, Decisions::None) {
                continue;
            }
            if slot.in_maps.is_some() {
                if let Err(e) = maps.remove_ban(slot.net) {
                    applied.failed += 1;
                    first_failure.get_or_insert((slot.net, e));
                    self.retry.push(number);
                    continue;
                }
                applied.unbanned += 1;
                self.banned -= 1;
            }
            self.free(number);
        }
        for &number in &touched {
            let Some(ban) = self.ban_to_write(number) else {
                continue;
            };
            if let Err(e) = maps.insert_ban(ban) {
                applied.failed += 1;
                first_failure.get_or_insert((ban.net, e));
                self.retry.push(number);
                continue;
            }
            applied.banned += 1;
            let was_banned = self
                .slot_mut(number)
                .in_maps
                .replace(InMaps {
                    expires_at_ns: ban.expires_at_ns,
                    origin: ban.origin,
                })
                .is_some();
            if !was_banned {
                self.banned += 1;
            }
        }
        if let Some((prefix, e)) = first_failure {
            tracing::warn!(
                error = %crate::error_chain(&e),
                %prefix,
                failed = applied.failed,
                "map writes failed (this one first); they are tried again, up to 1024 a second"
            );
        }
        applied
    }

    /// The write that makes a slot's map entry match its decisions, if it does not already.
    fn ban_to_write(&self, number: u32) -> Option<Ban> {
        let slot = self.slots[number as usize].as_ref()?;
        let latest = self.held_in(number).iter().max_by_key(|held| held.until)?;
        let ban = Ban {
            net: slot.net,
            expires_at_ns: latest.until,
            origin: u32::from(latest.origin),
        };
        match slot.in_maps {
            Some(old)
                if old.origin == ban.origin
                    && ban.expires_at_ns <= old.expires_at_ns.saturating_add(EXPIRY_NOISE_NS)
                    && old.expires_at_ns
                        <= ban
                            .expires_at_ns
                            .saturating_add(EXPIRY_ROUNDING_NS + EXPIRY_NOISE_NS) =>
            {
                None
            }
            _ => Some(ban),
        }
    }

    /// Holds the decisions of types we enforce; adds their slots to `touched`.
    fn hold_all(
        &mut self,
        new: Vec<Decision>,
        kinds: &[String],
        wall_now: SystemTime,
        clock_now: u64,
        touched: &mut Vec<u32>,
    ) {
        let enforced: Vec<bool> = kinds
            .iter()
            .map(|kind| self.supported_types.contains(&kind.to_ascii_lowercase()))
            .collect();
        for decision in decisions::consume(new) {
            let kind = decision.kind as usize;
            if enforced[kind] {
                let until = clock::expiry_ns(Some(decision.until), wall_now, clock_now);
                touched.push(self.hold(decision, until));
            } else {
                let kind = kinds[kind].to_ascii_lowercase();
                // Remembered to be logged once; a LAPI inventing types does not grow this.
                if self.ignored_types.len() < IGNORED_TYPES_KEPT
                    && !self.ignored_types.contains(&kind)
                {
                    tracing::info!(decision_type = %kind, "ignoring decisions of this type (not in supported_decisions_types)");
                    self.ignored_types.insert(kind);
                }
            }
        }
        if self.expiries.len() > 2 * self.held + STALE_EXPIRIES {
            self.rebuild_expiries();
        }
    }

    /// Holds a new decision, ending at `until` (the program's clock); returns its slot.
    fn hold(&mut self, decision: Decision, until: u64) -> u32 {
        let number = self.slot_for(decision.net);
        // The same id again replaces what it said before.
        self.release(number, |held| held.id == decision.id);
        let held = Held {
            id: decision.id,
            until,
            origin: decision.origin,
        };
        let decisions = match self.slot(number).decisions {
            Decisions::None => Decisions::One(held),
            Decisions::One(first) => {
                self.crowded.insert(number, vec![first, held]);
                Decisions::Several
            }
            Decisions::Several => {
                self.crowded
                    .get_mut(&number)
                    .expect("a slot holding several has them in crowded")
                    .push(held);
                Decisions::Several
            }
        };
        self.slot_mut(number).decisions = decisions;
        self.held += 1;
        self.expiries.push(Reverse(Due {
            until: held.until,
            slot: number,
        }));
        number
    }

    /// Lets go of the decisions of a slot that `ends` picks; returns whether there were any.
    fn release(&mut self, number: u32, ends: impl Fn(&Held) -> bool) -> bool {
        let Some(slot) = self.slots[number as usize].as_mut() else {
            return false;
        };
        let (left, released) = match slot.decisions {
            Decisions::One(held) if ends(&held) => (Decisions::None, 1),
            Decisions::None | Decisions::One(_) => return false,
            Decisions::Several => {
                let list = self
                    .crowded
                    .get_mut(&number)
                    .expect("a slot holding several has them in crowded");
                let before = list.len();
                list.retain(|held| !ends(held));
                let released = before - list.len();
                let left = match list[..] {
                    [] => Decisions::None,
                    [only] => Decisions::One(only),
                    _ => Decisions::Several,
                };
                if !matches!(left, Decisions::Several) {
                    self.crowded.remove(&number);
                }
                (left, released)
            }
        };
        slot.decisions = left;
        self.held -= released;
        released > 0
    }

    /// Releases every decision whose `until` has passed; adds their slots to `touched`.
    fn expire(&mut self, now: u64, touched: &mut Vec<u32>) {
        while let Some(&Reverse(due)) = self.expiries.peek() {
            if due.until > now {
                break;
            }
            self.expiries.pop();
            if self.release(due.slot, |held| held.until <= now) {
                touched.push(due.slot);
            }
        }
    }

    /// Rebuilds the expiry heap from the decisions held, dropping stale entries.
    fn rebuild_expiries(&mut self) {
        let mut live = Vec::with_capacity(self.held);
        for number in self.occupied_slots() {
            live.extend(self.held_in(number).iter().map(|held| {
                Reverse(Due {
                    until: held.until,
                    slot: number,
                })
            }));
        }
        self.expiries = BinaryHeap::from(live);
    }

    /// The decisions a slot holds.
    fn held_in(&self, number: u32) -> &[Held] {
        match &self.slot(number).decisions {
            Decisions::None => &[],
            Decisions::One(held) => std::slice::from_ref(held),
            Decisions::Several => &self.crowded[&number],
        }
    }

    /// The numbers of the occupied slots.
    fn occupied_slots(&self) -> Vec<u32> {
        (0..self.slots.len())
            .filter(|&number| self.slots[number].is_some())
            .map(slot_number)
            .collect()
    }

    fn slot(&self, number: u32) -> &Slot {
        self.slots[number as usize]
            .as_ref()
            .expect("a slot in use is occupied")
    }

    fn slot_mut(&mut self, number: u32) -> &mut Slot {
        self.slots[number as usize]
            .as_mut()
            .expect("a slot in use is occupied")
    }

    /// The slot of `net`, if it has one.
    fn find(&self, net: &IpNet) -> Option<u32> {
        let slots = &self.slots;
        let holds = |&number: &u32| {
            slots[number as usize]
                .as_ref()
                .is_some_and(|s| s.net == *net)
        };
        self.by_net.find(self.hasher.hash_one(net), holds).copied()
    }

    /// The slot of `net`, made (empty) if it has none.
    fn slot_for(&mut self, net: IpNet) -> u32 {
        let (slots, free, hasher) = (&mut self.slots, &mut self.free, &self.hasher);
        let prefix_of = |number: u32| slots[number as usize].as_ref().map(|slot| slot.net);
        let entry = self.by_net.entry(
            hasher.hash_one(net),
            |&number| prefix_of(number) == Some(net),
            |&number| hasher.hash_one(prefix_of(number).expect("a slot in the table is occupied")),
        );
        let vacant = match entry {
            Entry::Occupied(entry) => return *entry.get(),
            Entry::Vacant(vacant) => vacant,
        };
        let slot = Slot {
            net,
            decisions: Decisions::None,
            in_maps: None,
        };
        let number = if let Some(number) = free.pop() {
            slots[number as usize] = Some(slot);
            number
        } else {
            slots.push(Some(slot));
            slot_number(slots.len() - 1)
        };
        vacant.insert(number);
        number
    }

    /// Frees a slot that holds nothing and is not in the maps.
    fn free(&mut self, number: u32) {
        let net = self.slot(number).net;
        if let Ok(entry) = self
            .by_net
            .find_entry(self.hasher.hash_one(net), |&n| n == number)
        {
            entry.remove();
        }
        self.slots[number as usize] = None;
        self.free.push(number);
    }
}

/// A slot's number from its index: four bytes, as the table and heap keep them.
fn slot_number(index: usize) -> u32 {
    u32::try_from(index).expect("fewer than 4 billion prefixes")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The maps as a plain map, with a log of every write.
    #[derive(Default)]
    struct FakeMaps {
        bans: BTreeMap<IpNet, Ban>,
        /// Every prefix that was ever written, to prove unchanged ones were not.
        written: Vec<IpNet>,
        /// Every prefix that was ever removed, to prove kept ones never were.
        removed: Vec<IpNet>,
        /// Writes (inserts or removals) to refuse, from the next one on.
        refuse: usize,
    }

    impl FakeMaps {
        fn refused(&mut self) -> Result<(), MapsError> {
            if self.refuse == 0 {
                return Ok(());
            }
            self.refuse -= 1;
            Err(MapsError::Map {
                name: "fake",
                action: "write",
                source: aya::maps::MapError::OutOfBounds {
                    index: 0,
                    max_entries: 0,
                },
            })
        }
    }

    impl BanMaps for FakeMaps {
        fn insert_ban(&mut self, ban: Ban) -> Result<(), MapsError> {
            self.refused()?;
            self.bans.insert(ban.net, ban);
            self.written.push(ban.net);
            Ok(())
        }
        fn remove_ban(&mut self, net: IpNet) -> Result<(), MapsError> {
            self.refused()?;
            self.bans.remove(&net);
            self.removed.push(net);
            Ok(())
        }
    }

    const T0: u64 = 1_000_000;
    const CROWDSEC: u8 = 1;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(T0 + secs)
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// A `ban` from `crowdsec`.
    fn decision(id: i64, prefix: &str, until_secs: u64) -> Decision {
        Decision {
            id,
            net: net(prefix),
            origin: CROWDSEC,
            kind: 0,
            until: at(until_secs),
        }
    }

    fn batch(new: Vec<Decision>, deleted: Vec<Decision>) -> StreamBatch {
        StreamBatch {
            new,
            deleted,
            skipped: Vec::new(),
            skipped_count: 0,
            kinds: vec!["ban".to_owned()],
        }
    }

    fn sync() -> Sync {
        Sync::new(&["ban".to_owned()], Vec::new())
    }

    /// Boottime is wall time minus T0 seconds, in ns, in these tests.
    fn boot(secs: u64) -> u64 {
        secs * 1_000_000_000
    }

    /// A delta at `secs`, applied; our view must match the maps after it.
    fn delta(s: &mut Sync, maps: &mut FakeMaps, batch: StreamBatch, secs: u64) -> Applied {
        let applied = s.delta(batch, at(secs), boot(secs), maps);
        assert_in_step(s, maps, &applied);
        applied
    }

    fn assert_in_step(s: &Sync, maps: &FakeMaps, applied: &Applied) {
        assert_eq!(applied.failed, 0);
        assert_eq!(s.banned_prefixes(), maps.bans.len());
        let believed: BTreeMap<IpNet, Ban> = s.applied().map(|b| (b.net, b)).collect();
        assert_eq!(believed, maps.bans);
    }

    #[test]
    fn a_write_the_maps_refused_is_tried_again_at_the_next_tick() {
        let mut s = sync();
        let mut maps = FakeMaps {
            refuse: 1,
            ..FakeMaps::default()
        };
        let banned = decision(1, "203.0.113.7/32", 3600);
        let applied = s.delta(batch(vec![banned], vec![]), at(0), boot(0), &mut maps);
        assert_eq!((applied.banned, applied.failed), (0, 1));
        assert!(maps.bans.is_empty(), "refused");
        let applied = s.tick(boot(1), &mut maps);
        assert_eq!((applied.banned, applied.failed), (1, 0), "tried again");
        assert_in_step(&s, &maps, &applied);

        maps.refuse = 1;
        let applied = s.delta(batch(vec![], vec![banned]), at(2), boot(2), &mut maps);
        assert_eq!((applied.unbanned, applied.failed), (0, 1));
        assert_eq!(maps.bans.len(), 1, "the removal was refused");
        assert_eq!(s.pending_writes(), 1);
        let applied = s.tick(boot(3), &mut maps);
        assert_eq!((applied.unbanned, applied.failed), (1, 0), "tried again");
        assert_eq!(s.pending_writes(), 0);
        assert_in_step(&s, &maps, &applied);
        assert_eq!(
            s.tick(boot(4), &mut maps).failed,
            0,
            "nothing left to retry"
        );
    }

    #[test]
    fn refused_writes_are_tried_again_a_bounded_number_a_step() {
        let mut s = sync();
        let mut maps = FakeMaps {
            refuse: 1500,
            ..FakeMaps::default()
        };
        let many: Vec<Decision> = (0..1500u16)
            .map(|i| decision(i.into(), &format!("2001:db8::{i:x}/128"), 3600))
            .collect();
        let applied = s.delta(batch(many, vec![]), at(0), boot(0), &mut maps);
        assert_eq!((applied.failed, s.pending_writes()), (1500, 1500));
        let applied = s.tick(boot(1), &mut maps);
        assert_eq!(
            (applied.banned, s.pending_writes()),
            (RETRIES_PER_STEP, 1500 - RETRIES_PER_STEP)
        );
        let applied = s.tick(boot(2), &mut maps);
        assert_eq!(
            (applied.banned, s.pending_writes()),
            (1500 - RETRIES_PER_STEP, 0)
        );
        assert_in_step(&s, &maps, &applied);
    }

    #[test]
    fn a_wall_clock_step_neither_ends_nor_keeps_bans() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let new = vec![decision(1, "203.0.113.7/32", 100)];
        delta(&mut s, &mut maps, batch(new, vec![]), 0);
        // NTP steps the wall clock five hours ahead one second later; a pull comes then.
        let applied = s.delta(batch(vec![], vec![]), at(5 * 3600), boot(1), &mut maps);
        assert_eq!(applied, Applied::default());
        assert_eq!(s.tick(boot(99), &mut maps), Applied::default());
        assert!(
            maps.bans.contains_key(&net("203.0.113.7/32")),
            "still banned"
        );
        assert_eq!(s.tick(boot(100), &mut maps).unbanned, 1, "ends on time");
    }

    #[test]
    fn a_waiting_write_touched_again_waits_once() {
        let mut s = sync();
        let mut maps = FakeMaps {
            refuse: usize::MAX,
            ..FakeMaps::default()
        };
        let many: Vec<Decision> = (0..1500u16)
            .map(|i| decision(i.into(), &format!("2001:db8::{i:x}/128"), 3600))
            .collect();
        s.delta(batch(many, vec![]), at(0), boot(0), &mut maps);
        // The last one, far back in the queue, renewed and refused again.
        let renewed = vec![decision(1499, "2001:db8::5db/128", 7200)];
        let applied = s.delta(batch(renewed, vec![]), at(1), boot(1), &mut maps);
        assert_eq!(applied.failed, RETRIES_PER_STEP + 1);
        assert_eq!(s.pending_writes(), 1500, "each refused prefix counted once");
        maps.refuse = 0;
        s.tick(boot(2), &mut maps);
        let applied = s.tick(boot(3), &mut maps);
        assert_eq!(s.pending_writes(), 0);
        assert_in_step(&s, &maps, &applied);
    }

    #[test]
    fn an_expiry_kept_a_little_late_is_left_but_one_that_would_end_early_is_rewritten() {
        let prefix = net("203.0.113.7/32");
        // Adopted from a pinned table, which rounds expiries up.
        let adopted = Ban {
            net: prefix,
            expires_at_ns: boot(100) + 900_000_000,
            origin: u32::from(CROWDSEC),
        };
        let mut s = Sync::new(&["ban".to_owned()], vec![adopted]);
        let mut maps = FakeMaps::default();
        maps.bans.insert(prefix, adopted);
        let applied = s.resync(
            batch(vec![decision(1, "203.0.113.7/32", 100)], vec![]),
            at(0),
            boot(0),
            &mut maps,
        );
        assert_in_step(&s, &maps, &applied);
        assert!(
            maps.written.is_empty(),
            "0.9 s late is the table's rounding: no write"
        );

        delta(
            &mut s,
            &mut maps,
            batch(vec![decision(2, "203.0.113.7/32", 102)], vec![]),
            1,
        );
        assert_eq!(
            maps.written,
            [prefix],
            "two seconds more must reach the kernel"
        );
        assert_eq!(maps.bans[&prefix].expires_at_ns, boot(102));
    }

    #[test]
    fn a_prefix_stays_banned_while_any_decision_covers_it() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let new = vec![
            decision(1, "203.0.113.7/32", 100),
            decision(2, "203.0.113.7/32", 50),
        ];
        delta(&mut s, &mut maps, batch(new, vec![]), 0);
        let ban = maps.bans[&net("203.0.113.7/32")];
        assert_eq!(ban.expires_at_ns, boot(100), "expiry is the latest until");

        let deleted = vec![decision(1, "203.0.113.7/32", 100)];
        delta(&mut s, &mut maps, batch(vec![], deleted), 1);
        let ban = maps.bans[&net("203.0.113.7/32")];
        assert_eq!(
            ban.expires_at_ns,
            boot(50),
            "the other decision still bans it"
        );
        assert!(maps.removed.is_empty());

        let deleted = vec![decision(2, "203.0.113.7/32", 50)];
        delta(&mut s, &mut maps, batch(vec![], deleted), 2);
        assert!(maps.bans.is_empty());
    }

    #[test]
    fn the_latest_decision_gives_expiry_and_origin() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let mut from_cscli = decision(3, "2001:db8::/48", 300);
        from_cscli.origin = 2;
        let new = vec![
            decision(1, "2001:db8::/48", 100),
            from_cscli,
            decision(2, "2001:db8::/48", 200),
        ];
        delta(&mut s, &mut maps, batch(new, vec![]), 0);
        let ban = maps.bans[&net("2001:db8::/48")];
        assert_eq!((ban.expires_at_ns, ban.origin), (boot(300), 2));

        // The same id again replaces what it said.
        delta(
            &mut s,
            &mut maps,
            batch(vec![decision(3, "2001:db8::/48", 150)], vec![]),
            1,
        );
        let ban = maps.bans[&net("2001:db8::/48")];
        assert_eq!((ban.expires_at_ns, ban.origin), (boot(200), 1));

        delta(
            &mut s,
            &mut maps,
            batch(vec![], vec![decision(2, "2001:db8::/48", 200)]),
            2,
        );
        assert_eq!(maps.bans[&net("2001:db8::/48")].expires_at_ns, boot(150));
        assert_eq!(s.held, 2);
        assert!(maps.removed.is_empty());
    }

    #[test]
    fn repeated_deletions_are_harmless() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let new = vec![decision(1, "198.51.100.0/24", 100)];
        delta(&mut s, &mut maps, batch(new, vec![]), 0);
        for _ in 0..3 {
            let deleted = vec![decision(1, "198.51.100.0/24", 100)];
            delta(&mut s, &mut maps, batch(vec![], deleted), 1);
        }
        assert!(maps.bans.is_empty());
        let deleted = vec![decision(99, "198.51.100.0/24", 100)];
        let applied = delta(&mut s, &mut maps, batch(vec![], deleted), 1);
        assert_eq!(applied, Applied::default(), "an unknown id changes nothing");
        assert_eq!(maps.written.len(), 1);
    }

    #[test]
    fn other_decision_types_are_ignored() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let mut captcha = decision(1, "203.0.113.7/32", 100);
        captcha.kind = 1;
        let mut upper_case_ban = decision(2, "203.0.113.8/32", 100);
        upper_case_ban.kind = 2;
        let mut batch = batch(vec![captcha, upper_case_ban], vec![]);
        batch.kinds = vec!["ban".into(), "captcha".into(), "BAN".into()];
        delta(&mut s, &mut maps, batch, 0);
        assert_eq!(maps.bans.len(), 1);
        assert!(maps.bans.contains_key(&net("203.0.113.8/32")));
        assert!(s.ignored_types.contains("captcha"));
    }

    #[test]
    fn expired_decisions_leave_the_maps_on_tick() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let new = vec![
            decision(1, "203.0.113.7/32", 5),
            decision(2, "2001:db8::/48", 100),
        ];
        delta(&mut s, &mut maps, batch(new, vec![]), 0);
        assert_eq!(s.tick(boot(4), &mut maps), Applied::default());
        let applied = s.tick(boot(5), &mut maps);
        assert_eq!(applied.unbanned, 1);
        assert_eq!(maps.removed, vec![net("203.0.113.7/32")]);
        assert_in_step(&s, &maps, &applied);
        assert_eq!(maps.bans.len(), 1);
    }

    #[test]
    fn a_freed_slot_taken_by_another_prefix_keeps_its_own_expiry() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        delta(
            &mut s,
            &mut maps,
            batch(vec![decision(1, "203.0.113.7/32", 5)], vec![]),
            0,
        );
        delta(
            &mut s,
            &mut maps,
            batch(vec![], vec![decision(1, "203.0.113.7/32", 5)]),
            1,
        );
        // The freed slot goes to the next prefix; the first decision's expiry entry remains.
        delta(
            &mut s,
            &mut maps,
            batch(vec![decision(2, "203.0.113.9/32", 100)], vec![]),
            2,
        );
        assert_eq!(s.slots.len(), 1, "the slot was reused");
        assert_eq!(s.tick(boot(6), &mut maps), Applied::default());
        assert!(maps.bans.contains_key(&net("203.0.113.9/32")));
        assert_eq!(s.tick(boot(100), &mut maps).unbanned, 1);
        assert!(maps.bans.is_empty());
        assert_eq!(s.slots.iter().flatten().count(), 0);
    }

    #[test]
    fn stale_expiries_do_not_pile_up() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        for round in 0..10 * STALE_EXPIRIES as u64 {
            // The same decision again, lasting a little longer each time.
            let new = vec![decision(1, "203.0.113.7/32", 1_000 + round)];
            delta(&mut s, &mut maps, batch(new, vec![]), 0);
        }
        assert_eq!(s.held, 1);
        assert!(
            s.expiries.len() <= 2 + STALE_EXPIRIES,
            "{}",
            s.expiries.len()
        );
    }

    #[test]
    fn resync_keeps_what_stays_and_removes_only_what_went() {
        let adopted = vec![
            Ban {
                net: net("203.0.113.7/32"),
                expires_at_ns: boot(100),
                origin: 1,
            },
            Ban {
                net: net("203.0.113.8/32"),
                expires_at_ns: boot(100),
                origin: 1,
            },
        ];
        let mut maps = FakeMaps {
            bans: adopted.iter().map(|b| (b.net, *b)).collect(),
            ..FakeMaps::default()
        };
        let mut s = Sync::new(&["ban".to_owned()], adopted);
        let new = vec![
            decision(1, "203.0.113.7/32", 100),
            decision(3, "198.51.100.0/24", 200),
        ];
        let applied = s.resync(batch(new, vec![]), at(0), boot(0), &mut maps);
        assert_in_step(&s, &maps, &applied);
        assert_eq!(
            maps.removed,
            vec![net("203.0.113.8/32")],
            "a prefix that stays banned is never removed"
        );
        assert_eq!(
            maps.written,
            vec![net("198.51.100.0/24")],
            "unchanged: no write"
        );
        assert_eq!(maps.bans.len(), 2);
    }

    #[test]
    fn resync_replaces_every_decision_held() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        let new = vec![
            decision(1, "203.0.113.7/32", 100),
            decision(2, "203.0.113.7/32", 300),
            decision(3, "2001:db8::1/128", 100),
        ];
        delta(&mut s, &mut maps, batch(new, vec![]), 0);
        let new = vec![decision(1, "203.0.113.7/32", 100)];
        let applied = s.resync(batch(new, vec![]), at(1), boot(1), &mut maps);
        assert_in_step(&s, &maps, &applied);
        assert_eq!((applied.banned, applied.unbanned), (1, 1));
        assert_eq!(maps.bans[&net("203.0.113.7/32")].expires_at_ns, boot(100));
        assert_eq!((s.held, s.expiries.len()), (1, 1));
    }

    #[test]
    fn an_already_expired_decision_bans_nothing() {
        let (mut s, mut maps) = (sync(), FakeMaps::default());
        delta(
            &mut s,
            &mut maps,
            batch(vec![decision(1, "203.0.113.7/32", 0)], vec![]),
            1,
        );
        assert!(maps.bans.is_empty());
        assert_eq!(s.slots.iter().flatten().count(), 0);
    }

    #[test]
    fn a_prefix_costs_a_few_dozen_bytes() {
        assert!(
            size_of::<Option<Slot>>() <= 56,
            "{}",
            size_of::<Option<Slot>>()
        );
        assert_eq!(size_of::<Reverse<Due>>(), 12);
    }
}
