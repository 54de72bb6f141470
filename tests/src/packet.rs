//! Builds Ethernet frames for the XDP tests: VLAN tags, IPv4 with options and fragments,
//! IPv6 with extension headers, TCP and UDP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88A8;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// An IPv6 extension header, by the length field it carries.
#[derive(Clone, Debug)]
pub enum Ext {
    HopByHop(u8),
    Routing(u8),
    DestOpts(u8),
    Fragment { offset: u16, more: bool },
    Ah(u8),
}

impl Ext {
    fn protocol(&self) -> u8 {
        match self {
            Ext::HopByHop(_) => 0,
            Ext::Routing(_) => 43,
            Ext::DestOpts(_) => 60,
            Ext::Fragment { .. } => 44,
            Ext::Ah(_) => 51,
        }
    }

    fn bytes(&self, next: u8) -> Vec<u8> {
        match *self {
            Ext::HopByHop(len) | Ext::Routing(len) | Ext::DestOpts(len) => {
                let mut b = vec![0u8; (usize::from(len) + 1) * 8];
                b[0] = next;
                b[1] = len;
                b
            }
            Ext::Ah(len) => {
                let mut b = vec![0u8; (usize::from(len) + 2) * 4];
                b[0] = next;
                b[1] = len;
                b
            }
            Ext::Fragment { offset, more } => {
                let field = (offset << 3) | u16::from(more);
                let mut b = vec![next, 0, 0, 0, 0, 0, 0x12, 0x34];
                b[2..4].copy_from_slice(&field.to_be_bytes());
                b
            }
        }
    }
}

/// The network layer of a frame.
#[derive(Clone, Debug)]
pub enum Net {
    V4 {
        src: Ipv4Addr,
        options: Vec<u8>,
        frag_offset: u16,
        more_fragments: bool,
        protocol: u8,
        payload: Vec<u8>,
        /// Overrides the header's total length (e.g. shorter than the frame: padding).
        total_len: Option<u16>,
    },
    V6 {
        src: Ipv6Addr,
        exts: Vec<Ext>,
        protocol: u8,
        payload: Vec<u8>,
        payload_len: Option<u16>,
    },
    Other {
        ether_type: u16,
        payload: Vec<u8>,
    },
}

/// An Ethernet frame under construction.
#[derive(Clone, Debug)]
pub struct Frame {
    /// TPIDs of the VLAN tags, outermost first; `vid` is the VLAN ID of every tag.
    pub vlans: Vec<u16>,
    pub vid: u16,
    pub net: Net,
    /// Extra bytes after the datagram (Ethernet padding, or junk).
    pub trailer: Vec<u8>,
}

pub const MAIL_HOST_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 250);
pub const MAIL_HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xfeed, 0, 0, 0, 0, 25);

/// A 20-byte TCP header.
#[must_use]
pub fn tcp(dport: u16, flags: u8) -> Vec<u8> {
    let mut b = vec![0u8; 20];
    b[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    b[2..4].copy_from_slice(&dport.to_be_bytes());
    b[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    b[12] = 5 << 4;
    b[13] = flags;
    b[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    b
}

/// An 8-byte UDP header.
#[must_use]
pub fn udp(dport: u16) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    b[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    b[2..4].copy_from_slice(&dport.to_be_bytes());
    b[4..6].copy_from_slice(&8u16.to_be_bytes());
    b
}

impl Frame {
    /// A TCP segment from `src` to the mail host with `flags`.
    #[must_use]
    pub fn tcp(src: IpAddr, dport: u16, flags: u8) -> Frame {
        Frame::ip(src, 6, tcp(dport, flags))
    }

    /// A SYN from `src` to the mail host's `dport`.
    #[must_use]
    pub fn syn(src: IpAddr, dport: u16) -> Frame {
        Frame::tcp(src, dport, SYN)
    }

    /// An IP datagram of `protocol` from `src` carrying `payload`.
    #[must_use]
    pub fn ip(src: IpAddr, protocol: u8, payload: Vec<u8>) -> Frame {
        let net = match src {
            IpAddr::V4(src) => Net::V4 {
                src,
                options: Vec::new(),
                frag_offset: 0,
                more_fragments: false,
                protocol,
                payload,
                total_len: None,
            },
            IpAddr::V6(src) => Net::V6 {
                src,
                exts: Vec::new(),
                protocol,
                payload,
                payload_len: None,
            },
        };
        Frame {
            vlans: Vec::new(),
            vid: 0,
            net,
            trailer: Vec::new(),
        }
    }

    #[must_use]
    pub fn with_vlans(mut self, tpids: &[u16], vid: u16) -> Frame {
        self.vlans = tpids.to_vec();
        self.vid = vid;
        self
    }

    #[must_use]
    pub fn with_exts(mut self, new_exts: Vec<Ext>) -> Frame {
        if let Net::V6 { exts, .. } = &mut self.net {
            *exts = new_exts;
        }
        self
    }

    #[must_use]
    pub fn with_v4_options(mut self, new_options: Vec<u8>) -> Frame {
        if let Net::V4 { options, .. } = &mut self.net {
            *options = new_options;
        }
        self
    }

    /// Makes an IPv4 datagram a fragment at `offset` (8-byte units).
    #[must_use]
    pub fn with_v4_fragment(mut self, offset: u16, more: bool) -> Frame {
        if let Net::V4 {
            frag_offset,
            more_fragments,
            ..
        } = &mut self.net
        {
            *frag_offset = offset;
            *more_fragments = more;
        }
        self
    }

    /// Cuts the L4 payload to `len` bytes, keeping the IP lengths consistent.
    #[must_use]
    pub fn with_payload_len(mut self, len: usize) -> Frame {
        match &mut self.net {
            Net::V4 { payload, .. } | Net::V6 { payload, .. } | Net::Other { payload, .. } => {
                payload.truncate(len);
            }
        }
        self
    }

    #[must_use]
    pub fn with_trailer(mut self, trailer: Vec<u8>) -> Frame {
        self.trailer = trailer;
        self
    }

    /// The frame's bytes.
    #[must_use]
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02]);
        for &tpid in &self.vlans {
            b.extend_from_slice(&tpid.to_be_bytes());
            b.extend_from_slice(&(self.vid & 0x0FFF).to_be_bytes());
        }
        match &self.net {
            Net::V4 {
                src,
                options,
                frag_offset,
                more_fragments,
                protocol,
                payload,
                total_len,
            } => {
                b.extend_from_slice(&0x0800u16.to_be_bytes());
                let header_len = 20 + options.len();
                let ihl = u8::try_from(header_len / 4).expect("IPv4 header fits IHL");
                let total = total_len
                    .unwrap_or(u16::try_from(header_len + payload.len()).expect("fits u16"));
                let frag = (frag_offset & 0x1FFF) | if *more_fragments { 0x2000 } else { 0 };
                let mut ip = vec![0x40 | ihl, 0];
                ip.extend_from_slice(&total.to_be_bytes());
                ip.extend_from_slice(&[0x12, 0x34]);
                ip.extend_from_slice(&frag.to_be_bytes());
                ip.extend_from_slice(&[64, *protocol, 0, 0]);
                ip.extend_from_slice(&src.octets());
                ip.extend_from_slice(&MAIL_HOST_V4.octets());
                ip.extend_from_slice(options);
                let sum = checksum(&ip);
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
                b.extend_from_slice(&ip);
                b.extend_from_slice(payload);
            }
            Net::V6 {
                src,
                exts,
                protocol,
                payload,
                payload_len,
            } => {
                b.extend_from_slice(&0x86DDu16.to_be_bytes());
                let mut chain = Vec::new();
                for (i, ext) in exts.iter().enumerate() {
                    let next = exts.get(i + 1).map_or(*protocol, Ext::protocol);
                    chain.extend(ext.bytes(next));
                }
                let first = exts.first().map_or(*protocol, Ext::protocol);
                let plen = payload_len
                    .unwrap_or(u16::try_from(chain.len() + payload.len()).expect("fits u16"));
                b.extend_from_slice(&[0x60, 0, 0, 0]);
                b.extend_from_slice(&plen.to_be_bytes());
                b.extend_from_slice(&[first, 64]);
                b.extend_from_slice(&src.octets());
                b.extend_from_slice(&MAIL_HOST_V6.octets());
                b.extend_from_slice(&chain);
                b.extend_from_slice(payload);
            }
            Net::Other {
                ether_type,
                payload,
            } => {
                b.extend_from_slice(&ether_type.to_be_bytes());
                b.extend_from_slice(payload);
            }
        }
        b.extend_from_slice(&self.trailer);
        b
    }
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded")
}
