//! Loading: the layers (base file, region file, environment), where each
//! value came from, and the errors an operator sees.

use std::fmt;
use std::path::{Path, PathBuf};

use super::raw::RawConfig;
use super::validate::Validator;
use super::{Config, ENV_PREFIX, EnvSource};

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the offending value came from: a file, or `environment (VAR)`.
    pub origin: String,
    /// Dotted key, e.g. `timings.poll_interval` or `regions[1].name`.
    pub key: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.key, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or parsed at all.
    #[error("cannot load configuration from {path}")]
    Load {
        path: PathBuf,
        #[source]
        source: config::ConfigError,
    },
    /// The layers parsed, but the values are not acceptable.
    #[error("invalid configuration ({} problem{})", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Every problem, one per line, for the operator.
    pub fn report(&self) -> String {
        match self {
            ConfigError::Load { path, source } => {
                format!("error: {}: {source}", path.display())
            }
            ConfigError::Invalid(problems) => problems
                .iter()
                .map(|p| format!("error: {p}"))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// The file layers for a region file: `base.toml` beside it (if present and
/// not the file itself), then the file.
pub fn layers_for(region_file: &Path) -> Vec<PathBuf> {
    let mut layers = Vec::new();
    let base = region_file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("base.toml");
    if base.is_file() && base.file_name() != region_file.file_name() {
        layers.push(base);
    }
    layers.push(region_file.to_path_buf());
    layers
}

/// Load `region_file` with its base layer and the environment, and validate.
pub fn load(region_file: &Path, env: &EnvSource) -> Result<Config, ConfigError> {
    load_layers(&layers_for(region_file), env)
}

/// Load explicit file layers (in order) plus the environment, and validate.
pub fn load_layers(files: &[PathBuf], env: &EnvSource) -> Result<Config, ConfigError> {
    let mut builder = config::Config::builder();
    for f in files {
        // Parse each file alone first so that a syntax error names its file.
        let single = config::Config::builder()
            .add_source(config::File::from(f.as_path()).format(config::FileFormat::Toml))
            .build();
        if let Err(source) = single {
            return Err(ConfigError::Load {
                path: f.clone(),
                source,
            });
        }
        builder =
            builder.add_source(config::File::from(f.as_path()).format(config::FileFormat::Toml));
    }
    let env_map: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("regions")
            .try_parsing(false)
            .source(Some(env_map)),
    );
    let merged = builder.build().map_err(|source| ConfigError::Load {
        path: files.last().cloned().unwrap_or_default(),
        source,
    })?;

    let origins = Origins {
        merged: &merged,
        files: files
            .iter()
            .map(|f| (f.clone(), std::fs::canonicalize(f).ok()))
            .collect(),
    };
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    let raw: Result<RawConfig, _> = serde_ignored::deserialize(merged.clone(), |path| {
        unknown.push(config_path(&path));
    });
    for key in unknown {
        problems.push(origins.problem(
            &key,
            "unknown key (misspelt, or not a failoverd setting)".into(),
        ));
    }
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            problems.push(Problem {
                origin: files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + "),
                key: "(structure)".into(),
                message: e.to_string(),
            });
            return Err(ConfigError::Invalid(problems));
        }
    };
    let mut v = Validator::new(origins, problems);
    let config = v.validate(raw, files);
    let (problems, warnings) = v.into_parts();
    if problems.is_empty() {
        let mut config = config.expect("no problems means a complete config");
        config.warnings = warnings;
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Turn a `serde_ignored` path into the `config` crate's path syntax.
fn config_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", config_path(parent)),
        P::Map { parent, key } => {
            let p = config_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            config_path(parent)
        }
    }
}

/// Finds which layer a key's value came from.
pub(super) struct Origins<'a> {
    merged: &'a config::Config,
    /// The layers as the caller named them, with their canonical paths.
    files: Vec<(PathBuf, Option<PathBuf>)>,
}

impl Origins<'_> {
    pub(super) fn of(&self, key: &str) -> String {
        match lookup(&self.merged.cache, key).and_then(first_origin) {
            Some("the environment") => format!("environment ({})", env_var_name(key)),
            Some(o) => {
                // The crate reports paths relative to the working directory;
                // show the path the way the operator wrote it.
                let canon = std::fs::canonicalize(o).ok();
                self.files
                    .iter()
                    .find(|(_, c)| c.is_some() && *c == canon)
                    .map(|(f, _)| f.display().to_string())
                    .unwrap_or_else(|| o.to_string())
            }
            None => "(default)".into(),
        }
    }

    pub(super) fn problem(&self, key: &str, message: String) -> Problem {
        Problem {
            origin: self.of(key),
            key: key.to_string(),
            message,
        }
    }
}

/// Walk the merged tree by a key like `regions[1].name`. The tree keeps each
/// value's origin; `config::Config::get` would deserialize and lose it.
fn lookup<'v>(root: &'v config::Value, key: &str) -> Option<&'v config::Value> {
    let mut cur = root;
    for segment in key.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !name.is_empty() {
            match &cur.kind {
                config::ValueKind::Table(t) => cur = t.get(name)?,
                _ => return None,
            }
        }
        for idx in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            let i: usize = idx.parse().ok()?;
            match &cur.kind {
                config::ValueKind::Array(a) => cur = a.get(i)?,
                _ => return None,
            }
        }
    }
    Some(cur)
}

/// A value's origin; for a table or array (which carry none), the origin of
/// its first leaf.
fn first_origin(v: &config::Value) -> Option<&str> {
    if let Some(o) = v.origin() {
        return Some(o);
    }
    match &v.kind {
        config::ValueKind::Table(t) => t.values().find_map(first_origin),
        config::ValueKind::Array(a) => a.iter().find_map(first_origin),
        _ => None,
    }
}

/// `timings.poll_interval` -> `FAILOVERD__TIMINGS__POLL_INTERVAL`.
fn env_var_name(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}
