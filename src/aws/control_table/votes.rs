//! Votes (one item per daemon, its view and its traffic counts) and the
//! published health-check readings.
//!
//! A vote's key is `VOTE` / `<region>#<instance>`: each of a region's
//! daemons has its own item (docs/instances.md). A daemon older than
//! instances wrote `VOTE` / `<region>`, with no `instance` attribute: such
//! an item still reads, as the vote of the region's unnamed daemon.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use tracing::warn;

use super::{Bad, ControlTable, Item, SERVICE, decode_all, get_n, get_s, get_time, n, need, s};
use crate::core::health::Verdict;
use crate::core::quorum::{EndpointTraffic, TRAILING_MS, Traffic, Vote};
use crate::core::standby::{Published, Severity};
use crate::ports::store::PublishedReading;
use crate::ports::{ErrorKind, PortError};

fn vote_from_item(it: &Item) -> Result<Vote, Bad> {
    let view = need(it.get("view").and_then(|v| v.as_m().ok()), "view")?;
    let mut verdicts = BTreeMap::new();
    for (r, v) in view {
        let verdict = match v.as_s().map(String::as_str) {
            Ok("down") => Verdict::Down,
            Ok("up") => Verdict::Up,
            _ => return Err(Bad(format!("unknown verdict on {r}: {v:?}"))),
        };
        verdicts.insert(r.clone(), verdict);
    }
    let sk = need(get_s(it, "sk"), "sk")?;
    let (observer, instance) = match sk.split_once('#') {
        Some((region, instance)) => (region.to_string(), Some(instance.to_string())),
        None => (sk, None),
    };
    let instance = get_s(it, "instance").or(instance);
    // Counts that cannot be decoded are unknown (`None`: readers take that
    // as "not counted"), never a reason to lose the vote itself.
    let traffic = match it.get("traffic") {
        None => None,
        Some(t) => match traffic_from_attr(t) {
            Ok(t) => Some(t),
            Err(Bad(why)) => {
                warn!(%observer, why, "the vote's traffic counts cannot be decoded; taking them as unknown");
                None
            }
        },
    };
    // The fleet fingerprint, `group:digest,...`; absent from older
    // daemons' votes (unknown, not a difference).
    let fleet = get_s(it, "fleet").map(|text| {
        text.split(',')
            .filter_map(|pair| pair.split_once(':'))
            .map(|(g, d)| (g.to_string(), d.to_string()))
            .collect()
    });
    // The standby readiness, `against|worst|checked_ago_ms|critical,...`;
    // absent (the active, an older daemon) or unreadable: unknown.
    let readiness = get_s(it, "readiness").and_then(|text| {
        let r = readiness_from(&text);
        if r.is_none() {
            warn!(%observer, text, "the vote's readiness cannot be decoded; taking it as unknown");
        }
        r
    });
    Ok(Vote {
        observer,
        instance,
        at: need(get_time(it, "at"), "at")?,
        seen_epoch: need(get_n(it, "seen_epoch"), "seen_epoch")?,
        view: verdicts,
        traffic,
        fleet,
        readiness,
        // Absent (an older daemon) or unreadable: unknown.
        lease_ms: get_n(it, "lease_ms"),
    })
}

/// A vote's `readiness` attribute (one short string: region and endpoint
/// names hold neither `|` nor `,`).
fn readiness_text(p: &Published) -> String {
    format!(
        "{}|{}|{}|{}",
        p.against,
        p.worst.as_str(),
        p.checked_ago_ms,
        p.critical.join(",")
    )
}

fn readiness_from(text: &str) -> Option<Published> {
    let mut parts = text.splitn(4, '|');
    let against = parts.next()?.to_string();
    let worst = Severity::parse(parts.next()?)?;
    let checked_ago_ms = parts.next()?.parse().ok()?;
    let critical = parts
        .next()?
        .split(',')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    Some(Published {
        against,
        worst,
        critical,
        checked_ago_ms,
    })
}

/// A vote's `traffic` attribute: a map with `counted_ms` (N) and `e` (a map
/// from `region/endpoint` to one string of numbers, `last_ago_ms`, the sums
/// over `TRAILING_MS`, then the busiest minute of the hour when known,
/// comma-separated: a few dozen bytes an endpoint, where a nested map of
/// numbers would cost several times that). A string without the last number
/// (from a daemon that did not publish it) reads as "peak unknown".
fn traffic_attr(t: &Traffic) -> AttributeValue {
    let endpoints: HashMap<String, AttributeValue> = t
        .endpoints
        .iter()
        .map(|(k, e)| {
            let mut text = e.last_ago_ms.to_string();
            for x in e.sums.into_iter().chain(e.peak_minute) {
                text.push(',');
                text.push_str(&x.to_string());
            }
            (k.clone(), s(text))
        })
        .collect();
    AttributeValue::M(HashMap::from([
        ("counted_ms".to_string(), n(t.counted_ms)),
        ("e".to_string(), AttributeValue::M(endpoints)),
    ]))
}

fn traffic_from_attr(v: &AttributeValue) -> Result<Traffic, Bad> {
    let m = v.as_m().map_err(|_| Bad("traffic is not a map".into()))?;
    let counted_ms = need(get_n(m, "counted_ms"), "traffic.counted_ms")?;
    let e = need(m.get("e").and_then(|v| v.as_m().ok()), "traffic.e")?;
    let mut endpoints = BTreeMap::new();
    for (k, v) in e {
        let text = v
            .as_s()
            .map_err(|_| Bad(format!("traffic.e.{k} is not a string")))?;
        let nums: Vec<u64> = text
            .split(',')
            .map(|x| x.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|e| Bad(format!("traffic.e.{k} = {text:?}: {e}")))?;
        let Some((last, sums)) = nums.split_first() else {
            return Err(Bad(format!("traffic.e.{k} is empty")));
        };
        let (sums, peak_minute) = match sums.len() {
            n if n == TRAILING_MS.len() => (sums, None),
            n if n == TRAILING_MS.len() + 1 => (&sums[..n - 1], Some(sums[n - 1])),
            _ => {
                return Err(Bad(format!(
                    "traffic.e.{k} = {text:?}: want {} or {} numbers",
                    TRAILING_MS.len() + 1,
                    TRAILING_MS.len() + 2
                )));
            }
        };
        let sums: [u64; TRAILING_MS.len()] = sums.try_into().map_err(|_| {
            Bad(format!(
                "traffic.e.{k} = {text:?}: want {} numbers",
                TRAILING_MS.len() + 1
            ))
        })?;
        endpoints.insert(
            k.clone(),
            EndpointTraffic {
                last_ago_ms: *last,
                sums,
                peak_minute,
            },
        );
    }
    Ok(Traffic {
        counted_ms,
        endpoints,
    })
}

/// The vote item as written (key included).
pub fn vote_item(v: &Vote) -> Item {
    let view: HashMap<String, AttributeValue> = v
        .view
        .iter()
        .map(|(r, verdict)| {
            let name = match verdict {
                Verdict::Down => "down",
                Verdict::Up => "up",
            };
            (r.clone(), s(name))
        })
        .collect();
    let mut item = match &v.instance {
        Some(i) => ControlTable::key("VOTE", &format!("{}#{i}", v.observer)),
        None => ControlTable::key("VOTE", &v.observer),
    };
    if let Some(i) = &v.instance {
        item.insert("instance".to_string(), s(i));
    }
    item.extend([
        ("at".to_string(), n(v.at)),
        ("seen_epoch".to_string(), n(v.seen_epoch)),
        ("view".to_string(), AttributeValue::M(view)),
    ]);
    if let Some(t) = &v.traffic {
        item.insert("traffic".to_string(), traffic_attr(t));
    }
    if let Some(f) = &v.fleet {
        let text: Vec<String> = f.iter().map(|(g, d)| format!("{g}:{d}")).collect();
        item.insert("fleet".to_string(), s(text.join(",")));
    }
    if let Some(p) = &v.readiness {
        item.insert("readiness".to_string(), s(readiness_text(p)));
    }
    if let Some(l) = v.lease_ms {
        item.insert("lease_ms".to_string(), n(l));
    }
    item
}

/// A decoded vote item (for tests of the encoding).
pub fn vote_from(item: &Item) -> Option<Vote> {
    vote_from_item(item).ok()
}

impl ControlTable {
    pub(super) async fn send_vote(&self, v: &Vote) -> Result<(), PortError> {
        let item = vote_item(v);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.fail("PutItem VOTE", e))?;
        Ok(())
    }

    pub(super) async fn query_votes(&self) -> Result<Vec<Vote>, PortError> {
        let (items, _) = self.query_pk("VOTE", false, None).await?;
        Ok(decode_all(self, "vote", &items, 0, vote_from_item))
    }

    pub(super) async fn send_reading(&self, r: &PublishedReading) -> Result<(), PortError> {
        let reading = serde_json::to_string(&r.reading).map_err(|e| {
            PortError::new(
                SERVICE,
                "PutItem READING",
                &self.region,
                ErrorKind::Validation,
                e,
            )
        })?;
        let mut item = Self::key("READING", &r.check_id);
        item.extend([
            ("reader".to_string(), s(&r.reader)),
            ("read_at".to_string(), n(r.read_at)),
            ("reading".to_string(), s(reading)),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.fail("PutItem READING", e))?;
        Ok(())
    }

    pub(super) async fn query_readings(&self) -> Result<Vec<PublishedReading>, PortError> {
        fn decode(it: &Item) -> Result<PublishedReading, Bad> {
            let text = need(get_s(it, "reading"), "reading")?;
            Ok(PublishedReading {
                check_id: need(get_s(it, "sk"), "sk")?,
                reader: need(get_s(it, "reader"), "reader")?,
                read_at: need(get_n(it, "read_at"), "read_at")?,
                reading: serde_json::from_str(&text)
                    .map_err(|e| Bad(format!("reading is not valid JSON: {e}")))?,
            })
        }
        let (items, _) = self.query_pk("READING", false, None).await?;
        Ok(decode_all(self, "reading", &items, 0, decode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DynamoDB's item size rule: attribute names and strings by their
    /// UTF-8 bytes, numbers by (significant digits / 2) + 1, maps 3 bytes
    /// plus 1 per element (the AWS developer guide's "item sizes").
    fn item_size(item: &Item) -> usize {
        fn value(v: &AttributeValue) -> usize {
            match v {
                AttributeValue::S(x) => x.len(),
                AttributeValue::N(x) => x.trim_start_matches('0').len().div_ceil(2) + 1,
                AttributeValue::Bool(_) => 1,
                AttributeValue::M(m) => {
                    3 + m.iter().map(|(k, v)| k.len() + value(v) + 1).sum::<usize>()
                }
                _ => 0,
            }
        }
        item.iter().map(|(k, v)| k.len() + value(v)).sum()
    }

    fn busy_vote(endpoints: usize) -> Vote {
        let regions = ["us-east-1", "us-west-2", "eu-west-1"];
        let traffic = Traffic {
            counted_ms: 6 * 86_400_000 + 12_345,
            endpoints: (0..endpoints)
                .map(|i| {
                    (
                        Traffic::key(regions[i % 3], &format!("fraud-detector-provisioned-{i}")),
                        EndpointTraffic {
                            last_ago_ms: 59_999,
                            // Busy: 2000 calls a minute, every window full.
                            sums: TRAILING_MS.map(|w| 2000 * (w / 60_000 + 1)),
                            peak_minute: Some(2000),
                        },
                    )
                })
                .collect(),
        };
        Vote {
            observer: "us-west-2".into(),
            instance: Some("i-0a1b2c".into()),
            at: 1_795_000_000_123,
            seen_epoch: 42,
            view: regions
                .iter()
                .map(|r| (r.to_string(), Verdict::Up))
                .collect(),
            traffic: Some(traffic),
            fleet: Some(
                [("all", "0123456789abcdef"), ("timings", "ab12")]
                    .iter()
                    .map(|(g, d)| (g.to_string(), d.to_string()))
                    .collect(),
            ),
            readiness: Some(Published {
                against: "us-east-1".into(),
                worst: Severity::Critical,
                critical: vec!["prov model".into(), "serverless exists".into()],
                checked_ago_ms: 42_000,
            }),
            lease_ms: Some(30_000),
        }
    }

    #[test]
    fn a_vote_with_counts_round_trips_and_stays_small() {
        for n in [0, 1, 9, 30] {
            let v = busy_vote(n);
            let item = vote_item(&v);
            assert_eq!(vote_from(&item), Some(v), "{n} endpoints");
            let size = item_size(&item);
            println!("vote item with {n} busy endpoints: {size} bytes");
            // Under 1 KB (one write unit) for a three-region fleet's nine
            // endpoints would be ideal; under 400 KB is the hard limit.
            assert!(size < 120 * (n + 1) + 200, "{n} endpoints: {size} bytes");
        }
        // Without counts: the vote as before.
        let mut v = busy_vote(0);
        v.traffic = None;
        let item = vote_item(&v);
        assert!(!item.contains_key("traffic"));
        assert_eq!(vote_from(&item), Some(v));
    }

    /// Two daemons of one region write two items; an older daemon's item,
    /// keyed by the region with no `instance`, still reads as the region's.
    #[test]
    fn each_daemon_has_its_own_vote_item_and_older_ones_still_read() {
        let a = busy_vote(1);
        let mut b = a.clone();
        b.instance = Some("i-0d4e5f".into());
        let (ia, ib) = (vote_item(&a), vote_item(&b));
        assert_eq!(ia["sk"], s("us-west-2#i-0a1b2c"));
        assert_ne!(ia["sk"], ib["sk"]);
        assert_eq!(vote_from(&ib), Some(b));
        let mut old = vote_item(&a);
        old.remove("instance");
        old.insert("sk".into(), s("us-west-2"));
        let read = vote_from(&old).unwrap();
        assert_eq!((read.observer.as_str(), read.instance), ("us-west-2", None));
        assert_eq!(read.view, a.view);
    }

    /// A vote from a daemon that did not publish the busiest minute (seven
    /// numbers per endpoint) still reads, with the peak unknown.
    #[test]
    fn counts_without_a_peak_read_as_peak_unknown() {
        let v = busy_vote(1);
        let mut item = vote_item(&v);
        item.insert(
            "traffic".into(),
            AttributeValue::M(HashMap::from([
                ("counted_ms".into(), n(5)),
                (
                    "e".into(),
                    AttributeValue::M(HashMap::from([("a/b".into(), s("1,2,3,4,5,6,7"))])),
                ),
            ])),
        );
        let t = vote_from(&item).unwrap().traffic.unwrap();
        let e = &t.endpoints["a/b"];
        assert_eq!((e.last_ago_ms, e.sums[5], e.peak_minute), (1, 7, None));
    }

    #[test]
    fn undecodable_counts_are_unknown_and_the_vote_still_counts() {
        let v = busy_vote(2);
        for bad in [
            AttributeValue::S("nope".into()),
            AttributeValue::M(HashMap::from([("counted_ms".into(), n(5))])),
            AttributeValue::M(HashMap::from([
                ("counted_ms".into(), n(5)),
                (
                    "e".into(),
                    AttributeValue::M(HashMap::from([("a/b".into(), s("1,2"))])),
                ),
            ])),
            AttributeValue::M(HashMap::from([
                ("counted_ms".into(), n(5)),
                (
                    "e".into(),
                    AttributeValue::M(HashMap::from([("a/b".into(), s("1,2,x,4,5,6,7"))])),
                ),
            ])),
        ] {
            let mut item = vote_item(&v);
            item.insert("traffic".into(), bad.clone());
            let got = vote_from(&item).unwrap_or_else(|| panic!("vote lost over {bad:?}"));
            assert_eq!(got.traffic, None, "{bad:?}");
            assert_eq!(got.view, v.view);
        }
    }
}
