//! The cargo commands of `cargo xtask demo` and `cargo xtask test` must agree on every
//! dependency's features, or cargo compiles the crate again, and with it everything built on it
//! (tokio, serde and hyper carry the AWS SDKs and SeaORM). `tests/workspace-hack` pins one
//! feature set; this module finds where the commands still disagree, with `cargo tree`, which
//! resolves features without compiling anything.

use std::collections::{BTreeMap, BTreeSet};

/// The package selections the two README commands compile, in the order they run: the xtask
/// itself (`cargo run -p xtask`), the function binaries for the local stack (`cargo build
/// --workspace --bins`), every test (`cargo test --workspace`) and the end-to-end tests
/// (`cargo test -p integration-tests`). Each is `cargo tree` arguments.
pub const SELECTIONS: [(&str, &[&str]); 4] = [
    ("cargo run -p xtask", &["-p", "xtask", "-e", "normal,build"]),
    (
        "cargo build --workspace --bins",
        &["--workspace", "-e", "normal,build"],
    ),
    (
        "cargo test --workspace",
        &["--workspace", "-e", "normal,build,dev"],
    ),
    (
        "cargo test -p integration-tests",
        &["-p", "integration-tests", "-e", "normal,build,dev"],
    ),
];

/// Each package in one selection's graph (`name vX.Y.Z`, with `(proc-macro)` or a path where
/// cargo prints one) and the feature sets it is built with there: one, or two where it is both
/// a build-time and a run-time dependency.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Parses `cargo tree --prefix none --no-dedupe -f '{p}|{f}'`.
pub fn parse_tree(out: &str) -> Graph {
    let mut graph = Graph::new();
    for line in out.lines() {
        let line = line.trim_end().trim_end_matches(" (*)");
        if let Some((package, features)) = line.rsplit_once('|') {
            graph
                .entry(package.to_owned())
                .or_default()
                .insert(features.to_owned());
        }
    }
    graph
}

/// A package the selections build with different features.
#[derive(Debug, PartialEq, Eq)]
pub struct Disagreement {
    pub package: String,
    /// Each selection that builds the package, with its features there.
    pub by_selection: Vec<(String, BTreeSet<String>)>,
    /// What the workspace-hack should ask for: every feature any selection enables.
    pub union: BTreeSet<String>,
}

/// The packages that two or more of `graphs` build with different features.
pub fn disagreements(graphs: &[(String, Graph)]) -> Vec<Disagreement> {
    let packages: BTreeSet<&String> = graphs.iter().flat_map(|(_, g)| g.keys()).collect();
    let mut found = Vec::new();
    for package in packages {
        let by_selection: Vec<(String, BTreeSet<String>)> = graphs
            .iter()
            .filter_map(|(name, g)| g.get(package).map(|f| (name.clone(), f.clone())))
            .collect();
        let distinct: BTreeSet<&BTreeSet<String>> = by_selection.iter().map(|(_, f)| f).collect();
        if distinct.len() > 1 {
            let union = by_selection
                .iter()
                .flat_map(|(_, sets)| sets.iter())
                .flat_map(|s| s.split(','))
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect();
            found.push(Disagreement {
                package: package.clone(),
                by_selection,
                union,
            });
        }
    }
    found
}

/// One selection's graph, from `cargo tree` in the workspace at `root`.
pub fn resolve(root: &std::path::Path, args: &[&str]) -> anyhow::Result<Graph> {
    let out = crate::cargo_env::cargo()
        .current_dir(root)
        .args([
            "tree",
            "--locked",
            "--offline",
            "--prefix",
            "none",
            "--no-dedupe",
        ])
        .args(["-f", "{p}|{f}"])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "cargo tree {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(parse_tree(&String::from_utf8(out.stdout)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(lines: &str) -> Graph {
        parse_tree(lines)
    }

    #[test]
    fn a_crate_built_with_other_features_by_one_command_is_found_with_the_union_to_ask_for() {
        let graphs = vec![
            (
                "xtask".to_owned(),
                graph("tokio v1.54.1|macros,rt\nserde v1.0.229|derive,std\n"),
            ),
            (
                "tests".to_owned(),
                graph(
                    "tokio v1.54.1|macros,process,rt\nserde v1.0.229|derive,std\nlambda_runtime v1.0.0|\n",
                ),
            ),
        ];
        let found = disagreements(&graphs);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].package, "tokio v1.54.1");
        assert_eq!(
            found[0].union,
            ["macros", "process", "rt"].map(String::from).into()
        );
    }

    #[test]
    fn a_repeated_or_deduplicated_line_is_the_same_package() {
        let g = graph("inventory v0.1.0 (/w/shared)|aws\ninventory v0.1.0 (/w/shared)|aws (*)\n");
        assert_eq!(g.len(), 1);
        assert_eq!(g["inventory v0.1.0 (/w/shared)"].len(), 1);
    }

    /// The workspace as it is: the README's two commands compile each dependency once. When a
    /// dependency change breaks this, the message names the crate and the features to give it
    /// in `tests/workspace-hack/Cargo.toml`.
    #[test]
    fn the_demo_and_test_commands_agree_on_every_dependencys_features() {
        let root = crate::shell::root();
        let graphs: Vec<(String, Graph)> = SELECTIONS
            .iter()
            .map(|(name, args)| (name.to_string(), resolve(&root, args).expect("cargo tree")))
            .collect();
        let found = disagreements(&graphs);
        let advice: Vec<String> = found
            .iter()
            .map(|d| {
                let features: Vec<String> = d.union.iter().map(|f| format!("{f:?}")).collect();
                format!(
                    "{}: {:?}\n  in tests/workspace-hack/Cargo.toml ask for features = [{}]",
                    d.package,
                    d.by_selection,
                    features.join(", ")
                )
            })
            .collect();
        assert!(
            found.is_empty(),
            "these crates would be compiled more than once:\n{}",
            advice.join("\n")
        );
    }
}
