//! The XDP program's maps, typed: bans, allow list, protected ports, settings and counters.
//!
//! Single addresses (/32, /128) go to an address table (`table`), every shorter prefix, and an
//! address the table has no room for, to an LPM trie; callers speak `IpNet` and never see the
//! split.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use aya::{
    Ebpf,
    maps::{Array, LpmTrie, Map, MapData, MapError, PerCpuArray, lpm_trie::Key},
};
use blocker_common::{
    AllowEntry, BanEntry, FamilyStats, PORT_WORDS, Settings, family, flags, map, table,
};
use ipnet::IpNet;

use crate::table::{Table, TableError};

mod allow;

use allow::AllowList;

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
    #[error(
        "map {name} is not an address table (pinned by an older blocker? `blocker detach` removes old pins)"
    )]
    NotATable { name: &'static str },
    #[error(
        "the address tables hold entries but the settings map has no hash keys (was its pin removed?); `blocker detach` and restart"
    )]
    KeysLost,
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("map {name}: {action} failed")]
    Map {
        name: &'static str,
        action: &'static str,
        #[source]
        source: MapError,
    },
}

/// Buckets of each address table swept per `sweep_tables` call.
const SWEEP_BUCKETS: u32 = 16_384;

/// The settings' hash keys before the daemon draws them.
const NO_KEYS: table::HashKeys = [0; table::HASH_KEYS];

/// Random hash keys for fresh tables: any but [`NO_KEYS`], which would read as never drawn.
fn draw_keys() -> table::HashKeys {
    loop {
        let keys = rand::random();
        if keys != NO_KEYS {
            return keys;
        }
    }
}

pub(crate) fn op(name: &'static str, action: &'static str) -> impl FnOnce(MapError) -> MapsError {
    move |source| MapsError::Map {
        name,
        action,
        source,
    }
}

/// Removes exactly `net` from the trie of its family (each named for errors); absent is fine.
fn remove_prefix<V: aya::Pod>(
    (v4, v4_name): (&mut LpmTrie<MapData, [u8; 4], V>, &'static str),
    (v6, v6_name): (&mut LpmTrie<MapData, [u8; 16], V>, &'static str),
    net: IpNet,
) -> Result<(), MapsError> {
    let len = u32::from(net.prefix_len());
    let result = match net {
        IpNet::V4(n) => v4
            .remove(&Key::new(len, n.network().octets()))
            .map_err(op(v4_name, "remove")),
        IpNet::V6(n) => v6
            .remove(&Key::new(len, n.network().octets()))
            .map_err(op(v6_name, "remove")),
    };
    match result {
        // aya reports a missing key as the system call's ENOENT.
        Err(MapsError::Map {
            source: MapError::SyscallError(e),
            ..
        }) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// A ban as the kernel holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    pub net: IpNet,
    pub expires_at_ns: u64,
    pub origin: u32,
}

/// How full the address tables are, for `blocker status`: an admin raises `max_addresses`
/// when addresses overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TableUsage {
    pub v4_entries: usize,
    pub v4_slots: usize,
    pub v6_entries: usize,
    pub v6_slots: usize,
    /// Single addresses in the range tries because their table probe was full.
    pub overflowed: usize,
    /// Slots of lifted bans that lookups still walk past, until swept or reused.
    pub tombstones: usize,
}

/// Handles on every map of a loaded (or pinned) program.
pub struct KernelMaps {
    v4_addrs: Table<1, 8, 0>,
    v4_ranges: LpmTrie<MapData, [u8; 4], BanEntry>,
    v6_addrs: Table<4, 3, 1>,
    v6_ranges: LpmTrie<MapData, [u8; 16], BanEntry>,
    /// Single addresses held in a range trie because their table probe was full.
    overflow: HashSet<IpNet>,
    allow_v4: LpmTrie<MapData, [u8; 4], AllowEntry>,
    allow_v6: LpmTrie<MapData, [u8; 16], AllowEntry>,
    /// What the allow tries hold.
    allow: AllowList,
    /// The bans in the maps that an allow-listed prefix overlaps.
    overlapped: HashSet<IpNet>,
    /// The `flags::ALLOW_*` bits raised: a family's is raised before the first ban the allow
    /// list overlaps goes in, and lowered only once none is left (`settle_allow_flags`).
    allow_flags: u32,
    ports: Array<MapData, u64>,
    settings: Array<MapData, Settings>,
    stats: PerCpuArray<MapData, FamilyStats>,
}

pub(crate) fn take<T: TryFrom<Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, MapsError> {
    let map = ebpf.take_map(name).ok_or(MapsError::Missing { name })?;
    T::try_from(map).map_err(op(name, "open"))
}

impl KernelMaps {
    /// Takes the maps out of a freshly loaded object (whose maps may be pins a previous daemon
    /// left), and gives fresh address tables their hash keys.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, MapsError> {
        let table_map = |ebpf: &mut Ebpf, name: &'static str| match ebpf.take_map(name) {
            Some(Map::Array(data)) => Ok(data),
            Some(_) => Err(MapsError::NotATable { name }),
            None => Err(MapsError::Missing { name }),
        };
        let v4 = table_map(ebpf, map::BANNED_V4_ADDRS)?;
        let v6 = table_map(ebpf, map::BANNED_V6_ADDRS)?;
        let mut maps = Self::assemble(
            v4,
            take(ebpf, map::BANNED_V4_RANGES)?,
            v6,
            take(ebpf, map::BANNED_V6_RANGES)?,
            take(ebpf, map::ALLOW_V4)?,
            take(ebpf, map::ALLOW_V6)?,
            take(ebpf, map::PROTECTED_PORTS)?,
            take(ebpf, map::SETTINGS)?,
            take(ebpf, map::STATS)?,
        )?;
        let mut settings = maps.settings()?;
        if settings.hash_keys == NO_KEYS {
            if !(maps.v4_addrs.never_used() && maps.v6_addrs.never_used()) {
                // The keys the entries were placed with are lost: none could be found again.
                return Err(MapsError::KeysLost);
            }
            settings.hash_keys = draw_keys();
            maps.v4_addrs.rekey(settings.hash_keys);
            maps.v6_addrs.rekey(settings.hash_keys);
        }
        settings.v4_buckets = maps.v4_addrs.buckets();
        settings.v6_buckets = maps.v6_addrs.buckets();
        maps.write_settings(settings)?;
        maps.drop_stale_overflow()?;
        Ok(maps)
    }

    /// Opens the maps a daemon pinned in `dir` (for `status`, `list`, `check`; works whether
    /// the daemon runs or not).
    pub fn from_pins(dir: &std::path::Path) -> Result<Self, MapsError> {
        fn pinned(dir: &std::path::Path, name: &'static str) -> Result<MapData, MapsError> {
            let path = dir.join(name);
            MapData::from_pin(&path).map_err(|source| MapsError::Pinned { path, source })
        }
        fn open<T: TryFrom<Map, Error = MapError>>(
            dir: &std::path::Path,
            name: &'static str,
            wrap: fn(MapData) -> Map,
        ) -> Result<T, MapsError> {
            T::try_from(wrap(pinned(dir, name)?)).map_err(op(name, "open"))
        }
        Self::assemble(
            pinned(dir, map::BANNED_V4_ADDRS)?,
            open(dir, map::BANNED_V4_RANGES, Map::LpmTrie)?,
            pinned(dir, map::BANNED_V6_ADDRS)?,
            open(dir, map::BANNED_V6_RANGES, Map::LpmTrie)?,
            open(dir, map::ALLOW_V4, Map::LpmTrie)?,
            open(dir, map::ALLOW_V6, Map::LpmTrie)?,
            open(dir, map::PROTECTED_PORTS, Map::Array)?,
            open(dir, map::SETTINGS, Map::Array)?,
            open(dir, map::STATS, Map::PerCpuArray)?,
        )
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one per map, named by the callers"
    )]
    fn assemble(
        v4_addrs: MapData,
        v4_ranges: LpmTrie<MapData, [u8; 4], BanEntry>,
        v6_addrs: MapData,
        v6_ranges: LpmTrie<MapData, [u8; 16], BanEntry>,
        allow_v4: LpmTrie<MapData, [u8; 4], AllowEntry>,
        allow_v6: LpmTrie<MapData, [u8; 16], AllowEntry>,
        ports: Array<MapData, u64>,
        settings: Array<MapData, Settings>,
        stats: PerCpuArray<MapData, FamilyStats>,
    ) -> Result<Self, MapsError> {
        let pinned = settings.get(&0, 0).map_err(op(map::SETTINGS, "get"))?;
        let mut maps = Self {
            v4_addrs: Table::open(map::BANNED_V4_ADDRS, v4_addrs, pinned.hash_keys)?,
            v4_ranges,
            v6_addrs: Table::open(map::BANNED_V6_ADDRS, v6_addrs, pinned.hash_keys)?,
            v6_ranges,
            overflow: HashSet::new(),
            allow_v4,
            allow_v6,
            allow: AllowList::default(),
            overlapped: HashSet::new(),
            allow_flags: pinned.flags & (flags::ALLOW_V4 | flags::ALLOW_V6),
            ports,
            settings,
            stats,
        };
        maps.overflow = maps
            .range_bans()?
            .into_iter()
            .map(|ban| ban.net)
            .filter(|net| net.prefix_len() == net.max_prefix_len())
            .collect();
        maps.allow = AllowList::new(maps.allows()?);
        maps.count_overlaps()?;
        // Kept raised (a pinned flag too, until `settle_allow_flags` finds it can go); written
        // with the next `mark_lists`.
        maps.allow_flags |= maps.overlap_flags();
        Ok(maps)
    }

    /// Finds the bans the allow list overlaps.
    fn count_overlaps(&mut self) -> Result<(), MapsError> {
        self.overlapped = if self.allow.is_empty() {
            HashSet::new()
        } else {
            let allow = &self.allow;
            self.bans()?
                .into_iter()
                .map(|ban| ban.net)
                .filter(|&net| allow.overlaps(net))
                .collect()
        };
        Ok(())
    }

    /// The `flags::ALLOW_*` bits of the families that have a ban the allow list overlaps.
    fn overlap_flags(&self) -> u32 {
        self.overlapped
            .iter()
            .fold(0, |flags, net| flags | allow_flag(*net))
    }

    /// Makes `allow_flags` the program's allow flags; on failure keeps the ones it had, so
    /// that memory never says raised what the kernel does not have.
    fn write_allow_flags(&mut self, allow_flags: u32) -> Result<(), MapsError> {
        let had = std::mem::replace(&mut self.allow_flags, allow_flags);
        self.mark_lists().inspect_err(|_| self.allow_flags = had)
    }

    /// Deletes trie copies of addresses the table also holds (left by a daemon that died
    /// between writing an address into the table and deleting its overflow copy, or kept
    /// through a resize): the table's entry is the newer one.
    pub fn drop_stale_overflow(&mut self) -> Result<(), MapsError> {
        let held = |tag: Option<u32>| tag.is_some_and(|tag| tag >> table::ORIGIN_BITS != 0);
        let stale: Vec<IpNet> = self
            .overflow
            .iter()
            .copied()
            .filter(|net| match net {
                IpNet::V4(n) => held(self.v4_addrs.get(&table::words(&n.addr().octets()))),
                IpNet::V6(n) => held(self.v6_addrs.get(&table::words(&n.addr().octets()))),
            })
            .collect();
        for net in stale {
            self.remove_range(net)?;
            self.overflow.remove(&net);
        }
        self.mark_lists()
    }

    /// Bans `net` until `expires_at_ns` (the program's monotonic clock, see `clock`; `u64::MAX`
    /// for ever). Replaces any entry for the same prefix in one write, so the prefix is never
    /// absent meanwhile. A single address's kernel expiry is rounded up to the table's unit
    /// (`table::EXPIRY_SHIFT`).
    pub fn insert_ban(&mut self, ban: Ban) -> Result<(), MapsError> {
        if self.allow.overlaps(ban.net) {
            self.raise_allow_flag(allow_flag(ban.net))?;
            self.overlapped.insert(ban.net);
        }
        let now = Instant::now();
        let tag = table::tag(ban.expires_at_ns, ban.origin);
        let (in_table, first) = match ban.net {
            IpNet::V4(n) if n.prefix_len() == 32 => place(
                &mut self.v4_addrs,
                &table::words(&n.addr().octets()),
                tag,
                now,
            ),
            IpNet::V6(n) if n.prefix_len() == 128 => place(
                &mut self.v6_addrs,
                &table::words(&n.addr().octets()),
                tag,
                now,
            ),
            _ => (false, false),
        };
        if first {
            // Set once the entry is in: the program only then starts looking in the table.
            self.mark_lists()?;
        }
        if in_table {
            // It may have overflowed before; the trie's old entry must not outlive this one.
            if self.overflow.contains(&ban.net) {
                self.remove_range(ban.net)?;
                self.overflow.remove(&ban.net);
                self.mark_lists()?;
            }
            return Ok(());
        }
        let entry = BanEntry {
            expires_at_ns: ban.expires_at_ns,
            origin: ban.origin,
            prefix_len: u32::from(ban.net.prefix_len()),
        };
        match ban.net {
            IpNet::V4(n) => self
                .v4_ranges
                .insert(&Key::new(entry.prefix_len, n.network().octets()), entry, 0)
                .map_err(op(map::BANNED_V4_RANGES, "insert")),
            IpNet::V6(n) => self
                .v6_ranges
                .insert(&Key::new(entry.prefix_len, n.network().octets()), entry, 0)
                .map_err(op(map::BANNED_V6_RANGES, "insert")),
        }?;
        // Counted as overflowed once it is in the trie.
        if ban.net.prefix_len() == ban.net.max_prefix_len() {
            if self.overflow.is_empty() {
                tracing::warn!(
                    "the address table has no room for {}: it goes to the range trie, slower to search; more will follow until max_addresses is raised (it applies at the next start)",
                    ban.net
                );
            }
            self.overflow.insert(ban.net);
        }
        let flag = range_flag(ban.net);
        if self.settings()?.flags & flag == 0 {
            self.mark_lists()?;
        }
        Ok(())
    }

    /// Lifts the ban on exactly `net`. Lifting one that is not there is not an error: LAPI
    /// repeats deletions.
    pub fn remove_ban(&mut self, net: IpNet) -> Result<(), MapsError> {
        let now = Instant::now();
        let emptied = match net {
            IpNet::V4(n) if n.prefix_len() == 32 => {
                self.v4_addrs.remove(&table::words(&n.addr().octets()), now)
                    && self.v4_addrs.held() == 0
            }
            IpNet::V6(n) if n.prefix_len() == 128 => {
                self.v6_addrs.remove(&table::words(&n.addr().octets()), now)
                    && self.v6_addrs.held() == 0
            }
            _ => false,
        };
        let single = net.prefix_len() == net.max_prefix_len();
        if !single || self.overflow.contains(&net) {
            // Forgotten only once deleted: a trie copy nobody remembers would ban for ever.
            self.remove_range(net)?;
            self.overflow.remove(&net);
            self.mark_lists()?;
        } else if emptied {
            self.mark_lists()?;
        }
        // Its family's flag stays up a while yet: a packet may have found the ban just now.
        self.overlapped.remove(&net);
        Ok(())
    }

    /// Makes the program look `flag`'s allow list up on every hit from now on. Waits for the
    /// program runs under way, which read the flags before it was raised: only then may a ban
    /// the allow list overlaps go in.
    fn raise_allow_flag(&mut self, flag: u32) -> Result<(), MapsError> {
        if self.allow_flags & flag == 0 {
            self.write_allow_flags(self.allow_flags | flag)?;
            wait_for_running_programs();
        }
        Ok(())
    }

    /// Lowers the allow flag of each family that no ban the allow list overlaps is left in,
    /// once the program runs that may have found one have ended. Called each second.
    pub fn settle_allow_flags(&mut self) -> Result<(), MapsError> {
        let needed = self.overlap_flags();
        if self.allow_flags & !needed == 0 {
            return Ok(());
        }
        wait_for_running_programs();
        self.write_allow_flags(needed)
    }

    /// Removes exactly `net` from its family's range trie; absent is fine.
    fn remove_range(&mut self, net: IpNet) -> Result<(), MapsError> {
        remove_prefix(
            (&mut self.v4_ranges, map::BANNED_V4_RANGES),
            (&mut self.v6_ranges, map::BANNED_V6_RANGES),
            net,
        )
    }

    /// Bytes of the address tables mapped into this process (resident, and part of its RSS,
    /// though they are the kernel maps' memory).
    #[must_use]
    pub fn mapped_bytes(&self) -> usize {
        self.v4_addrs.mapped_bytes() + self.v6_addrs.mapped_bytes()
    }

    /// How full the address tables are.
    #[must_use]
    pub fn table_usage(&self) -> TableUsage {
        TableUsage {
            v4_entries: self.v4_addrs.held(),
            v4_slots: self.v4_addrs.slots(),
            v6_entries: self.v6_addrs.held(),
            v6_slots: self.v6_addrs.slots(),
            overflowed: self.overflow.len(),
            tombstones: self.v4_addrs.tombstones() + self.v6_addrs.tombstones(),
        }
    }

    /// Frees tombstones no lookup needs any more, a slice of each address table per call
    /// (see `Table::sweep`); called each second, it goes round a 1M-address table in under a
    /// minute. Returns how many it freed.
    pub fn sweep_tables(&mut self) -> usize {
        let now = Instant::now();
        self.v4_addrs.sweep(SWEEP_BUCKETS, now) + self.v6_addrs.sweep(SWEEP_BUCKETS, now)
    }

    /// Buckets of the IPv4 and IPv6 address tables.
    #[must_use]
    pub fn table_buckets(&self) -> (u32, u32) {
        (self.v4_addrs.buckets(), self.v6_addrs.buckets())
    }

    /// Every ban the kernel holds, expired ones included.
    pub fn bans(&self) -> Result<Vec<Ban>, MapsError> {
        let mut bans = self.table_bans();
        bans.extend(self.range_bans()?);
        Ok(bans)
    }

    /// The bans in the address tables.
    fn table_bans(&self) -> Vec<Ban> {
        let table_ban = |net: IpNet, tag: u32| Ban {
            net,
            expires_at_ns: table::expires_at_ns(tag),
            origin: table::origin(tag),
        };
        self.v4_addrs
            .entries()
            .map(|(words, tag)| table_ban(IpNet::V4(Ipv4Addr::from(bytes(words)).into()), tag))
            .chain(
                self.v6_addrs.entries().map(|(words, tag)| {
                    table_ban(IpNet::V6(Ipv6Addr::from(bytes(words)).into()), tag)
                }),
            )
            .collect()
    }

    /// Copies the live entries of `old`'s address tables (the pinned maps a resize replaces;
    /// their tries are these ones) into these tables, and the addresses that had overflowed
    /// into the tries too, keeping their trie copies (the old program reads them until the
    /// swap; [`drop_stale_overflow`](Self::drop_stale_overflow) deletes them after). Sets the
    /// flags of the new settings to what the lists hold. Returns how many addresses the new
    /// tables hold.
    pub fn move_addresses_from(
        &mut self,
        old: &KernelMaps,
        now_ns: u64,
    ) -> Result<usize, MapsError> {
        let live = |ban: &Ban| table::live(table::tag(ban.expires_at_ns, ban.origin), now_ns);
        for ban in old.table_bans().iter().filter(|ban| live(ban)) {
            self.insert_ban(*ban)?;
        }
        let overflowed: Vec<Ban> = self
            .range_bans()?
            .into_iter()
            .filter(|ban| self.overflow.contains(&ban.net) && live(ban))
            .collect();
        let now = Instant::now();
        for ban in overflowed {
            let tag = table::tag(ban.expires_at_ns, ban.origin);
            match ban.net {
                IpNet::V4(n) => self
                    .v4_addrs
                    .insert(&table::words(&n.addr().octets()), tag, now),
                IpNet::V6(n) => self
                    .v6_addrs
                    .insert(&table::words(&n.addr().octets()), tag, now),
            };
        }
        self.mark_lists()?;
        Ok(self.v4_addrs.held() + self.v6_addrs.held())
    }

    /// The bans in the range tries (ranges, and single addresses that overflowed).
    fn range_bans(&self) -> Result<Vec<Ban>, MapsError> {
        let mut bans = Vec::new();
        let ban = |net: IpNet, e: BanEntry| Ban {
            net,
            expires_at_ns: e.expires_at_ns,
            origin: e.origin,
        };
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

    /// Makes exactly `nets` the allow list: a SYN from them is never dropped, whatever bans
    /// cover it.
    pub fn set_allowlist(&mut self, nets: &[IpNet]) -> Result<(), MapsError> {
        // In the tries' own form, so that an entry with host bits is not taken for stale.
        let nets: Vec<IpNet> = nets.iter().map(IpNet::trunc).collect();
        // The flags first, so that each new entry takes effect as it goes in. No wait is
        // needed: a run that read the flags before can only miss entries not yet there.
        // Lowering, for bans that only stale entries overlapped, is left to
        // `settle_allow_flags`.
        self.allow = AllowList::new(nets.iter().copied());
        self.count_overlaps()?;
        self.write_allow_flags(self.allow_flags | self.overlap_flags())?;
        // New entries before stale ones go, so that a network split in two is never open.
        let stale: Vec<IpNet> = self
            .allows()?
            .into_iter()
            .filter(|net| !nets.contains(net))
            .collect();
        for net in &nets {
            self.insert_allow(*net)?;
        }
        for net in stale {
            remove_prefix(
                (&mut self.allow_v4, map::ALLOW_V4),
                (&mut self.allow_v6, map::ALLOW_V6),
                net,
            )?;
        }
        Ok(())
    }

    fn insert_allow(&mut self, net: IpNet) -> Result<(), MapsError> {
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
        }
    }

    /// How many bans in the maps an allow-listed prefix overlaps.
    #[must_use]
    pub fn allow_overlaps(&self) -> usize {
        self.overlapped.len()
    }

    /// Tells the program which tables and range tries hold anything (it skips empty ones),
    /// and which allow lists to look up.
    fn mark_lists(&mut self) -> Result<(), MapsError> {
        let held = [
            (flags::ADDRS_V4, self.v4_addrs.held() > 0),
            (flags::ADDRS_V6, self.v6_addrs.held() > 0),
            (flags::RANGES_V4, self.v4_ranges.keys().next().is_some()),
            (flags::RANGES_V6, self.v6_ranges.keys().next().is_some()),
            (flags::ALLOW_V4, self.allow_flags & flags::ALLOW_V4 != 0),
            (flags::ALLOW_V6, self.allow_flags & flags::ALLOW_V6 != 0),
        ];
        self.set_flags(&held)
    }

    /// Sets each flag of `changes` paired with `true`, clears the others, in one write.
    fn set_flags(&mut self, changes: &[(u32, bool)]) -> Result<(), MapsError> {
        let mut settings = self.settings()?;
        for &(flag, on) in changes {
            settings.flags = if on {
                settings.flags | flag
            } else {
                settings.flags & !flag
            };
        }
        self.write_settings(settings)
    }

    fn write_settings(&mut self, settings: Settings) -> Result<(), MapsError> {
        self.settings
            .set(0, settings, 0)
            .map_err(op(map::SETTINGS, "set"))
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
        self.set_flags(&[(flags::OBSERVE, observe)])
    }

    /// `deny_log`: the program samples the sources it drops (`drop_log`).
    pub fn set_deny_log(&mut self, deny_log: bool) -> Result<(), MapsError> {
        self.set_flags(&[(flags::DENY_LOG, deny_log)])
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

/// Puts `addr` in `table`: whether it found room, and whether it is the table's first entry.
fn place<const W: usize, const K: usize, const P: usize>(
    table: &mut Table<W, K, P>,
    addr: &[u32; W],
    tag: u32,
    now: Instant,
) -> (bool, bool) {
    let was_empty = table.held() == 0;
    let placed = table.insert(addr, tag, now);
    (placed, was_empty && table.held() == 1)
}

/// The flag saying `net`'s family has ranges.
fn range_flag(net: IpNet) -> u32 {
    match net {
        IpNet::V4(_) => flags::RANGES_V4,
        IpNet::V6(_) => flags::RANGES_V6,
    }
}

/// The flag making the program look up `net`'s family's allow list.
fn allow_flag(net: IpNet) -> u32 {
    match net {
        IpNet::V4(_) => flags::ALLOW_V4,
        IpNet::V6(_) => flags::ALLOW_V6,
    }
}

/// Returns once every run of an XDP program under way has ended. XDP runs inside an RCU
/// read-side section (the driver's, or NAPI's with bottom halves off), and
/// `MEMBARRIER_CMD_GLOBAL` waits for an RCU grace period (`synchronize_rcu`), a few ms. Where
/// the kernel refuses it (built without it, or with `nohz_full` CPUs), a 10 ms sleep stands
/// in: thousands of runs' length, though no proof against a run the hypervisor stalls longer.
fn wait_for_running_programs() {
    // SAFETY: membarrier takes no pointers.
    let waited =
        unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_GLOBAL, 0, 0) } == 0;
    if !waited {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A table slot's words back as address bytes.
pub(crate) fn bytes<const W: usize, const N: usize>(words: [u32; W]) -> [u8; N] {
    let mut out = [0; N];
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    out
}

fn net_of(addr: IpAddr, prefix_len: u32) -> IpNet {
    let len = u8::try_from(prefix_len).expect("the kernel keeps prefix lengths <= 128");
    IpNet::new(addr, len).expect("the kernel keeps prefix lengths within the family")
}
