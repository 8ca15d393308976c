//! Test harness for lab-backed integration tests.
//!
//! Each test starts its own moto server on a loopback port (nextest runs
//! every test in its own process, and moto state never leaks between tests),
//! and stops it on drop. The child also gets `PR_SET_PDEATHSIG` so that a
//! test killed by a timeout takes its moto with it. Resource names are unique
//! per test so tests could share a server too.
//!
//! Ports: every server here binds port 0 itself and reports the port it got
//! (moto and the model server through a port file, daemons through
//! `failoverd run --bound-file`); the harness reads the report
//! ([`wait_report`]). Never pick a "free" port by binding, closing and
//! handing the number on: the OS may hand it out again before the server
//! binds it (a lab daemon once got the same port for admin and router). A
//! test that needs a port where nothing answers holds a [`ClosedPort`].

#![allow(dead_code)]

pub mod lab;
pub mod partition;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use failoverd::aws::AwsClients;
use failoverd::config::EndpointOverrides;
use failoverd::daemon::BoundAddrs;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lab's virtualenv (override with FAILOVERD_LAB_VENV).
pub fn venv() -> PathBuf {
    std::env::var_os("FAILOVERD_LAB_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("chaos/.venv"))
}

/// A loopback port where nothing listens, reserved while this lives: a
/// socket bound to 127.0.0.1:0 that never listens. Connections to it are
/// refused at once; no other process can bind the port meanwhile, and the
/// OS does not pick it as a source port. (A port found by binding and
/// closing could be anyone's by the time the test connects.)
pub struct ClosedPort {
    pub port: u16,
    _socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .expect("bind 127.0.0.1:0");
        let port = socket.local_addr().expect("the bound address").port();
        Self {
            port,
            _socket: socket,
        }
    }

    /// `http://127.0.0.1:<port>`: an endpoint URL that refuses connections.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The last lines of a log file, for a panic message.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Wait until `child` has reported through `file` (written atomically by
/// the child after binding): poll every 50 ms until `parse` accepts the
/// content, at most `cap`. Panics naming `log` (and showing its tail) if the
/// child exits before reporting or the cap passes.
pub fn wait_report<T>(
    child: &mut ChildGuard,
    what: &str,
    file: &Path,
    log: &Path,
    cap: Duration,
    parse: impl Fn(&str) -> Option<T>,
) -> T {
    let deadline = Instant::now() + cap;
    loop {
        if let Some(v) = std::fs::read_to_string(file).ok().and_then(|s| parse(&s)) {
            return v;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "{what} exited ({status}) before reporting in {}; see {}:\n{}",
                file.display(),
                log.display(),
                log_tail(log)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not report in {} within {cap:?}; see {}:\n{}",
            file.display(),
            log.display(),
            log_tail(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port file's content: the port on one line.
pub fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse().ok()
}

/// A daemon whose router stands in front of `model` (the lab's model
/// server) alone: the lab's base file with `extra` appended (`[[models]]`
/// tables), the us-east-1 file, every other AWS endpoint dead, both
/// listeners on 127.0.0.1 port 0, quick cold-start retries, and `env`
/// (`FAILOVERD__...` overrides) last. Files and log under `dir`. The
/// process, and the addresses it bound.
#[allow(dead_code)]
pub fn router_daemon(
    model: &ModelServer,
    dir: &Path,
    extra: &str,
    env: &[(&str, &str)],
) -> (ChildGuard, BoundAddrs) {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let lab = root().join("regions/lab");
    let base = std::fs::read_to_string(lab.join("base.toml")).unwrap();
    std::fs::write(config.join("base.toml"), format!("{base}\n{extra}")).unwrap();
    std::fs::copy(lab.join("us-east-1.toml"), config.join("us-east-1.toml")).unwrap();
    let (log, bound) = (dir.join("daemon.log"), dir.join("daemon.bound.json"));
    let dead = "http://127.0.0.1:9";
    let mut child = spawn_guarded(
        Command::new(env!("CARGO_BIN_EXE_failoverd"))
            .args(["run", "--log-format", "json", "--bound-file"])
            .arg(&bound)
            .arg("--config")
            .arg(config.join("us-east-1.toml"))
            .current_dir(dir)
            .env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env(
                "FAILOVERD_LOG",
                "info,aws_config=warn,aws_smithy_runtime=warn",
            )
            .env("FAILOVERD__ENDPOINTS__SAGEMAKER_RUNTIME", model.url())
            .env("FAILOVERD__ENDPOINTS__DYNAMODB", dead)
            .env("FAILOVERD__ENDPOINTS__S3", dead)
            .env("FAILOVERD__ENDPOINTS__ROUTE53", dead)
            .env("FAILOVERD__ENDPOINTS__SFN", dead)
            .env("FAILOVERD__ENDPOINTS__SAGEMAKER", dead)
            .env("FAILOVERD__LISTEN__ROUTER", "127.0.0.1:0")
            .env("FAILOVERD__LISTEN__ADMIN", "127.0.0.1:0")
            // Cold-start retries quickly, so a never-warm lab is fast.
            .env("FAILOVERD__ROUTER__COLD_START_DELAY", "20ms")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let bound = wait_bound(&mut child, &bound, &log, Duration::from_secs(30));
    (child, bound)
}

/// Wait for the daemon `child` (started with `--bound-file file`) to report
/// the addresses it bound; a file left by another process is ignored.
pub fn wait_bound(child: &mut ChildGuard, file: &Path, log: &Path, cap: Duration) -> BoundAddrs {
    let pid = child.0.id();
    wait_report(child, "the daemon", file, log, cap, |text| {
        serde_json::from_str::<BoundAddrs>(text)
            .ok()
            .filter(|b| b.pid == pid)
    })
}

/// A name unique to this test process and call, and to this moment: PIDs
/// are recycled (pid_max is 32768 here), and a folder left by an earlier
/// process with the same PID once handed a new model server's caller the
/// old port file (connection refused).
/// The fields of a `/proc/.../stat` file from the state on (proc(5)'s
/// field 3 is index 0). The command name before them is cut off at its
/// last `)`, because it may hold spaces and parentheses.
pub fn proc_stat(path: &Path) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(path).ok()?;
    Some(
        s[s.rfind(')')? + 2..]
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Poll `f` every 50 ms until it returns `Some`, or panic after `cap`.
pub fn wait_for<T>(what: &str, cap: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + cap;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {cap:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Async form of [`wait_for`]: poll every 50 ms, panic after `cap`.
pub async fn wait_until<T, F, Fut>(what: &str, cap: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + cap;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {cap:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed on drop, and on the test process's death.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SIGTERM first so servers can flush; then make sure.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawn `cmd` so that it dies with this process.
pub fn spawn_guarded(cmd: &mut Command) -> ChildGuard {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    ChildGuard(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
    )
}

/// Minimal HTTP/1.1 request over a fresh connection; returns (status, body).
pub fn http(method: &str, addr: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The lab's model server as a child process.
pub struct ModelServer {
    pub port: u16,
    _child: ChildGuard,
    _dir: PathBuf,
}

impl ModelServer {
    /// Start one; `s3` is the S3 endpoint for asynchronous invocations.
    pub fn start(s3: Option<&str>) -> Self {
        let dir = std::env::temp_dir().join(unique("failoverd-model"));
        std::fs::create_dir_all(&dir).unwrap();
        let port_file = dir.join("model.port");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_failoverd-lab"));
        cmd.args(["model-server", "--port-file"])
            .arg(&port_file)
            .env_remove("FAILOVERD_LAB_S3_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("model.log")).unwrap());
        if let Some(url) = s3 {
            cmd.args(["--s3-endpoint", url]);
        }
        let mut child = spawn_guarded(&mut cmd);
        let port = wait_report(
            &mut child,
            "the model server",
            &port_file,
            &dir.join("model.log"),
            Duration::from_secs(20),
            parse_port,
        );
        Self {
            port,
            _child: child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A running moto server.
pub struct Moto {
    pub port: u16,
    /// moto's stderr (errors and tracebacks; no line per request).
    pub log: PathBuf,
    _child: ChildGuard,
}

impl Moto {
    /// Start moto on a port it binds itself (chaos/lab/moto_server.py, port
    /// 0, reported through a file) with the Step Functions interpreter on.
    pub fn start() -> Self {
        let bin = venv().join("bin/moto_server");
        if !bin.exists() {
            panic!(
                "lab virtualenv missing: {} not found; create it with `chaos/lab.sh install`",
                bin.display()
            );
        }
        let dir = std::env::temp_dir().join(unique("failoverd-moto"));
        std::fs::create_dir_all(&dir).unwrap();
        let (port_file, log) = (dir.join("moto.port"), dir.join("moto.log"));
        let mut child = spawn_guarded(
            Command::new(venv().join("bin/python"))
                .arg(root().join("chaos/lab/moto_server.py"))
                .arg("--quiet")
                .arg("--port-file")
                .arg(&port_file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap()),
        );
        let port = wait_report(
            &mut child,
            "moto",
            &port_file,
            &log,
            Duration::from_secs(60),
            parse_port,
        );
        let addr = format!("127.0.0.1:{port}");
        wait_for("moto to answer", Duration::from_secs(30), || {
            http("GET", &addr, "/moto-api/", "")
                .ok()
                .filter(|(s, _)| *s == 200)
        });
        let (status, _) = http(
            "POST",
            &addr,
            "/moto-api/config",
            r#"{"stepfunctions":{"execute_state_machine":true}}"#,
        )
        .unwrap();
        assert_eq!(status, 201, "enabling moto's Step Functions interpreter");
        Self {
            port,
            log,
            _child: child,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Endpoint overrides that send every service but SageMaker runtime to moto.
    pub fn endpoints(&self, sagemaker_runtime: Option<String>) -> EndpointOverrides {
        EndpointOverrides {
            dynamodb: Some(self.url()),
            route53: Some(self.url()),
            sfn: Some(self.url()),
            sagemaker_runtime,
            sagemaker: Some(self.url()),
            s3: Some(self.url()),
            cloudwatch: Some(self.url()),
            application_autoscaling: Some(self.url()),
            service_quotas: Some(self.url()),
            iam: Some(self.url()),
        }
    }
}

/// SDK config with static test credentials (no process environment read).
pub fn sdk_config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(failoverd::aws::clients::https_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    "testing",
                    "testing",
                    None,
                    None,
                    "failoverd-tests",
                ),
            ),
        )
        .build()
}

/// Real SDK clients pointed at `moto`.
pub fn clients(moto: &Moto, sagemaker_runtime: Option<String>) -> AwsClients {
    AwsClients::new(sdk_config(), moto.endpoints(sagemaker_runtime))
        .with_timeouts(failoverd::aws::clients::provisioning_timeouts())
}
