//! The blocker XDP program: drops TCP SYNs to protected (mail) ports from banned prefixes.
//!
//! The contract, in full: drop a packet if and only if it is a TCP SYN (SYN set, ACK and RST
//! clear) to a protected port, from a source covered by a live (unexpired) banned prefix and
//! not covered by an allow-list prefix. Everything else passes: a mail server fails open.
//! `tests/src/reference.rs` is the same contract as plain Rust, and the tests hold the two
//! equal.
#![no_std]
#![no_main]

mod parse;
mod verdict;

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, xdp_action},
    macros::{map, xdp},
    maps::{Array, LpmTrie, PerCpuArray},
    programs::XdpContext,
};
use blocker_common::{
    AllowEntry, BanEntry, BucketV4, BucketV6, FamilyStats, PORT_WORDS, RecentDrops, Settings,
    capacity, family,
};
use parse::{Parsed, classify};
use verdict::Judgement;

#[map]
static BANNED_V4_ADDRS: Array<BucketV4> =
    Array::with_max_entries(capacity::V4_BUCKETS, BPF_F_MMAPABLE);
#[map]
static BANNED_V4_RANGES: LpmTrie<[u8; 4], BanEntry> =
    LpmTrie::with_max_entries(capacity::RANGES, BPF_F_NO_PREALLOC);
#[map]
static BANNED_V6_ADDRS: Array<BucketV6> =
    Array::with_max_entries(capacity::V6_BUCKETS, BPF_F_MMAPABLE);
#[map]
static BANNED_V6_RANGES: LpmTrie<[u8; 16], BanEntry> =
    LpmTrie::with_max_entries(capacity::RANGES, BPF_F_NO_PREALLOC);
#[map]
static ALLOW_V4: LpmTrie<[u8; 4], AllowEntry> =
    LpmTrie::with_max_entries(capacity::ALLOW, BPF_F_NO_PREALLOC);
#[map]
static ALLOW_V6: LpmTrie<[u8; 16], AllowEntry> =
    LpmTrie::with_max_entries(capacity::ALLOW, BPF_F_NO_PREALLOC);
#[map]
static PROTECTED_PORTS: Array<u64> = Array::with_max_entries(PORT_WORDS, 0);
#[map]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);
#[map]
static STATS: PerCpuArray<FamilyStats> = PerCpuArray::with_max_entries(family::COUNT, 0);
/// A cache, not state: left unpinned (`verdict::now`).
#[map]
static COARSE_CLOCK: PerCpuArray<verdict::CoarseReading> = PerCpuArray::with_max_entries(1, 0);
/// Samples for the daemon's log, not state: left unpinned (`verdict::record_drop`).
#[map]
static RECENT_DROPS: PerCpuArray<RecentDrops> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn blocker(ctx: XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    let classified = classify(data, end, is_protected);
    // Each kind of packet ends in a call of its own to `finish`: with a frame length merged
    // from all of them, every path cost 0.4-0.8 ns more in the bench's part 1.
    match classified.parsed {
        Parsed::Ignored => finish(classified.family, &Judgement::Ignored, 0),
        Parsed::Malformed => finish(classified.family, &Judgement::Malformed, 0),
        // One call site: `judge` is inlined, and two would copy it.
        Parsed::Syn(source) | Parsed::Undecidable(source) => {
            // The frame's length, for the byte counters, taken before the lookups through
            // the stack, where LLVM cannot move its computation: worked out after them, it
            // kept the frame's pointers live through them, and the verifier, which tells
            // states apart by what it has proven about each pointer into the frame, went
            // through the lookups again for every path through the headers.
            let frame_len = end - data;
            // SAFETY: a read of a local.
            let frame_len = unsafe { core::ptr::read_volatile(&raw const frame_len) };
            let undecidable = matches!(classified.parsed, Parsed::Undecidable(_));
            let judgement = verdict::judge(source, undecidable);
            finish(classified.family, &judgement, frame_len)
        }
    }
}

#[inline(always)]
fn is_protected(port: u16) -> bool {
    PROTECTED_PORTS
        .get(u32::from(port >> 6))
        .is_some_and(|word| word >> (port & 63) & 1 != 0)
}

/// Where every packet ends: count it in its family's per-CPU slot, then return the action.
/// Per-CPU slots are only touched by this CPU with preemption off, so plain adds suffice.
#[inline(always)]
fn finish(family: u32, judgement: &Judgement, frame_len: usize) -> u32 {
    let action = match judgement {
        Judgement::Banned { .. } => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    };
    let Some(stats) = STATS.get_ptr_mut(family) else {
        return action;
    };
    // SAFETY: a per-CPU slot, valid for the program's run.
    let stats = unsafe { &mut *stats };
    stats.seen += 1;
    match *judgement {
        Judgement::Ignored => {}
        Judgement::Malformed => stats.malformed += 1,
        Judgement::Clean { undecidable }
        | Judgement::Allowlisted { undecidable }
        | Judgement::Banned { undecidable, .. }
        | Judgement::Observed { undecidable, .. } => {
            if undecidable {
                stats.malformed += 1;
            } else {
                stats.syn_protected += 1;
            }
        }
    }
    match *judgement {
        Judgement::Allowlisted { .. } => stats.allowlisted += 1,
        Judgement::Banned { origin, .. } => {
            let slot = origin as usize % blocker_common::origin::COUNT;
            stats.dropped_packets[slot] += 1;
            stats.dropped_bytes[slot] += frame_len as u64;
        }
        Judgement::Observed { origin, .. } => {
            stats.observed_packets[origin as usize % blocker_common::origin::COUNT] += 1;
        }
        _ => {}
    }
    action
}

// `parse::load` reads packet fields with loads Rust asks to be aligned, which on x86 and arm64
// they need not be (see there); a debug build would check that at run time and trap.
// aya-build builds this crate in release, and nothing else builds it for BPF.
#[cfg(all(target_arch = "bpf", debug_assertions))]
compile_error!("build the XDP program in release (aya-build does): see parse::load");

// Only for the BPF target: a host build (clippy over the workspace) links std through
// blocker-common's `user` feature, and std has its own.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
