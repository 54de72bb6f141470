//! `deny_log`: who is being dropped. The XDP program keeps, per CPU, the sources of its latest
//! drops (`RECENT_DROPS`, while `flags::DENY_LOG` is set); the daemon reads what is new once a
//! second and logs one line, "dropped SYNs from banned sources (sampled): 203.0.113.66 (cscli)
//! x14, ...". The firewall bouncer's `deny_log` logs every dropped packet; under a flood that
//! is the flood again, in the journal, so this one samples.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
};
use blocker_common::{DROP_SAMPLES, DropSample, RecentDrops, family, map, origin};

use crate::maps::{MapsError, bytes};

/// Sources named on one line; the rest are counted.
const NAMED: usize = 10;

/// The program's `RECENT_DROPS`, and how far each CPU's ring has been read.
pub struct DropLog {
    recent: PerCpuArray<MapData, RecentDrops>,
    read: Vec<u64>,
}

impl DropLog {
    /// Takes `RECENT_DROPS` out of the loaded object: the map of the program this daemon runs.
    pub fn take(ebpf: &mut Ebpf) -> Result<DropLog, MapsError> {
        Ok(DropLog {
            recent: crate::maps::take(ebpf, map::RECENT_DROPS)?,
            read: Vec::new(),
        })
    }

    /// Logs the sources sampled since the last call, if any, on one line.
    pub fn log_new(&mut self) {
        match self.drain() {
            Ok(counts) if counts.is_empty() => {}
            Ok(counts) => tracing::info!(
                "dropped SYNs from banned sources (sampled): {}",
                summary(&counts)
            ),
            Err(e) => tracing::warn!(
                error = %crate::error_chain(&e),
                "cannot read the sources of dropped SYNs"
            ),
        }
    }

    /// Samples written since the last call, counted by (source, origin slot). A CPU that
    /// dropped more than [`DROP_SAMPLES`] since gives its latest.
    pub fn drain(&mut self) -> Result<BTreeMap<(IpAddr, u32), u64>, MapsError> {
        let per_cpu = self
            .recent
            .get(&0, 0)
            .map_err(crate::maps::op(map::RECENT_DROPS, "get"))?;
        self.read.resize(per_cpu.len(), 0);
        let mut counts = BTreeMap::new();
        for (recent, read) in per_cpu.iter().zip(&mut self.read) {
            let new = recent
                .written
                .saturating_sub(*read)
                .min(DROP_SAMPLES as u64);
            for n in recent.written - new..recent.written {
                #[expect(clippy::cast_possible_truncation, reason = "below DROP_SAMPLES")]
                let sample = &recent.samples[(n % DROP_SAMPLES as u64) as usize];
                *counts.entry((source(sample), sample.origin)).or_insert(0) += 1;
            }
            *read = recent.written;
        }
        Ok(counts)
    }
}

/// The address a sample holds.
fn source(sample: &DropSample) -> IpAddr {
    if sample.family == family::IPV4 {
        IpAddr::V4(Ipv4Addr::from(bytes([sample.addr[0]])))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes(sample.addr)))
    }
}

/// `counts` as one log line, the most sampled sources first.
#[must_use]
fn summary(counts: &BTreeMap<(IpAddr, u32), u64>) -> String {
    let mut sorted: Vec<_> = counts.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut line = sorted
        .iter()
        .take(NAMED)
        .map(|((addr, slot), n)| {
            let origin = origin::NAMES.get(*slot as usize).unwrap_or(&"other");
            format!("{addr} ({origin}) x{n}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    if sorted.len() > NAMED {
        let _ = write!(line, " and {} more sources", sorted.len() - NAMED);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_read_back_as_addresses() {
        let v4 = DropSample {
            addr: [u32::from_ne_bytes([203, 0, 113, 66]), 0, 0, 0],
            family: family::IPV4,
            origin: origin::CSCLI,
        };
        assert_eq!(source(&v4), "203.0.113.66".parse::<IpAddr>().unwrap());
        let addr: Ipv6Addr = "2001:db8:25::66".parse().unwrap();
        let o = addr.octets();
        let words = std::array::from_fn(|i| {
            u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
        });
        let v6 = DropSample {
            addr: words,
            family: family::IPV6,
            origin: origin::CROWDSEC,
        };
        assert_eq!(source(&v6), IpAddr::V6(addr));
    }

    #[test]
    fn the_summary_names_the_most_sampled_first_and_counts_the_rest() {
        let mut counts = BTreeMap::new();
        counts.insert(("203.0.113.66".parse().unwrap(), origin::CSCLI), 14);
        counts.insert(("2001:db8::66".parse().unwrap(), origin::CROWDSEC), 3);
        assert_eq!(
            summary(&counts),
            "203.0.113.66 (cscli) x14, 2001:db8::66 (crowdsec) x3"
        );
        for i in 0..20u8 {
            counts.insert(
                (IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)), origin::LISTS),
                1,
            );
        }
        let line = summary(&counts);
        assert!(
            line.starts_with(
                "203.0.113.66 (cscli) x14, 2001:db8::66 (crowdsec) x3, 198.51.100.0 (lists) x1"
            ),
            "{line}"
        );
        assert!(line.ends_with(" and 12 more sources"), "{line}");
    }
}
