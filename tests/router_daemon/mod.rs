//! A failoverd daemon (the real binary) for the router's edge tests:
//! router and admin on 127.0.0.1:0, every AWS endpoint a closed port (so an
//! invocation of the one configured model, `m`, fails over both regions
//! at once and is answered 503), `[router]` keys from the test, and
//! optionally a low soft open-file limit set in the child before exec.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub mod pki;

use crate::common::{ChildGuard, ClosedPort, spawn_guarded, unique, wait_bound};

/// A running daemon; killed on drop.
pub struct Daemon {
    pub child: ChildGuard,
    pub router: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
    /// The folder of its configuration files.
    pub dir: PathBuf,
    _dead: ClosedPort,
}

impl Daemon {
    /// Start one with `router_keys` (TOML lines of the `[router]` table)
    /// and, if given, this soft `RLIMIT_NOFILE` (the hard limit is kept).
    pub fn start(router_keys: &str, soft_nofile: Option<u64>) -> Self {
        let dir = std::env::temp_dir().join(unique("failoverd-router-edge"));
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_in(dir, "", router_keys, soft_nofile)
    }

    /// [`Daemon::start`] with its files in `dir` and `listen_keys` (TOML
    /// lines) added to its `[listen]` table.
    pub fn start_in(
        dir: PathBuf,
        listen_keys: &str,
        router_keys: &str,
        soft_nofile: Option<u64>,
    ) -> Self {
        let dead = ClosedPort::new();
        let url = dead.url();
        std::fs::write(
            dir.join("base.toml"),
            format!(
                r#"
[tables]
control = "c"
routing = "r"
witness = "us-east-2"
[timings]
shutdown_grace = "2s"
[[models]]
name = "m"
[[regions]]
name = "us-east-1"
priority = 1
probe_urls = ["{url}/ping"]
state_machine_arn = "arn:aws:states:us-east-1:111122223333:stateMachine:f"
sagemaker = {{ provisioned = "p" }}
[[regions]]
name = "us-west-2"
priority = 2
probe_urls = ["{url}/ping"]
state_machine_arn = "arn:aws:states:us-west-2:111122223333:stateMachine:f"
sagemaker = {{ provisioned = "p" }}
"#
            ),
        )
        .unwrap();
        let file = dir.join("us-east-1.toml");
        std::fs::write(
            &file,
            format!(
                "region = \"us-east-1\"\n[listen]\nadmin = \"127.0.0.1:0\"\nrouter = \"127.0.0.1:0\"\n{listen_keys}\n\
                 [endpoints]\ndynamodb = \"{url}\"\nroute53 = \"{url}\"\nsfn = \"{url}\"\nsagemaker_runtime = \"{url}\"\n\
                 s3 = \"{url}\"\n[router]\n{router_keys}\n"
            ),
        )
        .unwrap();
        let (log, bound) = (dir.join("daemon.log"), dir.join("bound.json"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_failoverd"));
        cmd.args(["run", "--log-format", "json", "--bound-file"])
            .arg(&bound)
            .arg("--config")
            .arg(&file)
            .env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("FAILOVERD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(soft) = soft_nofile {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let mut lim = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    lim.rlim_cur = soft as libc::rlim_t;
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = spawn_guarded(&mut cmd);
        let b = wait_bound(&mut child, &bound, &log, Duration::from_secs(60));
        Daemon {
            child,
            router: b.router,
            admin: b.admin,
            log,
            dir,
            _dead: dead,
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `(soft, hard)` "Max open files" of the daemon, from /proc.
    pub fn open_file_limits(&self) -> (u64, u64) {
        let text = std::fs::read_to_string(format!("/proc/{}/limits", self.child.0.id())).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or_else(|| panic!("no open-files line in:\n{text}"));
        let n: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (n[0], n[1])
    }
}

/// One request over `s` (raw bytes, as written), and what came back until
/// the server closed the connection or `cap` passed: `(status, text)`;
/// status 0 if nothing parseable came back.
pub async fn exchange(s: &mut tokio::net::TcpStream, raw: &[u8], cap: Duration) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.write_all(raw).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(cap, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if complete(&buf) {
                return;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Whether `buf` holds a whole response (head and `content-length` body).
fn complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some(at) = text.find("\r\n\r\n") else {
        return false;
    };
    let len: usize = text[..at]
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    buf.len() >= at + 4 + len
}

/// `GET /ping` on a fresh connection to `addr`: the status (0 if none came
/// within `cap`).
pub async fn ping(addr: SocketAddr, cap: Duration) -> u16 {
    let Ok(Ok(mut s)) = tokio::time::timeout(cap, tokio::net::TcpStream::connect(addr)).await
    else {
        return 0;
    };
    exchange(&mut s, b"GET /ping HTTP/1.1\r\nhost: r\r\n\r\n", cap)
        .await
        .0
}

/// Raise this (test) process's soft open-file limit to its hard one, and
/// return it: the tests hold many connections from this side too.
pub fn raise_own_open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}
