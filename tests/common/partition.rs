//! A network partition the test controls: a TCP forwarder on 127.0.0.1 that
//! passes bytes through to an upstream until it is cut, then black-holes
//! them (connections stay open, nothing arrives, nothing answers), like
//! packets dropped on the way. No resets: the daemon must notice by its own
//! timeouts, as it would in a real partition.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Partition {
    pub port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Partition {
    /// Forward 127.0.0.1:<new port> to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(down) = conn else { continue };
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                pump(
                    down.try_clone().unwrap(),
                    up.try_clone().unwrap(),
                    c.clone(),
                );
                pump(up, down, c.clone());
            }
        });
        Self { port, cut, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment that sends a daemon's calls to `services` (the
    /// `FAILOVERD__ENDPOINTS__*` names) through this partition.
    pub fn endpoints(&self, services: &[&str]) -> Vec<(String, String)> {
        services
            .iter()
            .map(|s| (format!("FAILOVERD__ENDPOINTS__{s}"), self.url()))
            .collect()
    }

    /// From now on, drop every byte in both directions.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Pass bytes again (new bytes only: what was dropped stays lost).
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

/// Copy `from` to `to` until either end closes, dropping bytes while cut.
fn pump(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
