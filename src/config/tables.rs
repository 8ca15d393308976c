//! The DynamoDB tables, the control table's consistency mode and its
//! replicas, and the rules that make a mode deployable.
//!
//! MRSC (`strong`) global tables exist only as three replicas, or two
//! replicas and a witness, all inside one region set (AWS, "Multi-Region
//! strong consistency"): US us-east-1, us-east-2, us-west-2; EU eu-west-1,
//! eu-west-2, eu-west-3, eu-central-1; AP ap-northeast-1, ap-northeast-2,
//! ap-northeast-3. A configuration that claims `strong` over regions outside
//! one set describes a table AWS will not create, so it is refused, naming
//! the regions. A serving region outside the set reads a replica elsewhere
//! (`[[regions]] control_replica`).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::RegionConfig;
use super::raw::RawTables;
use super::validate::Validator;

/// The region sets an MRSC table can span (name, regions).
pub const MRSC_REGION_SETS: [(&str, &[&str]); 3] = [
    ("US", &["us-east-1", "us-east-2", "us-west-2"]),
    (
        "EU",
        &["eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1"],
    ),
    (
        "AP",
        &["ap-northeast-1", "ap-northeast-2", "ap-northeast-3"],
    ),
];

/// DynamoDB tables and the consistency the control table offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tables {
    /// The control table (global table): control record, votes, tokens, journal.
    pub control: String,
    /// `strong` (MRSC) or `eventual` (MREC).
    pub consistency: Consistency,
    /// The routing table of the seed (`configKey` hash key, `trafficClass` index).
    pub routing: String,
    /// Region of the control-table replica every daemon reads and writes.
    /// Unset (the default): each daemon uses the replica in its own region,
    /// or its region's `control_replica`. Set it to share a single replica,
    /// e.g. where the store does not replicate (the lab).
    pub control_region: Option<String>,
    /// The regions holding a replica of the control table. Default: the
    /// serving regions. Under `strong` (MRSC) they must be three regions of
    /// one region set, or two plus `witness`.
    pub replicas: Vec<String>,
    /// The MRSC witness region (holds no readable replica), if any.
    pub witness: Option<String>,
}

/// Consistency mode of the control table's global replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Multi-region strong consistency: one linearizable record.
    Strong,
    /// Multi-region eventual consistency: per-region replicas, last writer wins.
    Eventual,
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Consistency::Strong => "strong",
            Consistency::Eventual => "eventual",
        })
    }
}

impl Validator<'_> {
    /// The `[tables]` table, checked against the serving `regions`.
    pub(super) fn tables(&mut self, raw: RawTables, regions: &[RegionConfig]) -> Option<Tables> {
        let control = self.required("tables.control", raw.control);
        let routing = self.required("tables.routing", raw.routing);
        let consistency = match raw.consistency.as_deref().unwrap_or("strong") {
            "strong" => Some(Consistency::Strong),
            "eventual" => Some(Consistency::Eventual),
            other => {
                self.err(
                    "tables.consistency",
                    format!("{other:?} is not a consistency mode: use \"strong\" or \"eventual\""),
                );
                None
            }
        };
        let serving: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
        let replicas: Vec<String> = match raw.replicas {
            Some(list) => {
                let mut seen = BTreeSet::new();
                for (i, r) in list.iter().enumerate() {
                    if !super::validate::is_region_name(r) {
                        self.err(
                            &format!("tables.replicas[{i}]"),
                            format!("{r:?} is not an AWS region name"),
                        );
                    } else if !seen.insert(r.clone()) {
                        self.err(
                            &format!("tables.replicas[{i}]"),
                            format!("{r:?} is listed twice"),
                        );
                    }
                }
                list
            }
            None => serving.iter().map(|s| s.to_string()).collect(),
        };
        let witness = raw.witness.filter(|w| !w.is_empty());
        if let Some(w) = &witness
            && replicas.contains(w)
        {
            self.err("tables.witness", format!("{w:?} is also a replica"));
        }
        let control_region = raw.control_region.filter(|s| !s.is_empty());
        if let Some(cr) = &control_region {
            if !replicas.contains(cr) {
                self.err(
                    "tables.control_region",
                    format!("{cr:?} holds no replica of the control table (tables.replicas: {replicas:?})"),
                );
            }
        } else {
            for (i, r) in regions.iter().enumerate() {
                let used = r.control_replica.as_deref().unwrap_or(&r.name);
                if !replicas.iter().any(|x| x == used) {
                    let key = if r.control_replica.is_some() {
                        format!("regions[{i}].control_replica")
                    } else {
                        format!("regions[{i}]")
                    };
                    self.err(
                        &key,
                        format!(
                            "{} would use the control-table replica in {used}, but there is none there (tables.replicas: {replicas:?}); set regions[{i}].control_replica to one of them",
                            r.name
                        ),
                    );
                }
            }
        }
        if consistency == Some(Consistency::Strong) {
            self.mrsc_deployable(&replicas, witness.as_deref());
        }
        Some(Tables {
            control: control?,
            consistency: consistency?,
            routing: routing?,
            control_region,
            replicas,
            witness,
        })
    }

    /// MRSC: three replicas, or two and a witness, in one region set.
    fn mrsc_deployable(&mut self, replicas: &[String], witness: Option<&str>) {
        let members: Vec<&str> = replicas.iter().map(String::as_str).chain(witness).collect();
        let shape_ok = matches!((replicas.len(), witness), (3, None) | (2, Some(_)));
        if !shape_ok {
            self.err(
                "tables.replicas",
                format!(
                    "consistency = \"strong\" (MRSC) needs exactly three replicas, or two and a witness; found {} replica(s){}: {members:?}",
                    replicas.len(),
                    if witness.is_some() { " and a witness" } else { "" }
                ),
            );
        }
        let best = MRSC_REGION_SETS
            .iter()
            .max_by_key(|(_, set)| members.iter().filter(|m| set.contains(m)).count());
        if let Some((name, set)) = best {
            let outside: Vec<&str> = members
                .iter()
                .copied()
                .filter(|m| !set.contains(m))
                .collect();
            if !outside.is_empty() {
                self.err(
                    "tables.replicas",
                    format!(
                        "consistency = \"strong\" (MRSC) needs every replica and the witness in one region set; {outside:?} are outside the {name} set {set:?} (the sets: US us-east-1/us-east-2/us-west-2, EU eu-west-1/eu-west-2/eu-west-3/eu-central-1, AP ap-northeast-1/2/3). List the replicas in tables.replicas, point other regions at one with regions[].control_replica, or use consistency = \"eventual\""
                    ),
                );
            }
        }
    }
}
