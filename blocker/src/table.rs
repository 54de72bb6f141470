//! The daemon's side of an address table (`blocker_common::table`): the XDP program's mmapable
//! array, mapped into the daemon, written slot by slot with plain stores, no system call.
//!
//! Writes follow the table's protocol: an address is written only into a slot whose tag is 0 or
//! a tombstone that has been quiet for [`QUIET`], and the tag that makes it live is stored
//! after it (release). Changing a live entry is one tag store, so a ban that stays is never
//! absent, not even for a moment.

use std::{
    collections::{HashMap, VecDeque},
    os::fd::AsFd as _,
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use aya::maps::MapData;
use blocker_common::{Bucket, Slot, table};

/// How long a tombstone stays unused before another address may take its slot: far longer
/// than any program run that may have read the old address, so none can pair it with the new
/// tag.
pub const QUIET: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot read the size of map {name}")]
    Info {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {name} has {buckets} buckets; an address table needs at least a probe's worth")]
    Size { name: &'static str, buckets: u32 },
    #[error(
        "cannot map {name} into memory (an mmapable array map is needed; was it pinned by an older blocker? `blocker detach` removes old pins)"
    )]
    Mmap {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Where the buckets live: the kernel's map, mapped here, or (unit tests) the heap.
enum Memory {
    Mapped {
        /// Keeps the map open as long as it is mapped.
        _map: MapData,
        len: usize,
    },
    #[cfg(test)]
    Heap(Box<[u8]>),
}

/// An address table of buckets of `K` slots of `W`-word addresses (and `P` words of padding).
pub struct Table<const W: usize, const K: usize, const P: usize> {
    name: &'static str,
    buckets: NonNull<Bucket<W, K, P>>,
    bucket_count: u32,
    keys: table::HashKeys,
    memory: Memory,
    /// Entries (live or expired, not tombstones).
    held: usize,
    /// Tombstones, quiet or not.
    tombstones: usize,
    /// Tombstones not yet quiet: when each was made, oldest first, and by slot.
    quarantine: VecDeque<(Instant, usize)>,
    tombstoned_at: HashMap<usize, Instant>,
    /// The bucket the next [`sweep`](Self::sweep) starts at.
    sweep_from: u32,
}

// SAFETY: the table owns its mapping; every access goes through `&self`/`&mut self`, and the
// tags are only touched atomically.
unsafe impl<const W: usize, const K: usize, const P: usize> Send for Table<W, K, P> {}

impl<const W: usize, const K: usize, const P: usize> Drop for Table<W, K, P> {
    fn drop(&mut self) {
        match self.memory {
            Memory::Mapped { len, .. } => {
                // SAFETY: the mapping made in `open`, unmapped once.
                unsafe { libc::munmap(self.buckets.as_ptr().cast(), len) };
            }
            #[cfg(test)]
            Memory::Heap(_) => {}
        }
    }
}

impl<const W: usize, const K: usize, const P: usize> Table<W, K, P> {
    /// Maps the table `map` (named `name`), hashed under `keys`. Tombstones found there are
    /// quarantined as if just made: a previous daemon may have made them a moment ago.
    pub fn open(
        name: &'static str,
        map: MapData,
        keys: table::HashKeys,
    ) -> Result<Self, TableError> {
        let buckets = map
            .info()
            .map_err(|source| TableError::Info { name, source })?
            .max_entries();
        if buckets < table::PROBE_BUCKETS {
            return Err(TableError::Size { name, buckets });
        }
        // SAFETY: page size is always available.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = (buckets as usize * size_of::<Bucket<W, K, P>>()).next_multiple_of(page);
        // SAFETY: a shared mapping of the map's values, as long as the kernel made them; the
        // pointer is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&map.fd().as_fd()),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(TableError::Mmap {
                name,
                source: std::io::Error::last_os_error(),
            });
        }
        let buckets_ptr = NonNull::new(ptr.cast()).expect("mmap never returns null on success");
        Ok(Self::over(
            name,
            buckets_ptr,
            buckets,
            keys,
            Memory::Mapped { _map: map, len },
        ))
    }

    /// A table in ordinary memory, for unit tests of the placement logic.
    #[cfg(test)]
    fn in_memory(buckets: u32, keys: table::HashKeys) -> Self {
        let mut memory =
            vec![0u8; buckets as usize * size_of::<Bucket<W, K, P>>()].into_boxed_slice();
        let ptr = NonNull::new(memory.as_mut_ptr().cast()).expect("a box is never null");
        assert!(
            (ptr.as_ptr() as usize).is_multiple_of(align_of::<Bucket<W, K, P>>()),
            "the heap aligns to at least 4"
        );
        Self::over("test", ptr, buckets, keys, Memory::Heap(memory))
    }

    fn over(
        name: &'static str,
        buckets: NonNull<Bucket<W, K, P>>,
        count: u32,
        keys: table::HashKeys,
        memory: Memory,
    ) -> Self {
        let mut table = Table {
            name,
            buckets,
            bucket_count: count,
            keys,
            memory,
            held: 0,
            tombstones: 0,
            quarantine: VecDeque::new(),
            tombstoned_at: HashMap::new(),
            sweep_from: 0,
        };
        let now = Instant::now();
        for slot in 0..table.slots() {
            match table.tag(slot).load(Ordering::Relaxed) {
                0 => {}
                tag if is_tombstone(tag) => {
                    table.tombstones += 1;
                    table.quarantine.push_back((now, slot));
                    table.tombstoned_at.insert(slot, now);
                }
                _ => table.held += 1,
            }
        }
        table
    }

    /// The map's name, for errors and logs.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Buckets, as the program reads them from `Settings`.
    #[must_use]
    pub fn buckets(&self) -> u32 {
        self.bucket_count
    }

    /// Bytes of the kernel's table mapped into this process. All of it is resident from the
    /// start (the kernel maps every page at once), and counts in the process's RSS although it
    /// is the map's memory.
    #[must_use]
    pub fn mapped_bytes(&self) -> usize {
        match self.memory {
            Memory::Mapped { len, .. } => len,
            #[cfg(test)]
            Memory::Heap(_) => 0,
        }
    }

    /// Entries held (live or expired, not tombstones).
    #[must_use]
    pub fn held(&self) -> usize {
        self.held
    }

    /// Tombstones held (removed entries whose slots lookups still walk past).
    #[must_use]
    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// Whether no slot was ever used (a fresh map, so new keys are safe).
    #[must_use]
    pub fn never_used(&self) -> bool {
        (0..self.slots()).all(|slot| self.tag(slot).load(Ordering::Relaxed) == 0)
    }

    /// Sets the hash keys; only for a table never used.
    pub fn rekey(&mut self, keys: table::HashKeys) {
        debug_assert!(self.never_used(), "rekeying a used table loses its entries");
        self.keys = keys;
    }

    /// Slots in the table.
    #[must_use]
    pub fn slots(&self) -> usize {
        self.bucket_count as usize * K
    }

    fn slot(&self, slot: usize) -> *mut Slot<W> {
        debug_assert!(slot < self.slots());
        // SAFETY: within the mapping (slot < buckets × K); buckets are `#[repr(C)]` arrays of
        // slots first.
        unsafe {
            self.buckets
                .as_ptr()
                .add(slot / K)
                .cast::<Slot<W>>()
                .add(slot % K)
        }
    }

    fn tag(&self, slot: usize) -> &AtomicU32 {
        // SAFETY: a live, 4-aligned u32 in the mapping, shared with the program, which only
        // reads it; every access here is atomic.
        unsafe { AtomicU32::from_ptr(&raw mut (*self.slot(slot)).tag) }
    }

    fn addr(&self, slot: usize) -> [u32; W] {
        // SAFETY: a live slot in the mapping; the program never writes it.
        unsafe { std::ptr::read_volatile(&raw const (*self.slot(slot)).addr) }
    }

    /// The slots of `bucket`.
    fn slots_of(bucket: u32) -> std::ops::Range<usize> {
        bucket as usize * K..bucket as usize * K + K
    }

    /// The slots a lookup of `addr` walks, bucket by bucket, home first.
    fn probe(
        &self,
        addr: &[u32; W],
    ) -> impl Iterator<Item = std::ops::Range<usize>> + use<W, K, P> {
        let buckets = self.bucket_count;
        let mut bucket = table::home(addr, &self.keys, buckets);
        (0..table::PROBE_BUCKETS).map(move |_| {
            let slots = Self::slots_of(bucket);
            bucket = table::next(bucket, buckets);
            slots
        })
    }

    /// `addr`'s slot (live, expired or tombstone), found as the program finds it.
    fn find(&self, addr: &[u32; W]) -> Option<usize> {
        for bucket in self.probe(addr) {
            let mut open = false;
            for slot in bucket {
                match self.tag(slot).load(Ordering::Acquire) {
                    0 => open = true,
                    _ if self.addr(slot) == *addr => return Some(slot),
                    _ => {}
                }
            }
            if open {
                return None;
            }
        }
        None
    }

    /// The tag `addr` has, if it has a slot.
    #[must_use]
    pub fn get(&self, addr: &[u32; W]) -> Option<u32> {
        self.find(addr)
            .map(|slot| self.tag(slot).load(Ordering::Acquire))
    }

    /// Gives `addr` the tag `tag` (from `table::tag`): in place if it has a slot, else in the
    /// first free one on its probe. `false` if there is none: the caller puts it elsewhere.
    pub fn insert(&mut self, addr: &[u32; W], tag: u32, now: Instant) -> bool {
        self.release_quiet(now);
        let mut free = None;
        'walk: for bucket in self.probe(addr) {
            let mut open = false;
            for slot in bucket {
                let current = self.tag(slot).load(Ordering::Acquire);
                if current != 0 && self.addr(slot) == *addr {
                    self.tag(slot).store(tag, Ordering::Release);
                    if is_tombstone(current) {
                        self.tombstoned_at.remove(&slot);
                        self.tombstones -= 1;
                        self.held += 1;
                    }
                    return true;
                }
                let reusable = current == 0
                    || is_tombstone(current) && !self.tombstoned_at.contains_key(&slot);
                if free.is_none() && reusable {
                    free = Some(slot);
                }
                open |= current == 0;
            }
            if open {
                break 'walk;
            }
        }
        let Some(slot) = free else {
            return false;
        };
        if is_tombstone(self.tag(slot).load(Ordering::Acquire)) {
            self.tombstones -= 1;
        }
        // SAFETY: a slot no lookup can match now (tag 0, or a tombstone quiet for `QUIET`); the
        // tag stored after it publishes it.
        unsafe { std::ptr::write_volatile(&raw mut (*self.slot(slot)).addr, *addr) };
        self.tag(slot).store(tag, Ordering::Release);
        self.held += 1;
        true
    }

    /// Ends `addr`'s entry, leaving a tombstone. `false` if it had no slot.
    pub fn remove(&mut self, addr: &[u32; W], now: Instant) -> bool {
        self.release_quiet(now);
        let Some(slot) = self.find(addr) else {
            return false;
        };
        if !is_tombstone(self.tag(slot).load(Ordering::Acquire)) {
            self.tag(slot).store(table::TOMBSTONE, Ordering::Release);
            self.held -= 1;
            self.tombstones += 1;
            self.quarantine.push_back((now, slot));
            self.tombstoned_at.insert(slot, now);
        }
        true
    }

    /// Every address with an entry (live or expired, not tombstones), and its tag.
    pub fn entries(&self) -> impl Iterator<Item = ([u32; W], u32)> + '_ {
        (0..self.slots()).filter_map(|slot| {
            let tag = self.tag(slot).load(Ordering::Acquire);
            (tag != 0 && !is_tombstone(tag)).then(|| (self.addr(slot), tag))
        })
    }

    /// Turns the quiet tombstones of the next `budget` buckets (on from where the last call
    /// stopped) back into never-used slots, in each bucket that no entry's probe walks through.
    /// A lookup of an absent address (every clean SYN) stops at the first bucket with such a
    /// slot; without this, churn would leave tombstones everywhere, and such lookups would
    /// walk all [`PROBE_BUCKETS`](table::PROBE_BUCKETS) buckets. Returns how many it freed.
    ///
    /// Safe against a program mid-lookup: a lookup that ends at such a bucket is for an
    /// address not past it, and a tombstone quiet for [`QUIET`] pairs with no reader's tag.
    pub fn sweep(&mut self, budget: u32, now: Instant) -> usize {
        if self.tombstones == 0 {
            return 0;
        }
        self.release_quiet(now);
        let mut freed = 0;
        for _ in 0..budget.min(self.bucket_count) {
            let bucket = self.sweep_from;
            self.sweep_from = table::next(bucket, self.bucket_count);
            let quiet = |slot: &usize| {
                is_tombstone(self.tag(*slot).load(Ordering::Acquire))
                    && !self.tombstoned_at.contains_key(slot)
            };
            if !Self::slots_of(bucket).any(|slot| quiet(&slot)) || self.walked_through(bucket) {
                continue;
            }
            for slot in Self::slots_of(bucket).filter(quiet) {
                self.tag(slot).store(0, Ordering::Release);
                freed += 1;
            }
        }
        self.tombstones -= freed;
        freed
    }

    /// Whether an entry (live or expired) placed in one of the buckets after `bucket` has its
    /// home at or before it: its lookups walk through `bucket`, so it must stay without a
    /// never-used slot.
    fn walked_through(&self, bucket: u32) -> bool {
        let buckets = u64::from(self.bucket_count);
        // How far `to` is from `from` along the probe, which wraps.
        let distance = |from: u32, to: u32| (u64::from(to) + buckets - u64::from(from)) % buckets;
        let mut later = bucket;
        for _ in 1..table::PROBE_BUCKETS {
            later = table::next(later, self.bucket_count);
            for slot in Self::slots_of(later) {
                let tag = self.tag(slot).load(Ordering::Acquire);
                if tag == 0 || is_tombstone(tag) {
                    continue;
                }
                let home = table::home(&self.addr(slot), &self.keys, self.bucket_count);
                if distance(home, bucket) < distance(home, later) {
                    return true;
                }
            }
        }
        false
    }

    /// Frees the tombstones that have been quiet long enough.
    fn release_quiet(&mut self, now: Instant) {
        while let Some(&(made, slot)) = self.quarantine.front() {
            if now.duration_since(made) < QUIET {
                break;
            }
            self.quarantine.pop_front();
            if self.tombstoned_at.get(&slot) == Some(&made) {
                self.tombstoned_at.remove(&slot);
            }
        }
    }
}

/// A removed entry: no expiry (units 0), but not a never-used slot.
fn is_tombstone(tag: u32) -> bool {
    tag != 0 && tag >> table::ORIGIN_BITS == 0
}

#[cfg(test)]
mod tests {
    use blocker_common::origin;
    use rand::{Rng, SeedableRng};

    use super::*;

    type V4 = Table<1, 8, 0>;

    const LIVE: u32 = table::tag(u64::MAX, 2);

    /// Fixed keys: a failing test fails the same way again.
    const KEYS: table::HashKeys = [7, 0x9e37_79b9_7f4a_7c15, 3, 5, 11];

    /// Addresses that share a home bucket in `table`.
    fn same_home(table: &V4, count: usize) -> Vec<[u32; 1]> {
        let home = table::home(&[0], &table.keys, table.bucket_count);
        (1..)
            .map(|a| [a])
            .filter(|a| table::home(a, &table.keys, table.bucket_count) == home)
            .take(count)
            .collect()
    }

    /// Fills a table of `buckets` with each list, under three sets of keys, and fails if more
    /// than `most` addresses of a list find no room.
    fn assert_room<const W: usize, const K: usize, const P: usize>(
        buckets: u32,
        lists: Vec<(&str, Vec<[u32; W]>)>,
        most: usize,
    ) {
        let keys: [table::HashKeys; 3] = rand::rngs::StdRng::seed_from_u64(1).random();
        for (list, addrs) in lists {
            for keys in keys {
                let mut t = Table::<W, K, P>::in_memory(buckets, keys);
                let now = Instant::now();
                let refused = addrs.iter().filter(|a| !t.insert(a, LIVE, now)).count();
                let what = format!("{W}-word addresses, {list}: {refused} of {}", addrs.len());
                println!("{what} found no room");
                assert!(refused <= most, "{what} found no room, over {most}");
            }
        }
    }

    /// Block lists are not random: a scanner's /24, a hoster's consecutive addresses, one
    /// address in each /64 of a /48. Filled to `max_addresses` with such lists, the tables
    /// must send no more of them to the range trie than random addresses do (simulated: 0.06 %
    /// for IPv4, 1 % for IPv6, see `loader::Capacity`; here at most 0.2 % and 2 %), whatever
    /// word they differ in.
    #[test]
    fn structured_lists_fit_their_table() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        const COUNT: u32 = 60_000;
        let capacity = crate::loader::Capacity { addresses: COUNT };
        let v4 = |step: u32| -> Vec<[u32; 1]> {
            (0..COUNT)
                .map(|i| table::words(&Ipv4Addr::from_bits(0x0a00_0000 + i * step).octets()))
                .collect()
        };
        let v6 = |shift: u32| -> Vec<[u32; 4]> {
            let base = u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
            (0..COUNT)
                .map(|i| {
                    table::words(&Ipv6Addr::from_bits(base + (u128::from(i) << shift)).octets())
                })
                .collect()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let v4_lists = vec![
            ("consecutive", v4(1)),
            ("one a /24", v4(256)),
            ("random", (0..COUNT).map(|_| [rng.random()]).collect()),
        ];
        assert_room::<1, 8, 0>(capacity.v4_buckets(), v4_lists, COUNT as usize / 500);
        let v6_lists = vec![
            ("consecutive", v6(0)),
            ("one a /64", v6(64)),
            ("one a /112", v6(16)),
            ("one a /48", v6(80)),
            ("random", (0..COUNT).map(|_| rng.random()).collect()),
        ];
        assert_room::<4, 3, 1>(capacity.v6_buckets(), v6_lists, COUNT as usize / 50);
    }

    #[test]
    fn tags_round_expiry_up_to_the_unit_and_never_early() {
        let unit = 1u64 << table::EXPIRY_SHIFT;
        for expires in [1, unit - 1, unit, unit + 1, 5 * unit + 7] {
            let tag = table::tag(expires, origin::CSCLI);
            let kept = table::expires_at_ns(tag);
            assert!(
                kept >= expires && kept - expires < unit,
                "{expires} kept as {kept}"
            );
            assert!(table::live(tag, expires - 1), "live just before {expires}");
            assert!(!table::live(tag, kept), "over at {kept}");
            assert_eq!(table::origin(tag), origin::CSCLI);
        }
        let never = table::tag(u64::MAX, origin::CAPI);
        assert_eq!(table::expires_at_ns(never), u64::MAX);
        let ten_years_of_uptime = 10 * 365 * 86_400 * 1_000_000_000;
        assert!(table::live(never, ten_years_of_uptime));
        assert!(
            !table::live(table::TOMBSTONE, 0),
            "a tombstone is never live"
        );
        assert!(!table::live(0, 0), "nor a never-used slot");
    }

    #[test]
    fn inserts_updates_in_place_and_removes() {
        let mut t = V4::in_memory(16, KEYS);
        let now = Instant::now();
        assert!(t.insert(&[10], LIVE, now));
        assert_eq!(t.get(&[10]), Some(LIVE));
        let later = table::tag(5 << 30, 1);
        assert!(t.insert(&[10], later, now));
        assert_eq!(t.entries().collect::<Vec<_>>(), vec![([10], later)]);
        assert_eq!(t.held(), 1);
        assert!(t.remove(&[10], now));
        assert_eq!(t.get(&[10]), Some(table::TOMBSTONE));
        assert_eq!(t.entries().count(), 0);
        assert_eq!(t.held(), 0);
        assert!(
            t.insert(&[10], LIVE, now),
            "its own tombstone takes it back"
        );
        assert_eq!(t.held(), 1);
        assert!(
            !t.remove(&[11], now),
            "an address never inserted has no slot"
        );
    }

    #[test]
    fn a_full_probe_refuses_and_lookups_walk_past_full_buckets() {
        let mut t = V4::in_memory(16, KEYS);
        let now = Instant::now();
        let crowd = same_home(&t, 8 * 4 + 1);
        for addr in &crowd[..32] {
            assert!(t.insert(addr, LIVE, now), "{addr:?} fits in the probe");
        }
        assert!(
            !t.insert(&crowd[32], LIVE, now),
            "four full buckets: no room"
        );
        for addr in &crowd[..32] {
            assert_eq!(
                t.get(addr),
                Some(LIVE),
                "{addr:?} is found past full buckets"
            );
        }
    }

    #[test]
    fn a_tombstone_is_reused_for_another_address_only_after_a_quiet_second() {
        let mut t = V4::in_memory(16, KEYS);
        let now = Instant::now();
        let crowd = same_home(&t, 33);
        for addr in &crowd[..32] {
            assert!(t.insert(addr, LIVE, now));
        }
        assert!(t.remove(&crowd[5], now));
        assert!(
            !t.insert(&crowd[32], LIVE, now + QUIET / 2),
            "the tombstone is still quiet"
        );
        assert!(
            t.insert(&crowd[5], LIVE, now + QUIET / 2),
            "its own address takes it back at once"
        );
        assert!(t.remove(&crowd[5], now + QUIET / 2));
        assert!(t.insert(&crowd[32], LIVE, now + QUIET * 2));
        assert_eq!(t.get(&crowd[32]), Some(LIVE));
        assert_eq!(t.get(&crowd[5]), None, "its slot now holds another address");
    }

    #[test]
    fn a_sweep_frees_tombstones_only_where_no_probe_walks_through() {
        let mut t = V4::in_memory(16, KEYS);
        let now = Instant::now();
        let crowd = same_home(&t, 9);
        for addr in &crowd {
            assert!(t.insert(addr, LIVE, now));
        }
        assert!(t.remove(&crowd[0], now));
        assert_eq!(t.sweep(16, now), 0, "a fresh tombstone stays");
        assert_eq!(
            t.sweep(16, now + QUIET),
            0,
            "the ninth address, in the next bucket, is looked up through the home bucket"
        );
        assert_eq!(t.get(&crowd[8]), Some(LIVE));
        assert!(t.remove(&crowd[8], now + QUIET));
        assert_eq!(t.tombstones(), 2);
        assert_eq!(t.sweep(16, now + QUIET * 2), 2);
        assert_eq!(t.tombstones(), 0);
        for addr in &crowd[1..8] {
            assert_eq!(t.get(addr), Some(LIVE), "{addr:?} is still found");
        }
        assert_eq!(t.get(&crowd[0]), None);
        assert_eq!(t.get(&crowd[8]), None);
    }

    /// A tiny deterministic generator, enough to shuffle operations.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// What the program's bucket read relies on: no address has two slots in one bucket, not
    /// even as a tombstone beside a live entry.
    fn assert_each_bucket_holds_an_address_once(t: &V4, step: u32) {
        for bucket in 0..t.buckets() {
            let held: Vec<[u32; 1]> = V4::slots_of(bucket)
                .filter(|&slot| t.tag(slot).load(Ordering::Relaxed) != 0)
                .map(|slot| t.addr(slot))
                .collect();
            let distinct: std::collections::HashSet<_> = held.iter().collect();
            assert_eq!(
                distinct.len(),
                held.len(),
                "bucket {bucket} holds an address twice at step {step}: {held:?}"
            );
        }
    }

    #[test]
    fn under_churn_and_sweeps_every_entry_stays_found_once_and_all_comes_back() {
        let mut t = V4::in_memory(64, KEYS);
        let start = Instant::now();
        let mut present = std::collections::HashSet::new();
        let mut rng = 0x5eed_u64;
        for step in 0..40_000u32 {
            let now = start + QUIET / 8 * step;
            let addr = [u32::try_from(xorshift(&mut rng) % 700).expect("small") + 1];
            if xorshift(&mut rng).is_multiple_of(2) {
                if t.insert(&addr, LIVE, now) {
                    present.insert(addr);
                }
            } else {
                t.remove(&addr, now);
                present.remove(&addr);
            }
            if step % 16 == 0 {
                t.sweep(8, now);
            }
            if step % 1000 == 0 {
                for addr in &present {
                    assert_eq!(t.get(addr), Some(LIVE), "{addr:?} lost at step {step}");
                }
                assert_eq!(t.held(), present.len());
                assert_each_bucket_holds_an_address_once(&t, step);
            }
        }
        let end = start + QUIET / 8 * 40_000;
        for addr in std::mem::take(&mut present) {
            assert!(t.remove(&addr, end));
        }
        t.sweep(64, end + QUIET);
        assert!(t.never_used(), "every slot is never-used again");
        assert_eq!(t.tombstones(), 0);
    }

    #[test]
    fn tombstones_found_at_open_are_quarantined() {
        let mut t = V4::in_memory(16, KEYS);
        let now = Instant::now();
        let crowd = same_home(&t, 33);
        for addr in &crowd[..32] {
            assert!(t.insert(addr, LIVE, now));
        }
        assert!(t.remove(&crowd[0], now));
        // A new daemon adopting the same memory: `over` runs again.
        let Memory::Heap(memory) = std::mem::replace(&mut t.memory, Memory::Heap(Box::new([])))
        else {
            unreachable!()
        };
        let mut adopted = V4::over("test", t.buckets, 16, KEYS, Memory::Heap(memory));
        assert!(!adopted.insert(&crowd[32], LIVE, Instant::now()));
        assert!(adopted.insert(&crowd[32], LIVE, Instant::now() + QUIET));
    }
}
