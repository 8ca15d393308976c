//! The IAM policies in `deploy/cloudformation` against the code they serve.
//!
//! **The daemon's role grants exactly what the daemon calls.** Which AWS
//! operations the daemon calls is read from the `failoverd` binary itself:
//! every SDK operation the code can reach is linked in as
//! `aws_sdk_<service>::operation::<op>::builders::<Op>FluentBuilder::send`
//! (or the operation's `orchestrate`, which paginators and waiters use), and
//! the linker drops what nothing reaches. So an adapter in `src/aws/` used
//! only by the lab's provisioning and drills (CreateTable, CreateStateMachine,
//! UpdateHealthCheck to invert a check, ...) is in the `failoverd-lab`
//! binary and not in `failoverd` (and one only tests use is in neither),
//! with no marker to keep up
//! to date; and a call added anywhere under `src/` (a port's adapter, the
//! router, the CLI that runs under the same role) shows up without anyone
//! listing it. We rejected scanning the source for `.get_item()`-style
//! calls: it cannot tell the daemon's call sites from provisioning's, and
//! misses calls made through paginators or helpers. The source is still
//! searched, only to say where a missing action is called.
//!
//! Operations the SDK makes by itself for the credential chain (STS
//! AssumeRole*, SSO) or for S3 Express sessions are not the daemon's and are
//! listed in [`SDK_INTERNAL`] with the reason; the test fails if `src/` ever
//! calls one of them directly.
//!
//! Needs the symbol table: the debug build (CI's one profile) keeps it.
//!
//! Also here: the workflow's execution role against the Task states of
//! `deploy/statemachines/failover.asl.json`, and the drill role.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod cfn;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use failoverd::aws::sfn::render_definition;

const IAM_TEMPLATE: &str = "iam.yaml";

/// (service crate, operation) pairs linked into the binary that failoverd's
/// code does not call: the SDK calls them on its own.
const SDK_INTERNAL: &[(&str, &str, &str)] = &[
    (
        "sts",
        "assume_role",
        "aws-config's profile credential provider (runs with the source credentials, not the daemon's role)",
    ),
    (
        "sts",
        "assume_role_with_web_identity",
        "aws-config's web-identity provider (EKS/IRSA)",
    ),
    ("sso", "get_role_credentials", "aws-config's SSO provider"),
    ("ssooidc", "create_token", "aws-config's SSO token refresh"),
    (
        "s3",
        "create_session",
        "S3 Express One Zone session auth, used only for directory buckets (failoverd's are general purpose)",
    ),
];

/// Calls that need a second action when the code reads their "not found":
/// (service, operation, what in `src/` shows the code expects not-found,
/// the extra action, why). S3 answers a GetObject or HeadObject of a missing
/// key with 404 only to a caller with `s3:ListBucket` on the bucket, and
/// with 403 AccessDenied to anyone else (Amazon S3 API reference, GetObject,
/// "Permissions"): a poll that must tell "not written yet" from "denied"
/// needs ListBucket, though the SDK call is GetObject alone.
const NOT_FOUND_NEEDS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "s3",
        "get_object",
        ".is_no_such_key()",
        "s3:ListBucket",
        "S3 answers a missing key with 403 AccessDenied, not 404 NoSuchKey, without s3:ListBucket",
    ),
    (
        "s3",
        "head_object",
        ".is_not_found()",
        "s3:ListBucket",
        "S3 answers a missing key with 403, not 404, without s3:ListBucket",
    ),
];

/// Whether any `.rs` file under `src/` contains `needle`.
fn src_contains(needle: &str) -> bool {
    fn walk(dir: &Path, needle: &str) -> bool {
        std::fs::read_dir(dir).unwrap().flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p, needle)
            } else {
                p.extension().is_some_and(|x| x == "rs")
                    && std::fs::read_to_string(&p).is_ok_and(|t| t.contains(needle))
            }
        })
    }
    walk(&cfn::root().join("src"), needle)
}

/// IAM's name for an SDK crate's service.
fn iam_prefix(service: &str) -> &'static str {
    match service {
        "dynamodb" => "dynamodb",
        "route53" => "route53",
        "s3" => "s3",
        "sagemaker" | "sagemakerruntime" => "sagemaker",
        "sfn" => "states",
        "sts" => "sts",
        "cloudwatch" => "cloudwatch",
        "applicationautoscaling" => "application-autoscaling",
        "servicequotas" => "servicequotas",
        "iam" => "iam",
        "cloudformation" => "cloudformation",
        other => panic!(
            "tests/iam_policy.rs: the daemon links aws_sdk_{other}; add its IAM service prefix to iam_prefix()"
        ),
    }
}

/// The IAM action an operation needs; `None` when AWS requires no permission.
fn iam_action(service: &str, op: &str) -> Option<String> {
    let pascal: String = op
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    // Operations whose IAM action has another name.
    let action = match (service, pascal.as_str()) {
        ("sts", "GetCallerIdentity") => return None, // needs no permission at all
        ("s3", "HeadObject") => "GetObject".to_string(),
        ("s3", "ListObjectsV2" | "ListObjects" | "HeadBucket") => "ListBucket".to_string(),
        ("s3", "DeleteObjects") => "DeleteObject".to_string(),
        _ => pascal,
    };
    Some(format!("{}:{action}", iam_prefix(service)))
}

// --- the binary's symbol table ------------------------------------------------

/// Names of the defined functions in an ELF64 little-endian file's `.symtab`.
fn function_symbols(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        data.len() > 64 && &data[..4] == b"\x7fELF" && data[4] == 2 && data[5] == 1,
        "{}: not an ELF64 little-endian executable (this test reads Linux binaries)",
        path.display()
    );
    let u16_at = |o: usize| u16::from_le_bytes(data[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    let section = |i: usize| {
        let h = shoff + i * shentsize;
        // (type, offset, size, link, entsize)
        (
            u32_at(h + 4),
            u64_at(h + 24),
            u64_at(h + 32),
            u32_at(h + 40),
            u64_at(h + 56),
        )
    };
    const SHT_SYMTAB: usize = 2;
    const STT_FUNC: u8 = 2;
    let mut names = Vec::new();
    for i in 0..shnum {
        let (ty, off, size, link, entsize) = section(i);
        if ty != SHT_SYMTAB || entsize == 0 {
            continue;
        }
        let (_, stroff, strsize, _, _) = section(link);
        let strtab = &data[stroff..stroff + strsize];
        for s in (off..off + size).step_by(entsize) {
            let name = u32_at(s);
            let info = data[s + 4];
            let shndx = u16_at(s + 6);
            if info & 0xf != STT_FUNC || shndx == 0 {
                continue;
            }
            let end = strtab[name..].iter().position(|&b| b == 0).unwrap_or(0);
            names.push(String::from_utf8_lossy(&strtab[name..name + end]).into_owned());
        }
    }
    assert!(
        !names.is_empty(),
        "{}: no symbol table (stripped?); this test needs the debug build's symbols",
        path.display()
    );
    names
}

/// Length-prefixed identifiers (`9operation8get_item...`) from `s`.
fn segments(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let (mut i, mut out) = (0, Vec::new());
    while i < b.len() && b[i].is_ascii_digit() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n: usize = s[start..i].parse().unwrap_or(usize::MAX);
        if n == 0 || i + n > b.len() {
            break;
        }
        out.push(&s[i..i + n]);
        i += n;
    }
    out
}

/// `(service, operation)` if `sym` is the entry point of an SDK call: a
/// fluent builder's or paginator's `send`, or an operation's `orchestrate`
/// (which waiters use). Works on legacy (`_ZN16aws_sdk_dynamodb9operation...`)
/// and v0 mangling alike: both spell the path as length-prefixed identifiers.
fn sdk_call(sym: &str) -> Option<(String, String)> {
    let mut from = 0;
    while let Some(pos) = sym[from..].find("aws_sdk_") {
        let at = from + pos;
        from = at + 8;
        // Back up over the crate name's length prefix.
        let digits = sym[..at].len()
            - sym[..at]
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .len();
        if digits == 0 {
            continue;
        }
        let segs = segments(&sym[at - digits..]);
        let [krate, "operation", op, rest @ ..] = segs.as_slice() else {
            continue;
        };
        let calls = match rest {
            ["builders", b, "send", ..] => b.ends_with("FluentBuilder"),
            ["paginator", _, "send", ..] => true,
            [_, "orchestrate", ..] => true,
            _ => false,
        };
        if calls {
            let service = krate.trim_start_matches("aws_sdk_");
            return Some((service.to_string(), op.to_string()));
        }
    }
    None
}

/// `(service, operation)` of every SDK operation a binary can call.
fn sdk_operations(binary: &Path) -> BTreeSet<(String, String)> {
    function_symbols(binary)
        .iter()
        .filter_map(|s| sdk_call(s))
        .collect()
}

/// Where `src/` calls `.<op>(`: `file:line` list, for failure messages.
fn call_sites(op: &str) -> Vec<String> {
    fn walk(dir: &Path, needle: &str, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, needle, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for (n, line) in text.lines().enumerate() {
                    if line.contains(needle) {
                        let rel = p.strip_prefix(cfn::root()).unwrap_or(&p);
                        out.push(format!("{}:{}", rel.display(), n + 1));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&cfn::root().join("src"), &format!(".{op}("), &mut out);
    out
}

/// The IAM actions the daemon binary needs: action -> the operations behind it.
fn daemon_needs() -> BTreeMap<String, Vec<(String, String)>> {
    let ops = sdk_operations(Path::new(env!("CARGO_BIN_EXE_failoverd")));
    assert!(
        ops.contains(&("dynamodb".into(), "get_item".into())),
        "no DynamoDB GetItem found in the failoverd binary's symbols: the symbol scan is broken \
         (stripped binary, LTO, or a new SDK naming); found: {ops:?}"
    );
    let mut needs: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (service, op) in ops {
        if SDK_INTERNAL
            .iter()
            .any(|(s, o, _)| *s == service && *o == op)
        {
            continue;
        }
        for (svc, o, marker, extra, _) in NOT_FOUND_NEEDS {
            if *svc == service && *o == op && src_contains(marker) {
                needs.entry(extra.to_string()).or_default().push((
                    service.clone(),
                    format!("{op} (reading not-found: {marker})"),
                ));
            }
        }
        if let Some(action) = iam_action(&service, &op) {
            needs.entry(action).or_default().push((service, op));
        }
    }
    needs
}

fn allowed_actions(tpl: &serde_yaml::Value, role_id: &str) -> BTreeSet<String> {
    cfn::statements(tpl, role_id)
        .into_iter()
        .filter(|s| s.allow)
        .flat_map(|s| s.actions)
        .collect()
}

#[test]
fn daemon_role_grants_exactly_the_operations_the_daemon_calls() {
    let path = cfn::source(IAM_TEMPLATE);
    let tpl = cfn::load(&path);
    let (role_id, _) = cfn::role(&tpl, "daemon");
    let granted = allowed_actions(&tpl, &role_id);
    let needs = daemon_needs();

    let mut problems = Vec::new();
    for (action, ops) in &needs {
        if !granted.contains(action) {
            let sites: Vec<String> = ops
                .iter()
                .flat_map(|(_, op)| call_sites(op.split(' ').next().unwrap_or(op)))
                .collect();
            let ops: Vec<String> = ops
                .iter()
                .map(|(s, o)| format!("aws_sdk_{s} {o}"))
                .collect();
            problems.push(format!(
                "MISSING {action}: the failoverd binary calls {} (at {}); add \"{action}\" to role {role_id} \
                 in deploy/cloudformation/{IAM_TEMPLATE}, scoped to the ARNs it is called on",
                ops.join(", "),
                if sites.is_empty() { "a call site this search did not find".into() } else { sites.join(", ") },
            ));
        }
    }
    for action in &granted {
        if !needs.contains_key(action) {
            problems.push(format!(
                "EXTRA   {action}: role {role_id} grants it, but nothing in the failoverd binary calls it; \
                 remove it from deploy/cloudformation/{IAM_TEMPLATE}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the daemon's policy does not match the code ({} needed, {} granted):\n  {}",
        needs.len(),
        granted.len(),
        problems.join("\n  ")
    );
}

/// The bucket part of an S3 ARN as written (`!Sub arn:...:s3:::<bucket>[/key]`).
fn s3_arn_rest(v: &serde_yaml::Value) -> Option<String> {
    let s = cfn::str_of(v)?;
    Some(s.split_once(":s3:::")?.1.to_string())
}

/// s3:ListBucket acts on the bucket, not on its objects: granted on
/// `bucket/*` it is no grant at all, and S3 goes on answering 403 for a
/// result not written yet. Every bucket the daemon reads objects from must
/// be listed by bucket ARN.
/// The witness topology: a region without a replica deploys no workflow,
/// and its daemon starts, follows and stops its failovers in a replica
/// region's state machine (docs/deploy.md, "Where the workflow runs"). So
/// the daemon's role (one role for every region's hosts) must grant the
/// Step Functions calls on the state machines of all three regions, never
/// only on its own region's (`${AWS::Region}`: the role is global, and a
/// witness host's own region has no state machine).
#[test]
fn a_daemon_may_drive_the_workflow_of_any_region() {
    let tpl = cfn::load(&cfn::source(IAM_TEMPLATE));
    let (role_id, _) = cfn::role(&tpl, "daemon");
    let statements: Vec<_> = cfn::statements(&tpl, &role_id)
        .into_iter()
        .filter(|s| s.allow)
        .collect();
    for (action, kind) in [
        ("states:StartExecution", ":stateMachine:"),
        ("states:DescribeExecution", ":execution:"),
        ("states:StopExecution", ":execution:"),
    ] {
        let texts: Vec<String> = statements
            .iter()
            .filter(|s| s.actions.iter().any(|a| a == action))
            .flat_map(|s| s.resources.iter())
            .map(|r| serde_yaml::to_string(r).unwrap())
            .filter(|t| t.contains(kind))
            .collect();
        assert!(
            texts.iter().all(|t| !t.contains("${AWS::Region}")),
            "{action} only in the daemon's own region: {texts:?}"
        );
        for region in ["${Region1}", "${Region2}", "${Region3}"] {
            assert!(
                texts
                    .iter()
                    .any(|t| t.contains(&format!(":states:{region}:"))),
                "{action} is not granted on {region}'s state machine: {texts:?}"
            );
        }
    }
}

#[test]
fn listbucket_is_granted_on_every_bucket_the_daemon_reads() {
    let tpl = cfn::load(&cfn::source(IAM_TEMPLATE));
    let (role_id, _) = cfn::role(&tpl, "daemon");
    let statements: Vec<_> = cfn::statements(&tpl, &role_id)
        .into_iter()
        .filter(|s| s.allow)
        .collect();
    let arns = |action: &str| -> BTreeSet<String> {
        statements
            .iter()
            .filter(|s| s.actions.iter().any(|a| a == action))
            .flat_map(|s| s.resources.iter().filter_map(s3_arn_rest))
            .collect()
    };
    let read_buckets: BTreeSet<String> = arns("s3:GetObject")
        .into_iter()
        .map(|r| r.split('/').next().unwrap().to_string())
        .collect();
    let listed = arns("s3:ListBucket");
    assert!(!read_buckets.is_empty(), "the daemon reads batch results");
    for l in &listed {
        assert!(
            !l.contains('/'),
            "s3:ListBucket on {l}: ListBucket's resource is the bucket ARN, not an object ARN"
        );
    }
    let missing: Vec<_> = read_buckets.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "the daemon reads objects in {missing:?} without s3:ListBucket on the bucket: \
         S3 answers 403 AccessDenied, not 404, for a result not written yet"
    );
}

#[test]
fn sdk_internal_operations_are_not_called_by_failoverd_code() {
    for (service, op, why) in SDK_INTERNAL {
        let sites = call_sites(op);
        assert!(
            sites.is_empty(),
            "src/ calls {op} (aws_sdk_{service}) at {}: it was excluded from the daemon's policy \
             as SDK-internal ({why}); take it out of SDK_INTERNAL and grant it",
            sites.join(", ")
        );
    }
}

/// The binary scan separates the daemon from provisioning: provisioning's
/// operations are linked into `failoverd-lab` (so the scan sees them there)
/// and not into `failoverd`.
#[test]
fn provisioning_and_drill_operations_stay_out_of_the_daemon() {
    let daemon = sdk_operations(Path::new(env!("CARGO_BIN_EXE_failoverd")));
    let lab = sdk_operations(Path::new(env!("CARGO_BIN_EXE_failoverd-lab")));
    for (service, op) in [
        ("dynamodb", "create_table"),
        ("dynamodb", "update_time_to_live"),
        ("route53", "update_health_check"),
        ("sfn", "create_state_machine"),
        ("sagemaker", "create_endpoint"),
        ("cloudformation", "create_stack"),
    ] {
        let key = (service.to_string(), op.to_string());
        assert!(
            lab.contains(&key),
            "failoverd-lab should link {service} {op} (the scan would be blind otherwise)"
        );
        assert!(
            !daemon.contains(&key),
            "the failoverd binary links {service} {op}, a provisioning/drill operation"
        );
    }
}

#[test]
fn drill_role_only_inverts_health_checks_and_the_daemon_never_can() {
    let tpl = cfn::load(&cfn::source(IAM_TEMPLATE));
    let (drill, _) = cfn::role(&tpl, "drill");
    let granted = allowed_actions(&tpl, &drill);
    let want: BTreeSet<String> = ["route53:GetHealthCheck", "route53:UpdateHealthCheck"]
        .map(String::from)
        .into();
    assert_eq!(
        granted, want,
        "role {drill}: drills invert and restore health checks, nothing else"
    );

    let (daemon, _) = cfn::role(&tpl, "daemon");
    let daemon_actions = allowed_actions(&tpl, &daemon);
    assert!(
        !daemon_actions.contains("route53:UpdateHealthCheck"),
        "the daemon's role may not change health checks"
    );
    // The drill's inversion really is UpdateHealthCheck (chaos/lab/drill.rs).
    let lab = sdk_operations(Path::new(env!("CARGO_BIN_EXE_failoverd-lab")));
    assert!(lab.contains(&("route53".into(), "update_health_check".into())));
}

// --- the workflow's execution role against the state machine definition -------

/// IAM actions of the definition's Task states (Parallel/Map branches too).
fn task_actions(states: &serde_json::Value, out: &mut BTreeMap<String, Vec<String>>) {
    let Some(states) = states.as_object() else {
        return;
    };
    for (name, st) in states {
        if st["Type"] == "Task" {
            let res = st["Resource"].as_str().unwrap_or_default();
            let parts: Vec<&str> = res.split(':').collect();
            let (service, call) = match parts.as_slice() {
                ["arn", _, "states", _, _, "aws-sdk", service, call] => (*service, *call),
                ["arn", _, "states", _, _, service, call] => (*service, *call),
                _ => panic!(
                    "Task state {name}: resource {res} is not a Step Functions service integration; teach tests/iam_policy.rs its IAM action"
                ),
            };
            let call = call.split('.').next().unwrap_or(call); // .waitForTaskToken, .sync
            let mut c = call.chars();
            let action = format!(
                "{service}:{}{}",
                c.next().map(|f| f.to_ascii_uppercase()).unwrap_or_default(),
                c.as_str()
            );
            out.entry(action).or_default().push(name.clone());
        }
        for b in st["Branches"].as_array().into_iter().flatten() {
            task_actions(&b["States"], out);
        }
        for key in ["Iterator", "ItemProcessor"] {
            task_actions(&st[key]["States"], out);
        }
    }
}

/// What Step Functions needs to deliver execution logs to CloudWatch Logs
/// (AWS documents this fixed list, on Resource "*").
const LOG_DELIVERY: &[&str] = &[
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
];

#[test]
fn workflow_role_grants_exactly_what_the_task_states_call() {
    let asl_path = cfn::root().join("deploy/statemachines/failover.asl.json");
    let template = std::fs::read_to_string(&asl_path).unwrap();
    let asl = render_definition(
        &template,
        &[
            ("ControlTable", "failoverd-control"),
            ("ControlTableRegion", "us-east-1"),
        ],
    )
    .unwrap_or_else(|e| panic!("{}: {e}", asl_path.display()));
    let asl: serde_json::Value = serde_json::from_str(&asl).expect("the definition is JSON");
    let mut tasks = BTreeMap::new();
    task_actions(&asl["States"], &mut tasks);
    assert!(
        !tasks.is_empty(),
        "no Task state found in {}",
        asl_path.display()
    );

    let tpl = cfn::load(&cfn::source("region.yaml"));
    let (role_id, _) = cfn::role(&tpl, "workflow");
    let granted = allowed_actions(&tpl, &role_id);
    let mut problems = Vec::new();
    for (action, states) in &tasks {
        if !granted.contains(action) {
            problems.push(format!(
                "MISSING {action}: Task state(s) {} call it; add it to role {role_id} in deploy/cloudformation/region.yaml",
                states.join(", ")
            ));
        }
    }
    for action in &granted {
        if !tasks.contains_key(action) && !LOG_DELIVERY.contains(&action.as_str()) {
            problems.push(format!(
                "EXTRA   {action}: role {role_id} grants it but no Task state calls it; remove it from deploy/cloudformation/region.yaml"
            ));
        }
    }
    for action in LOG_DELIVERY {
        if !granted.contains(*action) {
            problems.push(format!(
                "MISSING {action}: execution logging needs it (LoggingConfiguration)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the workflow role does not match the definition:\n  {}",
        problems.join("\n  ")
    );
}

/// The symbol parser on hand-made names, so a failure of the real scan is
/// not a parser bug.
#[test]
fn symbol_names_parse_in_both_manglings() {
    let legacy = "_ZN11aws_sdk_sfn9operation14stop_execution8builders26StopExecutionFluentBuilder4send28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE";
    let v0 = "_RNCNvMNtNtNtCs4fqI2P2rA04_16aws_sdk_dynamodb9operation8get_item8builders20GetItemFluentBuilder4send0B8_";
    let orchestrate = "_ZN11aws_sdk_sfn9operation18describe_execution17DescribeExecution11orchestrate28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE";
    let not_a_call =
        "_ZN11aws_sdk_sfn9operation14stop_execution18StopExecutionError4meta17h0123456789abcdefE";
    let parse = |s: &str| sdk_call(s).map(|(k, op)| format!("{k} {op}"));
    assert_eq!(parse(legacy).as_deref(), Some("sfn stop_execution"));
    assert_eq!(parse(v0).as_deref(), Some("dynamodb get_item"));
    assert_eq!(
        parse(orchestrate).as_deref(),
        Some("sfn describe_execution")
    );
    assert_eq!(parse(not_a_call), None);
    assert_eq!(
        iam_action("sfn", "send_task_heartbeat").as_deref(),
        Some("states:SendTaskHeartbeat")
    );
    assert_eq!(
        iam_action("sagemakerruntime", "invoke_endpoint_async").as_deref(),
        Some("sagemaker:InvokeEndpointAsync")
    );
    assert_eq!(iam_action("sts", "get_caller_identity"), None);
}
