//! Types shared by the XDP program (`blocker-ebpf`) and the daemon (`blocker`).
//!
//! Everything here is a plain `#[repr(C)]` struct with no implicit padding: the kernel and
//! userspace read the same bytes. The `user` feature adds `aya::Pod` impls.
#![no_std]

/// Map names, so both sides name a map the same way (like xdp-tools' `common_kern_user.h`).
pub mod map {
    /// Banned IPv4 single addresses (/32): a hash, so the bulk of a block list costs a hash
    /// lookup whatever its size.
    pub const BANNED_V4_ADDRS: &str = "BANNED_V4_ADDRS";
    /// Banned IPv4 ranges (/0../31): an LPM trie.
    pub const BANNED_V4_RANGES: &str = "BANNED_V4_RANGES";
    /// Banned IPv6 single addresses (/128).
    pub const BANNED_V6_ADDRS: &str = "BANNED_V6_ADDRS";
    /// Banned IPv6 ranges (/0../127).
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
    /// Every map: all are pinned, so bans, settings and counters outlive the daemon.
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
    /// Entries in each single-address hash (per family).
    pub const ADDRS: u32 = 1 << 21;
    /// Entries in each range trie (per family).
    pub const RANGES: u32 = 1 << 18;
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
    /// variant, `bpf_ktime_get_coarse_ns`: a third of the cost of the precise clocks, at most a
    /// tick late). The program ignores the entry from then on, so a ban ends on time even with
    /// no daemon. `u64::MAX` never expires.
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
    /// The IPv4 allow list is not empty. Kept by the daemon's map layer, so that a banned SYN
    /// pays for an allow-list lookup only where there is one.
    pub const ALLOW_V4: u32 = 2;
    /// The IPv6 allow list is not empty.
    pub const ALLOW_V6: u32 = 4;
}

/// Run-time settings of the program, one slot in `SETTINGS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub flags: u32,
    /// Keeps the struct's size a multiple of 8 with no implicit padding.
    pub reserved: u32,
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
const _: () = assert!(core::mem::size_of::<Settings>() == 8);
const _: () = assert!(core::mem::size_of::<AllowEntry>() == 4);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` structs of integers with no padding (asserted above).
    unsafe impl aya::Pod for super::BanEntry {}
    unsafe impl aya::Pod for super::AllowEntry {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::FamilyStats {}
}
