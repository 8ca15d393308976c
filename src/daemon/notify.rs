//! systemd's notification protocol (`sd_notify`), written out rather than
//! linked: one datagram per state change to `$NOTIFY_SOCKET`, which may be a
//! path or an abstract socket (`@name`). Outside systemd there is no socket
//! and every call is a no-op.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::config::EnvSource;

/// Where to send notifications, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `env`.
    pub fn from_env(env: &EnvSource) -> Self {
        let socket = env.get("NOTIFY_SOCKET").filter(|s| !s.is_empty()).cloned();
        let pid_ok = env
            .get("WATCHDOG_PID")
            .map(|p| p.parse::<u32>().ok() == Some(std::process::id()))
            .unwrap_or(true);
        let watchdog = env
            .get("WATCHDOG_USEC")
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && pid_ok)
            .map(Duration::from_micros);
        Self { socket, watchdog }
    }

    /// Is there a service manager listening?
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog interval systemd expects pings within, if any.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Send `state` (e.g. `READY=1`).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let Some(path) = &self.socket else {
            return Ok(());
        };
        let sock = UnixDatagram::unbound()?;
        if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), path)?;
        }
        Ok(())
    }
}

/// `MONOTONIC_USEC=` value for `RELOADING=1` (systemd 253+ `Type=notify-reload`
/// wants it; older versions ignore it).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("failoverd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let env: EnvSource = [("NOTIFY_SOCKET".to_string(), path.display().to_string())].into();
        let n = Notifier::from_env(&env);
        assert!(n.enabled());
        n.notify("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("failoverd-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        let env: EnvSource = [("NOTIFY_SOCKET".to_string(), format!("@{name}"))].into();
        Notifier::from_env(&env).notify("WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn watchdog_only_for_our_pid() {
        let mine: EnvSource = [
            ("WATCHDOG_USEC".to_string(), "30000000".to_string()),
            ("WATCHDOG_PID".to_string(), std::process::id().to_string()),
        ]
        .into();
        assert_eq!(
            Notifier::from_env(&mine).watchdog_interval(),
            Some(Duration::from_secs(30))
        );
        let other: EnvSource = [
            ("WATCHDOG_USEC".to_string(), "30000000".to_string()),
            ("WATCHDOG_PID".to_string(), "1".to_string()),
        ]
        .into();
        assert_eq!(Notifier::from_env(&other).watchdog_interval(), None);
        assert!(!Notifier::from_env(&EnvSource::new()).enabled());
        Notifier::from_env(&EnvSource::new())
            .notify("READY=1")
            .unwrap();
    }
}
