//! `failoverd-lab`: the local lab's own tools. Not part of the daemon:
//! nothing under `src/` knows it exists.
//!
//! - `model-server`: speaks the SageMaker runtime wire API with controllable
//!   cold starts, latency, throttling and outages (moto's InvokeEndpoint
//!   always succeeds, so drills need this).
//! - `provision`: deploys `deploy/cloudformation` (region and IAM stacks)
//!   through moto's CloudFormation, and what moto cannot deploy (the
//!   tables, the user's SageMaker endpoints) through failoverd's adapters.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod drill;
mod model_server;
mod provision;
mod replicate;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "failoverd-lab", about = "The failoverd local lab's tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the SageMaker runtime API on loopback.
    ModelServer(model_server::Args),
    /// Create the lab's AWS resources in moto and render the daemons' config.
    Provision(provision::Args),
    /// Emulate global-table replication (eventual mode): lagged, last writer wins.
    Replicate(replicate::Args),
    /// Invert (or restore) a region's Route 53 health check, as drills do.
    Invert(drill::InvertArgs),
    /// Print the journal since an inversion, and the drill's figures.
    Timeline(drill::TimelineArgs),
}

fn main() {
    let cli = Cli::parse();
    let env: failoverd::config::EnvSource = std::env::vars().collect();
    failoverd::telemetry::init(failoverd::telemetry::LogFormat::Text, &env);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(async move {
        match cli.command {
            Command::ModelServer(args) => model_server::main(args).await,
            Command::Provision(args) => provision::main(args, env).await,
            Command::Invert(args) => drill::invert(args, env).await,
            Command::Replicate(args) => replicate::main(args, env).await,
            Command::Timeline(args) => drill::timeline(args, env).await,
        }
    });
    std::process::exit(code);
}
