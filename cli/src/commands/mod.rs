//! The subcommands.

pub mod generate;
pub mod push;
pub mod rebuild_projection;
pub mod reingest_archive;
pub mod rejections;
pub mod replay_dlq;
pub mod replay_quarantine;
pub mod sending;
