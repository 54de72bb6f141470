//! Header parsing, after xdp-tools' `parsing_helpers.h`: a cursor over the frame and one
//! small parser per header, each bounds check right before the read it guards.
//!
//! Two limits bound the reads. `end`, the frame's end, bounds every one: the verifier only
//! accepts packet reads checked against it. `ip_left`, what the IP header says the datagram
//! holds, also bounds what follows the IP header: Linux trims the frame to that length, so
//! bytes past it (Ethernet padding of a tiny fragment, say) must never be read as TCP
//! flags. They are kept as two separate checks on purpose: a single `min` would let LLVM
//! fold away the `end` check the verifier needs.

use blocker_common::family;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
/// 802.1Q inside 802.1ad (QinQ) is the most Linux accepts without stacked VLAN devices.
pub const VLAN_MAX_DEPTH: usize = 2;
/// IPv6 extension headers walked before giving up. A longer chain from a banned source is
/// treated like a cut-short fragment (dropped), so it cannot be used to hide a SYN.
pub const IPV6_EXT_MAX_CHAIN: usize = 8;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_DSTOPTS: u8 = 60;

pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Where the source address lies in the frame. It is read only once the packet turns out to
/// be a SYN worth judging (or an undecidable one), so the bulk of the traffic, which is not,
/// never pays for copying it. A raw pointer, not a reference, on purpose: LLVM may load
/// through a reference wherever it likes, and did, copying all 16 bytes of an IPv6 source to
/// the stack before even looking at the TCP flags.
#[derive(Clone, Copy)]
enum SourceAt {
    V4(*const [u8; 4]),
    V6(*const [u8; 16]),
}

impl SourceAt {
    /// The address, read out of the frame. The lookups get no pointer into the frame, on
    /// purpose: the verifier checks what follows parsing once per distinct state it arrives
    /// in, and what it has proven about a pointer into the frame (how much of the frame is
    /// checked past it) differs along every IPv6 extension chain, which made those all
    /// distinct. Judged through a pointer, the program took 936,107 instructions to verify,
    /// of the million the kernel allows (kernel 6.18); `blocker` keeps the frame's own
    /// pointers out of the lookups too.
    #[inline(always)]
    fn read(self) -> Source {
        // SAFETY (both): the parser bounds-checked the IP header that holds the address.
        match self {
            SourceAt::V4(at) => Source::V4(unsafe { load(at.cast()) }),
            SourceAt::V6(at) => Source::V6(unsafe { load(at.cast()) }),
        }
    }
}

/// The source address of a packet to judge, as the ban maps key it: the frame's bytes, as
/// 32-bit words in the machine's byte order (`blocker_common::table::words`).
#[derive(Clone, Copy)]
pub enum Source {
    V4(u32),
    V6([u32; 4]),
}

/// What parsing found out about a packet.
pub enum Parsed {
    /// Not a TCP SYN to a protected port, or not ours to judge (not IP, not TCP, a non-first
    /// fragment): passes at no lookup cost.
    Ignored,
    /// Headers truncated or invalid; passes (Linux drops most of these itself) and is counted.
    Malformed,
    /// A SYN to a protected port: the source must be looked up.
    Syn(Source),
    /// The TCP header cannot be read (a first fragment cut short, or an IPv6 extension chain
    /// longer than we walk), and what can be read does not clear it: the source is looked up
    /// and a banned one is dropped, since Linux would reassemble and answer it.
    Undecidable(Source),
}

/// A packet, classified, with the family its counters go to.
pub struct Classified {
    pub family: u32,
    pub parsed: Parsed,
}

struct Truncated;

struct Cursor {
    pos: usize,
    end: usize,
    /// Bytes left in the IP datagram, once an IP header has said how long it is. Only what
    /// follows the IP header is read against it ([`Cursor::take`], [`Cursor::skip`]).
    ip_left: usize,
}

impl Cursor {
    /// Takes the next `N` bytes of the link or IP header, or fails if the frame ends first.
    #[inline(always)]
    fn take_header<const N: usize>(&mut self) -> Result<&'static [u8; N], Truncated> {
        if self.pos + N > self.end {
            return Err(Truncated);
        }
        // SAFETY: `pos..pos + N` lies inside the frame, checked just above.
        let bytes = unsafe { &*(self.pos as *const [u8; N]) };
        self.pos += N;
        Ok(bytes)
    }

    /// Skips `len` bytes of the IP header (its options).
    #[inline(always)]
    fn skip_header(&mut self, len: usize) -> Result<(), Truncated> {
        if self.pos + len > self.end {
            return Err(Truncated);
        }
        self.pos += len;
        Ok(())
    }

    /// Takes the next `N` bytes after the IP header, or fails (and stays put) if the datagram
    /// or the frame ends first.
    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<&'static [u8; N], Truncated> {
        if N > self.ip_left {
            return Err(Truncated);
        }
        let bytes = self.take_header::<N>()?;
        self.ip_left -= N;
        Ok(bytes)
    }

    /// Skips `len` bytes after the IP header (an extension header's variable part).
    #[inline(always)]
    fn skip(&mut self, len: usize) -> Result<(), Truncated> {
        if len > self.ip_left {
            return Err(Truncated);
        }
        self.skip_header(len)?;
        self.ip_left -= len;
        Ok(())
    }

    /// Limits the rest of the read to what the IP header says the datagram holds.
    #[inline(always)]
    fn limit_to(&mut self, ip_payload: usize) {
        self.ip_left = ip_payload;
    }
}

/// Where the `N` bytes at `AT` of a header already taken lie (`AT + N <= H`, checked at
/// compile time), for a later read.
#[inline(always)]
fn field<const H: usize, const AT: usize, const N: usize>(
    header: &'static [u8; H],
) -> *const [u8; N] {
    const { assert!(AT + N <= H) };
    // SAFETY: inside `header`, which lies inside the frame.
    unsafe { header.as_ptr().add(AT).cast::<[u8; N]>() }
}

/// One load of a `T` at `at`, which the caller has bounds-checked.
///
/// A single 2- or 4-byte load, as C's `ntohs(iph->tot_len)` is: LLVM turns an unaligned read
/// into byte loads and shifts for BPF. Every field read this way sits at its natural alignment
/// counting from the IP header (Ethernet and VLAN headers keep 2-byte alignment, IPv4 options
/// and IPv6 extension headers keep 4), which is what the verifier checks of packet loads on an
/// architecture that needs aligned ones (counting from `NET_IP_ALIGN`), so there the program
/// loads only where the hardware can. Where the kernel does not check, as on x86 and arm64, a
/// frame may start anywhere (on x86 the IP header usually sits 2 bytes past a 4-byte
/// boundary) and the load is a misaligned one, which those CPUs do in one go: the same load a
/// C program makes through `struct iphdr *`.
///
/// # Safety
/// `at..at + size_of::<T>()` lies inside the frame.
#[inline(always)]
pub unsafe fn load<T: Copy>(at: *const u8) -> T {
    // SAFETY: inside the frame (the caller's promise); alignment as above.
    unsafe { at.cast::<T>().read() }
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    // SAFETY: inside `b`, which lies inside the frame.
    u16::from_be(unsafe { load(b.as_ptr().add(at)) })
}

/// Classifies the frame `data..end`; `is_protected` says whether a TCP port is protected.
#[inline(always)]
pub fn classify(data: usize, end: usize, is_protected: impl Fn(u16) -> bool) -> Classified {
    let mut cur = Cursor {
        pos: data,
        end,
        ip_left: usize::MAX,
    };
    let Ok(ether_type) = ethernet(&mut cur) else {
        return Classified {
            family: family::OTHER,
            parsed: Parsed::Malformed,
        };
    };
    match ether_type {
        ETH_P_IP => Classified {
            family: family::IPV4,
            parsed: ipv4(&mut cur, &is_protected),
        },
        ETH_P_IPV6 => Classified {
            family: family::IPV6,
            parsed: ipv6(&mut cur, &is_protected),
        },
        _ => Classified {
            family: family::OTHER,
            parsed: Parsed::Ignored,
        },
    }
}

/// Ethernet II and up to two VLAN tags (any VID, 0 included: priority-tagged frames are
/// accepted by Linux on any interface). Returns the inner EtherType.
#[inline(always)]
fn ethernet(cur: &mut Cursor) -> Result<u16, Truncated> {
    let eth = cur.take_header::<14>()?;
    let mut ether_type = be16(eth, 12);
    for _ in 0..VLAN_MAX_DEPTH {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let tag = cur.take_header::<4>()?;
        ether_type = be16(tag, 2);
    }
    Ok(ether_type)
}

#[inline(always)]
fn ipv4(cur: &mut Cursor, is_protected: &impl Fn(u16) -> bool) -> Parsed {
    let Ok(ip) = cur.take_header::<20>() else {
        return Parsed::Malformed;
    };
    let version = ip[0] >> 4;
    let header_len = usize::from(ip[0] & 0x0F) * 4;
    let total_len = usize::from(be16(ip, 2));
    let frag = be16(ip, 6);
    let protocol = ip[9];
    let source = SourceAt::V4(field::<20, 12, 4>(ip));
    if version != 4 || header_len < 20 || total_len < header_len {
        return Parsed::Malformed;
    }
    if cur.skip_header(header_len - 20).is_err() {
        return Parsed::Malformed;
    }
    cur.limit_to(total_len - header_len);
    if protocol != IPPROTO_TCP {
        return Parsed::Ignored;
    }
    let offset = frag & 0x1FFF;
    if offset != 0 {
        // A later fragment carries no TCP header, and without the first one it cannot be
        // reassembled into anything.
        return Parsed::Ignored;
    }
    let first_fragment = frag & 0x2000 != 0;
    tcp(cur, source, first_fragment, is_protected)
}

#[inline(always)]
fn ipv6(cur: &mut Cursor, is_protected: &impl Fn(u16) -> bool) -> Parsed {
    let Ok(ip) = cur.take_header::<40>() else {
        return Parsed::Malformed;
    };
    if ip[0] >> 4 != 6 {
        return Parsed::Malformed;
    }
    let payload_len = usize::from(be16(ip, 4));
    let mut next = ip[6];
    let source = SourceAt::V6(field::<40, 8, 16>(ip));
    // 0 means a jumbogram, whose length is in a hop-by-hop option: the frame bounds it.
    if payload_len != 0 {
        cur.limit_to(payload_len);
    }
    // Most TCP over IPv6 carries no extension header: it goes straight to the TCP header,
    // sparing every such packet the walk's match.
    if next == IPPROTO_TCP {
        return tcp(cur, source, false, is_protected);
    }
    let mut first_fragment = false;
    for _ in 0..IPV6_EXT_MAX_CHAIN {
        // Each arm reads the header's fixed part and returns the length of the rest.
        let rest = match next {
            IPPROTO_TCP => return tcp(cur, source, first_fragment, is_protected),
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let Ok(ext) = cur.take::<2>() else {
                    return cut_short(source, first_fragment);
                };
                next = ext[0];
                (usize::from(ext[1]) + 1) * 8 - 2
            }
            IPPROTO_AH => {
                let Ok(ext) = cur.take::<2>() else {
                    return cut_short(source, first_fragment);
                };
                next = ext[0];
                (usize::from(ext[1]) + 2) * 4 - 2
            }
            IPPROTO_FRAGMENT => {
                let Ok(frag) = cur.take::<8>() else {
                    return cut_short(source, first_fragment);
                };
                next = frag[0];
                let offset_and_flags = be16(frag, 2);
                if offset_and_flags >> 3 != 0 {
                    // A later fragment: no TCP header in it (see `ipv4`).
                    return Parsed::Ignored;
                }
                first_fragment |= offset_and_flags & 1 != 0;
                0
            }
            // UDP, ICMPv6, ESP, no next header...: not TCP.
            _ => return Parsed::Ignored,
        };
        if cur.skip(rest).is_err() {
            return cut_short(source, first_fragment);
        }
    }
    match next {
        IPPROTO_TCP => tcp(cur, source, first_fragment, is_protected),
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            Parsed::Undecidable(source.read())
        }
        _ => Parsed::Ignored,
    }
}

/// A header after IP ended early: a first fragment may legitimately end anywhere, and Linux
/// reassembles it, so its source is judged; anything else is just malformed.
#[inline(always)]
fn cut_short(source: SourceAt, first_fragment: bool) -> Parsed {
    if first_fragment {
        Parsed::Undecidable(source.read())
    } else {
        Parsed::Malformed
    }
}

/// The TCP header. With the whole fixed header at hand (one read up to the flags byte) the
/// flags go first (most traffic to a mail port is not a SYN, and the flags byte is cheaper
/// than the port bitmap); a cut-short header is judged by its port alone, since an
/// unprotected port clears it.
#[inline(always)]
fn tcp(
    cur: &mut Cursor,
    source: SourceAt,
    first_fragment: bool,
    is_protected: &impl Fn(u16) -> bool,
) -> Parsed {
    // Ports, sequence and acknowledgement numbers, data offset, then the flags byte.
    let Ok(head) = cur.take::<14>() else {
        // Cut short before the flags (the cursor has not moved): judged by its port alone.
        return match cur.take::<4>() {
            Ok(ports) if !is_protected(be16(ports, 2)) => Parsed::Ignored,
            _ => cut_short(source, first_fragment),
        };
    };
    let flags = head[13];
    if flags & TCP_SYN == 0 || flags & (TCP_ACK | TCP_RST) != 0 || !is_protected(be16(head, 2)) {
        return Parsed::Ignored;
    }
    Parsed::Syn(source.read())
}
