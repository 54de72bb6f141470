//! Looks a source up in the ban maps, then the allow list.
//!
//! Single addresses live in a hash (one lookup whatever the list size), ranges in an LPM trie.
//! An entry carries its own expiry: the program ignores an expired one, so bans end on time
//! even while the daemon is down.

use aya_ebpf::{
    helpers::bpf_ktime_get_boot_ns,
    maps::{HashMap, LpmTrie, lpm_trie::Key},
};
use blocker_common::{AllowEntry, BanEntry};

use crate::{
    ALLOW_V4, ALLOW_V6, BANNED_V4_ADDRS, BANNED_V4_RANGES, BANNED_V6_ADDRS, BANNED_V6_RANGES,
    parse::Source,
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
    Banned {
        origin: u32,
        undecidable: bool,
    },
}

/// The ban and allow maps of one address family.
struct Family<const N: usize> {
    addrs: &'static HashMap<[u8; N], BanEntry>,
    ranges: &'static LpmTrie<[u8; N], BanEntry>,
    allow: &'static LpmTrie<[u8; N], AllowEntry>,
}

const V4: Family<4> = Family {
    addrs: &BANNED_V4_ADDRS,
    ranges: &BANNED_V4_RANGES,
    allow: &ALLOW_V4,
};
const V6: Family<16> = Family {
    addrs: &BANNED_V6_ADDRS,
    ranges: &BANNED_V6_RANGES,
    allow: &ALLOW_V6,
};

#[inline(always)]
pub fn judge(source: Source, undecidable: bool) -> Judgement {
    // SAFETY: reads the clock.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    match source {
        Source::V4(addr) => V4.judge(addr, now, undecidable),
        // `::ffff:a.b.c.d` is an IPv4 client on a dual-stack socket: judge it as IPv4.
        Source::V6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, a, b, c, d]) => {
            V4.judge([a, b, c, d], now, undecidable)
        }
        Source::V6(addr) => V6.judge(addr, now, undecidable),
    }
}

impl<const N: usize> Family<N> {
    #[inline(always)]
    fn judge(&self, addr: [u8; N], now: u64, undecidable: bool) -> Judgement {
        let Some(origin) = self.banned_origin(addr, now) else {
            return Judgement::Clean { undecidable };
        };
        #[expect(clippy::cast_possible_truncation, reason = "N is 4 or 16")]
        let full = (N * 8) as u32;
        if self.allow.get(Key::new(full, addr)).is_some() {
            Judgement::Allowlisted { undecidable }
        } else {
            Judgement::Banned {
                origin,
                undecidable,
            }
        }
    }

    /// The origin of a live ban covering `addr`, if any.
    #[inline(always)]
    fn banned_origin(&self, addr: [u8; N], now: u64) -> Option<u32> {
        // SAFETY: the hash is BPF_F_NO_PREALLOC, so an entry is never reused under us.
        if let Some(entry) = unsafe { self.addrs.get(addr) }
            && entry.expires_at_ns > now
        {
            return Some(entry.origin);
        }
        #[expect(clippy::cast_possible_truncation, reason = "N is 4 or 16")]
        let mut len = (N * 8) as u32;
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
