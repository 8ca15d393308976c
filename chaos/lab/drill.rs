//! `failoverd-lab invert`: flip a region's Route 53 health check the way a
//! chaos drill does (inverting, not disabling: a disabled check counts as
//! healthy and never fails anything over). Prints the unix-ms time of the
//! flip so drills can measure from it.
//!
//! `failoverd-lab timeline`: print the journal since a time, with offsets,
//! and the two drill figures (inversion -> StartExecution, inversion ->
//! steady in the new region). With `--report-dir DIR` it also writes the
//! drill's report, `DIR/drill-epoch-<N>.html` (timeline SVG, figures, every
//! entry; self-contained) and `.json` (every event and figure), with the
//! same code as `failoverd report` plus the injection as a milestone.

use std::path::PathBuf;

use failoverd::aws::AwsClients;
use failoverd::aws::control_table::ControlTable;
use failoverd::config::{self, EnvSource};
use failoverd::ports::ControlStore;
use failoverd::ports::clock::{rfc3339, wall_ms as now_ms};

#[derive(Debug, clap::Args)]
pub struct InvertArgs {
    /// A region file of the lab (for endpoints and health-check ids).
    #[arg(long)]
    config: PathBuf,
    /// Region whose health check to flip.
    #[arg(long)]
    region: String,
    /// Restore the check instead (Inverted = false).
    #[arg(long)]
    revert: bool,
}

pub async fn invert(args: InvertArgs, env: EnvSource) -> i32 {
    let cfg = match config::load(&args.config, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.report());
            return config::EX_CONFIG;
        }
    };
    let Some(region) = cfg.region(&args.region) else {
        eprintln!("{} is not a configured region", args.region);
        return 2;
    };
    let clients = AwsClients::from_default_chain(cfg.endpoints.clone()).await;
    for id in &region.health_check_ids {
        if let Err(e) =
            failoverd::aws::route53::set_inverted(&clients.route53(), id, !args.revert).await
        {
            eprintln!("{e}");
            return 1;
        }
    }
    println!("{}", now_ms());
    0
}

#[derive(Debug, clap::Args)]
pub struct TimelineArgs {
    #[arg(long)]
    config: PathBuf,
    /// Unix ms of the inversion (what `invert` printed).
    #[arg(long)]
    since: u64,
    /// The epoch of the failover to measure.
    #[arg(long)]
    epoch: u64,
    /// What happened at `since` (for the heading).
    #[arg(long, default_value = "the inversion")]
    label: String,
    /// Also write the drill report (HTML and JSON) into this folder.
    #[arg(long)]
    report_dir: Option<PathBuf>,
}

pub async fn timeline(args: TimelineArgs, env: EnvSource) -> i32 {
    let cfg = match config::load(&args.config, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.report());
            return config::EX_CONFIG;
        }
    };
    let clients = AwsClients::from_default_chain(cfg.endpoints.clone()).await;
    let region = cfg.control_region_for(&cfg.region).to_string();
    let table = ControlTable::new(clients.dynamodb(&region), &cfg.tables.control, region);
    // The workflow journals its end just after it writes the record, so
    // the caller (which waited for the record) may be a moment early: wait
    // for the epoch's end in the journal too, level-triggered, at most 20 s.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let events = loop {
        let events = match table.events(1000, now_ms()).await {
            Ok(page) => page.items,
            Err(e) => {
                eprintln!("{}", failoverd::error_chain(&e));
                return 1;
            }
        };
        let ended = events.iter().any(|e| {
            e.epoch == Some(args.epoch)
                && matches!(e.kind.as_str(), "workflow_done" | "workflow_aborted")
        });
        if ended || tokio::time::Instant::now() >= deadline {
            break events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    println!("timeline from {} at {}:", args.label, rfc3339(args.since));
    let mut started = None;
    let mut steady = None;
    for e in events.iter().filter(|e| e.at + 2000 >= args.since) {
        let dt = e.at as i64 - args.since as i64;
        println!(
            "  {:>+8.3}s  {:<11} {:<18} {}{}",
            dt as f64 / 1000.0,
            e.who,
            e.kind,
            e.epoch.map(|x| format!("[epoch {x}] ")).unwrap_or_default(),
            e.detail
        );
        if e.epoch == Some(args.epoch) && e.kind == "execution_started" && started.is_none() {
            started = Some(dt);
        }
        if e.epoch == Some(args.epoch) && e.kind == "workflow_done" {
            steady = Some(dt);
        }
    }
    if let Some(dir) = &args.report_dir {
        let injection = failoverd::cli::report::Injection {
            label: args.label.clone(),
            at: args.since,
        };
        let written = std::fs::create_dir_all(dir)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                failoverd::cli::report::build(
                    &events,
                    false,
                    args.epoch,
                    &cfg.tables.control,
                    Some(injection),
                    now_ms(),
                )
                .map_err(|e| failoverd::error_chain(&e))
            })
            .and_then(|r| {
                let paths = [
                    dir.join(format!("drill-epoch-{}.html", args.epoch)),
                    dir.join(format!("drill-epoch-{}.json", args.epoch)),
                ];
                failoverd::cli::report::write(&r, &paths)
                    .map(|()| paths)
                    .map_err(|e| failoverd::error_chain(&e))
            });
        match written {
            Ok(paths) => {
                for p in paths {
                    println!("report: {}", p.display());
                }
            }
            Err(e) => {
                eprintln!("cannot write the drill report: {e}");
                return 1;
            }
        }
    }
    match (started, steady) {
        (Some(a), Some(b)) => {
            println!(
                "figure: {} -> StartExecution: {:.3} s",
                args.label,
                a as f64 / 1000.0
            );
            println!(
                "figure: {} -> steady in the new region: {:.3} s",
                args.label,
                b as f64 / 1000.0
            );
            0
        }
        _ => {
            println!(
                "figures: epoch {} has not both started and finished yet",
                args.epoch
            );
            1
        }
    }
}
