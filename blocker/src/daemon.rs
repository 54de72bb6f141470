//! `blocker run`: keeps the kernel's ban maps equal to what LAPI says, for as long as it runs.
//!
//! Start-up: load and attach the program, write ports, mode and allow list, adopt whatever the
//! maps hold, check LAPI once (HEAD, only here: it moves LAPI's "last pull" time), then pull
//! `startup=true`. After that, deltas every `update_frequency`. Any failure keeps the maps as
//! they are, logs the cause, backs off, and the next success is a full `startup=true` resync.

use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use crate::{
    clock,
    config::{Config, ConfigError, Mode, XdpMode},
    error_chain,
    lapi::{Backoff, LapiClient, LapiError, LapiSettings},
    loader::{self, AttachMode},
    maps::{KernelMaps, MapsError},
    sync::Sync,
};

/// How often expired bans are looked for, whatever the polling interval.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

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
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Load(#[from] loader::LoadError),
    #[error(transparent)]
    Attach(#[from] loader::AttachError),
    #[error("interface {interface} does not exist")]
    NoInterface { interface: String },
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error("cannot set up the LAPI client")]
    Lapi(#[source] LapiError),
}

/// Runs until `shutdown` completes.
pub async fn run(
    settings: DaemonSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let mut ebpf = loader::load()?;
    let mut maps = KernelMaps::take(&mut ebpf)?;
    configure(&mut maps, &settings)?;
    for interface in &settings.interfaces {
        attach(&mut ebpf, interface, settings.xdp_mode)?;
    }
    let client = LapiClient::new(&settings.lapi).map_err(DaemonError::Lapi)?;
    let mut sync = Sync::new(&settings.supported_types, maps.bans()?);
    tracing::info!(
        interfaces = ?settings.interfaces,
        ports = ?settings.ports,
        observe = settings.observe,
        adopted = sync.banned_prefixes(),
        lapi = %client.endpoint(),
        "blocker is enforcing"
    );
    match client.check().await {
        Ok(()) => tracing::info!("LAPI reachable and the API key accepted"),
        Err(e) => tracing::warn!(error = %error_chain(&e), "LAPI check failed; enforcing what the maps hold and retrying"),
    }

    tokio::pin!(shutdown);
    let mut expiry = tokio::time::interval(EXPIRY_TICK);
    let mut backoff = Backoff::default();
    let mut next_pull = tokio::time::Instant::now();
    let mut resync = true;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = expiry.tick() => {
                let ops = sync.tick(SystemTime::now(), clock::boottime_ns());
                if !ops.is_empty() {
                    let applied = sync.apply(ops, &mut maps);
                    tracing::info!(unbanned = applied.unbanned, "expired bans removed");
                }
            }
            () = tokio::time::sleep_until(next_pull) => {
                let delay = match pull(&client, &mut sync, &mut maps, resync).await {
                    Ok(()) => {
                        resync = false;
                        backoff.reset();
                        settings.update_frequency
                    }
                    Err(e) => {
                        resync = true;
                        let delay = backoff.next_delay();
                        tracing::warn!(error = %error_chain(&e), retry_in = ?delay, "LAPI pull failed; the maps keep their bans");
                        delay
                    }
                };
                next_pull = tokio::time::Instant::now() + delay;
            }
        }
    }
    tracing::info!("stopping");
    Ok(())
}

/// One pull: a `startup=true` resync or a delta, applied to the maps.
async fn pull(
    client: &LapiClient,
    sync: &mut Sync,
    maps: &mut KernelMaps,
    resync: bool,
) -> Result<(), LapiError> {
    let batch = client.stream(resync, SystemTime::now()).await?;
    for skipped in &batch.skipped {
        tracing::warn!(?skipped, "decision skipped");
    }
    let (new, deleted, skipped) = (batch.new.len(), batch.deleted.len(), batch.skipped.len());
    let (wall, boot) = (SystemTime::now(), clock::boottime_ns());
    let ops = if resync { sync.resync(batch, wall, boot) } else { sync.delta(batch, wall, boot) };
    let applied = sync.apply(ops, maps);
    if resync || applied != crate::sync::Applied::default() || skipped > 0 {
        tracing::info!(
            startup = resync,
            new,
            deleted,
            skipped,
            banned = applied.banned,
            unbanned = applied.unbanned,
            failed = applied.failed,
            prefixes = sync.banned_prefixes(),
            "decisions applied"
        );
    }
    Ok(())
}

/// Writes ports, mode and the allow list (exactly the configured one) into the maps.
fn configure(maps: &mut KernelMaps, settings: &DaemonSettings) -> Result<(), MapsError> {
    maps.set_ports(&settings.ports)?;
    let flags = if settings.observe { blocker_common::flags::OBSERVE } else { 0 };
    maps.set_settings(blocker_common::Settings { flags, reserved: 0 })?;
    for stale in maps.allows()? {
        if !settings.allowlist.contains(&stale) {
            maps.remove_allow(stale)?;
        }
    }
    for net in &settings.allowlist {
        maps.insert_allow(*net)?;
    }
    Ok(())
}

fn attach(
    ebpf: &mut aya::Ebpf,
    interface: &str,
    mode: XdpMode,
) -> Result<(), DaemonError> {
    let name = std::ffi::CString::new(interface)
        .map_err(|_| DaemonError::NoInterface { interface: interface.into() })?;
    // SAFETY: a valid C string.
    if unsafe { libc::if_nametoindex(name.as_ptr()) } == 0 {
        return Err(DaemonError::NoInterface { interface: interface.into() });
    }
    let mode = match mode {
        XdpMode::Native => AttachMode::Native,
        XdpMode::Generic => AttachMode::Generic,
        XdpMode::Auto => match loader::attach(ebpf, interface, AttachMode::Native) {
            Ok(_) => {
                tracing::info!(interface, mode = "native", "XDP attached");
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(interface, error = %error_chain(&e), "native XDP failed; falling back to generic (slower)");
                AttachMode::Generic
            }
        },
    };
    loader::attach(ebpf, interface, mode)?;
    tracing::info!(interface, ?mode, "XDP attached");
    Ok(())
}
