//! Looks a source up in the ban maps, then the allow list.
//!
//! Single addresses live in a hash (one lookup whatever the list size), ranges in an LPM trie.
//! An entry carries its own expiry: the program ignores an expired one, so bans end on time
//! even while the daemon is down. The clock is read only once an entry is found (a clean SYN
//! never pays for it), and the allow list is looked up only where it holds anything.

use aya_ebpf::{
    helpers::bpf_ktime_get_coarse_ns,
    maps::{HashMap, LpmTrie, lpm_trie::Key},
};
use blocker_common::{AllowEntry, BanEntry, flags};

use crate::{
    ALLOW_V4, ALLOW_V6, BANNED_V4_ADDRS, BANNED_V4_RANGES, BANNED_V6_ADDRS, BANNED_V6_RANGES,
    SETTINGS, parse::Source,
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

/// The ban and allow maps of one address family.
struct Family<const N: usize> {
    addrs: &'static HashMap<[u8; N], BanEntry>,
    ranges: &'static LpmTrie<[u8; N], BanEntry>,
    allow: &'static LpmTrie<[u8; N], AllowEntry>,
    /// The `Settings` flag saying `allow` holds anything.
    allow_flag: u32,
}

const V4: Family<4> = Family {
    addrs: &BANNED_V4_ADDRS,
    ranges: &BANNED_V4_RANGES,
    allow: &ALLOW_V4,
    allow_flag: flags::ALLOW_V4,
};
const V6: Family<16> = Family {
    addrs: &BANNED_V6_ADDRS,
    ranges: &BANNED_V6_RANGES,
    allow: &ALLOW_V6,
    allow_flag: flags::ALLOW_V6,
};

/// The program's clock: `CLOCK_MONOTONIC_COARSE` (see `blocker::clock`).
#[inline(always)]
fn now() -> u64 {
    // SAFETY: reads the clock.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
pub fn judge(source: Source, undecidable: bool) -> Judgement {
    match source {
        Source::V4(addr) => V4.judge(addr, undecidable),
        // `::ffff:a.b.c.d` is an IPv4 client on a dual-stack socket: judge it as IPv4.
        Source::V6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, a, b, c, d]) => {
            V4.judge([a, b, c, d], undecidable)
        }
        Source::V6(addr) => V6.judge(addr, undecidable),
    }
}

impl<const N: usize> Family<N> {
    #[inline(always)]
    fn judge(&self, addr: [u8; N], undecidable: bool) -> Judgement {
        let Some(origin) = self.banned_origin(addr) else {
            return Judgement::Clean { undecidable };
        };
        let settings = SETTINGS.get(0).map_or(0, |s| s.flags);
        #[expect(clippy::cast_possible_truncation, reason = "N is 4 or 16")]
        let full = (N * 8) as u32;
        if settings & self.allow_flag != 0 && self.allow.get(Key::new(full, addr)).is_some() {
            Judgement::Allowlisted { undecidable }
        } else if settings & flags::OBSERVE != 0 {
            Judgement::Observed {
                origin,
                undecidable,
            }
        } else {
            Judgement::Banned {
                origin,
                undecidable,
            }
        }
    }

    /// The origin of a live ban covering `addr`, if any. The clock is read once, and only
    /// after a hit: a clean source costs two lookups and nothing more.
    #[inline(always)]
    fn banned_origin(&self, addr: [u8; N]) -> Option<u32> {
        #[expect(clippy::cast_possible_truncation, reason = "N is 4 or 16")]
        let full = (N * 8) as u32;
        // SAFETY: the hash is BPF_F_NO_PREALLOC, so an entry is never reused under us.
        if let Some(entry) = unsafe { self.addrs.get(addr) } {
            let now = now();
            if entry.expires_at_ns > now {
                return Some(entry.origin);
            }
            return self.live_range(addr, full, now);
        }
        let entry = self.ranges.get(Key::new(full, addr))?;
        let now = now();
        if entry.expires_at_ns > now {
            return Some(entry.origin);
        }
        self.live_range(addr, entry.prefix_len.min(full).checked_sub(1)?, now)
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
