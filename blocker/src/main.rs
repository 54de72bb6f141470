//! The `blocker` command line: run the daemon, check or show the config.

use std::path::PathBuf;

use anyhow::Context as _;
use blocker::{
    config::{Config, DEFAULT_CONFIG_PATH},
    daemon::{self, DaemonSettings},
};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

/// `CrowdSec` bouncer for mail servers: drops SYNs to mail ports from banned prefixes with XDP.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enforce LAPI's decisions until stopped (SIGTERM, SIGINT).
    Run,
    /// Validate the configuration and exit.
    CheckConfig,
    /// Print the configuration with defaults filled in and the API key redacted.
    ShowConfig,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("blocker: {e:#}");
        std::process::exit(1);
    }
}

fn load(path: &PathBuf) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig => {
            let config = load(&cli.config)?;
            DaemonSettings::from_config(&config)?;
            println!("{}: ok", cli.config.display());
            Ok(())
        }
        Command::ShowConfig => {
            print!("{}", load(&cli.config)?.to_yaml_redacted()?);
            Ok(())
        }
        Command::Run => {
            let config = load(&cli.config)?;
            tracing_subscriber::fmt()
                .with_max_level(config.log_level().tracing_level())
                .with_target(false)
                .init();
            let settings = DaemonSettings::from_config(&config)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            runtime.block_on(async {
                let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
                let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
                let stop = async {
                    tokio::select! {
                        _ = sigterm.recv() => {}
                        _ = sigint.recv() => {}
                    }
                };
                daemon::run(settings, stop).await.map_err(anyhow::Error::from)
            })?;
            Ok(())
        }
    }
}
