//! Operator commands. `main.rs` only calls [`main`]; every subcommand lives
//! here so the binary stays thin and the commands are testable.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::aws::AwsClients;
use crate::config::{self, EX_CONFIG, EnvSource};
use crate::daemon::{self, Daemon, Listeners};
use crate::telemetry::{self, LogFormat};

/// Exit code for failures at run time (sysexits.h `EX_SOFTWARE`).
pub const EX_SOFTWARE: i32 = 70;

#[derive(Debug, Parser)]
#[command(name = "failoverd", version, about = "Multi-region failover control daemon")]
pub struct Cli {
    /// Log format: text on a terminal, JSON otherwise (journald), unless set.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon for the region the file names.
    Run {
        /// Region file, e.g. regions/us-east-1.toml (base.toml beside it is loaded first).
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a configuration and print it resolved (exit 78 if invalid).
    CheckConfig {
        /// Region file, e.g. regions/us-east-1.toml.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Parse the command line and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let env: EnvSource = std::env::vars().collect();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config, &env),
        Command::Run { config } => run(cli.log_format, &config, env),
    }
}

fn check_config(path: &std::path::Path, env: &EnvSource) -> i32 {
    match config::load(path, env) {
        Ok(cfg) => {
            print!("{}", cfg.to_redacted_toml());
            0
        }
        Err(e) => {
            eprintln!("{}", e.report());
            eprintln!("{}: configuration is invalid", path.display());
            EX_CONFIG
        }
    }
}

fn run(format: LogFormat, path: &std::path::Path, env: EnvSource) -> i32 {
    // Validate before anything else: an invalid file must not bind a port.
    let cfg = match config::load(path, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.report());
            eprintln!("{}: configuration is invalid; not starting", path.display());
            return EX_CONFIG;
        }
    };
    telemetry::init(format, &env);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return EX_SOFTWARE;
        }
    };
    rt.block_on(async move {
        let control = match daemon::signal_control() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot start");
                return EX_SOFTWARE;
            }
        };
        let listeners = match Listeners::bind(&cfg).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot start");
                return EX_SOFTWARE;
            }
        };
        let clients = Arc::new(AwsClients::from_default_chain(cfg.endpoints.clone()).await);
        let d = Daemon {
            notifier: daemon::notify::Notifier::from_env(&env),
            config: cfg,
            config_path: path.to_path_buf(),
            env,
            clients,
        };
        match d.run(listeners, control).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "daemon failed");
                EX_SOFTWARE
            }
        }
    })
}
