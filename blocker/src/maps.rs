//! The XDP program's maps, typed: bans, allow list, protected ports, settings and counters.
//!
//! Single addresses (/32, /128) go to a hash, every shorter prefix to an LPM trie; callers
//! speak `IpNet` and never see the split.

use std::net::IpAddr;

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, lpm_trie::Key},
};
use blocker_common::{AllowEntry, BanEntry, FamilyStats, PORT_WORDS, Settings, family, flags, map};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("the XDP object has no map named {name}")]
    Missing { name: &'static str },
    #[error(
        "cannot open the pinned map {path} (is blocker running, or was it ever started with this bpffs_dir?)"
    )]
    Pinned {
        path: std::path::PathBuf,
        #[source]
        source: MapError,
    },
    #[error("map {name}: {action} failed")]
    Map {
        name: &'static str,
        action: &'static str,
        #[source]
        source: MapError,
    },
}

fn op(name: &'static str, action: &'static str) -> impl FnOnce(MapError) -> MapsError {
    move |source| MapsError::Map {
        name,
        action,
        source,
    }
}

/// A ban as the kernel holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    pub net: IpNet,
    pub expires_at_ns: u64,
    pub origin: u32,
}

/// Handles on every map of a loaded (or pinned) program.
pub struct KernelMaps {
    v4_addrs: HashMap<MapData, [u8; 4], BanEntry>,
    v4_ranges: LpmTrie<MapData, [u8; 4], BanEntry>,
    v6_addrs: HashMap<MapData, [u8; 16], BanEntry>,
    v6_ranges: LpmTrie<MapData, [u8; 16], BanEntry>,
    allow_v4: LpmTrie<MapData, [u8; 4], AllowEntry>,
    allow_v6: LpmTrie<MapData, [u8; 16], AllowEntry>,
    ports: Array<MapData, u64>,
    settings: Array<MapData, Settings>,
    stats: PerCpuArray<MapData, FamilyStats>,
}

fn take<T: TryFrom<Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, MapsError> {
    let map = ebpf.take_map(name).ok_or(MapsError::Missing { name })?;
    T::try_from(map).map_err(op(name, "open"))
}

impl KernelMaps {
    /// Takes the maps out of a freshly loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, MapsError> {
        Ok(Self {
            v4_addrs: take(ebpf, map::BANNED_V4_ADDRS)?,
            v4_ranges: take(ebpf, map::BANNED_V4_RANGES)?,
            v6_addrs: take(ebpf, map::BANNED_V6_ADDRS)?,
            v6_ranges: take(ebpf, map::BANNED_V6_RANGES)?,
            allow_v4: take(ebpf, map::ALLOW_V4)?,
            allow_v6: take(ebpf, map::ALLOW_V6)?,
            ports: take(ebpf, map::PROTECTED_PORTS)?,
            settings: take(ebpf, map::SETTINGS)?,
            stats: take(ebpf, map::STATS)?,
        })
    }

    /// Opens the maps a daemon pinned in `dir` (for `status`, `list`, `check`; works whether
    /// the daemon runs or not).
    pub fn from_pins(dir: &std::path::Path) -> Result<Self, MapsError> {
        fn open<T: TryFrom<Map, Error = MapError>>(
            dir: &std::path::Path,
            name: &'static str,
            wrap: fn(MapData) -> Map,
        ) -> Result<T, MapsError> {
            let path = dir.join(name);
            let data = MapData::from_pin(&path).map_err(|source| MapsError::Pinned {
                path: path.clone(),
                source,
            })?;
            T::try_from(wrap(data)).map_err(op(name, "open"))
        }
        Ok(Self {
            v4_addrs: open(dir, map::BANNED_V4_ADDRS, Map::HashMap)?,
            v4_ranges: open(dir, map::BANNED_V4_RANGES, Map::LpmTrie)?,
            v6_addrs: open(dir, map::BANNED_V6_ADDRS, Map::HashMap)?,
            v6_ranges: open(dir, map::BANNED_V6_RANGES, Map::LpmTrie)?,
            allow_v4: open(dir, map::ALLOW_V4, Map::LpmTrie)?,
            allow_v6: open(dir, map::ALLOW_V6, Map::LpmTrie)?,
            ports: open(dir, map::PROTECTED_PORTS, Map::Array)?,
            settings: open(dir, map::SETTINGS, Map::Array)?,
            stats: open(dir, map::STATS, Map::PerCpuArray)?,
        })
    }

    /// Bans `net` until `expires_at_ns` (the program's monotonic clock, see `clock`; `u64::MAX` for ever). Replaces any entry
    /// for the same prefix in one update, so the prefix is never absent meanwhile.
    pub fn insert_ban(&mut self, ban: Ban) -> Result<(), MapsError> {
        let entry = BanEntry {
            expires_at_ns: ban.expires_at_ns,
            origin: ban.origin,
            prefix_len: u32::from(ban.net.prefix_len()),
        };
        match ban.net {
            IpNet::V4(n) if n.prefix_len() == 32 => self
                .v4_addrs
                .insert(n.addr().octets(), entry, 0)
                .map_err(op(map::BANNED_V4_ADDRS, "insert")),
            IpNet::V4(n) => self
                .v4_ranges
                .insert(&Key::new(entry.prefix_len, n.network().octets()), entry, 0)
                .map_err(op(map::BANNED_V4_RANGES, "insert")),
            IpNet::V6(n) if n.prefix_len() == 128 => self
                .v6_addrs
                .insert(n.addr().octets(), entry, 0)
                .map_err(op(map::BANNED_V6_ADDRS, "insert")),
            IpNet::V6(n) => self
                .v6_ranges
                .insert(&Key::new(entry.prefix_len, n.network().octets()), entry, 0)
                .map_err(op(map::BANNED_V6_RANGES, "insert")),
        }
    }

    /// Lifts the ban on exactly `net`. Lifting one that is not there is not an error: LAPI
    /// repeats deletions.
    pub fn remove_ban(&mut self, net: IpNet) -> Result<(), MapsError> {
        let len = u32::from(net.prefix_len());
        let result = match net {
            IpNet::V4(n) if len == 32 => self
                .v4_addrs
                .remove(&n.addr().octets())
                .map_err(op(map::BANNED_V4_ADDRS, "remove")),
            IpNet::V4(n) => self
                .v4_ranges
                .remove(&Key::new(len, n.network().octets()))
                .map_err(op(map::BANNED_V4_RANGES, "remove")),
            IpNet::V6(n) if len == 128 => self
                .v6_addrs
                .remove(&n.addr().octets())
                .map_err(op(map::BANNED_V6_ADDRS, "remove")),
            IpNet::V6(n) => self
                .v6_ranges
                .remove(&Key::new(len, n.network().octets()))
                .map_err(op(map::BANNED_V6_RANGES, "remove")),
        };
        match result {
            Err(MapsError::Map {
                source: MapError::KeyNotFound,
                ..
            }) => Ok(()),
            other => other,
        }
    }

    /// Every ban the kernel holds, expired ones included.
    pub fn bans(&self) -> Result<Vec<Ban>, MapsError> {
        let mut bans = Vec::new();
        let ban = |net: IpNet, e: BanEntry| Ban {
            net,
            expires_at_ns: e.expires_at_ns,
            origin: e.origin,
        };
        for item in &self.v4_addrs {
            let (addr, e) = item.map_err(op(map::BANNED_V4_ADDRS, "iterate"))?;
            bans.push(ban(
                IpNet::V4(Ipv4Net::from(std::net::Ipv4Addr::from(addr))),
                e,
            ));
        }
        for item in &self.v6_addrs {
            let (addr, e) = item.map_err(op(map::BANNED_V6_ADDRS, "iterate"))?;
            bans.push(ban(
                IpNet::V6(Ipv6Net::from(std::net::Ipv6Addr::from(addr))),
                e,
            ));
        }
        for item in &self.v4_ranges {
            let (key, e) = item.map_err(op(map::BANNED_V4_RANGES, "iterate"))?;
            bans.push(ban(net_of(IpAddr::from(key.data()), key.prefix_len()), e));
        }
        for item in &self.v6_ranges {
            let (key, e) = item.map_err(op(map::BANNED_V6_RANGES, "iterate"))?;
            bans.push(ban(net_of(IpAddr::from(key.data()), key.prefix_len()), e));
        }
        Ok(bans)
    }

    /// Allow-lists `net`: a SYN from it is never dropped, whatever bans cover it.
    pub fn insert_allow(&mut self, net: IpNet) -> Result<(), MapsError> {
        let len = u32::from(net.prefix_len());
        let entry = AllowEntry { prefix_len: len };
        match net {
            IpNet::V4(n) => self
                .allow_v4
                .insert(&Key::new(len, n.network().octets()), entry, 0)
                .map_err(op(map::ALLOW_V4, "insert")),
            IpNet::V6(n) => self
                .allow_v6
                .insert(&Key::new(len, n.network().octets()), entry, 0)
                .map_err(op(map::ALLOW_V6, "insert")),
        }?;
        self.mark_allow_lists()
    }

    /// Tells the program which allow lists hold anything (it skips empty ones).
    fn mark_allow_lists(&mut self) -> Result<(), MapsError> {
        let mut settings = self.settings()?;
        settings.flags &= !(flags::ALLOW_V4 | flags::ALLOW_V6);
        if self.allow_v4.keys().next().is_some() {
            settings.flags |= flags::ALLOW_V4;
        }
        if self.allow_v6.keys().next().is_some() {
            settings.flags |= flags::ALLOW_V6;
        }
        self.settings
            .set(0, settings, 0)
            .map_err(op(map::SETTINGS, "set"))
    }

    /// Removes exactly `net` from the allow list; absent is fine.
    pub fn remove_allow(&mut self, net: IpNet) -> Result<(), MapsError> {
        let len = u32::from(net.prefix_len());
        let result = match net {
            IpNet::V4(n) => self
                .allow_v4
                .remove(&Key::new(len, n.network().octets()))
                .map_err(op(map::ALLOW_V4, "remove")),
            IpNet::V6(n) => self
                .allow_v6
                .remove(&Key::new(len, n.network().octets()))
                .map_err(op(map::ALLOW_V6, "remove")),
        };
        match result {
            Err(MapsError::Map {
                source: MapError::KeyNotFound,
                ..
            }) => Ok(()),
            other => other,
        }?;
        self.mark_allow_lists()
    }

    /// The allow-listed prefixes.
    pub fn allows(&self) -> Result<Vec<IpNet>, MapsError> {
        let mut nets = Vec::new();
        for key in self.allow_v4.keys() {
            let key = key.map_err(op(map::ALLOW_V4, "iterate"))?;
            nets.push(net_of(IpAddr::from(key.data()), key.prefix_len()));
        }
        for key in self.allow_v6.keys() {
            let key = key.map_err(op(map::ALLOW_V6, "iterate"))?;
            nets.push(net_of(IpAddr::from(key.data()), key.prefix_len()));
        }
        Ok(nets)
    }

    /// Makes exactly `ports` the protected set.
    pub fn set_ports(&mut self, ports: &[u16]) -> Result<(), MapsError> {
        let mut words = [0u64; PORT_WORDS as usize];
        for &port in ports {
            words[usize::from(port >> 6)] |= 1 << (port & 63);
        }
        for (index, word) in (0..PORT_WORDS).zip(words) {
            self.ports
                .set(index, word, 0)
                .map_err(op(map::PROTECTED_PORTS, "set"))?;
        }
        Ok(())
    }

    /// The protected ports, ascending.
    pub fn ports(&self) -> Result<Vec<u16>, MapsError> {
        let mut ports = Vec::new();
        for index in 0..PORT_WORDS {
            let word = self
                .ports
                .get(&index, 0)
                .map_err(op(map::PROTECTED_PORTS, "get"))?;
            for bit in 0..64 {
                if word >> bit & 1 != 0 {
                    ports.push(u16::try_from(index * 64 + bit).expect("port fits u16"));
                }
            }
        }
        Ok(ports)
    }

    /// Observe mode: count would-be drops instead of dropping.
    pub fn set_observe(&mut self, observe: bool) -> Result<(), MapsError> {
        let mut settings = self.settings()?;
        settings.flags = if observe {
            settings.flags | flags::OBSERVE
        } else {
            settings.flags & !flags::OBSERVE
        };
        self.settings
            .set(0, settings, 0)
            .map_err(op(map::SETTINGS, "set"))
    }

    pub fn settings(&self) -> Result<Settings, MapsError> {
        self.settings.get(&0, 0).map_err(op(map::SETTINGS, "get"))
    }

    /// The counters of each family (`family::*` order), summed over CPUs.
    pub fn stats(&self) -> Result<[FamilyStats; family::COUNT as usize], MapsError> {
        let mut out = [FamilyStats::default(); family::COUNT as usize];
        for (index, total) in (0..family::COUNT).zip(out.iter_mut()) {
            let per_cpu = self.stats.get(&index, 0).map_err(op(map::STATS, "get"))?;
            for cpu in per_cpu.iter() {
                add_stats(total, cpu);
            }
        }
        Ok(out)
    }
}

fn add_stats(total: &mut FamilyStats, more: &FamilyStats) {
    total.seen += more.seen;
    total.syn_protected += more.syn_protected;
    total.allowlisted += more.allowlisted;
    total.malformed += more.malformed;
    for slot in 0..blocker_common::origin::COUNT {
        total.dropped_packets[slot] += more.dropped_packets[slot];
        total.dropped_bytes[slot] += more.dropped_bytes[slot];
        total.observed_packets[slot] += more.observed_packets[slot];
    }
}

fn net_of(addr: IpAddr, prefix_len: u32) -> IpNet {
    let len = u8::try_from(prefix_len).expect("the kernel keeps prefix lengths <= 128");
    IpNet::new(addr, len).expect("the kernel keeps prefix lengths within the family")
}
