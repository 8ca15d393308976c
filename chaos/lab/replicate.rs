//! `failoverd-lab replicate`: the lab's stand-in for DynamoDB global-table
//! replication in eventual (MREC) mode, which moto does not emulate.
//!
//! Semantics copied from MREC: every region has its own replica; a write is
//! accepted locally (conditions are evaluated against the local replica
//! only) and reaches the other replicas after a lag; concurrent writes to
//! one item are resolved last-writer-wins, silently.
//!
//! How: every `--interval` it scans each region's table, detects items that
//! changed locally since the last pass (a local write, stamped with the time
//! it was seen), and after `--lag` copies each write to every other region
//! unless that region has a newer write of the same item. Scanning is fine
//! here: it is lab tooling over a handful of items, not the daemon.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use failoverd::aws::AwsClients;
use failoverd::config::{self, EnvSource};
use failoverd::ports::clock::wall_ms as now_ms;
use tracing::{info, warn};

type Item = HashMap<String, AttributeValue>;
type Key = (String, String);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A region file of the lab (regions, table name, endpoints).
    #[arg(long)]
    config: PathBuf,
    /// Replication lag.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    lag: Duration,
    /// How often replicas are compared.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    interval: Duration,
}

/// A write waiting to reach the other replicas.
struct Pending {
    key: Key,
    item: Option<Item>,
    origin: String,
    at: u64,
}

fn key_of(item: &Item) -> Option<Key> {
    Some((
        item.get("pk")?.as_s().ok()?.clone(),
        item.get("sk")?.as_s().ok()?.clone(),
    ))
}

pub async fn main(args: Args, env: EnvSource) -> i32 {
    let cfg = match config::load(&args.config, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.report());
            return config::EX_CONFIG;
        }
    };
    let clients = AwsClients::from_default_chain(cfg.endpoints.clone()).await;
    let regions: Vec<String> = cfg.regions.iter().map(|r| r.name.clone()).collect();
    let table = cfg.tables.control.clone();
    // What each replica held at the last pass, and when each item was last written there.
    let mut seen: HashMap<String, HashMap<Key, Item>> = HashMap::new();
    let mut written_at: HashMap<(String, Key), u64> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install SIGTERM handler: {e}");
            return 1;
        }
    };
    info!(?regions, lag = ?args.lag, "replicating (last writer wins)");
    loop {
        let now = now_ms();
        for r in &regions {
            let Some(current) = scan(&clients, r, &table).await else {
                continue;
            };
            let before = seen.entry(r.clone()).or_default();
            for (k, item) in &current {
                if before.get(k) != Some(item) {
                    written_at.insert((r.clone(), k.clone()), now);
                    pending.push(Pending {
                        key: k.clone(),
                        item: Some(item.clone()),
                        origin: r.clone(),
                        at: now,
                    });
                }
            }
            for k in before.keys() {
                if !current.contains_key(k) {
                    written_at.insert((r.clone(), k.clone()), now);
                    pending.push(Pending {
                        key: k.clone(),
                        item: None,
                        origin: r.clone(),
                        at: now,
                    });
                }
            }
            *before = current;
        }
        let lag = args.lag.as_millis() as u64;
        let (due, later): (Vec<Pending>, Vec<Pending>) =
            pending.into_iter().partition(|p| p.at + lag <= now);
        pending = later;
        for p in due {
            for r in regions.iter().filter(|r| **r != p.origin) {
                // Last writer wins: a newer write in the target stays.
                let theirs = written_at
                    .get(&(r.clone(), p.key.clone()))
                    .copied()
                    .unwrap_or(0);
                if theirs > p.at {
                    continue;
                }
                let ddb = clients.dynamodb(r);
                let result = match &p.item {
                    Some(item) => ddb
                        .put_item()
                        .table_name(&table)
                        .set_item(Some(item.clone()))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()),
                    None => ddb
                        .delete_item()
                        .table_name(&table)
                        .key("pk", AttributeValue::S(p.key.0.clone()))
                        .key("sk", AttributeValue::S(p.key.1.clone()))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()),
                };
                match result {
                    Ok(()) => {
                        // Our own copy must not look like a local write next pass.
                        let snapshot = seen.entry(r.clone()).or_default();
                        match &p.item {
                            Some(item) => snapshot.insert(p.key.clone(), item.clone()),
                            None => snapshot.remove(&p.key),
                        };
                        written_at.insert((r.clone(), p.key.clone()), p.at);
                    }
                    Err(e) => warn!(error = %e, region = %r, "replication write failed"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = term.recv() => return 0,
        }
    }
}

async fn scan(clients: &AwsClients, region: &str, table: &str) -> Option<HashMap<Key, Item>> {
    let mut out = HashMap::new();
    let mut start = None;
    loop {
        let r = clients
            .dynamodb(region)
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await;
        let page = match r {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), %region, "scan failed");
                return None;
            }
        };
        for item in page.items() {
            if let Some(k) = key_of(item) {
                out.insert(k, item.clone());
            }
        }
        match page.last_evaluated_key() {
            Some(k) => start = Some(k.clone()),
            None => return Some(out),
        }
    }
}
