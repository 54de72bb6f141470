//! `blocker run`: keeps the kernel's ban maps equal to what LAPI says, for as long as it runs.
//!
//! Start-up: load and attach the program, write ports, mode and allow list, adopt whatever the
//! maps hold, check LAPI once (HEAD, only here: it moves LAPI's "last pull" time), then pull
//! `startup=true`. After that, deltas every `update_frequency`, and every hour a full list that
//! only adds what is missing. Any failure keeps the maps as they are, logs the cause, backs
//! off, and the next pull is a full `startup=true` resync. A full pull that fails backs off on
//! its own clock, and deltas go on meanwhile: a list grown past the answer size limit or the
//! request timeout must not hold back the next brute-forcer's ban.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use ipnet::IpNet;

use crate::{
    clock,
    config::{Config, ConfigError, Mode, XdpMode},
    drop_log::DropLog,
    error_chain,
    lapi::{Backoff, LapiClient, LapiError, LapiSettings},
    loader::{self, AttachMode, Attached, Loaded},
    maps::{KernelMaps, MapsError},
    metrics::{self, IpType, MetricsError, Snapshot},
    state::{DaemonState, unix_seconds},
    sync::{Applied, Sync},
    usage::UsageReporter,
};

/// How often expired bans are looked for, whatever the polling interval.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// Skipped decisions logged by name per pull; the rest are counted.
const SKIPPED_LOGGED: usize = 3;

/// What the daemon needs, taken from a validated [`Config`].
#[derive(Debug)]
pub struct DaemonSettings {
    pub lapi: LapiSettings,
    pub update_frequency: Duration,
    pub supported_types: Vec<String>,
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub ports: Vec<u16>,
    pub allowlist: Vec<IpNet>,
    pub observe: bool,
    /// Log the sources of dropped SYNs (sampled) once a second.
    pub deny_log: bool,
    /// What the address tables are sized for, when they are made.
    pub capacity: loader::Capacity,
    /// bpffs folder of the pinned maps and links.
    pub pin_dir: PathBuf,
    /// Where `blocker status` finds the sync state.
    pub state_file: PathBuf,
    /// Prometheus endpoint, if enabled.
    pub prometheus: Option<std::net::SocketAddr>,
    /// How often usage metrics go to LAPI, if enabled.
    pub usage_metrics: Option<Duration>,
}

impl DaemonSettings {
    pub fn from_config(config: &Config) -> Result<DaemonSettings, ConfigError> {
        Ok(DaemonSettings {
            lapi: config.lapi_settings()?,
            update_frequency: config.update_frequency(),
            supported_types: config.supported_decisions_types().to_vec(),
            interfaces: config.interfaces().to_vec(),
            xdp_mode: config.xdp_mode(),
            ports: config.ports().to_vec(),
            allowlist: config.allowlist().to_vec(),
            observe: config.mode() == Mode::Observe,
            deny_log: config.deny_log(),
            capacity: config.capacity(),
            pin_dir: config.bpffs_dir().to_path_buf(),
            state_file: config.state_file().to_path_buf(),
            prometheus: config
                .prometheus()
                .enabled()
                .then(|| config.prometheus().listen_socket()),
            usage_metrics: config.usage_metrics_interval(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Load(#[from] loader::LoadError),
    #[error(transparent)]
    Attach(#[from] loader::AttachError),
    #[error(
        "interface {interface} does not exist (check `interfaces` in the config; `ip link` lists them)"
    )]
    NoInterface { interface: String },
    #[error(
        "interfaces {first} and {second} are names of one interface (altnames): list it once in `interfaces`"
    )]
    SameInterface { first: String, second: String },
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error(
        "resizing the address tables (max_addresses changed) failed; the old ones stay in force"
    )]
    Resize(#[source] MapsError),
    #[error("cannot set up the LAPI client")]
    Lapi(#[source] LapiError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// How often a `startup=true` pull brings back what the deltas may have missed: a newer LAPI
/// that streams its answer page by page closes a well-formed answer when its database fails
/// half-way, and the decisions such a full pull left out would otherwise not come back until
/// a pull fails. These periodic pulls only add: one cut short lifts nothing.
pub const FULL_RESYNC_EVERY: Duration = Duration::from_hours(1);

/// How a full pull that failed on LAPI's answer is retried: after 15-30 s, doubling up to 10
/// minutes, each time just after a delta. Each try is LAPI's dearest query, and its answer,
/// even one we refuse, moves LAPI's "last pull" mark past the decisions made since the pull
/// before (the delta, milliseconds earlier): those come back only with a full pull that
/// succeeds. The first retry comes after the main loop's first retries (1 s, 2 s...), so
/// deltas go on meanwhile.
const FULL_RETRY_BASE: Duration = Duration::from_secs(30);
const FULL_RETRY_CAP: Duration = Duration::from_mins(10);

/// The decisions half of the daemon: pulls from LAPI and keeps the maps in step. After a
/// failed pull the next one is a full `startup=true` resync; while full pulls fail, they are
/// retried on their own backoff and deltas fill the time between. Every [`FULL_RESYNC_EVERY`]
/// a `startup=true` pull adds whatever is missing.
pub struct Enforcer {
    client: LapiClient,
    sync: Sync,
    maps: KernelMaps,
    /// A full resync is owed: a pull failed since the last full one that succeeded.
    resync: bool,
    /// When the owed resync may be tried, and the backoff that sets it after each failed one.
    /// LAPI moves its "last pull" mark even for an answer we could not take, so the deltas
    /// in between carry every decision made since; the resync brings back what that lost
    /// answer held.
    next_full_try: std::time::Instant,
    full_retry: Backoff,
    /// The last full pull failed on LAPI's answer (not for want of LAPI).
    full_failing: bool,
    /// When the last full pull succeeded, and how long until the next one is due.
    last_full: std::time::Instant,
    full_every: Duration,
    /// Bans in force by (origin, family), for metrics; see [`Enforcer::recount`].
    active: BTreeMap<(String, IpType), u64>,
    /// When the first ban counted in `active` lapses in the kernel (bans adopted from the
    /// pins lapse there with no decision to release them, while LAPI is away).
    next_lapse_ns: u64,
}

/// What one successful pull did.
#[derive(Debug)]
pub struct PullReport {
    pub startup: bool,
    pub new: usize,
    pub deleted: usize,
    pub skipped: usize,
    pub applied: Applied,
}

impl Enforcer {
    /// Adopts what `maps` already hold; the first pull reconciles them with LAPI.
    pub fn new(
        client: LapiClient,
        maps: KernelMaps,
        supported_types: &[String],
    ) -> Result<Enforcer, MapsError> {
        let sync = Sync::new(supported_types, maps.bans()?);
        let mut enforcer = Enforcer {
            client,
            sync,
            maps,
            resync: true,
            next_full_try: std::time::Instant::now(),
            full_retry: Backoff::new(FULL_RETRY_BASE, FULL_RETRY_CAP),
            full_failing: false,
            last_full: std::time::Instant::now(),
            full_every: FULL_RESYNC_EVERY,
            active: BTreeMap::new(),
            next_lapse_ns: 0,
        };
        enforcer.recount(&Applied::default());
        Ok(enforcer)
    }

    #[must_use]
    pub fn maps(&self) -> &KernelMaps {
        &self.maps
    }

    /// Makes full pulls due every `every` instead of [`FULL_RESYNC_EVERY`].
    pub fn set_full_resync_every(&mut self, every: Duration) {
        self.full_every = every;
    }

    /// Retries a failed full pull after `base` (doubling), instead of after [`FULL_RETRY_BASE`].
    pub fn set_full_retry_base(&mut self, base: Duration) {
        self.full_retry = Backoff::new(base, FULL_RETRY_CAP);
    }

    /// How long until the owed full resync is tried, if one is owed.
    #[must_use]
    pub fn resync_owed(&self) -> Option<Duration> {
        self.resync.then(|| {
            self.next_full_try
                .saturating_duration_since(std::time::Instant::now())
        })
    }

    /// One pull, applied. On error nothing in the maps changes.
    pub async fn pull(&mut self) -> Result<PullReport, LapiError> {
        let now = std::time::Instant::now();
        // A full pull that is only due by the clock adds what the deltas missed and lifts
        // nothing: a LAPI that cut its answer short would otherwise lift what it left out.
        let periodic = !self.resync && now.duration_since(self.last_full) >= self.full_every;
        let resync = self.resync && now >= self.next_full_try;
        if resync && self.full_failing {
            // LAPI moves its mark even for an answer we refuse: with a delta just before, a
            // full pull that fails again takes with it only what came in between.
            self.pull_once(false, false).await?;
        }
        self.pull_once(resync || periodic, periodic).await
    }

    async fn pull_once(&mut self, startup: bool, periodic: bool) -> Result<PullReport, LapiError> {
        let batch = match self.client.stream(startup, SystemTime::now).await {
            Ok(batch) => batch,
            Err(e) => {
                self.resync = true;
                // Unreachable, LAPI saw no request: nothing was lost, nor is its answer to
                // blame, so the full pull is tried again as soon as LAPI is back.
                if startup && !matches!(e, LapiError::Unreachable { .. }) {
                    self.next_full_try = std::time::Instant::now() + self.full_retry.next_delay();
                    self.full_failing = true;
                }
                return Err(e);
            }
        };
        if startup {
            self.resync = false;
            self.full_failing = false;
            self.full_retry.reset();
            self.last_full = std::time::Instant::now();
        }
        // A few by name, then a count: a list with many bad items comes back on every pull.
        for skipped in batch.skipped.iter().take(SKIPPED_LOGGED) {
            tracing::warn!("decision skipped: {skipped}");
        }
        if let Some(more) = batch
            .skipped_count
            .checked_sub(SKIPPED_LOGGED)
            .filter(|&n| n > 0)
        {
            tracing::warn!("{more} more decisions skipped");
        }
        let (new, deleted, skipped) = (batch.new.len(), batch.deleted.len(), batch.skipped_count);
        let (wall, boot) = (SystemTime::now(), clock::now_ns());
        let applied = if startup && !periodic {
            self.sync.resync(batch, wall, boot, &mut self.maps)
        } else {
            self.sync.delta(batch, wall, boot, &mut self.maps)
        };
        self.recount(&applied);
        Ok(PullReport {
            startup,
            new,
            deleted,
            skipped,
            applied,
        })
    }

    /// Brings `snapshot`'s kernel counters and active decisions up to date (LAPI figures are
    /// the caller's).
    pub fn refresh(&self, snapshot: &mut Snapshot) -> Result<(), MapsError> {
        snapshot.stats = self.maps.stats()?;
        snapshot.active.clone_from(&self.active);
        Ok(())
    }

    /// Recounts the bans in force by origin and family: a walk over every ban, so only after
    /// the maps changed or a ban counted lapsed.
    fn recount(&mut self, applied: &Applied) {
        let now = clock::now_ns();
        if applied.banned + applied.unbanned == 0 && now < self.next_lapse_ns {
            return;
        }
        // One walk: the count, and when the first ban it counts lapses.
        let mut next_lapse = u64::MAX;
        let bans = self.sync.applied().inspect(|ban| {
            if ban.expires_at_ns > now {
                next_lapse = next_lapse.min(ban.expires_at_ns);
            }
        });
        self.active = Snapshot::from_bans(Default::default(), bans, now).active;
        self.next_lapse_ns = next_lapse;
    }

    #[must_use]
    pub fn client(&self) -> &LapiClient {
        &self.client
    }

    /// Removes bans whose decisions have ended, and sweeps a slice of the address tables.
    pub fn expire(&mut self) -> Applied {
        let applied = self.sync.tick(clock::now_ns(), &mut self.maps);
        self.recount(&applied);
        self.maps.sweep_tables();
        if let Err(e) = self.maps.settle_allow_flags() {
            // Only costs speed: the program goes on looking the allow list up.
            tracing::warn!(error = %error_chain(&e), "lowering an allow-list flag failed");
        }
        applied
    }
}

/// Runs until `shutdown` completes.
pub async fn run(
    settings: DaemonSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    // First, as it reads the certificate files: a wrong one stops the start before anything
    // in the kernel is touched.
    let client = LapiClient::new(&settings.lapi).map_err(DaemonError::Lapi)?;
    // Held to the end: dropping it would close the program's fds (the pins keep it alive).
    let (mut ebpf, maps, mut state) = enforce(&settings)?;
    let mut drop_log = settings
        .deny_log
        .then(|| DropLog::take(&mut ebpf))
        .transpose()?;
    tracing::info!(
        interfaces = ?state.interfaces,
        ports = ?settings.ports,
        observe = settings.observe,
        lapi = %client.endpoint(),
        pins = %settings.pin_dir.display(),
        "blocker is enforcing"
    );
    tokio::pin!(shutdown);
    // Raced against a stop, as every LAPI request: a hung LAPI must not hold `systemctl stop`.
    let checked = tokio::select! {
        () = &mut shutdown => {
            stopping(&maps);
            return Ok(());
        }
        checked = client.check() => checked,
    };
    match checked {
        Ok(()) => tracing::info!("LAPI reachable and our credentials accepted"),
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "LAPI check failed; enforcing what the maps hold and retrying");
        }
    }
    let mut enforcer = Enforcer::new(client, maps, &settings.supported_types)?;
    let mut snapshot = Snapshot::default();
    enforcer.refresh(&mut snapshot)?;
    let shared = metrics::shared(snapshot.clone());
    let _stop_metrics = match settings.prometheus {
        Some(addr) => Some(serve_metrics(addr, shared.clone()).await?),
        None => None,
    };
    let mut usage = settings.usage_metrics.map(|every| {
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        (
            UsageReporter::new(SystemTime::now(), snapshot.clone()),
            timer,
        )
    });

    let mut expiry = tokio::time::interval(EXPIRY_TICK);
    // After a long pull, one tick, not a burst of the ones missed meanwhile.
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Backoff::default();
    let mut next_pull = tokio::time::Instant::now();
    let mut ready = false;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = expiry.tick() => {
                let applied = enforcer.expire();
                if applied.unbanned > 0 {
                    tracing::info!(unbanned = applied.unbanned, "expired bans removed");
                }
                if let Some(drop_log) = &mut drop_log {
                    drop_log.log_new();
                }
                let pending = enforcer.sync.pending_writes();
                snapshot.pending_writes = pending as u64;
                if state.pending_writes != pending {
                    state.pending_writes = pending;
                    state.save(&settings.state_file);
                }
                match enforcer.refresh(&mut snapshot) {
                    Ok(()) => shared.write().expect("metrics lock").clone_from(&snapshot),
                    Err(e) => tracing::warn!(error = %error_chain(&e), "cannot read the kernel counters"),
                }
            }
            () = async { usage.as_mut().expect("guarded").1.tick().await; }, if usage.as_ref().is_some_and(|(r, _)| r.is_supported()) => {
                let (reporter, _) = usage.as_mut().expect("guarded");
                // Nor for a slow usage report (up to its own timeout).
                tokio::select! {
                    () = &mut shutdown => break,
                    _ = reporter.report(enforcer.client(), &snapshot) => {}
                }
            }
            () = tokio::time::sleep_until(next_pull) => {
                snapshot.lapi_requests += 1;
                // A stop does not wait for a slow LAPI (up to the request timeout): the pull
                // is dropped before it changes anything, and the pinned bans stay in force.
                let pulled = tokio::select! {
                    () = &mut shutdown => break,
                    pulled = enforcer.pull() => pulled,
                };
                let delay = account_pull(pulled, &enforcer, &mut snapshot, &mut state, &mut backoff, &settings);
                next_pull = tokio::time::Instant::now() + delay;
                if !ready {
                    // Attached, and the first sync has been tried: LAPI being away is no
                    // reason to hold the service back, the pinned bans are enforced.
                    crate::notify::notify("READY=1");
                    ready = true;
                }
            }
        }
    }
    stopping(enforcer.maps());
    Ok(())
}

/// Tells systemd and the log that the daemon stops, leaving the kernel enforcing.
fn stopping(maps: &KernelMaps) {
    crate::notify::notify("STOPPING=1");
    log_counters(maps);
    tracing::info!("stopping; enforcement stays in place (blocker detach removes it)");
}

/// Records a pull's outcome in the metrics and the state file, and says when to pull next.
fn account_pull(
    pulled: Result<PullReport, LapiError>,
    enforcer: &Enforcer,
    snapshot: &mut Snapshot,
    state: &mut DaemonState,
    backoff: &mut Backoff,
    settings: &DaemonSettings,
) -> Duration {
    match pulled {
        Ok(report) => {
            let now = SystemTime::now();
            snapshot.last_sync = Some(now);
            state.last_sync = Some(unix_seconds(now));
            if report.startup {
                snapshot.last_full_sync = Some(now);
                state.last_full_sync = state.last_sync;
            }
            if report.startup || report.applied != Applied::default() || report.skipped > 0 {
                tracing::info!(
                    ?report,
                    prefixes = enforcer.sync.banned_prefixes(),
                    "decisions applied"
                );
            }
            backoff.reset();
            state.pending_writes = enforcer.sync.pending_writes();
            state.save(&settings.state_file);
            settings.update_frequency
        }
        Err(e) => {
            snapshot.lapi_failures += 1;
            let error = error_chain(&e);
            state.last_error = Some(error.clone());
            state.last_error_at = Some(unix_seconds(SystemTime::now()));
            state.save(&settings.state_file);
            let delay = backoff.next_delay();
            if let Some(full_in) = enforcer.resync_owed().filter(|&full_in| full_in > delay) {
                tracing::warn!(
                    %error, retry_in = ?delay, full_pull_in = ?full_in,
                    "LAPI pull failed; the maps keep their bans, deltas go on until the next full pull"
                );
            } else {
                tracing::warn!(
                    %error, retry_in = ?delay,
                    "LAPI pull failed; the maps keep their bans, the next pull is a full one"
                );
            }
            delay
        }
    }
}

/// Loads (reusing pins), writes ports, mode and allow list, and attaches to every interface:
/// from here on the kernel enforces, whatever happens to this process.
fn enforce(settings: &DaemonSettings) -> Result<(aya::Ebpf, KernelMaps, DaemonState), DaemonError> {
    check_interfaces(&settings.interfaces)?;
    let (mut ebpf, resized) = match loader::load_pinned(&settings.pin_dir, settings.capacity)? {
        Loaded::Pinned(ebpf) => (ebpf, None),
        Loaded::Resized { ebpf, from, to } => {
            loader::pin_beside(&ebpf, &settings.pin_dir)?;
            (ebpf, Some((from, to)))
        }
    };
    let mut maps = KernelMaps::take(&mut ebpf)?;
    if let Some((from, to)) = resized {
        // The old program goes on enforcing from the old tables until the swap below.
        let old = KernelMaps::from_pins(&settings.pin_dir).map_err(DaemonError::Resize)?;
        let moved = maps
            .move_addresses_from(&old, clock::now_ns())
            .map_err(DaemonError::Resize)?;
        tracing::info!(
            from = ?from,
            to = ?to,
            moved,
            "max_addresses changed (or a resize was cut short): new address tables (buckets IPv4, IPv6) take the banned addresses and replace the old ones with the program"
        );
    }
    configure(&mut maps, settings)?;
    let mut state = DaemonState {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        lapi_url: settings.lapi.api_url.to_string(),
        started_at: unix_seconds(SystemTime::now()),
        ..DaemonState::default()
    };
    // A link left on an interface the config no longer names would go on enforcing there.
    for change in loader::reconcile_links(&settings.pin_dir, &settings.interfaces)? {
        match change {
            loader::LinkChange::Renamed { from, to } => tracing::warn!(
                from,
                to,
                "the pinned XDP link's interface was renamed to a configured name: kept"
            ),
            loader::LinkChange::Dropped { interface } => tracing::warn!(
                interface,
                "detached from an interface no longer in the config (or gone)"
            ),
        }
    }
    for interface in &settings.interfaces {
        let how = attach(&mut ebpf, &settings.pin_dir, interface, settings.xdp_mode)?;
        state.interfaces.push((interface.clone(), how.into()));
    }
    if resized.is_some() {
        loader::promote(&settings.pin_dir)?;
        // Addresses that had overflowed are in the new tables too now: their trie copies,
        // which the old program needed until the swap, can go.
        maps.drop_stale_overflow()?;
    }
    state.save(&settings.state_file);
    Ok((ebpf, maps, state))
}

/// Serves Prometheus scrapes of `shared` on `addr` until the returned sender is dropped. Binds
/// first, so a taken port is a start-up error rather than a silent gap.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    shared: metrics::SharedSnapshot,
) -> Result<tokio::sync::oneshot::Sender<()>, MetricsError> {
    let listener = metrics::bind(addr).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let stopped = async {
            let _ = stopped.await;
        };
        if let Err(e) = metrics::serve_on(listener, shared, stopped).await {
            tracing::warn!(error = %error_chain(&e), "the metrics endpoint stopped");
        }
    });
    Ok(stop)
}

/// One line of the kernel's counters per address family.
fn log_counters(maps: &KernelMaps) {
    let Ok(stats) = maps.stats() else { return };
    for (name, s) in [("IPv4", &stats[0]), ("IPv6", &stats[1])] {
        tracing::info!(
            family = name,
            seen = s.seen,
            syn_inspected = s.syn_protected,
            dropped = s.dropped_packets.iter().sum::<u64>(),
            dropped_bytes = s.dropped_bytes.iter().sum::<u64>(),
            allowlisted = s.allowlisted,
            malformed = s.malformed,
            "kernel counters"
        );
    }
}

/// Writes ports, mode and the allow list (exactly the configured one) into the maps.
fn configure(maps: &mut KernelMaps, settings: &DaemonSettings) -> Result<(), MapsError> {
    maps.set_ports(&settings.ports)?;
    maps.set_observe(settings.observe)?;
    maps.set_deny_log(settings.deny_log)?;
    maps.set_allowlist(&settings.allowlist)
}

/// How an interface got the program, for the state file.
impl From<Attached> for String {
    fn from(attached: Attached) -> String {
        match attached {
            Attached::New(AttachMode::Native) => "native",
            Attached::New(AttachMode::Generic) => "generic",
            Attached::Replaced => "kept (pinned link reused)",
        }
        .into()
    }
}

/// Fails unless every interface exists (in this network namespace), and no two of the names
/// are one interface (a name and its altname): its second attach would fail with a bare EBUSY.
fn check_interfaces(interfaces: &[String]) -> Result<(), DaemonError> {
    let mut seen: Vec<(u32, &String)> = Vec::new();
    for interface in interfaces {
        let index = crate::loader::ifindex(interface).ok_or_else(|| DaemonError::NoInterface {
            interface: interface.clone(),
        })?;
        if let Some((_, first)) = seen.iter().find(|(seen, _)| *seen == index) {
            return Err(DaemonError::SameInterface {
                first: (*first).clone(),
                second: interface.clone(),
            });
        }
        seen.push((index, interface));
    }
    Ok(())
}

fn attach(
    ebpf: &mut aya::Ebpf,
    pin_dir: &std::path::Path,
    interface: &str,
    mode: XdpMode,
) -> Result<Attached, DaemonError> {
    let attached = match mode {
        XdpMode::Native => loader::attach_pinned(ebpf, pin_dir, interface, AttachMode::Native)?,
        XdpMode::Generic => loader::attach_pinned(ebpf, pin_dir, interface, AttachMode::Generic)?,
        XdpMode::Auto => {
            match loader::attach_pinned(ebpf, pin_dir, interface, AttachMode::Native) {
                Ok(attached) => attached,
                // Generic mode would only fail the same way.
                Err(e @ loader::AttachError::Occupied { .. }) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(interface, error = %error_chain(&e), "native XDP failed; falling back to generic (slower)");
                    loader::attach_pinned(ebpf, pin_dir, interface, AttachMode::Generic)?
                }
            }
        }
    };
    tracing::info!(interface, how = %String::from(attached), "XDP attached");
    Ok(attached)
}
