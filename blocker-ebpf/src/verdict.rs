//! Looks a source up in the ban maps, then the allow list.
//!
//! Single addresses live in an open-addressed table (one cache line per lookup whatever the
//! list size, see `blocker_common::table`), ranges in an LPM trie, looked up only when the
//! table has no live entry and the trie holds anything. An entry carries its own expiry: the
//! program ignores an expired one, so bans end on time even while the daemon is down. The
//! clock is read only once an entry is found (a clean SYN never pays for it), and the allow
//! list only while some ban of the family overlaps it (`flags::ALLOW_V4`, kept by the daemon).

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    maps::{Array, LpmTrie, lpm_trie::Key},
};
use blocker_common::{
    AllowEntry, BanEntry, Bucket, DROP_SAMPLES, DropSample, Settings, Slot, family, flags, table,
};

use crate::{
    ALLOW_V4, ALLOW_V6, BANNED_V4_ADDRS, BANNED_V4_RANGES, BANNED_V6_ADDRS, BANNED_V6_RANGES,
    COARSE_CLOCK, RECENT_DROPS, SETTINGS, parse::Source,
};

pub enum Judgement {
    Ignored,
    Malformed,
    /// Looked up: not banned. `undecidable` marks a packet whose TCP header could not be read.
    Clean {
        undecidable: bool,
    },
    Allowlisted {
        undecidable: bool,
    },
    /// Banned: dropped.
    Banned {
        origin: u32,
        undecidable: bool,
    },
    /// Banned, in observe mode: counted, passed. (A variant rather than a flag in `Banned`:
    /// LLVM would read such a field on every path, and the verifier refuses reads of registers
    /// that are unset on some.)
    Observed {
        origin: u32,
        undecidable: bool,
    },
}

/// The ban and allow maps of one address family: addresses of `N` bytes, held in the table
/// as `W` words, `K` slots to a bucket (and `P` words of padding).
struct Family<const N: usize, const W: usize, const K: usize, const P: usize> {
    addrs: &'static Array<Bucket<W, K, P>>,
    ranges: &'static LpmTrie<[u8; N], BanEntry>,
    allow: &'static LpmTrie<[u8; N], AllowEntry>,
    /// The `Settings` flag saying `addrs` holds anything.
    addrs_flag: u32,
    /// The `Settings` flag saying `ranges` holds anything.
    ranges_flag: u32,
    /// The `Settings` flag saying some ban overlaps `allow`: only then is it looked up.
    allow_flag: u32,
}

const V4: Family<4, 1, 8, 0> = Family {
    addrs: &BANNED_V4_ADDRS,
    ranges: &BANNED_V4_RANGES,
    allow: &ALLOW_V4,
    addrs_flag: flags::ADDRS_V4,
    ranges_flag: flags::RANGES_V4,
    allow_flag: flags::ALLOW_V4,
};
const V6: Family<16, 4, 3, 1> = Family {
    addrs: &BANNED_V6_ADDRS,
    ranges: &BANNED_V6_RANGES,
    allow: &ALLOW_V6,
    addrs_flag: flags::ADDRS_V6,
    ranges_flag: flags::RANGES_V6,
    allow_flag: flags::ALLOW_V6,
};

/// A reading of the coarse clock on one CPU, and the jiffy it was taken in.
#[repr(C)]
pub struct CoarseReading {
    jiffies: u64,
    ns: u64,
}

/// The program's clock: `CLOCK_MONOTONIC_COARSE` (see `blocker::clock`), read once a jiffy
/// per CPU. The tick that moves `jiffies` moves the coarse clock just after it, so within a
/// jiffy the cached reading is the clock's own. Read in between, it is older: normally a
/// tick, after a long idle spell of every CPU (NO_HZ) as long as the spell, and it is kept
/// until the next jiffy. Either way the reading is late, never early, so a ban may end later,
/// never sooner. Why cache: `bpf_jiffies64` is one load the verifier inlines, while the
/// helper call costs about 18 ns on a CPU that mitigates return-stack attacks (AMD's SRSO
/// "safe RET" here): 18 of the 62-73 ns a hot banned SYN cost with it.
#[inline(always)]
fn now() -> u64 {
    // SAFETY (all three calls): they read clocks.
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(cached) = COARSE_CLOCK.get_ptr_mut(0) else {
        return unsafe { bpf_ktime_get_coarse_ns() };
    };
    // SAFETY: this CPU's slot, valid for the program's run, which no other CPU touches (XDP
    // runs with migration off). A run that interrupts another on this CPU can at worst leave
    // an older reading behind: late, never early.
    let cached = unsafe { &mut *cached };
    if cached.jiffies != jiffies {
        cached.ns = unsafe { bpf_ktime_get_coarse_ns() };
        cached.jiffies = jiffies;
    }
    cached.ns
}

#[inline(always)]
pub fn judge(source: Source, undecidable: bool) -> Judgement {
    // Read in place, field by field as each is needed: a copy would move all 56 bytes.
    // Slot 0 of an array always exists; were it missing, nothing would be banned.
    let Some(settings) = SETTINGS.get(0) else {
        return Judgement::Clean { undecidable };
    };
    // One call site per family: each is inlined, so a second would copy the family's whole
    // lookup into the program again.
    let v4 = match source {
        Source::V4(addr) => addr,
        Source::V6(addr) => match addr {
            // `::ffff:a.b.c.d` is an IPv4 client on a dual-stack socket: judge it as IPv4.
            [0, 0, MAPPED_V4, v4] => v4,
            addr => return V6.judge(addr, settings, undecidable),
        },
    };
    V4.judge([v4], settings, undecidable)
}

/// A slot's tag, and a value that is 0 if and only if the slot's address is `addr`.
#[inline(always)]
fn read_slot<const W: usize>(slot: &Slot<W>, addr: &[u32; W]) -> (u64, u64) {
    // SAFETY (all three reads): of a map value the lookup just returned.
    if W == 1 {
        // An IPv4 slot is 8 aligned bytes: one load reads its tag and address as they were at
        // one moment (an aligned 8-byte load is single-copy atomic), so never a live tag with
        // an address written before it. Half the loads of reading them one by one.
        let both = unsafe { core::ptr::read_volatile((&raw const *slot).cast::<u64>()) };
        let (tag, held) = if cfg!(target_endian = "little") {
            (both & u64::from(u32::MAX), both >> 32)
        } else {
            (both >> 32, both & u64::from(u32::MAX))
        };
        return (tag, held ^ u64::from(addr[0]));
    }
    // The tag before the address, both as real loads in that order: the daemon writes an
    // address before the tag that makes it live (`table`'s protocol).
    let tag = unsafe { core::ptr::read_volatile(&raw const slot.tag) };
    let held = unsafe { core::ptr::read_volatile(&raw const slot.addr) };
    let mut differ = 0;
    for (held, word) in held.iter().zip(addr) {
        differ |= held ^ word;
    }
    (u64::from(tag), u64::from(differ))
}

/// Keeps `addr` as this CPU's latest drop, for the daemon's log (`deny_log`).
#[inline(always)]
fn record_drop<const W: usize>(addr: &[u32; W], origin: u32) {
    let Some(recent) = RECENT_DROPS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot, valid for the program's run, which no other CPU touches (see
    // `now`); the daemon only reads it.
    let recent = unsafe { &mut *recent };
    let mut sample = DropSample {
        addr: [0; 4],
        family: if W == 1 { family::IPV4 } else { family::IPV6 },
        origin,
    };
    sample.addr[..W].copy_from_slice(addr);
    #[expect(clippy::cast_possible_truncation, reason = "below DROP_SAMPLES")]
    let slot = (recent.written % DROP_SAMPLES as u64) as usize;
    recent.samples[slot] = sample;
    recent.written += 1;
}

/// All ones in the low half if `x` (below 2^32) is 0, else 0, with no comparison, which the
/// BPF target can only make a branch of (it has no conditional move): `x - 1` borrows past
/// bit 31 only from 0.
#[inline(always)]
fn all_ones_if_zero(x: u64) -> u64 {
    x.wrapping_sub(1) >> 32
}

/// The third word of an IPv4-mapped IPv6 address, `::ffff:0:0/96`.
const MAPPED_V4: u32 = u32::from_ne_bytes([0, 0, 0xFF, 0xFF]);

impl<const N: usize, const W: usize, const K: usize, const P: usize> Family<N, W, K, P> {
    #[inline(always)]
    fn judge(&self, words: [u32; W], settings: &Settings, undecidable: bool) -> Judgement {
        const { assert!(N == 4 * W) };
        // SAFETY: the same bytes, as the tries key them.
        let addr = unsafe { (&raw const words).cast::<[u8; N]>().read() };
        let Some(origin) = self.banned_origin(&words, addr, settings) else {
            return Judgement::Clean { undecidable };
        };
        #[expect(clippy::cast_possible_truncation, reason = "N is 4 or 16")]
        let full = (N * 8) as u32;
        if settings.flags & self.allow_flag != 0 && self.allow.get(Key::new(full, addr)).is_some() {
            Judgement::Allowlisted { undecidable }
        } else if settings.flags & flags::OBSERVE != 0 {
            Judgement::Observed {
                origin,
                undecidable,
            }
        } else {
            if settings.flags & flags::DENY_LOG != 0 {
                record_drop(&words, origin);
            }
            Judgement::Banned {
                origin,
                undecidable,
            }
        }
    }

    /// The origin of a live ban covering `addr`, if any. The clock is read once, and only
    /// after a hit: a clean source costs a table lookup (and a trie lookup if there are
    /// ranges) and nothing more.
    #[inline(always)]
    fn banned_origin(&self, words: &[u32; W], addr: [u8; N], settings: &Settings) -> Option<u32> {
        #[expect(clippy::cast_possible_truncation, reason = "N is 4 or 16")]
        let full = (N * 8) as u32;
        let ranges = settings.flags & self.ranges_flag != 0;
        let tag = if settings.flags & self.addrs_flag != 0 {
            self.table_tag(words, settings)
        } else {
            None
        };
        if let Some(tag) = tag {
            let now = now();
            if table::live(tag, now) {
                return Some(table::origin(tag));
            }
            return if ranges {
                self.live_range(addr, full, now)
            } else {
                None
            };
        }
        if !ranges {
            return None;
        }
        let entry = self.ranges.get(Key::new(full, addr))?;
        let now = now();
        if entry.expires_at_ns > now {
            return Some(entry.origin);
        }
        self.live_range(addr, entry.prefix_len.min(full).checked_sub(1)?, now)
    }

    /// The tag of `addr`'s slot in the address table (live, expired or a tombstone), if it
    /// has one.
    #[inline(always)]
    fn table_tag(&self, addr: &[u32; W], settings: &Settings) -> Option<u32> {
        let buckets = if N == 4 {
            settings.v4_buckets
        } else {
            settings.v6_buckets
        };
        let mut index = table::home(addr, &settings.hash_keys, buckets);
        for _ in 0..table::PROBE_BUCKETS {
            let bucket = self.addrs.get(index)?;
            // Every slot is read and compared with no branch on what it holds. Which slot
            // matches is random, so a branch per slot would be mispredicted on most packets
            // from many sources, and found out only once the bucket's line had come: the CPU
            // would throw away what it had begun past the lookup (the next packet's, back to
            // back), and the whole miss would show. At 1M entries and 65,536 sources that was
            // 81-85 ns a banned SYN (IPv4) and 114-131 ns (IPv6), against 66-71 and 97-104
            // now; one hot source pays 5 and 13 ns more for the compares. A bucket holds an
            // address once at most (`blocker_common::table`), so the tags of the slots that
            // hold it, OR-ed, are its tag, or 0.
            let (mut found, mut open) = (0, 0);
            for slot in &bucket.slots {
                let (tag, differ) = read_slot(slot, addr);
                found |= tag & all_ones_if_zero(differ);
                open |= all_ones_if_zero(tag);
            }
            if found != 0 {
                #[expect(clippy::cast_possible_truncation, reason = "a tag, zero-extended")]
                return Some(found as u32);
            }
            // Nothing is ever placed past a bucket that still has a never-used slot.
            if open != 0 {
                return None;
            }
            index = table::next(index, buckets);
        }
        None
    }

    /// The origin of the longest live range of at most `len` bits covering `addr`.
    #[inline(always)]
    fn live_range(&self, addr: [u8; N], mut len: u32, now: u64) -> Option<u32> {
        // The trie answers only the longest match; when that one has expired, ask again below
        // its length for a shorter prefix that may still be live. Each round strictly shortens
        // `len`, so N * 8 + 1 rounds always suffice.
        for _ in 0..=N * 8 {
            let entry = self.ranges.get(Key::new(len, addr))?;
            if entry.expires_at_ns > now {
                return Some(entry.origin);
            }
            len = if entry.prefix_len < len {
                entry.prefix_len
            } else {
                len
            };
            if len == 0 {
                return None;
            }
            len -= 1;
        }
        None
    }
}
