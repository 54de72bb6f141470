//! Types shared by the XDP program (`blocker-ebpf`) and the daemon (`blocker`).
//!
//! Everything here is a plain `#[repr(C)]` struct with no implicit padding: the kernel and
//! userspace read the same bytes. The `user` feature adds `aya::Pod` impls.
#![no_std]

/// Map names, so both sides name a map the same way (like xdp-tools' `common_kern_user.h`).
pub mod map {
    /// Banned IPv4 single addresses (/32): an open-addressed [`table`](crate::table) of
    /// [`BucketV4`](crate::BucketV4), so the bulk of a block list costs one cache line
    /// whatever its size.
    pub const BANNED_V4_ADDRS: &str = "BANNED_V4_ADDRS";
    /// Banned IPv4 ranges (/0../31), and single addresses the table had no room for: an LPM
    /// trie.
    pub const BANNED_V4_RANGES: &str = "BANNED_V4_RANGES";
    /// Banned IPv6 single addresses (/128): a table of [`BucketV6`](crate::BucketV6).
    pub const BANNED_V6_ADDRS: &str = "BANNED_V6_ADDRS";
    /// Banned IPv6 ranges (/0../127), and overflow single addresses.
    pub const BANNED_V6_RANGES: &str = "BANNED_V6_RANGES";
    /// Allow-listed IPv4 prefixes: an LPM trie; the allow list always wins over a ban.
    pub const ALLOW_V4: &str = "ALLOW_V4";
    /// Allow-listed IPv6 prefixes.
    pub const ALLOW_V6: &str = "ALLOW_V6";
    /// Protected destination ports, a 65,536-bit bitmap of `u64` words.
    pub const PROTECTED_PORTS: &str = "PROTECTED_PORTS";
    /// One `Settings` slot.
    pub const SETTINGS: &str = "SETTINGS";
    /// Per-CPU `FamilyStats`, indexed by `family::*`.
    pub const STATS: &str = "STATS";
    /// Per-CPU `RecentDrops`: the sources of the latest drops, for the daemon's log
    /// (`deny_log`). A sample, not state: left unpinned, each loaded program has its own.
    pub const RECENT_DROPS: &str = "RECENT_DROPS";
    /// Every map that holds state: all are pinned, so bans, settings and counters outlive the
    /// daemon. (The program's other maps, `RECENT_DROPS` and a per-CPU cache of the clock,
    /// `COARSE_CLOCK`, hold none.)
    pub const ALL: [&str; 9] = [
        BANNED_V4_ADDRS,
        BANNED_V4_RANGES,
        BANNED_V6_ADDRS,
        BANNED_V6_RANGES,
        ALLOW_V4,
        ALLOW_V6,
        PROTECTED_PORTS,
        SETTINGS,
        STATS,
    ];
}

/// Default capacities. Single addresses are the bulk of real block lists, ranges are few.
pub mod capacity {
    /// Buckets of the IPv4 address table in the object; the loader sets the real size from
    /// `max_addresses` (`blocker::loader::Capacity`).
    pub const V4_BUCKETS: u32 = 1 << 18;
    /// Buckets of the IPv6 address table in the object; the loader sets the real size.
    pub const V6_BUCKETS: u32 = 1 << 19;
    /// Entries in each range trie (per family): ranges, and the single addresses the table
    /// has no room for, as many as `max_addresses` allows at most. A trie allocates its nodes
    /// as they come (`BPF_F_NO_PREALLOC`), so the bound costs nothing.
    pub const RANGES: u32 = 1 << 24;
    /// Entries in each allow-list trie (per family).
    pub const ALLOW: u32 = 1 << 12;
}

/// Index of a `STATS` slot.
pub mod family {
    /// IPv4 packets (and IPv4-mapped IPv6 sources are judged, but counted under IPv6).
    pub const IPV4: u32 = 0;
    /// IPv6 packets.
    pub const IPV6: u32 = 1;
    /// Everything that is not IP, or whose link layer could not be parsed.
    pub const OTHER: u32 = 2;
    /// Number of slots in `STATS`.
    pub const COUNT: u32 = 3;
}

/// Where a ban came from, as a small index so the kernel can count drops per origin.
///
/// `CrowdSec`'s decision `origin` strings map onto these slots (`lists:NAME` counts as `lists`);
/// anything else is `OTHER`.
pub mod origin {
    pub const OTHER: u32 = 0;
    pub const CROWDSEC: u32 = 1;
    pub const CSCLI: u32 = 2;
    pub const CAPI: u32 = 3;
    pub const LISTS: u32 = 4;
    pub const CONSOLE: u32 = 5;
    pub const CSCLI_IMPORT: u32 = 6;
    pub const APPSEC: u32 = 7;
    /// Number of origin slots in the counters.
    pub const COUNT: usize = 8;
    /// Metric label of each slot, in slot order.
    pub const NAMES: [&str; COUNT] = [
        "other",
        "crowdsec",
        "cscli",
        "CAPI",
        "lists",
        "console",
        "cscli-import",
        "appsec",
    ];

    /// The slot for a `CrowdSec` `origin` string.
    #[must_use]
    pub fn from_name(name: &str) -> u32 {
        let base = name.split_once(':').map_or(name, |(base, _)| base);
        let mut slot = 0;
        while slot < COUNT {
            if NAMES[slot].eq_ignore_ascii_case(base) {
                #[expect(clippy::cast_possible_truncation, reason = "COUNT is 8")]
                return slot as u32;
            }
            slot += 1;
        }
        OTHER
    }
}

/// Value of every ban map entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanEntry {
    /// `CLOCK_MONOTONIC` nanoseconds at which the ban ends (the program reads the coarse
    /// variant, `bpf_ktime_get_coarse_ns`, once a jiffy per CPU: normally within two ticks,
    /// always late, never early). The program ignores the entry from then on, so a ban ends
    /// on time even with no daemon. `u64::MAX` never expires.
    pub expires_at_ns: u64,
    /// `origin::*` slot, for the per-origin drop counters.
    pub origin: u32,
    /// The entry's own prefix length. An LPM lookup returns only the longest match; when that
    /// one has expired, the program looks again below this length for a shorter live prefix.
    pub prefix_len: u32,
}

/// Value of the allow-list tries. Only presence matters; the prefix length is kept for
/// introspection.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowEntry {
    pub prefix_len: u32,
}

/// `Settings::flags` bits.
pub mod flags {
    /// Count would-be drops instead of dropping (a dry run).
    pub const OBSERVE: u32 = 1;
    /// Look the IPv4 allow list up on a hit: some IPv4 ban overlaps it. Kept by the daemon's
    /// map layer (raised before the first such ban goes in, lowered once none is left), so
    /// that a banned SYN pays for an allow-list lookup only where it can change the verdict.
    pub const ALLOW_V4: u32 = 2;
    /// Look the IPv6 allow list up on a hit: some IPv6 ban overlaps it.
    pub const ALLOW_V6: u32 = 4;
    /// The IPv4 range trie is not empty: a source the address table does not ban is looked
    /// up there only then.
    pub const RANGES_V4: u32 = 8;
    /// The IPv6 range trie is not empty.
    pub const RANGES_V6: u32 = 16;
    /// The IPv4 address table holds an entry: a family with no single address banned skips
    /// the table, so its clean SYNs do not pay a cache miss for nothing.
    pub const ADDRS_V4: u32 = 32;
    /// The IPv6 address table holds an entry.
    pub const ADDRS_V6: u32 = 64;
    /// Record each dropped SYN's source in `RECENT_DROPS`, for the daemon's log (`deny_log`).
    pub const DENY_LOG: u32 = 128;
}

/// Run-time settings of the program, one slot in `SETTINGS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub flags: u32,
    /// Buckets of the IPv4 table. The tables' sizes are set at load (any size: a table is
    /// sized to its list, not to a power of two), so the program reads them here.
    pub v4_buckets: u32,
    /// Buckets of the IPv6 table.
    pub v6_buckets: u32,
    /// Always 0: puts `hash_keys` on an 8-byte boundary with no implicit padding.
    pub pad: u32,
    /// Keys of the address tables' hash ([`table::home`]), all 0 until the daemon draws them
    /// before the first insert, then never changed while a table holds anything (a guessable
    /// hash would let addresses be chosen to pile up in one bucket).
    pub hash_keys: table::HashKeys,
}

/// One slot of an address table: a `tag` saying what the slot holds ([`table`] has the
/// encoding), and the address as `W` 32-bit words in the packet's byte order (the words' own
/// byte order is the machine's: only the kernel and the daemon of one machine share them).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot<const W: usize> {
    pub tag: u32,
    pub addr: [u32; W],
}

/// A bucket of an address table: `K` slots and `P` words of padding, one 64-byte cache line
/// (an mmapable array's values start page-aligned).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket<const W: usize, const K: usize, const P: usize> {
    pub slots: [Slot<W>; K],
    pub pad: [u32; P],
}

/// 8 IPv4 slots of 8 bytes.
pub type BucketV4 = Bucket<1, 8, 0>;
/// 3 IPv6 slots of 20 bytes, and 4 bytes of padding.
pub type BucketV6 = Bucket<4, 3, 1>;

/// The single-address tables: open addressing over buckets of one cache line each, in an
/// mmapable array that the daemon writes through shared memory.
///
/// Why not a BPF hash: its bucket array alone is 16 bytes per entry of capacity, reached through
/// one pointer and then the element through another, two or three cache (and TLB) misses per
/// lookup once the sources are many. Here a lookup reads one line, sometimes the next.
///
/// An address lives in its home bucket ([`home`](table::home)) or one of the next
/// [`PROBE_BUCKETS`](table::PROBE_BUCKETS) - 1; one that finds no room there goes to the
/// range trie as a /32 or /128 instead. A slot's `tag` is 0 while it was never used: a
/// bucket with such a slot ends a lookup, since nothing was ever pushed past it. Removal
/// leaves a [`TOMBSTONE`](table::TOMBSTONE) (keeps lookups going past it), which the daemon
/// reuses for another address only after a quiet second.
///
/// Concurrency, with no lock: the program reads a slot's tag, then (if it is live) its
/// address. The daemon writes an address only into a slot whose tag is 0 or a tombstone
/// nobody has matched for a second, and then stores the tag, so a reader that sees a live tag
/// sees the address written before it. Changing a live entry's expiry is one 4-byte store.
///
/// A bucket holds an address in one slot at most (live, expired or tombstone): `insert`
/// reuses the slot an address already has in any bucket it walks. The program relies on it:
/// it reads a whole bucket without a branch per slot and ORs the tags of the slots that hold
/// the address.
#[expect(
    clippy::inline_always,
    reason = "the XDP program's hot path: inlined, each lookup is straight-line code"
)]
pub mod table {
    /// Buckets a lookup walks at most, from the home bucket on.
    pub const PROBE_BUCKETS: u32 = 4;
    /// A removed entry: occupied for probing, never live, address kept.
    pub const TOMBSTONE: u32 = 1;
    /// Bits of a tag that hold the origin slot.
    pub const ORIGIN_BITS: u32 = 3;
    /// The expiry's unit is 2^30 ns (1.07 s): the tag holds expiry >> 30, rounded up, so a
    /// single-address ban ends in the kernel at most that much late, never early (the daemon
    /// removes it on time while it runs).
    pub const EXPIRY_SHIFT: u32 = 30;
    /// The largest expiry a tag holds (in units): a ban that never ends. 2^29 units of 1.07 s
    /// are 18 years of uptime.
    pub const NEVER: u32 = u32::MAX >> ORIGIN_BITS;

    /// The tag of a live entry ending at `expires_at_ns` (`CLOCK_MONOTONIC`), from `origin`.
    #[must_use]
    pub const fn tag(expires_at_ns: u64, origin: u32) -> u32 {
        let units = if expires_at_ns == u64::MAX {
            NEVER
        } else {
            let units = expires_at_ns.div_ceil(1 << EXPIRY_SHIFT);
            if units >= NEVER as u64 {
                NEVER
            } else {
                // At least 1: a unit of 0 is the tombstone's.
                #[expect(clippy::cast_possible_truncation, reason = "below NEVER")]
                let units = units as u32;
                if units == 0 { 1 } else { units }
            }
        };
        units << ORIGIN_BITS | (origin & ((1 << ORIGIN_BITS) - 1))
    }

    /// When an entry with `tag` ends, in `CLOCK_MONOTONIC` ns (`u64::MAX` for never).
    #[must_use]
    pub const fn expires_at_ns(tag: u32) -> u64 {
        match tag >> ORIGIN_BITS {
            NEVER => u64::MAX,
            units => (units as u64) << EXPIRY_SHIFT,
        }
    }

    /// The origin slot of a tag.
    #[must_use]
    pub const fn origin(tag: u32) -> u32 {
        tag & ((1 << ORIGIN_BITS) - 1)
    }

    /// Whether an entry with `tag` bans at `now_ns`: tags 0 and tombstones never do.
    #[inline(always)]
    #[must_use]
    pub const fn live(tag: u32, now_ns: u64) -> bool {
        (tag >> ORIGIN_BITS) as u64 > now_ns >> EXPIRY_SHIFT
    }

    /// An address's bytes as a slot holds them: `W` words of 4 bytes each (`N` = 4 `W`).
    #[inline(always)]
    #[must_use]
    pub fn words<const N: usize, const W: usize>(addr: &[u8; N]) -> [u32; W] {
        let mut words = [0; W];
        let mut i = 0;
        while i < W {
            words[i] = u32::from_ne_bytes([
                addr[4 * i],
                addr[4 * i + 1],
                addr[4 * i + 2],
                addr[4 * i + 3],
            ]);
            i += 1;
        }
        words
    }

    /// Keys of the tables' hash: one added, and one multiplier per word of an address (up to
    /// IPv6's four).
    pub const HASH_KEYS: usize = 5;

    /// The keys of the tables' hash, random 64-bit words ([`home`]).
    pub type HashKeys = [u64; HASH_KEYS];

    /// The home bucket of an address, of `buckets`, under `keys`.
    ///
    /// The hash is Dietzfelbinger's vector multiply-shift (as in Thorup, "High Speed Hashing
    /// for Integers and Strings"): the top 32 bits of `keys[0] + keys[1] addr[0] + ...`, mod
    /// 2^64. For random keys it is strongly universal: any two addresses collide with
    /// probability 2^-32, however they were chosen, as long as the keys are secret. Its
    /// multiplies do not wait on each other, so an IPv6 address hashes about as fast as an
    /// IPv4 one, where a mix chained word by word takes four times as long. The hash is then
    /// scaled to `buckets` by a multiply (Lemire's reduction), so any table size works without
    /// a divide.
    #[inline(always)]
    #[must_use]
    pub fn home<const W: usize>(addr: &[u32; W], keys: &HashKeys, buckets: u32) -> u32 {
        const { assert!(W < HASH_KEYS) };
        let mut h = keys[0];
        let mut i = 0;
        while i < W {
            h = h.wrapping_add(keys[i + 1].wrapping_mul(u64::from(addr[i])));
            i += 1;
        }
        (((h >> 32) * u64::from(buckets)) >> 32) as u32
    }

    /// The bucket a probe visits after `bucket`, of `buckets` (wrapping to the first).
    #[inline(always)]
    #[must_use]
    pub const fn next(bucket: u32, buckets: u32) -> u32 {
        if bucket + 1 >= buckets { 0 } else { bucket + 1 }
    }
}

/// Samples each CPU keeps of its latest drops in `RECENT_DROPS`.
pub const DROP_SAMPLES: usize = 32;

/// The source of one dropped SYN.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropSample {
    /// As the address tables hold it (`table::words`): IPv4 in the first word, the rest 0.
    pub addr: [u32; 4],
    /// `family::IPV4` or `family::IPV6`.
    pub family: u32,
    /// `origin::*` slot of the ban.
    pub origin: u32,
}

/// One CPU's latest drops: a ring of samples. `written` counts every sample ever written; the
/// next goes to slot `written % DROP_SAMPLES`. The daemon reads it while the program writes,
/// so a sample read then may be half old, half new: fine for a log.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecentDrops {
    pub written: u64,
    pub samples: [DropSample; DROP_SAMPLES],
}

/// Words in the `PROTECTED_PORTS` bitmap.
pub const PORT_WORDS: u32 = 65_536 / 64;

/// Per-CPU counters of one address family. All `u64`, so there is no padding to leak.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FamilyStats {
    /// Every packet the program saw.
    pub seen: u64,
    /// SYNs (SYN set, ACK and RST clear) to a protected port: the packets that pay for a lookup.
    pub syn_protected: u64,
    /// Banned, but passed because an allow-list prefix covers the source.
    pub allowlisted: u64,
    /// Truncated or malformed headers (passed, except a banned source's cut-short first
    /// fragment, which is dropped and counted here too).
    pub malformed: u64,
    /// Dropped packets, per origin slot.
    pub dropped_packets: [u64; origin::COUNT],
    /// Dropped bytes (whole frames), per origin slot.
    pub dropped_bytes: [u64; origin::COUNT],
    /// Would-be drops in observe mode, per origin slot.
    pub observed_packets: [u64; origin::COUNT],
}

const _: () = assert!(core::mem::size_of::<FamilyStats>() == 8 * (4 + 3 * origin::COUNT));
const _: () = assert!(core::mem::size_of::<BanEntry>() == 16);
const _: () = assert!(core::mem::size_of::<Settings>() == 16 + 8 * table::HASH_KEYS);
const _: () = assert!(origin::COUNT <= 1 << table::ORIGIN_BITS);
const _: () = assert!(core::mem::size_of::<BucketV4>() == 64);
const _: () = assert!(core::mem::size_of::<BucketV6>() == 64);
const _: () = assert!(core::mem::size_of::<AllowEntry>() == 4);
const _: () = assert!(core::mem::size_of::<DropSample>() == 24);
const _: () = assert!(core::mem::size_of::<RecentDrops>() == 8 + 24 * DROP_SAMPLES);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` structs of integers with no padding (asserted above).
    unsafe impl aya::Pod for super::BanEntry {}
    unsafe impl aya::Pod for super::AllowEntry {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::FamilyStats {}
    unsafe impl aya::Pod for super::RecentDrops {}
    unsafe impl<const W: usize, const K: usize, const P: usize> aya::Pod for super::Bucket<W, K, P> {}
}
