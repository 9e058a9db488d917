//! The subcommands.

pub mod generate;
pub mod push;
pub mod read_event_export;
pub mod rebuild_projection;
pub mod redrive_failed;
pub mod reingest_archive;
pub mod rejections;
pub mod replay_dlq;
pub mod replay_quarantine;
pub mod sending;
pub mod status;
mod status_view;
