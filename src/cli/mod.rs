//! Operator commands. `main.rs` only calls [`main`]; every subcommand lives
//! here so the binary stays thin and the commands are testable.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

pub mod advise;
pub mod cost;
pub mod operator;
pub mod ops;
pub mod report;

use crate::aws::AwsClients;
use crate::config::{self, EX_CONFIG, EnvSource};
use crate::core::plan::Request;
use crate::daemon::{self, Daemon, Listeners};
use crate::telemetry::{self, LogFormat};

/// Exit code for failures at run time (sysexits.h `EX_SOFTWARE`).
pub const EX_SOFTWARE: i32 = 70;

#[derive(Debug, Parser)]
#[command(
    name = "failoverd",
    version,
    about = "Multi-region failover control daemon"
)]
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
        /// Once both listeners are bound (before READY=1), write the
        /// addresses they really bound to this file as JSON,
        /// {"admin":"127.0.0.1:41234","router":"127.0.0.1:41235","pid":N},
        /// atomically (temporary file, then rename). With port 0 in
        /// listen.admin and listen.router the OS picks free ports and this
        /// file is how a supervisor or a test learns them.
        #[arg(long, value_name = "PATH")]
        bound_file: Option<PathBuf>,
    },
    /// Validate a configuration and print it resolved (exit 78 if invalid).
    /// Given several region files (`failoverd check-config regions/*.toml`),
    /// validate each and compare the settings every daemon of a fleet must
    /// share (config::fleet), naming the file and the settings that differ.
    CheckConfig {
        /// Region file, e.g. regions/us-east-1.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Region files of one fleet (each with the base.toml beside it; a
        /// base.toml named here is skipped, being their layer).
        #[arg(value_name = "FILE", required_unless_present = "config")]
        files: Vec<PathBuf>,
        /// Also check against AWS what the files cannot tell: every Route 53
        /// health check is of a type failoverd evaluates, and every SageMaker
        /// endpoint the files route to exists in its region.
        #[arg(long)]
        aws: bool,
    },
    /// Show the control record, the health matrix, tokens and recent events
    /// (reads the tables directly; no daemon needed).
    Status {
        #[arg(long)]
        config: PathBuf,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// How many journal events to show.
        #[arg(long, default_value_t = 20)]
        events: usize,
    },
    /// Fail over to REGION (manual). Refused if unsafe unless --force.
    Failover {
        #[arg(long)]
        config: PathBuf,
        /// Target region.
        #[arg(long)]
        to: String,
        /// Why (recorded in the control record and the journal).
        #[arg(long)]
        reason: String,
        /// Do not wait for the old region to drain.
        #[arg(long)]
        ungraceful: bool,
        #[command(flatten)]
        common: MutationArgs,
    },
    /// Fail back to the most preferred region (priority 1).
    Failback {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "failback")]
        reason: String,
        #[command(flatten)]
        common: MutationArgs,
    },
    /// Stop automatic failover (in-flight failovers finish).
    Pause {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        yes: bool,
        /// Who is acting, recorded beside the AWS identity (STS
        /// GetCallerIdentity), or alone when STS cannot be reached.
        #[arg(long, env = "USER")]
        operator: Option<String>,
    },
    /// Recommend provisioned, serverless or batch (and scheduled scaling)
    /// per model from observed traffic (the seed's decision matrix).
    Advise {
        #[arg(long)]
        config: PathBuf,
        /// Read the observations (TrafficSet JSON) from FILE, `-` for stdin,
        /// instead of the daemon's admin endpoint (`GET /traffic`).
        #[arg(long)]
        from: Option<PathBuf>,
        /// Admin base URL to ask instead of the one in the config, e.g.
        /// http://10.0.0.5:9090.
        #[arg(long, conflicts_with = "from")]
        admin: Option<String>,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Write the report of one failover (timeline, figures, every journal
    /// entry) from the journal: HTML and/or JSON by each file's extension.
    Report {
        #[arg(long)]
        config: PathBuf,
        /// The failover's epoch (`failoverd status` shows the current one).
        #[arg(long)]
        epoch: u64,
        /// Where to write: FILE.html, FILE.json, or - (JSON on stdout).
        /// Repeat for both.
        #[arg(long, required = true, value_name = "FILE")]
        output: Vec<PathBuf>,
        /// Journal entries to read at most (newest first).
        #[arg(long, default_value_t = report::DEFAULT_EVENTS)]
        events: usize,
    },
    /// Show what the daemons' cost controls (scheduled capacity, idle
    /// detection) would do to each region's endpoints now, and why. Changes
    /// nothing: the daemons act, each on its own region.
    Cost {
        #[arg(long)]
        config: PathBuf,
        /// Required: this command never acts.
        #[arg(long)]
        dry_run: bool,
        /// Only these regions (repeatable); default every configured region.
        #[arg(long)]
        region: Vec<String>,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Approve the automatic failover the daemons proposed
    /// (`policy.approval = "manual"`); its target's daemon then claims it,
    /// if its conditions still hold.
    Approve {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        named: NamedProposal,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        yes: bool,
        /// Who is acting, recorded beside the AWS identity (STS
        /// GetCallerIdentity), or alone when STS cannot be reached.
        #[arg(long, env = "USER")]
        operator: Option<String>,
    },
    /// Reject the automatic failover the daemons proposed: no automatic
    /// failover of that epoch; a new proposal may come after
    /// `timings.min_failover_interval`.
    Reject {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        named: NamedProposal,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        yes: bool,
        /// Who is acting, recorded beside the AWS identity (STS
        /// GetCallerIdentity), or alone when STS cannot be reached.
        #[arg(long, env = "USER")]
        operator: Option<String>,
    },
    /// Allow automatic failover again.
    Resume {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "resume")]
        reason: String,
        #[arg(long)]
        yes: bool,
        /// Who is acting, recorded beside the AWS identity (STS
        /// GetCallerIdentity), or alone when STS cannot be reached.
        #[arg(long, env = "USER")]
        operator: Option<String>,
    },
}

/// Flags shared by failover and failback.
#[derive(Debug, clap::Args)]
pub struct MutationArgs {
    /// Override the health and quorum checks (journalled as forced).
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Who is acting, recorded beside the AWS identity (STS
    /// GetCallerIdentity), or alone when STS cannot be reached; defaults to
    /// $USER.
    #[arg(long, env = "USER")]
    pub operator: Option<String>,
}

/// Which proposal `approve` or `reject` decides, as `failoverd status`
/// shows it. The decision is written only for the proposal that is open
/// with these (epoch, id and target all bind it), so it never applies to a
/// proposal withdrawn and made again in between.
#[derive(Debug, Clone, clap::Args)]
pub struct NamedProposal {
    /// The proposal's id (`failoverd status`: "proposal ID").
    #[arg(long, required_unless_present = "epoch")]
    pub proposal: Option<String>,
    /// The proposal's epoch: must be the open proposal's (the prompt then
    /// shows which proposal that is, with its target and id).
    #[arg(long)]
    pub epoch: Option<u64>,
    /// The proposal's target region: refused if the open proposal goes
    /// elsewhere.
    #[arg(long)]
    pub to: Option<String>,
}

impl NamedProposal {
    /// Without a prompt (`--yes`), the operator has seen no target and id:
    /// an epoch alone could name a proposal made after they looked, so it
    /// must come with `--proposal` or `--to`.
    pub fn check(&self, yes: bool) -> Result<(), String> {
        if yes && self.proposal.is_none() && self.to.is_none() {
            return Err(
                "with --yes, name the proposal by --proposal ID (or --to REGION) as `failoverd status` shows it: an epoch alone may name a proposal made after you looked".into(),
            );
        }
        Ok(())
    }
}

/// Output format of read commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Parse the command line and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let env: EnvSource = std::env::vars().collect();
    match cli.command {
        Command::CheckConfig { config, files, aws } => {
            let files: Vec<PathBuf> = config.into_iter().chain(files).collect();
            match check_configs(&files, &env) {
                0 if aws => {
                    let mut code = 0;
                    for config in fleet_files(&files) {
                        let path = config.clone();
                        let c = with_clients(&config, &env, |cfg, ports| async move {
                            let found = crate::control::preflight::health_checks(
                                &cfg,
                                &*ports.health_checks,
                            )
                            .await;
                            let endpoints =
                                crate::control::preflight::endpoints(&cfg, &*ports.endpoints).await;
                            preflight_report(&path, &found).max(endpoints_report(&path, &endpoints))
                        });
                        code = code.max(c);
                    }
                    code
                }
                code => code,
            }
        }
        Command::Run { config, bound_file } => {
            run(cli.log_format, &config, bound_file.as_deref(), env)
        }
        Command::Advise {
            config,
            from,
            admin,
            output,
        } => advise::run(&config, &env, from.as_deref(), admin.as_deref(), output),
        Command::Cost { dry_run: false, .. } => cost::refuse_without_dry_run(),
        Command::Cost {
            config,
            dry_run: true,
            region,
            output,
        } => with_clients(&config, &env, |cfg, ports| async move {
            cost::run(&cfg, &ports, &region, output).await
        }),
        Command::Status {
            config,
            output,
            events,
        } => with_clients(&config, &env, |cfg, ports| async move {
            let report = ops::read_status(&cfg, &ports, events).await;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
                Output::Text => print!("{}", ops::render_status(&cfg, &report)),
            }
            if report.record_error.is_some() || report.votes_error.is_some() {
                ops::EX_UNAVAILABLE
            } else {
                0
            }
        }),
        Command::Failover {
            config,
            to,
            reason,
            ungraceful,
            common,
        } => {
            let force = common.force;
            mutate(
                &config,
                &env,
                common.operator,
                common.yes,
                move |operator| Request::Failover {
                    to,
                    reason,
                    ungraceful,
                    force,
                    operator,
                },
            )
        }
        Command::Failback {
            config,
            reason,
            common,
        } => {
            let force = common.force;
            mutate(
                &config,
                &env,
                common.operator,
                common.yes,
                move |operator| Request::Failback {
                    reason,
                    force,
                    operator,
                },
            )
        }
        Command::Pause {
            config,
            reason,
            yes,
            operator,
        } => mutate(&config, &env, operator, yes, move |operator| {
            Request::Pause { reason, operator }
        }),
        Command::Resume {
            config,
            reason,
            yes,
            operator,
        } => mutate(&config, &env, operator, yes, move |operator| {
            Request::Resume { reason, operator }
        }),
        Command::Approve {
            config,
            named,
            reason,
            yes,
            operator,
        } => {
            if let Err(why) = named.check(yes) {
                eprintln!("refused: {why}");
                return ops::EX_REFUSED;
            }
            mutate(&config, &env, operator, yes, move |operator| {
                Request::Approve {
                    epoch: named.epoch,
                    proposal: named.proposal,
                    to: named.to,
                    reason,
                    operator,
                }
            })
        }
        Command::Reject {
            config,
            named,
            reason,
            yes,
            operator,
        } => {
            if let Err(why) = named.check(yes) {
                eprintln!("refused: {why}");
                return ops::EX_REFUSED;
            }
            mutate(&config, &env, operator, yes, move |operator| {
                Request::Reject {
                    epoch: named.epoch,
                    proposal: named.proposal,
                    to: named.to,
                    reason,
                    operator,
                }
            })
        }
        Command::Report {
            config,
            epoch,
            output,
            events,
        } => report::run(&config, &env, epoch, &output, events),
    }
}

/// Load config (exit 78 if invalid), build the AWS ports, run `f` on a runtime.
fn with_clients<F, Fut>(path: &std::path::Path, env: &EnvSource, f: F) -> i32
where
    F: FnOnce(Arc<crate::config::Config>, crate::ports::Ports) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    with_aws(path, env, |cfg, ports, _| f(cfg, ports))
}

/// An operator's change: who is acting (`operator::identify`), then plan
/// and apply it (`ops::run_request`).
fn mutate(
    path: &std::path::Path,
    env: &EnvSource,
    name: Option<String>,
    yes: bool,
    request: impl FnOnce(String) -> Request,
) -> i32 {
    with_aws(path, env, |cfg, ports, clients| async move {
        let sts = crate::aws::sts::AwsIdentity::new(&clients, &cfg.region);
        let who = match operator::identify(&sts, name.as_deref()).await {
            Ok(w) => w,
            Err(e) => {
                eprintln!("refused: {}", crate::error_chain(&e));
                return ops::EX_REFUSED;
            }
        };
        ops::run_request(&cfg, &ports, request(who), yes).await
    })
}

/// [`with_clients`], also handing over the SDK clients.
fn with_aws<F, Fut>(path: &std::path::Path, env: &EnvSource, f: F) -> i32
where
    F: FnOnce(Arc<crate::config::Config>, crate::ports::Ports, Arc<AwsClients>) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let cfg = match config::load(path, env) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("{}", e.report());
            eprintln!("{}: configuration is invalid", path.display());
            return EX_CONFIG;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return EX_SOFTWARE;
        }
    };
    rt.block_on(async move {
        let clients = Arc::new(AwsClients::from_default_chain(cfg.endpoints.clone()).await);
        // The operator commands do not probe: they read the fleet's votes.
        let ports = crate::aws::ports(
            &cfg,
            clients.clone(),
            Arc::new(crate::ports::probes::NoProbes),
        );
        f(cfg, ports, clients).await
    })
}

/// Print the preflight's findings; the exit code (78 when a check is refused).
fn preflight_report(path: &std::path::Path, found: &crate::control::preflight::Findings) -> i32 {
    for (id, why) in &found.unverified {
        eprintln!("warning: Route 53 health check {id} could not be read: {why}");
    }
    for r in &found.refused {
        eprintln!("error: {}: {} ({}): {}", path.display(), r.key, r.id, r.why);
    }
    if found.refused.is_empty() {
        0
    } else {
        eprintln!("{}: configuration is invalid", path.display());
        EX_CONFIG
    }
}

/// `check-config --aws`'s SageMaker part: a routed endpoint that does not
/// exist is an error (that region cannot serve what is mapped to it); one
/// that exists but does not serve is a warning (it may be updating).
fn endpoints_report(
    path: &std::path::Path,
    found: &crate::control::preflight::EndpointFindings,
) -> i32 {
    let what = |f: &crate::control::preflight::EndpointFinding| {
        if let Some(c) = &f.component {
            return format!(
                "inference component {c} on SageMaker endpoint {} in {}",
                f.endpoint, f.region
            );
        }
        let components = if f.components.is_empty() {
            String::new()
        } else {
            format!(", hosting inference components {:?}", f.components)
        };
        format!(
            "SageMaker endpoint {} in {} ({} path{components})",
            f.endpoint, f.region, f.path
        )
    };
    for (name, why) in &found.unverified {
        eprintln!("warning: SageMaker endpoint {name} could not be read: {why}");
    }
    for f in &found.not_serving {
        eprintln!(
            "warning: {}: {} is {}, which does not serve",
            path.display(),
            what(f),
            f.status.as_deref().unwrap_or("?")
        );
    }
    for f in &found.missing {
        let why = match &f.status {
            Some(elsewhere) => format!("is not there: it runs {elsewhere}"),
            None => "does not exist".to_string(),
        };
        eprintln!(
            "error: {}: {} {why} (regions[].sagemaker or models[].regions.{} names it)",
            path.display(),
            what(f),
            f.region
        );
    }
    if found.missing.is_empty() {
        0
    } else {
        eprintln!("{}: configuration is invalid", path.display());
        EX_CONFIG
    }
}

/// The region files among `files`: a `base.toml` is the layer under the
/// region files beside it, not a daemon's file (a shell glob names it).
fn fleet_files(files: &[PathBuf]) -> Vec<PathBuf> {
    if files.len() < 2 {
        return files.to_vec();
    }
    files
        .iter()
        .filter(|f| f.file_name().is_none_or(|n| n != "base.toml"))
        .cloned()
        .collect()
}

/// `check-config`: one file is validated and printed resolved; several are
/// each validated, then compared as one fleet (config::fleet). Warnings go
/// to stderr and do not change the exit code; an invalid file or a fleet
/// whose files disagree exits 78.
fn check_configs(files: &[PathBuf], env: &EnvSource) -> i32 {
    let fleet = fleet_files(files);
    if let [path] = fleet.as_slice() {
        return match config::load(path, env) {
            Ok(cfg) => {
                print_warnings(&cfg);
                print!("{}", cfg.to_redacted_toml());
                0
            }
            Err(e) => {
                eprintln!("{}", e.report());
                eprintln!("{}: configuration is invalid", path.display());
                EX_CONFIG
            }
        };
    }
    for skipped in files.iter().filter(|f| !fleet.contains(f)) {
        eprintln!(
            "note: {} skipped: it is the layer under the region files beside it",
            skipped.display()
        );
    }
    if fleet.is_empty() {
        eprintln!("error: no region file to check");
        return EX_CONFIG;
    }
    let mut code = 0;
    let mut valid: Vec<(&PathBuf, config::Config)> = Vec::new();
    for path in &fleet {
        match config::load(path, env) {
            Ok(cfg) => {
                print_warnings(&cfg);
                println!(
                    "{}: valid (region {}), fleet fingerprint {}",
                    path.display(),
                    cfg.region,
                    config::fleet::Fingerprint::of(&cfg).digest()
                );
                valid.push((path, cfg));
            }
            Err(e) => {
                eprintln!("{}", e.report());
                eprintln!("{}: configuration is invalid", path.display());
                code = EX_CONFIG;
            }
        }
    }
    if !fleet_agrees(&valid) {
        code = EX_CONFIG;
    }
    code
}

fn print_warnings(cfg: &config::Config) {
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    // Not a constraint between settings (cfg.warnings), but exposure:
    // printed by check-config and logged at start, the shipped files' too.
    let file = cfg.sources.last().map(|p| p.display().to_string());
    for (key, addr) in cfg.listen.plaintext_exposed() {
        eprintln!(
            "warning: {}: {key}: plain HTTP on {addr}, which is not loopback: anyone on the path can read and alter requests; set {key}_tls (docs/threat-model.md)",
            file.as_deref().unwrap_or("(every layer)")
        );
    }
}

/// Compare the fleet fingerprints of valid region files; print what
/// differs, file by file, against the files most of them agree with.
/// False when they disagree, or two files are for one region.
fn fleet_agrees(valid: &[(&PathBuf, config::Config)]) -> bool {
    use config::fleet::{Fingerprint, differences};
    let mut ok = true;
    let mut by_region: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (path, cfg) in valid {
        by_region
            .entry(cfg.region.as_str())
            .or_default()
            .push(path.display().to_string());
    }
    for (region, paths) in by_region.iter().filter(|(_, p)| p.len() > 1) {
        eprintln!(
            "error: {} are all for region {region}: one daemon (and one file) per region",
            paths.join(", ")
        );
        ok = false;
    }
    let prints: Vec<Fingerprint> = valid.iter().map(|(_, c)| Fingerprint::of(c)).collect();
    // The reference: the fingerprint most files share (the first on a tie).
    let count = |f: &Fingerprint| prints.iter().filter(|p| *p == f).count();
    let Some(reference) = prints
        .iter()
        .enumerate()
        .max_by_key(|(i, f)| (count(f), std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
    else {
        return ok;
    };
    let agreeing: Vec<String> = valid
        .iter()
        .zip(&prints)
        .filter(|(_, f)| **f == prints[reference])
        .map(|((p, _), _)| p.display().to_string())
        .collect();
    let (ref_path, ref_cfg) = &valid[reference];
    for ((path, cfg), print) in valid.iter().zip(&prints) {
        let groups = prints[reference].differs(print);
        if groups.is_empty() {
            continue;
        }
        ok = false;
        eprintln!(
            "error: {}: fleet settings differ from {} ({}) in: {}",
            path.display(),
            agreeing.join(", "),
            prints[reference].digest(),
            groups.join(", ")
        );
        for g in groups {
            for (key, there, here) in differences(ref_cfg, cfg, g) {
                eprintln!(
                    "error: {}: {g}: {key} = {here}, but {there} in {}",
                    path.display(),
                    ref_path.display()
                );
            }
        }
    }
    if ok && valid.len() > 1 {
        println!(
            "{} region files agree on the fleet's settings: fingerprint {}",
            valid.len(),
            prints[reference].digest()
        );
    }
    ok
}

fn run(
    format: LogFormat,
    path: &std::path::Path,
    bound_file: Option<&std::path::Path>,
    env: EnvSource,
) -> i32 {
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
        let clients = Arc::new(AwsClients::from_default_chain(cfg.endpoints.clone()).await);
        // What the files cannot tell, before anything is bound.
        let r53 = crate::aws::route53::AwsHealthChecks::new(clients.route53());
        let found = crate::control::preflight::health_checks(&cfg, &r53).await;
        for (id, why) in &found.unverified {
            tracing::warn!(check = %id, %why, "cannot verify a Route 53 health check's type at start; it will be checked when read");
        }
        if !found.refused.is_empty() {
            return preflight_report(path, &found);
        }
        let listeners = match Listeners::bind(&cfg).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot start");
                return EX_SOFTWARE;
            }
        };
        // Report the bound addresses before READY=1, so whoever waits for
        // readiness can read them. A file that cannot be written is fatal:
        // whoever asked for it cannot find the daemon without it.
        if let Some(file) = bound_file
            && let Err(e) = listeners.addrs().and_then(|a| a.write_to(file)) {
                tracing::error!(error = %crate::error_chain(&e), "cannot start");
                return EX_SOFTWARE;
            }
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
