//! Part 4: what blocker costs legitimate traffic. A clean client opens connections to the mail
//! host's port 25 as fast as it can (each a full handshake, closed with a reset so no
//! `TIME_WAIT` piles up), then streams bytes over one connection: with no XDP program on the
//! mail host's NIC, with an empty `XDP_PASS` program, and with blocker (holding the largest ban
//! set of the run), all attached natively. The empty program tells what attaching any native
//! XDP program to a veth costs (the peer loses GSO, so bulk data is segmented before it) from
//! what blocker itself costs. The three alternate within each round.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use blocker_common::family;

use super::{
    Blocker, Stat,
    bpf::{self, RawXdp, XDP_PASS},
    sets::BanSet,
};

pub const NO_XDP: &str = "no XDP";
pub const EMPTY_PASS: &str = "empty XDP_PASS";
pub const BLOCKER: &str = "blocker";
use crate::netns::{Host, Lan};

pub struct Config {
    pub entries: usize,
    pub seconds: f64,
    pub rounds: usize,
}

impl Config {
    #[must_use]
    pub fn new(quick: bool) -> Config {
        if quick {
            Config {
                entries: 1_000,
                seconds: 1.0,
                rounds: 1,
            }
        } else {
            Config {
                entries: 1_000_000,
                seconds: 3.0,
                rounds: 3,
            }
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub setup: &'static str,
    pub connections_per_s: Stat,
    pub bulk_gbit_per_s: Stat,
    /// Connection attempts that timed out (1 s), over all rounds.
    pub failed_connections: u32,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Results {
    pub entries: usize,
    pub seconds_per_run: f64,
    /// No XDP, the empty program, blocker.
    pub rows: Vec<Row>,
    /// SYNs blocker inspected during the runs with it (proof it was in the path).
    pub syns_inspected: u64,
}

/// Runs part 4.
pub fn run(config: &Config, log: &mut impl FnMut(&str)) -> Results {
    let lan = Lan::new(&[
        ("203.0.113.25", "2001:db8:25::25"),
        (&super::sets::CLEAN_V4.to_string(), "2001:db8:25::10"),
    ]);
    let [mail, client] = &lan.hosts[..] else {
        unreachable!("two hosts")
    };
    let to = SocketAddr::new(IpAddr::V4(mail.v4), 25);
    let _sink = Sink::start(mail, 25);
    let set = BanSet::new(config.entries, config.entries, super::SEED);
    let mut blocker = Blocker::load_for(&set);
    blocker.install(&set);
    let before = blocker.maps.stats().expect("stats")[family::IPV4 as usize].syn_protected;
    let pass = RawXdp::load("empty_pass", &bpf::returning(XDP_PASS))
        .expect("load the empty XDP_PASS program");
    let eth0 = super::ifindex(&mail.ns, "eth0");
    let mut rows: Vec<Row> = [NO_XDP, EMPTY_PASS, BLOCKER]
        .map(|setup| Row {
            setup,
            connections_per_s: Stat::default(),
            bulk_gbit_per_s: Stat::default(),
            failed_connections: 0,
        })
        .into();
    let duration = Duration::from_secs_f64(config.seconds);
    for _ in 0..config.rounds {
        for row in &mut rows {
            let empty_link = (row.setup == EMPTY_PASS).then(|| {
                mail.ns
                    .run(|| bpf::attach_xdp(pass.as_fd(), eth0))
                    .expect("attach the empty program")
            });
            let blocker_link = (row.setup == BLOCKER).then(|| blocker.attach(&mail.ns, "eth0"));
            let (connections, failed) = client.ns.run(|| connection_rate(to, duration));
            let gbit = client.ns.run(|| bulk_gbit(to, duration));
            drop(empty_link);
            if let Some(link) = blocker_link {
                blocker.detach(link);
            }
            log(&format!(
                "legit: {:<14}: {connections:>8.0} connections/s ({failed} timed out), {gbit:>6.2} Gbit/s bulk",
                row.setup
            ));
            row.connections_per_s.push(connections);
            row.failed_connections += failed;
            row.bulk_gbit_per_s.push(gbit);
        }
    }
    let syns_inspected =
        blocker.maps.stats().expect("stats")[family::IPV4 as usize].syn_protected - before;
    assert!(syns_inspected > 0, "blocker saw none of the client's SYNs");
    Results {
        entries: config.entries,
        seconds_per_run: config.seconds,
        rows,
        syns_inspected,
    }
}

/// Completed handshakes per second, one connection at a time, and attempts that failed.
fn connection_rate(to: SocketAddr, duration: Duration) -> (f64, u32) {
    let start = Instant::now();
    let (mut count, mut failed) = (0u32, 0u32);
    while start.elapsed() < duration {
        match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            Ok(stream) => {
                reset_on_close(&stream);
                count += 1;
            }
            Err(_) => failed += 1,
        }
    }
    (f64::from(count) / start.elapsed().as_secs_f64(), failed)
}

/// Gbit/s written over one connection.
fn bulk_gbit(to: SocketAddr, duration: Duration) -> f64 {
    let mut stream =
        TcpStream::connect_timeout(&to, Duration::from_secs(1)).expect("a clean client connects");
    let chunk = vec![0x5a_u8; 1 << 20];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < duration {
        stream.write_all(&chunk).expect("stream to the sink");
        bytes += chunk.len() as u64;
    }
    #[expect(clippy::cast_precision_loss, reason = "byte counts")]
    let gbit = bytes as f64 * 8.0 / 1e9 / start.elapsed().as_secs_f64();
    gbit
}

/// `SO_LINGER` 0: closing sends a reset and leaves no `TIME_WAIT`.
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            libc::socklen_t::try_from(size_of::<libc::linger>()).expect("8 bytes"),
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// Accepts on a host's port and reads every connection to its end, one at a time.
struct Sink {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    ns: String,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start(host: &Host, port: u16) -> Sink {
        let listener = host
            .ns
            .run(|| TcpListener::bind(("::", port)).expect("bind the sink"));
        // A deeper accept queue than std's 128: this one thread also reads, and a full queue
        // drops SYNs, which the client would see as a 1 s stall.
        // SAFETY: listen(2) on a listening socket only resizes its queue.
        let rc = unsafe { libc::listen(listener.as_raw_fd(), 4096) };
        assert_eq!(rc, 0, "listen: {}", std::io::Error::last_os_error());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            }
        });
        Sink {
            stop,
            addr: SocketAddr::new(IpAddr::V4(host.v4), port),
            ns: host.ns.name.clone(),
            thread: Some(thread),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let (addr, ns) = (self.addr, self.ns.clone());
        // Wakes the accept loop (from inside the namespace) so it sees `stop`.
        let _ = std::thread::spawn(move || {
            crate::netns::enter(&ns);
            TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        })
        .join();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
