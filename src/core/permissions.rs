//! Readiness's IAM dry run (issue 26; docs/readiness.md): SageMaker has no
//! `DryRun` for the calls prepare makes, so each standby round asks IAM's
//! policy simulator (`SimulatePrincipalPolicy`) whether the daemons' own
//! principal may make them, on exactly the standby's endpoints and
//! components, and judges the answer. Pure: the simulator's answer is
//! passed in.
//!
//! What is asked per target (a model's endpoint on a path, or its
//! inference component):
//!
//! | target | actions |
//! |---|---|
//! | every endpoint | `sagemaker:DescribeEndpoint` (prepare's status read) |
//! | a real-time endpoint | `sagemaker:InvokeEndpoint` (the warm-up, then the router) |
//! | an async endpoint | `sagemaker:InvokeEndpointAsync` (the router) |
//! | a provisioned endpoint whose variants run the model | `sagemaker:UpdateEndpointWeightsAndCapacities` (the scale-up) |
//! | an inference component | `sagemaker:DescribeInferenceComponent`, `sagemaker:UpdateInferenceComponentRuntimeConfig` (its copies) |
//! | every target | `states:SendTaskSuccess`, `states:SendTaskHeartbeat` on `*` (prepare's token) |
//!
//! A pair the simulator denies is `critical` (prepare would fail on it);
//! a pair it did not judge, or a failed simulation, is `unknown`.

use super::standby::{Check, Finding, Severity};

/// The IAM principal behind a caller identity: an assumed role's session
/// (`arn:aws:sts::111122223333:assumed-role/failoverd-daemon/i-0abc`) is
/// judged by its role (`arn:aws:iam::111122223333:role/failoverd-daemon`);
/// an IAM user's or role's ARN is itself. The session ARN does not carry
/// the role's path: a role with one needs `cost.readiness_principal`.
pub fn principal_of(caller: &str) -> Option<String> {
    let mut parts = caller.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(_), Some(account), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if partition.is_empty() || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match service {
        "sts" => {
            let role = rest.strip_prefix("assumed-role/")?.split('/').next()?;
            (!role.is_empty()).then(|| format!("arn:{partition}:iam::{account}:role/{role}"))
        }
        "iam" if rest.starts_with("role/") || rest.starts_with("user/") => Some(caller.to_string()),
        _ => None,
    }
}

/// One call prepare (or the router after it) makes: an IAM action on a
/// resource ARN (`*` for actions without a resource type).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    pub action: &'static str,
    pub resource: String,
}

/// How a target is reached, for what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// An endpoint whose variants run the model; `scaled`: prepare scales
    /// its instances (a provisioned endpoint); `asynchronous`: an async
    /// endpoint (invoked with `InvokeEndpointAsync`).
    Endpoint { scaled: bool, asynchronous: bool },
    /// An inference component on a real-time endpoint.
    Component(&'a str),
}

/// SageMaker's ARN of a resource: `kind` `endpoint` or
/// `inference-component`. SageMaker writes the names in its ARNs in lower
/// case (what IAM matches a policy's resources against).
pub fn sagemaker_arn_in(
    partition: &str,
    account: &str,
    region: &str,
    kind: &str,
    name: &str,
) -> String {
    format!(
        "arn:{partition}:sagemaker:{region}:{account}:{kind}/{}",
        name.to_ascii_lowercase()
    )
}

/// The partition and account of an ARN (`arn:aws:iam::111122223333:...`).
pub fn partition_and_account(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (_, partition, _, _, account) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    Some((partition, account))
}

/// [`sagemaker_arn_in`] `region` of `principal`'s account.
pub fn sagemaker_arn(principal: &str, region: &str, kind: &str, name: &str) -> Option<String> {
    let (partition, account) = partition_and_account(principal)?;
    Some(sagemaker_arn_in(partition, account, region, kind, name))
}

/// The task-token calls prepare makes (no resource type: `*`).
pub const TOKEN_ACTIONS: [&str; 2] = ["states:SendTaskSuccess", "states:SendTaskHeartbeat"];

/// What `endpoint` (reached as `target`) in `region` needs allowed.
pub fn wanted(principal: &str, region: &str, endpoint: &str, target: Target<'_>) -> Vec<Wanted> {
    let mut out = Vec::new();
    let Some(ep) = sagemaker_arn(principal, region, "endpoint", endpoint) else {
        return out;
    };
    let on = |action: &'static str, resource: &String| Wanted {
        action,
        resource: resource.clone(),
    };
    out.push(on("sagemaker:DescribeEndpoint", &ep));
    match target {
        Target::Endpoint {
            asynchronous: true, ..
        } => out.push(on("sagemaker:InvokeEndpointAsync", &ep)),
        Target::Endpoint { scaled, .. } => {
            out.push(on("sagemaker:InvokeEndpoint", &ep));
            if scaled {
                out.push(on("sagemaker:UpdateEndpointWeightsAndCapacities", &ep));
            }
        }
        Target::Component(c) => {
            out.push(on("sagemaker:InvokeEndpoint", &ep));
            if let Some(ic) = sagemaker_arn(principal, region, "inference-component", c) {
                out.push(on("sagemaker:DescribeInferenceComponent", &ic));
                out.push(on("sagemaker:UpdateInferenceComponentRuntimeConfig", &ic));
            }
        }
    }
    for a in TOKEN_ACTIONS {
        out.push(on(a, &"*".to_string()));
    }
    out
}

/// One (action, resource) as the simulator judged it: `allowed`,
/// `explicitDeny` or `implicitDeny`.
pub type Decisions = std::collections::BTreeMap<(String, String), String>;

/// The `iam` check of one target: every [`Wanted`] pair against the
/// simulator's decisions for `principal`.
pub fn judge(
    model: &str,
    endpoint: &str,
    principal: &Result<String, String>,
    wanted: &[Wanted],
    decisions: &Result<Decisions, String>,
) -> Finding {
    let at = |severity, detail| Finding {
        model: model.to_string(),
        endpoint: endpoint.to_string(),
        check: Check::Iam,
        severity,
        detail,
    };
    let principal = match principal {
        Ok(p) => p,
        Err(e) => {
            return at(
                Severity::Unknown,
                format!("whose policies to simulate: {e}"),
            );
        }
    };
    let decisions = match decisions {
        Ok(d) => d,
        Err(e) => {
            return at(
                Severity::Unknown,
                format!("SimulatePrincipalPolicy failed: {e}"),
            );
        }
    };
    if wanted.is_empty() {
        return at(
            Severity::Unknown,
            format!("no ARN from principal {principal}"),
        );
    }
    let mut denied = Vec::new();
    let mut unjudged = Vec::new();
    for w in wanted {
        match decisions.get(&(w.action.to_string(), w.resource.clone())) {
            Some(d) if d == "allowed" => {}
            Some(d) => {
                let why = if d == "explicitDeny" {
                    "a policy denies it"
                } else {
                    "no policy allows it"
                };
                denied.push(format!("{} on {}: {d} ({why})", w.action, w.resource));
            }
            None => unjudged.push(format!("{} on {}", w.action, w.resource)),
        }
    }
    if !denied.is_empty() {
        return at(
            Severity::Critical,
            format!("{principal} may not call: {}", denied.join("; ")),
        );
    }
    if !unjudged.is_empty() {
        return at(
            Severity::Unknown,
            format!("the simulator did not judge {}", unjudged.join("; ")),
        );
    }
    at(
        Severity::Ok,
        format!("{principal} may make prepare's {} calls", wanted.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assumed_role_is_judged_by_its_role() {
        assert_eq!(
            principal_of("arn:aws:sts::111122223333:assumed-role/failoverd-daemon/i-0abc")
                .as_deref(),
            Some("arn:aws:iam::111122223333:role/failoverd-daemon")
        );
        assert_eq!(
            principal_of("arn:aws-us-gov:sts::111122223333:assumed-role/r/s").as_deref(),
            Some("arn:aws-us-gov:iam::111122223333:role/r")
        );
        for own in [
            "arn:aws:iam::111122223333:user/ops/alice",
            "arn:aws:iam::111122223333:role/failoverd-daemon",
        ] {
            assert_eq!(principal_of(own).as_deref(), Some(own));
        }
        for not in [
            "arn:aws:iam::111122223333:root",
            "arn:aws:sts::111122223333:federated-user/bob",
            "arn:aws:sts::111122223333:assumed-role/",
            "arn:aws:sts::11112222333:assumed-role/r/s",
            "arn:aws:sts::x11122223333:assumed-role/r/s",
            "arn::sts::111122223333:assumed-role/r/s",
            "not an arn",
        ] {
            assert_eq!(principal_of(not), None, "{not}");
        }
    }

    const ROLE: &str = "arn:aws:iam::111122223333:role/failoverd-daemon";

    fn decide(wanted: &[Wanted], deny: &[(&str, &str)]) -> Decisions {
        wanted
            .iter()
            .map(|w| {
                let d = deny
                    .iter()
                    .find(|(a, _)| *a == w.action)
                    .map_or("allowed", |(_, d)| *d);
                ((w.action.to_string(), w.resource.clone()), d.to_string())
            })
            .collect()
    }

    #[test]
    fn each_target_asks_what_prepare_and_the_router_call_on_it() {
        let scaled = wanted(
            ROLE,
            "us-west-2",
            "Prov-A",
            Target::Endpoint {
                scaled: true,
                asynchronous: false,
            },
        );
        let ep = "arn:aws:sagemaker:us-west-2:111122223333:endpoint/prov-a";
        let actions: Vec<_> = scaled
            .iter()
            .map(|w| (w.action, w.resource.as_str()))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("sagemaker:DescribeEndpoint", ep),
                ("sagemaker:InvokeEndpoint", ep),
                ("sagemaker:UpdateEndpointWeightsAndCapacities", ep),
                ("states:SendTaskSuccess", "*"),
                ("states:SendTaskHeartbeat", "*"),
            ]
        );
        let asynchronous = wanted(
            ROLE,
            "us-west-2",
            "batch",
            Target::Endpoint {
                scaled: false,
                asynchronous: true,
            },
        );
        assert!(
            asynchronous
                .iter()
                .any(|w| w.action == "sagemaker:InvokeEndpointAsync")
        );
        assert!(
            !asynchronous
                .iter()
                .any(|w| w.action == "sagemaker:InvokeEndpoint"
                    || w.action == "sagemaker:UpdateEndpointWeightsAndCapacities")
        );
        let component = wanted(ROLE, "eu-west-1", "shared", Target::Component("Chat-IC"));
        assert!(component.contains(&Wanted {
            action: "sagemaker:UpdateInferenceComponentRuntimeConfig",
            resource: "arn:aws:sagemaker:eu-west-1:111122223333:inference-component/chat-ic".into(),
        }));
        assert!(
            !component
                .iter()
                .any(|w| w.action == "sagemaker:UpdateEndpointWeightsAndCapacities")
        );
    }

    #[test]
    fn a_denied_call_is_critical_and_named() {
        let t = Target::Endpoint {
            scaled: true,
            asynchronous: false,
        };
        let w = wanted(ROLE, "us-west-2", "prov", t);
        let p = Ok(ROLE.to_string());
        let ok = judge("chat", "prov", &p, &w, &Ok(decide(&w, &[])));
        assert_eq!(ok.severity, Severity::Ok, "{ok}");
        assert_eq!(ok.check, Check::Iam);
        let denied = judge(
            "chat",
            "prov",
            &p,
            &w,
            &Ok(decide(
                &w,
                &[(
                    "sagemaker:UpdateEndpointWeightsAndCapacities",
                    "implicitDeny",
                )],
            )),
        );
        assert_eq!(denied.severity, Severity::Critical);
        assert!(
            denied.detail.contains("UpdateEndpointWeightsAndCapacities")
                && denied.detail.contains("implicitDeny")
                && denied.detail.contains(ROLE),
            "{denied}"
        );
        let explicit = judge(
            "chat",
            "prov",
            &p,
            &w,
            &Ok(decide(&w, &[("states:SendTaskSuccess", "explicitDeny")])),
        );
        assert_eq!(explicit.severity, Severity::Critical);
        assert!(explicit.detail.contains("a policy denies it"), "{explicit}");
    }

    #[test]
    fn what_was_not_judged_is_unknown_never_ok() {
        let t = Target::Component("ic");
        let w = wanted(ROLE, "us-west-2", "shared", t);
        let p = Ok(ROLE.to_string());
        let mut partial = decide(&w, &[]);
        partial.pop_last();
        assert_eq!(
            judge("m", "shared", &p, &w, &Ok(partial)).severity,
            Severity::Unknown
        );
        let failed = judge("m", "shared", &p, &w, &Err("AccessDenied".into()));
        assert_eq!(failed.severity, Severity::Unknown);
        assert!(failed.detail.contains("AccessDenied"));
        let nobody = judge(
            "m",
            "shared",
            &Err("STS down".into()),
            &w,
            &Ok(decide(&w, &[])),
        );
        assert_eq!(nobody.severity, Severity::Unknown);
        assert!(nobody.detail.contains("STS down"));
    }
}
