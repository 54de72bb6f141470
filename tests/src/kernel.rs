//! The real program in the kernel, driven through `BPF_PROG_TEST_RUN`.

use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions},
};
use blocker::{
    loader::Capacity,
    maps::{Ban, KernelMaps},
};
use blocker_common::{FamilyStats, family};

use crate::reference::World;

/// A loaded, unattached program and its maps.
pub struct Program {
    ebpf: Ebpf,
    pub maps: KernelMaps,
}

impl Program {
    /// Loads the program (the verifier runs) and takes its maps.
    #[must_use]
    pub fn load() -> Program {
        Program::load_with(Capacity::default())
    }

    /// A program loaded some other way (pinned maps, say), with its maps.
    #[must_use]
    pub fn new(ebpf: Ebpf, maps: KernelMaps) -> Program {
        Program { ebpf, maps }
    }

    /// Loads the program with address tables sized for `capacity`.
    #[must_use]
    pub fn load_with(capacity: Capacity) -> Program {
        let mut ebpf = blocker::loader::load(capacity).unwrap_or_else(|e| panic!("load: {e:?}"));
        let maps = KernelMaps::take(&mut ebpf).expect("maps");
        Program { ebpf, maps }
    }

    /// Writes `world` into the maps (bans, then allow list, ports, mode).
    pub fn install(&mut self, world: &World) {
        self.install_in_order(world, false);
    }

    /// Writes `world` into the maps, the allow list before the bans or after them: the map
    /// layer tracks which bans the allow list overlaps either way.
    pub fn install_in_order(&mut self, world: &World, allow_first: bool) {
        if allow_first {
            self.maps.set_allowlist(&world.allow).expect("allow list");
        }
        for ban in &world.bans {
            self.maps
                .insert_ban(Ban {
                    net: ban.net,
                    expires_at_ns: ban.expires_at_ns,
                    origin: ban.origin,
                })
                .expect("insert ban");
        }
        if !allow_first {
            self.maps.set_allowlist(&world.allow).expect("allow list");
        }
        self.maps.set_ports(&world.ports).expect("ports");
        self.maps.set_observe(world.observe).expect("settings");
    }

    /// Instructions the verifier walked to accept the program (`None` before kernel 5.16,
    /// which does not report them).
    #[must_use]
    pub fn verified_instructions(&self) -> Option<u32> {
        self.xdp()
            .info()
            .expect("the program's info")
            .verified_instruction_count()
    }

    /// Runs the program once on `frame`; returns the XDP action.
    #[must_use]
    pub fn run(&self, frame: &[u8]) -> u32 {
        self.run_repeat(frame, 1)
    }

    /// Runs the program `count` times on `frame` in one `BPF_PROG_TEST_RUN`; returns the
    /// action (the same every time: the maps do not change meanwhile).
    #[must_use]
    pub fn run_repeat(&self, frame: &[u8], count: u32) -> u32 {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = count;
        self.xdp()
            .test_run(opts)
            .expect("BPF_PROG_TEST_RUN")
            .return_value
    }

    fn xdp(&self) -> &aya::programs::Xdp {
        self.ebpf
            .program(blocker::loader::PROGRAM)
            .expect("program")
            .try_into()
            .expect("xdp")
    }

    /// The program's `RECENT_DROPS`, as the daemon reads it for `deny_log` (taken out of the
    /// object: once only).
    #[must_use]
    pub fn drop_log(&mut self) -> blocker::drop_log::DropLog {
        blocker::drop_log::DropLog::take(&mut self.ebpf).expect("RECENT_DROPS")
    }

    /// Counters summed over CPUs, per family.
    #[must_use]
    pub fn stats(&self) -> [FamilyStats; family::COUNT as usize] {
        self.maps.stats().expect("stats")
    }
}

/// The counters that moved between two readings.
#[must_use]
pub fn delta(after: &FamilyStats, before: &FamilyStats) -> FamilyStats {
    let mut d = FamilyStats {
        seen: after.seen - before.seen,
        syn_protected: after.syn_protected - before.syn_protected,
        allowlisted: after.allowlisted - before.allowlisted,
        malformed: after.malformed - before.malformed,
        ..FamilyStats::default()
    };
    for slot in 0..blocker_common::origin::COUNT {
        d.dropped_packets[slot] = after.dropped_packets[slot] - before.dropped_packets[slot];
        d.dropped_bytes[slot] = after.dropped_bytes[slot] - before.dropped_bytes[slot];
        d.observed_packets[slot] = after.observed_packets[slot] - before.observed_packets[slot];
    }
    d
}

impl Program {
    /// Attaches the program to `interface` inside `ns`.
    pub fn attach(
        &mut self,
        ns: &crate::netns::Netns,
        interface: &str,
        mode: blocker::loader::AttachMode,
    ) {
        let ebpf = &mut self.ebpf;
        ns.run(|| blocker::loader::attach(ebpf, interface, mode))
            .unwrap_or_else(|e| panic!("{e}: {:?}", std::error::Error::source(&e)));
    }

    /// Attaches to `interface` in `ns` as the daemon does: through the link pinned in `dir`
    /// if there is one, else anew, pinning the link there.
    pub fn attach_pinned(
        &mut self,
        ns: &crate::netns::Netns,
        dir: &std::path::Path,
        interface: &str,
        mode: blocker::loader::AttachMode,
    ) -> Result<blocker::loader::Attached, blocker::loader::AttachError> {
        let ebpf = &mut self.ebpf;
        ns.run(|| blocker::loader::attach_pinned(ebpf, dir, interface, mode))
    }
}
