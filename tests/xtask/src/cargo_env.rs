//! `cargo run` hands the xtask the variables cargo sets for a running package
//! (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ...). A cargo started from the xtask with them
//! still set is not the cargo a developer starts: build scripts that watch those variables
//! (ring's does, with `rerun-if-env-changed`) count as changed, and ring, rustls and everything
//! built on them (the AWS SDKs, sqlx, SeaORM) compile again, then again at the next direct
//! `cargo` command. Every cargo the xtask starts gets the developer's environment back.

use std::process::Command;

/// Whether `name` is one of the variables `cargo run` and `cargo test` set for the package
/// they run. `CARGO` (the path of cargo itself) stays.
fn set_by_cargo_for_the_running_package(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || matches!(
            name,
            "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// `cmd` without the running package's cargo variables (see the module doc).
pub fn as_started_by_a_developer(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(set_by_cargo_for_the_running_package)
        {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// `cargo` (the one that started the xtask, when it was), as a developer would start it.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    as_started_by_a_developer(&mut cmd);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    /// `cargo test` sets the same variables for this test binary as `cargo run` does for the
    /// xtask, so the test sees what the xtask sees.
    #[test]
    fn a_cargo_started_by_the_xtask_does_not_inherit_the_running_packages_variables() {
        assert!(
            std::env::var_os("CARGO_MANIFEST_DIR").is_some()
                && std::env::var_os("CARGO_PKG_NAME").is_some(),
            "run under cargo, which sets these"
        );
        let cmd = cargo();
        let removed: Vec<&OsStr> = cmd
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name)
            .collect();
        for name in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME", "CARGO_PKG_VERSION"] {
            assert!(removed.contains(&OsStr::new(name)), "{name} is inherited");
        }
        assert!(
            !removed.contains(&OsStr::new("CARGO")),
            "cargo's own path is kept"
        );
    }
}
