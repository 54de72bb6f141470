//! Which XDP program holds an interface's hook, as the kernel tells it over rtnetlink
//! (`RTM_GETLINK`, attribute `IFLA_XDP`): what `ip link show` prints as `prog/xdp id N`.
//!
//! A BPF link shows only the programs attached through links; most tools (iproute2, libbpf's
//! `bpf_xdp_attach`, libxdp) attach over netlink instead, and only this query sees those. aya
//! keeps its netlink code to itself, so the one request is spelled out here.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// The program on an interface's XDP hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpHook {
    pub program_id: u32,
    /// `native`, `generic`, `offloaded`, or `several modes` (then `program_id` is one of them).
    pub mode: &'static str,
}

// From `linux/rtnetlink.h`, `linux/netlink.h` and `linux/if_link.h`.
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLA_TYPE_MASK: u16 = 0x3fff;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
/// `struct nlmsghdr`, then `struct ifinfomsg`: where a link message's attributes start.
const HEADERS: usize = 16 + 16;

/// `struct nlmsghdr` and `struct ifinfomsg`: a `RTM_GETLINK` request for one interface.
#[repr(C)]
struct GetLink {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    port: u32,
    family: u8,
    pad: u8,
    link_type: u16,
    index: i32,
    link_flags: u32,
    change: u32,
}

/// The program on the XDP hook of the interface with index `ifindex` (in this network
/// namespace), if any.
pub fn xdp_hook(ifindex: u32) -> io::Result<Option<XdpHook>> {
    // SAFETY: plain socket creation; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just opened it for us.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let request = GetLink {
        len: u32::try_from(size_of::<GetLink>()).map_err(io::Error::other)?,
        kind: RTM_GETLINK,
        flags: NLM_F_REQUEST,
        seq: 1,
        port: 0,
        family: 0,
        pad: 0,
        link_type: 0,
        index: i32::try_from(ifindex).map_err(io::Error::other)?,
        link_flags: 0,
        change: 0,
    };
    // An unconnected netlink socket sends to the kernel.
    // SAFETY: `request` is `size_of::<GetLink>()` readable bytes.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            (&raw const request).cast(),
            size_of::<GetLink>(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    // A link's message carries its statistics and every other attribute: a few kB, and room
    // to spare.
    let mut reply = vec![0u8; 64 << 10];
    // SAFETY: `reply` is writable for its length.
    let received = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            reply.as_mut_ptr().cast(),
            reply.len(),
            0,
        )
    };
    let received = usize::try_from(received).map_err(|_| io::Error::last_os_error())?;
    parse_reply(&reply[..received])
}

/// The XDP hook in the kernel's answer to [`xdp_hook`]'s request.
fn parse_reply(reply: &[u8]) -> io::Result<Option<XdpHook>> {
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("rtnetlink: {what}"));
    let u16_at = |at: usize| {
        reply
            .get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        reply
            .get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let len = u32_at(0).ok_or_else(|| invalid("a short answer"))? as usize;
    let message = reply.get(..len).ok_or_else(|| invalid("a cut answer"))?;
    match u16_at(4) {
        Some(NLMSG_ERROR) => {
            // `struct nlmsgerr`: the negative errno first.
            let errno = u32_at(16)
                .ok_or_else(|| invalid("a short error"))?
                .cast_signed();
            return Err(io::Error::from_raw_os_error(-errno));
        }
        Some(RTM_NEWLINK) => {}
        other => return Err(invalid(&format!("message type {other:?}, not a link"))),
    }
    let Some(xdp) = attributes(message.get(HEADERS..).unwrap_or_default())
        .find_map(|(kind, payload)| (kind == IFLA_XDP).then_some(payload))
    else {
        return Ok(None);
    };
    let (mut attached, mut ids) = (0u8, [0u32; 4]);
    for (kind, payload) in attributes(xdp) {
        let id = || {
            payload
                .get(..4)
                .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        match kind {
            IFLA_XDP_ATTACHED => attached = payload.first().copied().unwrap_or(0),
            IFLA_XDP_PROG_ID => ids[0] = id(),
            IFLA_XDP_DRV_PROG_ID => ids[1] = id(),
            IFLA_XDP_SKB_PROG_ID => ids[2] = id(),
            IFLA_XDP_HW_PROG_ID => ids[3] = id(),
            _ => {}
        }
    }
    // `XDP_ATTACHED_*`: none, driver, generic (skb), hardware, several.
    let mode = match attached {
        0 => return Ok(None),
        1 => "native",
        2 => "generic",
        3 => "offloaded",
        _ => "several modes",
    };
    let program_id = ids.into_iter().find(|&id| id != 0).unwrap_or(0);
    Ok(Some(XdpHook { program_id, mode }))
}

/// The `(type, payload)` of each netlink attribute in `bytes` (each 4-byte aligned).
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]));
        let kind = u16::from_ne_bytes([*bytes.get(2)?, *bytes.get(3)?]) & NLA_TYPE_MASK;
        let payload = bytes.get(4..len)?;
        bytes = bytes.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(4 + payload.len()).unwrap();
        let mut out = [len.to_ne_bytes(), kind.to_ne_bytes()].concat();
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    fn link_message(attributes: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = attributes.concat();
        let len = u32::try_from(HEADERS + body.len()).unwrap();
        let mut out = len.to_ne_bytes().to_vec();
        out.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        out.resize(HEADERS, 0);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn reads_the_program_and_its_mode() {
        let name = attribute(3, b"eth0\0");
        let xdp = |attached: u8, ids: &[(u16, u32)]| {
            let mut nested = attribute(IFLA_XDP_ATTACHED, &[attached]);
            for &(kind, id) in ids {
                nested.extend(attribute(kind, &id.to_ne_bytes()));
            }
            // The kernel marks nested attributes (NLA_F_NESTED).
            attribute(IFLA_XDP | 0x8000, &nested)
        };
        let cases = [
            (
                xdp(1, &[(IFLA_XDP_PROG_ID, 42), (IFLA_XDP_DRV_PROG_ID, 42)]),
                Some((42, "native")),
            ),
            (
                xdp(2, &[(IFLA_XDP_PROG_ID, 7), (IFLA_XDP_SKB_PROG_ID, 7)]),
                Some((7, "generic")),
            ),
            (
                xdp(4, &[(IFLA_XDP_SKB_PROG_ID, 9), (IFLA_XDP_HW_PROG_ID, 3)]),
                Some((9, "several modes")),
            ),
            (xdp(0, &[]), None),
        ];
        for (xdp, want) in cases {
            let reply = link_message(&[name.clone(), xdp]);
            let got = parse_reply(&reply).unwrap().map(|h| (h.program_id, h.mode));
            assert_eq!(got, want);
        }
        // A kernel without XDP support sends no IFLA_XDP at all.
        assert_eq!(parse_reply(&link_message(&[name])).unwrap(), None);
    }

    #[test]
    fn an_error_answer_is_its_errno_and_garbage_is_refused() {
        let mut error = 36u32.to_ne_bytes().to_vec();
        error.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error.resize(16, 0);
        error.extend_from_slice(&(-libc::ENODEV).to_ne_bytes());
        error.resize(36, 0);
        let e = parse_reply(&error).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        assert!(parse_reply(&[1, 2]).is_err());
        let mut cut = link_message(&[attribute(IFLA_XDP, &[1, 2, 3, 4])]);
        cut.truncate(cut.len() - 2);
        assert!(parse_reply(&cut).is_err());
    }
}
