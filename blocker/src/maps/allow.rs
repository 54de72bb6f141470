//! The allow list as the map layer keeps it in memory, to tell which bans it overlaps. The
//! program looks a family's allow list up on a hit only while some ban of that family
//! overlaps it (`flags::ALLOW_V4`, `flags::ALLOW_V6`): a mail host's allow list (its own
//! networks, its monitoring) seldom overlaps a ban, and the lookup is a call into the kernel's
//! trie that costs a banned SYN about a quarter more.

use std::{
    collections::{BTreeSet, HashSet},
    net::IpAddr,
};

use ipnet::IpNet;

#[derive(Debug, Default)]
pub struct AllowList {
    /// The prefixes, in network form (host bits cleared).
    nets: HashSet<IpNet>,
    /// Their lengths, each with its family's full length, which tells the families apart.
    lengths: BTreeSet<(u8, u8)>,
    /// Their first addresses, in order.
    starts: BTreeSet<IpAddr>,
}

impl AllowList {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> AllowList {
        let mut list = AllowList::default();
        for net in nets {
            let net = net.trunc();
            list.nets.insert(net);
            list.lengths
                .insert((net.max_prefix_len(), net.prefix_len()));
            list.starts.insert(net.network());
        }
        list
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether an allow-listed prefix overlaps `ban`: holds it, or lies in it, or is it.
    pub fn overlaps(&self, ban: IpNet) -> bool {
        // Two prefixes overlap only when one holds the other. One that the ban holds (or
        // equals) starts inside it.
        if self
            .starts
            .range(ban.network()..=ban.broadcast())
            .next()
            .is_some()
        {
            return true;
        }
        // One that holds the ban is the ban cut to that prefix's length.
        self.lengths
            .iter()
            .filter(|&&(max, len)| max == ban.max_prefix_len() && len < ban.prefix_len())
            .any(|&(_, len)| {
                let cut = IpNet::new(ban.addr(), len).expect("shorter than the ban's length");
                self.nets.contains(&cut.trunc())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(nets: &[&str]) -> AllowList {
        AllowList::new(nets.iter().map(|n| n.parse::<IpNet>().unwrap()))
    }

    fn overlaps(list: &AllowList, ban: &str) -> bool {
        list.overlaps(ban.parse().unwrap())
    }

    #[test]
    fn a_ban_overlaps_a_prefix_that_holds_it_lies_in_it_or_is_it() {
        let allow = list(&["198.51.100.0/24", "203.0.113.7/32", "2001:db8:1::/48"]);
        for ban in [
            "198.51.100.42/32",
            "198.51.100.128/25",
            "198.51.100.0/24",
            "198.51.0.0/16",
            "0.0.0.0/0",
            "203.0.113.7/32",
            "203.0.113.0/24",
            "2001:db8:1:2::5/128",
            "2001:db8::/32",
            "::/0",
        ] {
            assert!(overlaps(&allow, ban), "{ban} overlaps the allow list");
        }
        for ban in [
            "198.51.101.1/32",
            "198.51.101.0/24",
            "198.51.99.255/32",
            "203.0.113.8/32",
            "203.0.113.0/30",
            "2001:db8:2::/48",
            "2001:db8:0:ffff::/64",
        ] {
            assert!(!overlaps(&allow, ban), "{ban} overlaps nothing allowed");
        }
    }

    #[test]
    fn families_never_overlap() {
        // ::ffff:198.51.100.42 is judged as IPv4 by the program, and config turns such entries
        // into IPv4 ones: an IPv6 ban of ::/0 does not reach them.
        let allow = list(&["198.51.100.42/32"]);
        assert!(!overlaps(&allow, "::/0"));
        let allow = list(&["::/0"]);
        assert!(!overlaps(&allow, "0.0.0.0/0"));
    }

    #[test]
    fn host_bits_of_an_entry_do_not_matter() {
        let allow = list(&["198.51.100.77/24"]);
        assert!(overlaps(&allow, "198.51.100.1/32"));
        assert!(overlaps(&allow, "198.51.0.0/16"));
    }

    #[test]
    fn an_empty_list_overlaps_nothing() {
        assert!(!overlaps(&AllowList::default(), "0.0.0.0/0"));
    }
}
