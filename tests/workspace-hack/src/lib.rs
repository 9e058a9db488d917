//! No code: this package exists for its `Cargo.toml`, which gives each dependency one feature
//! set across the workspace's commands (see there).
