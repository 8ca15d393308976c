//! Tools the operator-facing tests run, as a person's tools would see the
//! daemon: `promtool` (Debian's `prometheus` package) and headless Chromium
//! (Debian's `chromium`), both installed by `chaos/tools.sh`. A missing
//! tool fails the test with the command to install it: these tests are the
//! only proof the page renders and the exposition parses, so they must not
//! pass by skipping.
//!
//! Every child runs with a cap and is killed past it; Chromium gets a fresh
//! profile folder and no network but loopback (the flags below switch off
//! every background request it would make on its own).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Find `name` on PATH (or the path in `env_var`), else panic saying how
/// to install it.
pub fn tool(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found on PATH (nor ${env_var}): install it with `chaos/lab.sh install` (the README's test command, `chaos/lab.sh test`, does)")
        })
}

/// Run `cmd` with `stdin` bytes, killing it after `cap`.
pub fn run_capped(cmd: &mut Command, stdin: Option<&[u8]>, cap: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(bytes) = stdin {
        let mut w = child.stdin.take().expect("piped stdin");
        w.write_all(bytes).expect("write stdin");
    }
    // Read the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let deadline = Instant::now() + cap;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {cap:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// `promtool check metrics` on an exposition: (success, what it printed).
pub fn promtool_check_metrics(text: &str) -> (bool, String) {
    let out = run_capped(
        Command::new(tool("promtool", "FAILOVERD_PROMTOOL")).args(["check", "metrics"]),
        Some(text.as_bytes()),
        Duration::from_secs(30),
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// Every family an exposition declares: name -> type (from `# TYPE`).
pub fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (n, t) = l.split_once(' ')?;
            Some((n.to_string(), t.trim().to_string()))
        })
        .collect()
}

/// The family a series name belongs to (`x_bucket` of histogram `x` is `x`).
pub fn family_of<'a>(name: &'a str, fams: &BTreeMap<String, String>) -> Option<&'a str> {
    if fams.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && fams
                .get(base)
                .is_some_and(|t| t == "histogram" || t == "summary")
        {
            return Some(base);
        }
    }
    None
}

/// The `failoverd_*` metric names a PromQL expression uses.
pub fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(off) = expr[i..].find("failoverd_") {
        let start = i + off;
        let boundary =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] == b':')
        {
            end += 1;
        }
        if boundary {
            out.push(expr[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    out
}

/// The value of the first sample line starting with `series` (name and
/// labels exactly as rendered), if any.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Headless Chromium with the flags that keep it off the network and out
/// of any existing profile.
fn chromium(profile: &Path) -> Command {
    let mut c = Command::new(tool("chromium", "FAILOVERD_CHROMIUM"));
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--mute-audio",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Load `url` in headless Chromium, let its scripts run for `budget_ms`
/// of virtual time (timers fire, fetches complete), and return the DOM as
/// the page's scripts left it.
pub fn dump_dom(url: &str, profile: &Path, budget_ms: u64) -> String {
    std::fs::create_dir_all(profile).unwrap();
    let out = run_capped(
        chromium(profile)
            .arg(format!("--virtual-time-budget={budget_ms}"))
            .arg("--dump-dom")
            .arg(url),
        None,
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "chromium --dump-dom {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Save a screenshot of `url` (after `budget_ms` of virtual time) to `png`.
pub fn screenshot(url: &str, profile: &Path, png: &Path, budget_ms: u64) {
    std::fs::create_dir_all(profile).unwrap();
    let out = run_capped(
        chromium(profile)
            .arg(format!("--virtual-time-budget={budget_ms}"))
            .arg("--window-size=1400,2200")
            .arg(format!("--screenshot={}", png.display()))
            .arg(url),
        None,
        Duration::from_secs(90),
    );
    assert!(
        out.status.success() && png.is_file(),
        "chromium --screenshot {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The text inside the element with `id` (up to its first child tag).
pub fn text_of_id<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[at..];
    let open_end = rest.find('>')?;
    let inner = &rest[open_end + 1..];
    Some(inner[..inner.find('<')?].trim())
}
