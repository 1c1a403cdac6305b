//! The crate layering of issue 14, checked on `cargo metadata`: services
//! and `kopterctl` depend on `libs/*` only, never on a service crate.
//!
//! What counts is a normal or build dependency: what ships in the binary.
//! Dev-dependencies are allowed, because an end-to-end test may run the
//! real writer of the rows it reads (the aggregator's tests ingest a real
//! offer file through `pricing`). The composition roots — the all-in-one
//! `kopter` binary and `kopter-demo`, which run services in-process — may
//! depend on every service.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `(package, dependency, kind)` of every workspace path dependency.
fn path_edges() -> Vec<(String, String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let mut edges = Vec::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        let name = pkg["name"].as_str().expect("package name");
        for dep in pkg["dependencies"].as_array().expect("dependencies") {
            if dep.get("path").is_some_and(|p| !p.is_null()) {
                let kind = dep["kind"].as_str().unwrap_or("normal").to_owned();
                edges.push((
                    name.to_owned(),
                    dep["name"].as_str().unwrap().to_owned(),
                    kind,
                ));
            }
        }
    }
    edges
}

const SERVICES: &[&str] = &[
    "describer",
    "pricing",
    "aggregator",
    "trail-ingest",
    "notifier",
    "api",
];
const COMPOSITION_ROOTS: &[&str] = &["kopter", "kopter-demo"];

#[test]
fn services_and_kopterctl_depend_on_libs_only() {
    let edges = path_edges();
    assert!(
        edges
            .iter()
            .any(|(p, d, _)| p == "aggregator" && d == "kopter-store"),
        "the metadata must show the aggregator's dependency on kopter-store: {edges:?}"
    );
    let forbidden: BTreeSet<String> = edges
        .iter()
        .filter(|(pkg, dep, kind)| {
            kind != "dev"
                && SERVICES.contains(&dep.as_str())
                && !COMPOSITION_ROOTS.contains(&pkg.as_str())
        })
        .map(|(pkg, dep, kind)| format!("{pkg} → {dep} ({kind})"))
        .collect();
    assert!(
        forbidden.is_empty(),
        "only libs/* may be depended on outside the composition roots (kopter, kopter-demo): {forbidden:?}"
    );
}

#[test]
fn libs_never_depend_on_services_or_tools() {
    for (pkg, dep, kind) in path_edges() {
        if pkg.starts_with("kopter-")
            && !COMPOSITION_ROOTS.contains(&pkg.as_str())
            && pkg != "kopter-tests"
        {
            assert!(
                !SERVICES.contains(&dep.as_str()) && dep != "kopterctl",
                "library {pkg} depends on {dep} ({kind})"
            );
        }
    }
}
