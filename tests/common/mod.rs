//! Test harness for lab-backed integration tests.
//!
//! Each test starts its own moto server on a free loopback port (nextest runs
//! every test in its own process, and moto state never leaks between tests),
//! and stops it on drop. The child also gets `PR_SET_PDEATHSIG` so that a
//! test killed by a timeout takes its moto with it. Resource names are unique
//! per test so tests could share a server too.

#![allow(dead_code)]

pub mod lab;
pub mod partition;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use failoverd::aws::AwsClients;
use failoverd::config::EndpointOverrides;

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

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A name unique to this test process and call, and to this moment: PIDs
/// are recycled (pid_max is 32768 here), and a folder left by an earlier
/// process with the same PID once handed a new model server's caller the
/// old port file (connection refused).
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

/// The address a daemon bound for `key` (`router` or `admin`), from its
/// JSON startup line (`"router":"Some(127.0.0.1:41234)"`): daemons bind
/// port 0 and report what they got.
pub fn logged_addr(log: &str, key: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("failoverd started"))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let field = v["fields"][key].as_str().or(v[key].as_str())?;
    let addr = field.strip_prefix("Some(")?.strip_suffix(')')?;
    Some(addr.to_string())
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
        let child = spawn_guarded(&mut cmd);
        let port = wait_for(
            "the model server's port file",
            Duration::from_secs(20),
            || {
                std::fs::read_to_string(&port_file)
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            },
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
    _child: ChildGuard,
}

impl Moto {
    /// Start moto on a free port with the Step Functions interpreter on.
    pub fn start() -> Self {
        let bin = venv().join("bin/moto_server");
        if !bin.exists() {
            panic!(
                "lab virtualenv missing: {} not found; create it with `chaos/lab.sh install`",
                bin.display()
            );
        }
        let port = free_port();
        let child = spawn_guarded(
            Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
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
        }
    }
}

/// SDK config with static test credentials (no process environment read).
pub fn sdk_config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
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
}
