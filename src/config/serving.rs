//! How each model is served in each region: the per-model, per-region
//! mapping (`[models.regions.<region>]`), resolved at load into a table
//! the router reads without string work (docs/decisions.md, entries 94–105).
//!
//! A model names, per region, either its own endpoints (`serverless`,
//! `provisioned` (alias `endpoint`), `batch`: the async endpoint), or how
//! it is picked on an endpoint: an inference component
//! (`inference_component`, on the provisioned endpoint), a `TargetModel`
//! on a multi-model endpoint (`target_model`), or a production variant
//! (`target_variant`). A region the model does not list serves it the way
//! every model was served before the mapping existed: on the region's
//! shared `sagemaker` endpoints, with the model's `target_model` if set.
//!
//! Rejected: a free-form list of (endpoint, header) pairs per model. Paths
//! (serverless, provisioned, async) are what the router's decisions are
//! made of (a body over 4 MB cannot go serverless, a cold start falls back
//! serverless to provisioned), so the mapping is written by path.

use std::collections::BTreeMap;

use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};

use super::validate::Validator;
use super::{RegionConfig, SageMakerEndpoints};
use crate::core::routing::Path;

/// How SageMaker picks the model on an endpoint that hosts several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `InferenceComponentName`: an inference component on the endpoint.
    InferenceComponent(String),
    /// `TargetModel`: a model on a multi-model endpoint.
    TargetModel(String),
    /// `TargetVariant`: a production variant of the endpoint.
    TargetVariant(String),
}

impl Via {
    /// The configured name.
    pub fn name(&self) -> &str {
        match self {
            Via::InferenceComponent(n) | Via::TargetModel(n) | Via::TargetVariant(n) => n,
        }
    }
}

/// One model on one path in one region: the endpoint a request goes to,
/// and the header that picks the model there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Serving {
    pub endpoint: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    /// The target's key: `region/endpoint`, or `region/endpoint/component`
    /// for an inference component (what breakers, readiness and the
    /// router's counts are kept by). Built once, here.
    #[serde(skip)]
    pub key: String,
    /// `via`'s name as a header value, built once.
    #[serde(skip)]
    pub header: Option<HeaderValue>,
    /// `via` is this region's own mapping (`[models.regions.<region>]`),
    /// not the model's `target_model` default: it replaces a client's
    /// header of the same kind, since a client cannot know the name in
    /// the region that answers.
    #[serde(skip)]
    pub pinned: bool,
}

impl Serving {
    fn new(region: &str, endpoint: &str, via: Option<Via>) -> Self {
        let key = match &via {
            Some(Via::InferenceComponent(c)) => format!("{region}/{endpoint}/{c}"),
            _ => format!("{region}/{endpoint}"),
        };
        let header = via
            .as_ref()
            .and_then(|v| HeaderValue::from_str(v.name()).ok());
        Self {
            endpoint: endpoint.to_string(),
            via,
            key,
            header,
            pinned: false,
        }
    }

    /// The inference component, if the model is one.
    pub fn component(&self) -> Option<&str> {
        match &self.via {
            Some(Via::InferenceComponent(c)) => Some(c),
            _ => None,
        }
    }

    /// The name the counts and the metrics know this target by, without
    /// its region: `endpoint` or `endpoint/component`.
    pub fn label(&self) -> &str {
        self.key
            .split_once('/')
            .map_or(self.key.as_str(), |(_, rest)| rest)
    }
}

/// One model in one region: a target per path (none: the model is not
/// served on that path there).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionServing {
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serverless: Option<Serving>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<Serving>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<Serving>,
}

impl RegionServing {
    /// The target of `path`.
    pub fn path(&self, path: Path) -> Option<&Serving> {
        match path {
            Path::Serverless => self.serverless.as_ref(),
            Path::Provisioned => self.provisioned.as_ref(),
            Path::Batch => self.batch.as_ref(),
        }
    }

    /// Every target, with its path.
    pub fn all(&self) -> impl Iterator<Item = (Path, &Serving)> {
        [
            (Path::Serverless, &self.serverless),
            (Path::Provisioned, &self.provisioned),
            (Path::Batch, &self.batch),
        ]
        .into_iter()
        .filter_map(|(p, s)| Some((p, s.as_ref()?)))
    }
}

/// `[models.regions.<region>]` as written.
#[derive(Debug, Deserialize, Default)]
pub(super) struct RawServing {
    pub(super) serverless: Option<String>,
    pub(super) provisioned: Option<String>,
    /// Another name for `provisioned` (an instance-based real-time
    /// endpoint, where inference components live).
    pub(super) endpoint: Option<String>,
    pub(super) batch: Option<String>,
    pub(super) inference_component: Option<String>,
    pub(super) target_model: Option<String>,
    pub(super) target_variant: Option<String>,
}

/// SageMaker's name rule for endpoints, inference components and
/// variants: `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`.
pub fn is_sagemaker_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// A `TargetModel` SageMaker takes (`\A\S[\p{Print}]*\z`, 1 to 1024
/// characters): printable ASCII, spaces allowed but not first, as the
/// header always allowed before the mapping checked it.
fn is_target_model(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && s.as_bytes()[0] != b' '
        && s.bytes().all(|c| (0x20..0x7f).contains(&c))
}

impl Validator<'_> {
    /// Model `i`'s serving in every region, in `regions`' order; `None`
    /// when a mapping was refused (the problems are recorded).
    pub(super) fn model_serving(
        &mut self,
        i: usize,
        name: &str,
        model_target: Option<&str>,
        raw: BTreeMap<String, RawServing>,
        regions: &[RegionConfig],
    ) -> Option<Vec<RegionServing>> {
        let mut ok = true;
        if let Some(t) = model_target
            && !is_target_model(t)
        {
            self.err(
                &format!("models[{i}].target_model"),
                format!("{t:?}: a TargetModel is 1 to 1024 visible ASCII characters"),
            );
            ok = false;
        }
        for key in raw.keys() {
            if !regions.iter().any(|r| &r.name == key) {
                let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
                self.err(
                    &format!("models[{i}].regions.{key}"),
                    format!("{key:?} is not a region in [[regions]] ({names:?})"),
                );
                ok = false;
            }
        }
        let mut out = Vec::with_capacity(regions.len());
        let mut raw = raw;
        for (j, region) in regions.iter().enumerate() {
            let entry = raw.remove(&region.name);
            let listed = entry.is_some();
            match self.region_serving(i, j, name, model_target, region, entry) {
                Some(s)
                    if s.serverless.is_none() && s.provisioned.is_none() && s.batch.is_none() =>
                {
                    let key = if listed {
                        format!("models[{i}].regions.{}", region.name)
                    } else {
                        format!("models[{i}].name")
                    };
                    self.err(
                        &key,
                        format!(
                            "model {name:?} has no endpoint in {}: name its endpoints in [models.regions.{}] or give regions[{j}].sagemaker",
                            region.name, region.name
                        ),
                    );
                    ok = false;
                }
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Model `i` in `region` (`regions[j]`).
    fn region_serving(
        &mut self,
        i: usize,
        j: usize,
        name: &str,
        model_target: Option<&str>,
        region: &RegionConfig,
        entry: Option<RawServing>,
    ) -> Option<RegionServing> {
        let r = &region.name;
        let Some(e) = entry else {
            // The default mapping: the region's shared endpoints, the
            // model's TargetModel on the real-time ones.
            return Some(shared(
                region,
                model_target.map(|t| Via::TargetModel(t.into())),
            ));
        };
        let k = |f: &str| format!("models[{i}].regions.{r}.{f}");
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let mut ok = true;
        let provisioned = match (nonempty(e.provisioned), nonempty(e.endpoint)) {
            (Some(_), Some(_)) => {
                self.err(
                    &k("endpoint"),
                    "endpoint is another name for provisioned: set one of them",
                );
                ok = false;
                None
            }
            (p, q) => p.or(q),
        };
        let own = SageMakerEndpoints {
            serverless: nonempty(e.serverless),
            provisioned,
            batch: nonempty(e.batch),
        };
        for (field, v) in [
            ("serverless", &own.serverless),
            ("provisioned", &own.provisioned),
            ("batch", &own.batch),
        ] {
            if let Some(v) = v
                && !is_sagemaker_name(v)
            {
                self.err(
                        &k(field),
                        format!("{v:?} is not a SageMaker endpoint name (1 to 63 of a-z A-Z 0-9 and -, starting and ending with a letter or digit)"),
                    );
                ok = false;
            }
        }
        let mut vias = Vec::new();
        if let Some(c) = nonempty(e.inference_component) {
            if !is_sagemaker_name(&c) {
                self.err(
                    &k("inference_component"),
                    format!(
                        "{c:?} is not an inference component name (1 to 63 of a-z A-Z 0-9 and -)"
                    ),
                );
                ok = false;
            }
            vias.push(("inference_component", Via::InferenceComponent(c)));
        }
        if let Some(t) = nonempty(e.target_model) {
            if !is_target_model(&t) {
                self.err(
                    &k("target_model"),
                    format!("{t:?}: a TargetModel is 1 to 1024 visible ASCII characters"),
                );
                ok = false;
            }
            vias.push(("target_model", Via::TargetModel(t)));
        }
        if let Some(v) = nonempty(e.target_variant) {
            if !is_sagemaker_name(&v) {
                self.err(
                    &k("target_variant"),
                    format!(
                        "{v:?} is not a production variant name (1 to 63 of a-z A-Z 0-9 and -)"
                    ),
                );
                ok = false;
            }
            vias.push(("target_variant", Via::TargetVariant(v)));
        }
        if vias.len() > 1 {
            let names: Vec<&str> = vias.iter().map(|(f, _)| *f).collect();
            self.err(
                &k(vias[1].0),
                format!("{} are set: a model is picked on an endpoint one way (set one of inference_component, target_model, target_variant)", names.join(" and ")),
            );
            ok = false;
        }
        let has_own = own.serverless.is_some() || own.provisioned.is_some() || own.batch.is_some();
        let pinned = !vias.is_empty();
        let via = vias
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .or_else(|| model_target.map(|t| Via::TargetModel(t.into())));
        let serving = if let Some(Via::InferenceComponent(c)) = &via {
            // Inference components live on instance-based real-time
            // endpoints: the provisioned path only (plus an async endpoint
            // of the model's own, which takes no component).
            if own.serverless.is_some() {
                self.err(
                    &k("serverless"),
                    "an inference component runs on an instance-based endpoint, not a serverless one: drop serverless here or inference_component",
                );
                ok = false;
            }
            let Some(endpoint) = own.provisioned.as_deref().or(if has_own {
                None
            } else {
                region.sagemaker.provisioned.as_deref()
            }) else {
                self.err(
                    &k("inference_component"),
                    format!(
                        "inference component {c:?} needs the endpoint it runs on: set endpoint here or regions[{j}].sagemaker.provisioned"
                    ),
                );
                return None;
            };
            RegionServing {
                region: r.clone(),
                serverless: None,
                provisioned: Some(Serving::new(r, endpoint, via.clone())),
                batch: own.batch.as_deref().map(|b| Serving::new(r, b, None)),
            }
        } else if has_own {
            on(r, &own, via)
        } else if let Some(Via::TargetVariant(_)) = &via {
            // A production variant is one of the provisioned endpoint's:
            // the region's shared serverless endpoint has its own variants,
            // and would refuse the name.
            RegionServing {
                serverless: None,
                ..shared(region, via)
            }
        } else {
            shared(region, via)
        };
        let _ = name;
        let mut serving = serving;
        for t in [&mut serving.serverless, &mut serving.provisioned]
            .into_iter()
            .flatten()
        {
            t.pinned = pinned;
        }
        ok.then_some(serving)
    }
}

/// Users of one endpoint: through a component (who), and without (who, key).
type ComponentUse = (Vec<String>, Vec<(String, String)>);

impl Validator<'_> {
    /// Across the models, in each region: an endpoint serves one path
    /// (serverless, provisioned or async), and on an endpoint where one
    /// model is reached through an inference component every model is
    /// (SageMaker refuses a real-time call without `InferenceComponentName`
    /// on an endpoint that hosts components, and prepare's warm-up of the
    /// plain target would refuse the region as a failover target).
    /// `models`: each model's index in the file, name and rows.
    pub(super) fn endpoints_agree(
        &mut self,
        models: &[(usize, &str, &[RegionServing])],
        regions: &[RegionConfig],
    ) {
        for (j, region) in regions.iter().enumerate() {
            let r = region.name.as_str();
            let mut paths: BTreeMap<String, (Path, String)> = BTreeMap::new();
            // Per endpoint: who reaches it through a component, and who
            // (with the key) without one.
            let mut components: BTreeMap<String, ComponentUse> = BTreeMap::new();
            let shared_key = format!("regions[{j}].sagemaker");
            let mut uses: Vec<(String, String, Path, Option<&Serving>, String)> = Vec::new();
            for (path, e) in [
                (Path::Serverless, &region.sagemaker.serverless),
                (Path::Provisioned, &region.sagemaker.provisioned),
                (Path::Batch, &region.sagemaker.batch),
            ] {
                if let Some(e) = e {
                    uses.push((
                        e.clone(),
                        shared_key.clone(),
                        path,
                        None,
                        "the region".into(),
                    ));
                }
            }
            for (i, name, rows) in models {
                let Some(row) = rows.iter().find(|x| x.region == r) else {
                    continue;
                };
                for path in [Path::Serverless, Path::Provisioned, Path::Batch] {
                    if let Some(t) = row.path(path) {
                        uses.push((
                            t.endpoint.clone(),
                            format!("models[{i}].regions.{r}"),
                            path,
                            Some(t),
                            format!("model {name:?}"),
                        ));
                    }
                }
            }
            for (endpoint, key, path, target, who) in uses {
                match paths.get(&endpoint) {
                    Some((p, first)) if *p != path => self.err(
                        &key,
                        format!(
                            "endpoint {endpoint:?} in {r} is used as the {} path here and as the {} path by {first}: an endpoint serves one path",
                            path.as_str(),
                            p.as_str()
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        paths.insert(endpoint.clone(), (path, who.clone()));
                    }
                }
                if let Some(t) = target
                    && path != Path::Batch
                {
                    let e = components.entry(endpoint).or_default();
                    match &t.via {
                        Some(Via::InferenceComponent(_)) => e.0.push(who),
                        _ => e.1.push((who, key)),
                    }
                }
            }
            for (endpoint, (with, without)) in components {
                if let (Some(first), Some((who, key))) = (with.first(), without.first()) {
                    self.err(
                        key,
                        format!(
                            "{who} is sent to endpoint {endpoint:?} in {r} without an inference component, but {first} runs on it as one: SageMaker refuses a call without InferenceComponentName on an endpoint that hosts components. Give {who} its component there (inference_component) or its own endpoint"
                        ),
                    );
                }
            }
        }
    }
}

/// Every region's row of the default mapping (the region's shared
/// endpoints, `target_model` on the real-time ones): what a model that
/// lists no region gets; for models built in code (tests).
pub fn default_serving(regions: &[RegionConfig], target_model: Option<&str>) -> Vec<RegionServing> {
    regions
        .iter()
        .map(|r| shared(r, target_model.map(|t| Via::TargetModel(t.into()))))
        .collect()
}

/// The region's shared endpoints with `via` on the real-time ones.
fn shared(region: &RegionConfig, via: Option<Via>) -> RegionServing {
    on(&region.name, &region.sagemaker, via)
}

/// `endpoints` in `region`, `via` on the real-time ones (InvokeEndpointAsync
/// takes no TargetModel, variant or component).
fn on(region: &str, endpoints: &SageMakerEndpoints, via: Option<Via>) -> RegionServing {
    RegionServing {
        region: region.to_string(),
        serverless: endpoints
            .serverless
            .as_deref()
            .map(|e| Serving::new(region, e, via.clone())),
        provisioned: endpoints
            .provisioned
            .as_deref()
            .map(|e| Serving::new(region, e, via.clone())),
        batch: endpoints
            .batch
            .as_deref()
            .map(|e| Serving::new(region, e, None)),
    }
}

/// One endpoint the fleet uses in a region: its name, the path it serves
/// (the first of provisioned, serverless, batch it is used on), and the
/// inference components the models run on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUse {
    pub name: String,
    pub path: Path,
    pub components: Vec<String>,
}

impl super::Config {
    /// Every endpoint serving in `region`: the region's shared ones, then
    /// each model's own (config/serving.rs), each once. What prepare,
    /// the cost task, readiness and `status` walk instead of
    /// `regions[].sagemaker` alone.
    pub fn endpoints_in(&self, region: &str) -> Vec<EndpointUse> {
        let mut out: Vec<EndpointUse> = Vec::new();
        let mut add = |name: &str, path: Path, component: Option<&str>| {
            let i = match out.iter().position(|e| e.name == name) {
                Some(i) => i,
                None => {
                    out.push(EndpointUse {
                        name: name.to_string(),
                        path,
                        components: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            if let Some(c) = component
                && !out[i].components.iter().any(|x| x == c)
            {
                out[i].components.push(c.to_string());
            }
        };
        if let Some(r) = self.region(region) {
            for (path, e) in [
                (Path::Provisioned, &r.sagemaker.provisioned),
                (Path::Serverless, &r.sagemaker.serverless),
                (Path::Batch, &r.sagemaker.batch),
            ] {
                if let Some(e) = e {
                    add(e, path, None);
                }
            }
        }
        for m in &self.models {
            let Some(s) = m.in_named(region) else {
                continue;
            };
            for path in [Path::Provisioned, Path::Serverless, Path::Batch] {
                if let Some(t) = s.path(path) {
                    add(&t.endpoint, path, t.component());
                }
            }
        }
        out
    }

    /// The provisioned endpoints of `region` (shared and the models' own).
    pub fn provisioned_in(&self, region: &str) -> Vec<String> {
        self.endpoints_in(region)
            .into_iter()
            .filter(|e| e.path == Path::Provisioned)
            .map(|e| e.name)
            .collect()
    }

    /// Whether any region has a provisioned endpoint (shared or a model's).
    pub fn any_provisioned(&self) -> bool {
        self.regions
            .iter()
            .any(|r| !self.provisioned_in(&r.name).is_empty())
    }

    /// The router counts' labels (`Serving::label`) under which calls to
    /// `endpoint` in `region` are counted: the endpoint itself and each
    /// inference component on it. An endpoint's invocations are their sum.
    pub fn count_labels(&self, region: &str, endpoint: &str) -> Vec<String> {
        let mut out = vec![endpoint.to_string()];
        if let Some(e) = self
            .endpoints_in(region)
            .into_iter()
            .find(|e| e.name == endpoint)
        {
            out.extend(e.components.iter().map(|c| format!("{endpoint}/{c}")));
        }
        out
    }

    /// The (region, count label) pairs that carry the same traffic as
    /// `endpoint` in `region` wherever it lands: for each model served on
    /// it (provisioned), that model's provisioned target in every region;
    /// for the region's shared provisioned endpoint, every region's shared
    /// one (the measured need before per-model endpoints). Each once.
    pub fn counterparts(&self, region: &str, endpoint: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut add = |r: &str, l: &str| {
            if !out.iter().any(|(a, b)| a == r && b == l) {
                out.push((r.to_string(), l.to_string()));
            }
        };
        let shared = self
            .region(region)
            .and_then(|r| r.sagemaker.provisioned.as_deref())
            == Some(endpoint);
        if shared {
            for r in &self.regions {
                if let Some(e) = &r.sagemaker.provisioned {
                    add(&r.name, e);
                }
            }
        }
        for pair in self.models_counterparts(region, |t| t.endpoint == endpoint) {
            add(&pair.0, &pair.1);
        }
        out
    }

    /// The (region, count label) pairs that carry the same traffic as
    /// inference component `component` on `endpoint` in `region`: the
    /// provisioned target, in every region, of each model served as that
    /// component (what its copy count is measured over). Each once.
    pub fn component_counterparts(
        &self,
        region: &str,
        endpoint: &str,
        component: &str,
    ) -> Vec<(String, String)> {
        self.models_counterparts(region, |t| {
            t.endpoint == endpoint && t.component() == Some(component)
        })
    }

    /// For each model whose provisioned target in `region` is `on`, its
    /// provisioned target in every region, as (region, count label); each
    /// once.
    fn models_counterparts(
        &self,
        region: &str,
        on: impl Fn(&Serving) -> bool,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for m in &self.models {
            let on_it = m
                .in_named(region)
                .and_then(|s| s.provisioned.as_ref())
                .is_some_and(&on);
            if !on_it {
                continue;
            }
            for s in &m.serving {
                if let Some(t) = &s.provisioned {
                    let pair = (s.region.clone(), t.label().to_string());
                    if !out.contains(&pair) {
                        out.push(pair);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sagemaker_names() {
        for ok in ["a", "lab-provisioned", "A1-b-2", &"x".repeat(63)] {
            assert!(is_sagemaker_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a_b", "a.b", "a/b", &"x".repeat(64)] {
            assert!(!is_sagemaker_name(bad), "{bad}");
        }
    }

    #[test]
    fn keys_and_labels() {
        let s = Serving::new(
            "us-east-1",
            "gpu",
            Some(Via::InferenceComponent("llm".into())),
        );
        assert_eq!(s.key, "us-east-1/gpu/llm");
        assert_eq!(s.label(), "gpu/llm");
        assert_eq!(s.component(), Some("llm"));
        let s = Serving::new(
            "us-east-1",
            "mme",
            Some(Via::TargetModel("m.tar.gz".into())),
        );
        assert_eq!(s.key, "us-east-1/mme");
        assert_eq!(s.header.as_ref().unwrap(), "m.tar.gz");
    }
}
