//! TLS on the daemon's listeners, kept current (issue 22 item 1).
//!
//! The files are named by `listen.router_tls` / `listen.admin_tls`
//! (config/tls.rs); their paths are restart-only, their contents are not.
//! SIGHUP reloads the configuration, which reads and checks the files
//! again (a bad file rejects the whole reload, naming file and key); each
//! accepted reload reaches [`keep_current`] through the configuration's
//! watch channel, which builds a fresh rustls server configuration from
//! the files and puts it in the listener's [`TlsCell`]. New connections
//! get the new certificate; open connections, whose handshake is done,
//! are not touched. A file that changed again between the reload's check
//! and this read, and no longer loads, is logged and the cell keeps what
//! it has. Shared by the router and the admin listener (the composition
//! root wires the latter).

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::config::tls::{TlsFileError, TlsFiles};
use crate::http::{ShutdownRx, TlsCell, shutdown_signalled};

/// Which listener's TLS files a configuration names.
pub type Which = fn(&Config) -> Option<&TlsFiles>;

/// The router listener's TLS files.
pub fn router_files(cfg: &Config) -> Option<&TlsFiles> {
    cfg.listen.router_tls.as_ref()
}

/// The admin listener's TLS files.
pub fn admin_files(cfg: &Config) -> Option<&TlsFiles> {
    cfg.listen.admin_tls.as_ref()
}

/// The cell for `which`'s files in `cfg`, or `None` for plain HTTP.
pub fn cell(cfg: &Config, which: Which) -> Result<Option<Arc<TlsCell>>, TlsFileError> {
    which(cfg)
        .map(|files| files.server_config().map(TlsCell::new))
        .transpose()
}

/// Reload `cell` from `which`'s files on every configuration change until
/// `shutdown`.
pub async fn keep_current(
    cell: Arc<TlsCell>,
    mut config: watch::Receiver<Arc<Config>>,
    which: Which,
    listener: &'static str,
    mut shutdown: ShutdownRx,
) {
    config.borrow_and_update();
    loop {
        tokio::select! {
            changed = config.changed() => if changed.is_err() { return },
            _ = shutdown_signalled(&mut shutdown) => return,
        }
        let cfg = config.borrow_and_update().clone();
        // Paths are restart-only: the reload kept the ones in force.
        let Some(files) = which(&cfg) else { continue };
        match files.server_config() {
            Ok(sc) => {
                cell.set(sc);
                info!(listener, cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => warn!(
                listener,
                file = %e.path.display(),
                key = e.which,
                error = %e.message,
                "TLS files do not load; keeping the certificate in force"
            ),
        }
    }
}
