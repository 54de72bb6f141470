//! Test hosts in network namespaces: a switch namespace with a bridge, and hosts wired to it
//! by veth pairs. Nothing is created in the root namespace; `Drop` removes it all.

use std::{
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Runs `ip` with `args`, panicking with its output on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace named `name`, with its loopback up.
    #[must_use]
    pub fn new(name: String) -> Netns {
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// Runs `f` on a thread that has entered this namespace. Sockets made there stay in it.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.enter();
                    f()
                })
                .join()
                .expect("namespace thread panicked")
        })
    }

    /// Moves the calling thread into this namespace.
    pub fn enter(&self) {
        enter(&self.name);
    }

    /// Runs a command in this namespace and returns its stdout.
    #[must_use]
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "{program} {} in {}: {}",
            args.join(" "),
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Moves the calling thread into the named namespace. Processes it spawns from then on start
/// there too.
pub fn enter(name: &str) {
    let path = format!("/var/run/netns/{name}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: a valid namespace fd; setns only affects the calling thread.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A host on the test LAN: its namespace, with `eth0` carrying `addrs`.
pub struct Host {
    pub ns: Netns,
    pub v4: std::net::Ipv4Addr,
    pub v6: std::net::Ipv6Addr,
}

/// A LAN of hosts behind one bridge. Fields drop in order: hosts before the switch.
pub struct Lan {
    pub hosts: Vec<Host>,
    /// Held for its `Drop`: deleting the namespace removes the bridge.
    switch: Netns,
}

/// The hosts most tests and the demo need: a mail host, an attacker to ban and a legitimate
/// client, as `(IPv4, IPv6)` on the documentation ranges.
pub const MAIL: (&str, &str) = ("203.0.113.25", "2001:db8:25::25");
pub const ATTACKER: (&str, &str) = ("203.0.113.66", "2001:db8:25::66");
pub const CLIENT: (&str, &str) = ("203.0.113.10", "2001:db8:25::10");

impl Lan {
    /// A mail host, an attacker and a client ([`MAIL`], [`ATTACKER`], [`CLIENT`]).
    #[must_use]
    pub fn mail_scene() -> Lan {
        Lan::new(&[MAIL, ATTACKER, CLIENT])
    }

    /// `(mail, attacker, client)` of a [`Lan::mail_scene`].
    #[must_use]
    pub fn roles(&self) -> (&Host, &Host, &Host) {
        let [mail, attacker, client] = &self.hosts[..] else {
            panic!("a mail scene has three hosts")
        };
        (mail, attacker, client)
    }

    /// Creates the switch and one host per `(v4, v6)` pair, all on 203.0.113.0/24 and
    /// `2001:db8:25::/64` (documentation ranges).
    #[must_use]
    pub fn new(addrs: &[(&str, &str)]) -> Lan {
        let id = format!(
            "blk{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let switch = Netns::new(format!("{id}-sw"));
        ip(&["-n", &switch.name, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch.name, "link", "set", "br0", "up"]);
        let mut hosts = Vec::new();
        for (i, (v4, v6)) in addrs.iter().enumerate() {
            let ns = Netns::new(format!("{id}-h{i}"));
            wire(&switch, &ns, i, v4, v6);
            hosts.push(Host {
                ns,
                v4: v4.parse().expect("test v4 address"),
                v6: v6.parse().expect("test v6 address"),
            });
        }
        Lan { hosts, switch }
    }

    /// Deletes host `i`'s `eth0` and makes it again, addresses and all (as networkd does
    /// with a VLAN or a bond it rebuilds): a new interface of the same name.
    pub fn rewire(&self, i: usize) {
        ip(&["-n", &self.switch.name, "link", "del", &format!("p{i}")]);
        self.wire_again(i);
    }

    /// Gives host `i` an `eth0` on the switch, with its addresses.
    fn wire_again(&self, i: usize) {
        let host = &self.hosts[i];
        wire(
            &self.switch,
            &host.ns,
            i,
            &host.v4.to_string(),
            &host.v6.to_string(),
        );
    }

    /// Renames host `i`'s `eth0` to `old0`, down and without its addresses, and gives the host
    /// a new `eth0` with them (as a NIC renamed by udev while another takes its name): the
    /// name now belongs to another interface.
    pub fn rename_and_rewire(&self, i: usize) {
        let rename = |ns: &str, from: &str, to: &str| {
            ip(&["-n", ns, "link", "set", from, "down"]);
            ip(&["-n", ns, "link", "set", from, "name", to]);
        };
        let host = &self.hosts[i].ns.name;
        rename(host, "eth0", "old0");
        ip(&["-n", host, "addr", "flush", "dev", "old0"]);
        rename(&self.switch.name, &format!("p{i}"), &format!("o{i}"));
        self.wire_again(i);
        // The others would still send to the host's addresses at old0's MAC.
        for other in &self.hosts {
            ip(&["-n", &other.ns.name, "neigh", "flush", "all"]);
        }
    }
}

/// Host `i`'s link: a veth from port `p{i}` on the switch's bridge to `eth0` in `ns`, with
/// `v4`/24 and `v6`/64.
fn wire(switch: &Netns, ns: &Netns, i: usize, v4: &str, v6: &str) {
    let port = format!("p{i}");
    ip(&[
        "-n",
        &switch.name,
        "link",
        "add",
        &port,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &ns.name,
    ]);
    ip(&[
        "-n",
        &switch.name,
        "link",
        "set",
        &port,
        "master",
        "br0",
        "up",
    ]);
    ip(&[
        "-n",
        &ns.name,
        "addr",
        "add",
        &format!("{v4}/24"),
        "dev",
        "eth0",
    ]);
    ip(&[
        "-n",
        &ns.name,
        "addr",
        "add",
        &format!("{v6}/64"),
        "dev",
        "eth0",
        "nodad",
    ]);
    ip(&["-n", &ns.name, "link", "set", "eth0", "up"]);
}

/// TCP listeners on a host (dual-stack `[::]:port`), accepting until dropped and recording
/// who connected.
pub struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    accepted: Arc<Mutex<Vec<IpAddr>>>,
}

impl Listeners {
    #[must_use]
    pub fn start(host: &Host, ports: &[u16]) -> Listeners {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let sockets: Vec<TcpListener> = host.ns.run(|| {
            ports
                .iter()
                .map(|p| TcpListener::bind(("::", *p)).unwrap_or_else(|e| panic!("bind {p}: {e}")))
                .collect()
        });
        let threads = sockets
            .into_iter()
            .map(|socket| {
                let stop = Arc::clone(&stop);
                let accepted = Arc::clone(&accepted);
                socket.set_nonblocking(true).expect("nonblocking listener");
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match socket.accept() {
                            Ok((_, peer)) => {
                                accepted
                                    .lock()
                                    .expect("lock")
                                    .push(peer.ip().to_canonical());
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
            })
            .collect();
        Listeners {
            stop,
            threads,
            accepted,
        }
    }

    /// Connections accepted from `peer` so far.
    #[must_use]
    pub fn accepted_from(&self, peer: IpAddr) -> usize {
        self.accepted
            .lock()
            .expect("lock")
            .iter()
            .filter(|p| **p == peer)
            .count()
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Whether `from` completes a TCP handshake with `to` within `timeout`.
#[must_use]
pub fn connects(from: &Host, to: IpAddr, port: u16, timeout: Duration) -> bool {
    from.ns
        .run(|| TcpStream::connect_timeout(&SocketAddr::new(to, port), timeout).is_ok())
}
