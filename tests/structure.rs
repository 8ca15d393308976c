//! The tree's rules, checked on the source text:
//!
//! - `src/core/` is pure: outside its `#[cfg(test)]` modules a core file
//!   names nothing but `std`, `serde`, the time type (`jiff`), `thiserror`'s
//!   derive and other core modules. No AWS, no tokio, no tracing, no clock, nothing of the rest of
//!   the crate: a decision can then be replayed from its inputs alone, in the
//!   model check, the simulation and the property tests.
//! - No folder imports one above it: [`LAYERS`] orders the crate's
//!   top-level modules, and every `crate::x` a module names (outside its
//!   tests) is in a lower layer. Peers in one layer (the control plane and
//!   the router) do not import each other. `cargo test --test structure --
//!   --nocapture` prints the import graph.

// Tests, benches and the lab run real processes on real time: the
// clock rules in clippy.toml are for the daemon's code.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The text of `src` before its first `#[cfg(test)]`, with comments and
/// string literals blanked (a path in a doc or a message is not a use).
fn code_of(src: &str) -> String {
    let body = src.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = String::with_capacity(body.len());
    for line in body.lines() {
        // Lint attributes name tools, not code (`#[allow(clippy::x)]`).
        let t = line.trim_start();
        if t.starts_with("#[allow") || t.starts_with("#[expect") || t.starts_with("#![") {
            out.push('\n');
            continue;
        }
        let code = line.split("//").next().unwrap_or("");
        let mut in_str = false;
        let mut prev = ' ';
        for c in code.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
                out.push(' ');
            } else {
                out.push(if in_str { ' ' } else { c });
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// Every lower-case path root (`x` in `x::y`) in `code`, with the text after
/// `crate::` for crate paths.
fn path_roots(code: &str) -> BTreeSet<String> {
    let mut roots = BTreeSet::new();
    let b = code.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b':' && b[i + 1] == b':' {
            // The identifier before `::`, if it starts a path.
            let mut j = i;
            while j > 0 && (b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'_') {
                j -= 1;
            }
            // Not a path's start: `a::b::c`'s `b`, or a method's turbofish
            // (`.collect::<T>()`).
            let starts_path = j == 0
                || !(b[j - 1] == b':' || b[j - 1] == b'.' || b[j - 1].is_ascii_alphanumeric());
            let ident = &code[j..i];
            if starts_path && ident.starts_with(|c: char| c.is_ascii_lowercase()) {
                if ident == "crate" {
                    let after = &code[i + 2..];
                    if let Some(group) = after.strip_prefix('{') {
                        // `crate::{a::x, b}`: each item's first segment.
                        let group = group.split('}').next().unwrap_or("");
                        for item in group.split(',') {
                            let first: String = item
                                .trim()
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            roots.insert(format!("crate::{first}"));
                        }
                    } else {
                        let rest: String = after
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        roots.insert(format!("crate::{rest}"));
                    }
                } else {
                    roots.insert(ident.to_string());
                }
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    roots
}

#[test]
fn core_names_only_std_serde_the_time_type_and_itself() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let files = rust_files(&root);
    assert!(files.len() > 5, "core has its files: {files:?}");
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
        .collect();
    let allowed_crates = [
        "std",
        "core",
        "alloc",
        "serde",
        "serde_json",
        "jiff",
        "thiserror",
        "super",
        "self",
        "crate::core",
    ];
    // Primitive types' associated items (`u64::MAX`, `f64::from`).
    let primitives = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64", "bool", "char", "str",
    ];
    let mut bad = Vec::new();
    for f in &files {
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        // Names a `use` of an allowed root brings in (`use std::fmt;` makes
        // `fmt::` fine).
        let imported: BTreeSet<String> = code
            .split(';')
            .map(str::trim)
            .filter_map(|st| {
                st.strip_prefix("use ")
                    .or_else(|| st.strip_prefix("pub use "))
            })
            .filter(|u| {
                allowed_crates
                    .iter()
                    .any(|a| u.starts_with(&format!("{a}::")))
            })
            .flat_map(|u| {
                u.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        for r in path_roots(&code) {
            let ok = allowed_crates.contains(&r.as_str())
                || imported.contains(&r)
                || primitives.contains(&r.as_str())
                || modules.contains(&r);
            if !ok {
                bad.push(format!(
                    "{}: {r}::",
                    f.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "src/core must name only std, serde, jiff and core itself:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_purity_check_sees_a_forbidden_path() {
    // The check itself can fail: an AWS path, a tokio path and a path into
    // the rest of the crate are caught; comments and strings are not uses.
    let code = code_of(
        "use aws_sdk_dynamodb::Client;\nuse crate::{router::x, state};\nfn f() { tokio::spawn(x); crate::aws::now(); }\n\
         // tracing::info!\nconst S: &str = \"hyper::Body\";\n#[cfg(test)]\nmod t { use proptest::x; }",
    );
    let roots = path_roots(&code);
    for want in [
        "aws_sdk_dynamodb",
        "tokio",
        "crate::aws",
        "crate::router",
        "crate::state",
    ] {
        assert!(roots.contains(want), "{want} in {roots:?}");
    }
    for not in ["tracing", "hyper", "proptest"] {
        assert!(!roots.contains(not), "{not} in {roots:?}");
    }
}

/// The crate's top-level modules, lowest first; a module may name only
/// modules of lower layers.
const LAYERS: &[&[&str]] = &[
    &["core"],               // pure decisions
    &["config", "http"],     // typed configuration; the hyper serve loop
    &["ports", "telemetry"], // the traits to the world; tracing setup
    &["aws", "metrics"],     // the AWS adapters; what is counted
    &["state"],              // what the last round saw, readiness
    &["control", "router"],  // the control plane; the inference router
    &["admin"],              // the admin listener (its mutations go through control)
    &["daemon"],             // the composition root: lifecycle and wiring
    &["cli"],                // the operator commands (and `run`)
];

fn layer_of(m: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&m))
}

/// `module -> every crate module it names`, from the source text.
fn import_graph() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = std::collections::BTreeMap::new();
    for f in rust_files(&src) {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&f).unwrap());
        let entry: &mut BTreeSet<String> = graph.entry(module.clone()).or_default();
        for r in path_roots(&code) {
            if let Some(m) = r.strip_prefix("crate::")
                && m != module
                && m != "error_chain"
                && !m.is_empty()
            {
                entry.insert(m.to_string());
            }
        }
    }
    graph
}

#[test]
fn no_module_imports_one_above_it() {
    let graph = import_graph();
    let mut bad = Vec::new();
    for (from, tos) in &graph {
        println!(
            "{from} -> {}",
            tos.iter().cloned().collect::<Vec<_>>().join(" ")
        );
        let Some(lf) = layer_of(from) else {
            bad.push(format!("{from} is in no layer: add it to LAYERS"));
            continue;
        };
        for to in tos {
            match layer_of(to) {
                Some(lt) if lt < lf => {}
                Some(_) => bad.push(format!("{from} -> {to}")),
                None => bad.push(format!("{from} -> {to} (not in LAYERS)")),
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports that run upwards or sideways:\n{}",
        bad.join("\n")
    );
}
