//! Router benchmark (not a pass/fail test: it prints figures). Run it with
//! `chaos/bench-router.sh`, or:
//!
//! ```text
//! cargo bench --bench router
//! ```
//!
//! On loopback, with a 1 KiB payload and the same SageMaker runtime SDK
//! client (retries off) for both: first straight at the lab's model server,
//! then at a real `failoverd run` daemon's router (which speaks the same
//! wire API and forwards to that model server). Prints throughput, latency
//! p50/p90/p99 of both, the difference (the router's added latency), and the
//! daemon's RSS before and under load (from /proc). The daemon's other AWS
//! endpoints point at a closed port, so its control loop idles.
//!
//! Two kinds of load: closed-loop (`BENCH_CONCURRENCY` callers, each sending
//! its next request when the last one returns: throughput), and open-loop at
//! a fixed `BENCH_RATE` (the issue's goal is stated at 1000 req/s): requests
//! leave on a schedule whatever the answers do, and each latency is counted
//! from its scheduled start, so a stall is not hidden (no coordinated
//! omission).
//!
//! The open loop alternates direct and router in short slices within each
//! round (ABBA), so both targets see the same background: on two shared
//! cores the direct path's own p99 drifts by 2-4 ms from one 5 s phase to
//! the next, which swamped a 1 ms budget when each target had a phase of
//! its own.
//!
//! Settings (environment): `BENCH_CONCURRENCY` (16), `BENCH_SECONDS` (5,
//! per closed-loop run and per target per open-loop round), `BENCH_RATE`
//! (1000), `BENCH_ROUNDS` (5 open-loop rounds), `BENCH_SLICE_MS` (500),
//! `BENCH_DAEMON_WORKERS` (the daemon's tokio worker threads, passed as
//! `TOKIO_WORKER_THREADS`; default: tokio's, one per CPU), `BENCH_BIN_DIR`
//! (run `failoverd` and `failoverd-lab` from that folder, e.g. an older
//! release build, with this same load generator; default: the ones built
//! with this benchmark).

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sagemakerruntime::config::retry::RetryConfig;
use aws_sdk_sagemakerruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sagemakerruntime::primitives::Blob;
use common::{ChildGuard, root, spawn_guarded, unique, wait_bound, wait_for};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn client(url: &str) -> aws_sdk_sagemakerruntime::Client {
    let conf = aws_sdk_sagemakerruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(failoverd::aws::clients::https_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "bench"))
        .endpoint_url(url)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_sagemakerruntime::Client::from_conf(conf)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used, in clock ticks (1/100 s):
/// fields 14 and 15 of proc(5).
fn cpu_ticks(pid: &str) -> u64 {
    common::proc_stat(std::path::Path::new(&format!("/proc/{pid}/stat")))
        .and_then(|f| Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?))
        .unwrap_or(0)
}

/// CPU ticks of the load generator, the daemon and the model server.
fn cpu_now(daemon: u32, model: u32) -> [u64; 3] {
    [
        cpu_ticks("self"),
        cpu_ticks(&daemon.to_string()),
        cpu_ticks(&model.to_string()),
    ]
}

/// CPU microseconds per request of each process between two readings.
fn cpu_per_request(before: [u64; 3], after: [u64; 3], requests: u64) -> String {
    let us = |i: usize| (after[i] - before[i]) as f64 * 10_000.0 / requests.max(1) as f64;
    format!(
        "CPU per request: load generator {:.0} us, daemon {:.0} us, model server {:.0} us",
        us(0),
        us(1),
        us(2)
    )
}

struct Run {
    requests: u64,
    errors: u64,
    secs: f64,
    /// Sorted latencies, microseconds.
    latencies: Vec<u64>,
}

impl Run {
    fn new(mut latencies: Vec<u64>, errors: u64, secs: f64) -> Self {
        latencies.sort_unstable();
        Run {
            requests: latencies.len() as u64,
            errors,
            secs,
            latencies,
        }
    }

    fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }
}

/// One InvokeEndpoint call with the benchmark's payload; whether it succeeded.
async fn invoke(client: &aws_sdk_sagemakerruntime::Client, endpoint: &str, payload: Blob) -> bool {
    client
        .invoke_endpoint()
        .endpoint_name(endpoint)
        .content_type("application/json")
        .body(payload)
        .send()
        .await
        .is_ok()
}

/// `concurrency` workers invoke `endpoint` through `client` for `millis`.
async fn load(
    client: aws_sdk_sagemakerruntime::Client,
    endpoint: &str,
    concurrency: u64,
    millis: u64,
) -> Run {
    let payload = Blob::new(vec![b'x'; 1024]);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, payload, stop, errors) = (
                client.clone(),
                payload.clone(),
                stop.clone(),
                errors.clone(),
            );
            let endpoint = endpoint.to_string();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(4096);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if invoke(&client, &endpoint, payload.clone()).await {
                        lat.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(millis)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    Run::new(
        latencies,
        errors.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    )
}

/// Open loop: `rate` requests per second for `millis`, each on its own
/// task, latency from the scheduled start. Waits for every answer.
async fn paced(
    client: &aws_sdk_sagemakerruntime::Client,
    endpoint: &str,
    rate: u64,
    millis: u64,
) -> Run {
    let payload = Blob::new(vec![b'x'; 1024]);
    let started = Instant::now();
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let n = rate * millis / 1000;
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let at = start + every * i as u32;
        tokio::time::sleep_until(at).await;
        let (client, payload, endpoint) = (client.clone(), payload.clone(), endpoint.to_string());
        tasks.push(tokio::spawn(async move {
            invoke(&client, &endpoint, payload)
                .await
                .then(|| at.elapsed().as_micros() as u64)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some(l) => latencies.push(l),
            None => errors += 1,
        }
    }
    Run::new(latencies, errors, started.elapsed().as_secs_f64())
}

/// How a slice loads its target.
#[derive(Clone, Copy)]
enum Mode {
    /// `concurrency` callers, each sending when its last answer is back.
    Closed { concurrency: u64 },
    /// `rate` requests per second on a schedule.
    Open { rate: u64 },
}

/// One target's slices added up: its run, and the CPU ticks the three
/// processes spent during them (see `cpu_now`).
struct Tally {
    run: Run,
    cpu: [u64; 3],
}

/// `secs` of load per target, direct and router alternating in slices of
/// `slice_ms` (ABBA order), so both see the same machine: on two shared
/// cores the background drifts within seconds, and a phase per target
/// compared the drift, not the router. `pids`: the daemon's and the model
/// server's. Returns direct's tally, then the router's.
async fn interleaved(
    direct: &aws_sdk_sagemakerruntime::Client,
    routed: &aws_sdk_sagemakerruntime::Client,
    mode: Mode,
    secs: u64,
    slice_ms: u64,
    pids: (u32, u32),
) -> [Tally; 2] {
    let mut acc = [
        (Vec::new(), 0, 0.0, [0u64; 3]),
        (Vec::new(), 0, 0.0, [0u64; 3]),
    ];
    for k in 0..(secs * 1000 / slice_ms).max(1) {
        for side in [k as usize % 2, 1 - k as usize % 2] {
            let (client, endpoint) = match side {
                0 => (direct, "lab-provisioned"),
                _ => (routed, "default"),
            };
            let before = cpu_now(pids.0, pids.1);
            let run = match mode {
                Mode::Closed { concurrency } => {
                    load(client.clone(), endpoint, concurrency, slice_ms).await
                }
                Mode::Open { rate } => paced(client, endpoint, rate, slice_ms).await,
            };
            let after = cpu_now(pids.0, pids.1);
            let a = &mut acc[side];
            a.0.extend(run.latencies);
            a.1 += run.errors;
            a.2 += run.secs;
            for i in 0..3 {
                a.3[i] += after[i] - before[i];
            }
        }
    }
    acc.map(|(latencies, errors, secs, cpu)| Tally {
        run: Run::new(latencies, errors, secs),
        cpu,
    })
}

fn report(name: &str, r: &Run) {
    println!(
        "{name:<8} {:>9.0} req/s  p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  ({} ok, {} errors, {:.1} s)",
        r.requests as f64 / r.secs,
        r.pct(0.50),
        r.pct(0.90),
        r.pct(0.99),
        r.requests,
        r.errors,
        r.secs
    );
}

/// A binary of this build, or of `BENCH_BIN_DIR`.
fn binary(name: &str, built: &str) -> std::path::PathBuf {
    match std::env::var_os("BENCH_BIN_DIR") {
        Some(dir) => std::path::PathBuf::from(dir).join(name),
        None => built.into(),
    }
}

fn main() {
    let concurrency = env_or("BENCH_CONCURRENCY", 16);
    let secs = env_or("BENCH_SECONDS", 5);
    let rate = env_or("BENCH_RATE", 1000);
    let rounds = env_or("BENCH_ROUNDS", 5);
    let slice_ms = env_or("BENCH_SLICE_MS", 500);
    let dir = std::env::temp_dir().join(unique("failoverd-bench"));
    std::fs::create_dir_all(&dir).unwrap();

    let port_file = dir.join("model.port");
    let model: ChildGuard = spawn_guarded(
        Command::new(binary("failoverd-lab", env!("CARGO_BIN_EXE_failoverd-lab")))
            .args(["model-server", "--port-file"])
            .arg(&port_file)
            .env("FAILOVERD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("model.log")).unwrap()),
    );
    let model_port: u16 = wait_for("the model server", Duration::from_secs(20), || {
        std::fs::read_to_string(&port_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    });

    let (bound, daemon_log) = (dir.join("daemon.bound.json"), dir.join("daemon.log"));
    let dead = "http://127.0.0.1:9";
    let mut command = Command::new(binary("failoverd", env!("CARGO_BIN_EXE_failoverd")));
    let mut daemon = spawn_guarded(
        command
            .args(["run", "--log-format", "json", "--bound-file"])
            .arg(&bound)
            .arg("--config")
            .arg(root().join("regions/lab/us-east-1.toml"))
            .current_dir(&dir)
            .env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("FAILOVERD_LOG", "warn,failoverd::daemon=info")
            .env(
                "FAILOVERD__ENDPOINTS__SAGEMAKER_RUNTIME",
                format!("http://127.0.0.1:{model_port}"),
            )
            .env("FAILOVERD__ENDPOINTS__DYNAMODB", dead)
            .env("FAILOVERD__ENDPOINTS__S3", dead)
            .env("FAILOVERD__ENDPOINTS__ROUTE53", dead)
            .env("FAILOVERD__ENDPOINTS__SFN", dead)
            .env("FAILOVERD__ENDPOINTS__SAGEMAKER", dead)
            .env("FAILOVERD__LISTEN__ROUTER", "127.0.0.1:0")
            .env("FAILOVERD__LISTEN__ADMIN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .envs(
                std::env::var("BENCH_DAEMON_WORKERS")
                    .ok()
                    .map(|n| ("TOKIO_WORKER_THREADS", n)),
            )
            .stderr(std::fs::File::create(&daemon_log).unwrap()),
    );
    let pid = daemon.0.id();
    let addrs = wait_bound(&mut daemon, &bound, &daemon_log, Duration::from_secs(20));
    let (router_addr, admin_addr) = (addrs.router.to_string(), addrs.admin.to_string());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let direct = client(&format!("http://127.0.0.1:{model_port}"));
        let routed = client(&format!("http://{router_addr}"));
        // Warm both paths (connections, the daemon's clients).
        load(direct.clone(), "lab-provisioned", concurrency, 1000).await;
        load(routed.clone(), "default", concurrency, 1000).await;
        let rss_idle = rss_kib(pid);

        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let pids = (pid, model.0.id());
        let [
            Tally { run: d, cpu: dc },
            Tally { run: r, cpu: rc },
        ] = interleaved(
            &direct,
            &routed,
            Mode::Closed { concurrency },
            secs,
            slice_ms,
            pids,
        )
        .await;
        sampler.abort();

        println!(
            "\nrouter benchmark: 1 KiB payload, {concurrency} concurrent SDK callers, {secs} s per target in alternating {slice_ms} ms slices, loopback, {} CPUs",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        report("direct", &d);
        report("router", &r);
        println!("direct   {}", cpu_per_request([0; 3], dc, d.requests));
        println!("router   {}", cpu_per_request([0; 3], rc, r.requests));
        println!(
            "router / direct: {:.0}% of direct's throughput",
            100.0 * (r.requests as f64 / r.secs) / (d.requests as f64 / d.secs)
        );
        println!(
            "added    p50 {:+.3} ms  p90 {:+.3} ms  p99 {:+.3} ms",
            r.pct(0.50) - d.pct(0.50),
            r.pct(0.90) - d.pct(0.90),
            r.pct(0.99) - d.pct(0.99)
        );
        println!(
            "daemon RSS: {:.1} MiB idle (after warm-up), {:.1} MiB peak under load",
            rss_idle as f64 / 1024.0,
            peak.load(Ordering::Relaxed) as f64 / 1024.0
        );

        // Open loop at the goal's rate: direct and router in alternating
        // slices within each round, several rounds.
        println!(
            "\nopen loop at {rate} req/s, {rounds} rounds of {secs} s per target, in alternating {slice_ms} ms slices (latency from the scheduled start):"
        );
        let mut added = Vec::new();
        let (mut open_ticks, mut open_routed) = (0, 0);
        for round in 1..=rounds {
            let [Tally { run: d, .. }, Tally { run: r, cpu }] =
                interleaved(&direct, &routed, Mode::Open { rate }, secs, slice_ms, pids).await;
            open_ticks += cpu[1];
            open_routed += r.requests;
            report(&format!("direct#{round}"), &d);
            report(&format!("router#{round}"), &r);
            added.push((r.pct(0.50) - d.pct(0.50), r.pct(0.99) - d.pct(0.99)));
            println!(
                "added#{round} p50 {:+.3} ms  p99 {:+.3} ms",
                r.pct(0.50) - d.pct(0.50),
                r.pct(0.99) - d.pct(0.99)
            );
        }
        let median = |f: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = added.iter().map(f).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        println!(
            "added (median of {rounds})  p50 {:+.3} ms  p99 {:+.3} ms",
            median(|a| a.0),
            median(|a| a.1)
        );
        println!(
            "open loop: daemon CPU per routed request {:.0} us (all rounds)",
            open_ticks as f64 * 10_000.0 / open_routed.max(1) as f64
        );
        println!(
            "daemon RSS: {:.1} MiB after all load",
            rss_kib(pid) as f64 / 1024.0
        );
        let metrics = common::http("GET", &admin_addr, "/metrics", "")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let ok_line = metrics
            .lines()
            .find(|l| l.contains("outcome=\"ok\"") && l.contains("attempts=\"1\""))
            .unwrap_or("(no ok series)");
        println!("daemon /metrics: {ok_line}");
    });
}
