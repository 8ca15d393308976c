//! Reading the CloudFormation templates in `deploy/cloudformation` from tests:
//! YAML with CloudFormation's short tags (`!Sub`, `!Ref`, `!If`), which
//! serde_yaml keeps as tagged values; these helpers look through the tags.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A template file as written (`deploy/cloudformation/<name>`).
pub fn source(name: &str) -> PathBuf {
    root().join("deploy/cloudformation").join(name)
}

/// Parse a template file.
pub fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Render every template with `deploy/render.sh` into `out` (the same script
/// operators and the lab's provisioning run).
pub fn render(out: &Path) {
    let status = Command::new("bash")
        .arg(root().join("deploy/render.sh"))
        .arg("--out")
        .arg(out)
        .status()
        .expect("run deploy/render.sh");
    assert!(status.success(), "deploy/render.sh failed: {status}");
}

/// The value under a tag (`!Sub x` -> `x`), or the value itself.
pub fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

/// The tag of a value (`!Sub`), if any.
pub fn tag(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => Some(t.tag.to_string()),
        _ => None,
    }
}

/// `v[k1][k2]...`, looking through tags.
pub fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = untag(v);
    for k in path {
        cur = untag(cur.as_mapping()?.get(*k)?);
    }
    Some(cur)
}

/// A string, looking through tags.
pub fn str_of(v: &Value) -> Option<&str> {
    untag(v).as_str()
}

/// A list's items (a scalar counts as a one-item list).
pub fn items(v: &Value) -> Vec<&Value> {
    match untag(v) {
        Value::Sequence(s) => s.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    }
}

/// `(logical id, resource)` of every resource of type `ty`.
pub fn resources<'a>(tpl: &'a Value, ty: &str) -> Vec<(String, &'a Value)> {
    let Some(res) = get(tpl, &["Resources"]).and_then(|r| r.as_mapping()) else {
        return vec![];
    };
    res.iter()
        .filter(|(_, r)| get(r, &["Type"]).and_then(str_of) == Some(ty))
        .map(|(k, r)| (k.as_str().unwrap_or_default().to_string(), r))
        .collect()
}

/// The IAM role whose `Metadata: failoverd: role:` is `kind`
/// (daemon, drill, workflow). Panics unless there is exactly one.
pub fn role<'a>(tpl: &'a Value, kind: &str) -> (String, &'a Value) {
    let mut found: Vec<_> = resources(tpl, "AWS::IAM::Role")
        .into_iter()
        .filter(|(_, r)| get(r, &["Metadata", "failoverd", "role"]).and_then(str_of) == Some(kind))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one AWS::IAM::Role with Metadata failoverd.role = {kind}"
    );
    found.remove(0)
}

/// One policy statement.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sid: Option<String>,
    pub allow: bool,
    pub actions: Vec<String>,
    pub resources: Vec<Value>,
}

/// Every statement of the role's inline policies and of the
/// AWS::IAM::Policy / ManagedPolicy resources attached to it by `Ref`.
pub fn statements(tpl: &Value, role_id: &str) -> Vec<Statement> {
    let mut docs: Vec<&Value> = Vec::new();
    let role = get(tpl, &["Resources", role_id]).expect("role exists");
    for p in get(role, &["Properties", "Policies"])
        .map(items)
        .unwrap_or_default()
    {
        if let Some(d) = get(p, &["PolicyDocument"]) {
            docs.push(d);
        }
    }
    for ty in ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"] {
        for (_, p) in resources(tpl, ty) {
            let attached = get(p, &["Properties", "Roles"])
                .map(items)
                .unwrap_or_default()
                .into_iter()
                .any(|r| {
                    tag(r).as_deref() == Some("!Ref") && str_of(r) == Some(role_id)
                        || get(r, &["Ref"]).and_then(str_of) == Some(role_id)
                });
            if attached && let Some(d) = get(p, &["Properties", "PolicyDocument"]) {
                docs.push(d);
            }
        }
    }
    let mut out = Vec::new();
    for d in docs {
        for s in get(d, &["Statement"]).map(items).unwrap_or_default() {
            out.push(Statement {
                sid: get(s, &["Sid"]).and_then(str_of).map(String::from),
                allow: get(s, &["Effect"]).and_then(str_of) == Some("Allow"),
                actions: get(s, &["Action"])
                    .map(items)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(str_of)
                    .map(String::from)
                    .collect(),
                resources: get(s, &["Resource"])
                    .map(items)
                    .unwrap_or_default()
                    .into_iter()
                    .cloned()
                    .collect(),
            });
        }
    }
    out
}

/// The template's parameter names.
pub fn parameters(tpl: &Value) -> Vec<String> {
    get(tpl, &["Parameters"])
        .and_then(|p| p.as_mapping())
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
