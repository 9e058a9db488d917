//! Integration tests against real PostgreSQL, Redis and a local S3 emulator. One binary,
//! one module per area, so the suite links once.

mod archive;
mod bucket_emptier;
mod cache;
mod e2e;
mod event_rows;
mod event_store;
mod fanout;
mod functions_db;
mod functions_s3_redis;
mod least_privilege;
mod partitions;
mod quarantine;
mod read_path;
mod rebuild;
mod retention;
mod schema_migrate;
mod secrets_in_logs;
mod state_machine;
