//! The router's traffic regrouped for the status page: requests per target
//! region and path, split into served, client errors and server errors,
//! plus circuit-breaker ejections.
//!
//! Read from the router's own exposition (`router::metrics::Metrics::
//! render`, its public API) rather than from its internals: the page then
//! shows exactly what Prometheus scrapes, and the router's registry keeps
//! its layout to itself. The parser reads only the series it needs and
//! skips any line it does not understand.

use std::collections::BTreeMap;

use serde::Serialize;

/// Outcomes that are the client's doing (4xx other than throttling).
const CLIENT: [&str; 5] = [
    "bad_request",
    "not_found",
    "method_not_allowed",
    "body_timeout",
    "too_large",
];
/// Outcomes that mean the request was served (the model's own errors pass
/// through with its status: the router did its job).
const SERVED: [&str; 3] = ["ok", "accepted", "model_error"];

/// One (region, path) row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    pub region: String,
    pub path: String,
    pub requests: u64,
    pub served: u64,
    pub client_errors: u64,
    /// Shed, throttled, unavailable, deadline exceeded, bad gateway (and
    /// any outcome this page does not know).
    pub server_errors: u64,
    pub ejections: u64,
}

/// The page's traffic table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub rows: Vec<Row>,
    pub in_flight: u64,
}

/// One sample line: name, labels, value.
pub fn parse_line(line: &str) -> Option<(&str, BTreeMap<&str, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i..]),
        None => {
            let (n, v) = line.split_once(' ')?;
            return Some((n, BTreeMap::new(), v.trim().parse().ok()?));
        }
    };
    let close = rest.rfind('}')?;
    let body = &rest[1..close];
    let b = body.as_bytes();
    let mut labels = BTreeMap::new();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let eq = body[i..].find('=')? + i;
        let key = &body[i..eq];
        if b.get(eq + 1) != Some(&b'"') {
            return None;
        }
        // The value is quoted, with \" \\ \n escapes.
        let mut value = String::new();
        let mut j = eq + 2;
        loop {
            match *b.get(j)? {
                b'\\' => {
                    match *b.get(j + 1)? {
                        b'n' => value.push('\n'),
                        c => value.push(c as char),
                    }
                    j += 2;
                }
                b'"' => break,
                _ => {
                    let c = body[j..].chars().next()?;
                    value.push(c);
                    j += c.len_utf8();
                }
            }
        }
        labels.insert(key, value);
        i = j + 1;
    }
    let value = rest[close + 1..].split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// Regroup the router's exposition `text`.
pub fn from_exposition(text: &str) -> Traffic {
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    let mut in_flight = 0;
    for line in text.lines() {
        let Some((name, labels, v)) = parse_line(line) else {
            continue;
        };
        let key = || {
            (
                labels.get("region").cloned().unwrap_or_default(),
                labels.get("path").cloned().unwrap_or_default(),
            )
        };
        let v = v as u64;
        match name {
            "failoverd_router_requests_total" => {
                let (region, path) = key();
                let row = rows.entry((region.clone(), path.clone())).or_insert(Row {
                    region,
                    path,
                    ..Row::default()
                });
                let outcome = labels.get("outcome").map(String::as_str).unwrap_or("");
                row.requests += v;
                if SERVED.contains(&outcome) {
                    row.served += v;
                } else if CLIENT.contains(&outcome) {
                    row.client_errors += v;
                } else {
                    row.server_errors += v;
                }
            }
            "failoverd_router_ejections_total" => {
                let (region, path) = key();
                rows.entry((region.clone(), path.clone()))
                    .or_insert(Row {
                        region,
                        path,
                        ..Row::default()
                    })
                    .ejections += v;
            }
            "failoverd_router_in_flight" => in_flight = v,
            _ => {}
        }
    }
    Traffic {
        rows: rows.into_values().collect(),
        in_flight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes() {
        let (n, l, v) = parse_line(r#"x_total{a="1",b="q\"uo,te",c="z"} 42"#).expect("a sample");
        assert_eq!(n, "x_total");
        assert_eq!(v, 42.0);
        assert_eq!(l["b"], "q\"uo,te");
        assert_eq!(l["c"], "z");
        assert_eq!(parse_line("plain 3").map(|x| x.2), Some(3.0));
        assert!(parse_line("# HELP x y").is_none());
    }

    #[test]
    fn regroups_the_routers_series() {
        let m = crate::metrics::router::Metrics::new(
            &["us-east-1".into(), "us-west-2".into()],
            std::sync::Arc::new(crate::ports::SystemClock),
        );
        use crate::core::routing::Path;
        use crate::metrics::router::Outcome;
        let d = std::time::Duration::from_millis(3);
        m.request(
            Some(Path::Provisioned),
            Some("us-west-2"),
            Outcome::Ok,
            1,
            d,
        );
        m.request(
            Some(Path::Provisioned),
            Some("us-west-2"),
            Outcome::Ok,
            1,
            d,
        );
        m.request(
            Some(Path::Provisioned),
            Some("us-west-2"),
            Outcome::Unavailable,
            3,
            d,
        );
        m.request(None, None, Outcome::NotFound, 0, d);
        let t = from_exposition(&m.render());
        let row = t
            .rows
            .iter()
            .find(|r| r.region == "us-west-2" && r.path == "provisioned")
            .expect("the provisioned row");
        assert_eq!((row.requests, row.served, row.server_errors), (3, 2, 1));
        let none = t
            .rows
            .iter()
            .find(|r| r.path == "none")
            .expect("refused row");
        assert_eq!(none.client_errors, 1);
    }
}
