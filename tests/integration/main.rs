//! Integration tests against real PostgreSQL, Redis and a local S3 emulator. One binary,
//! one module per area, so the suite links once.

mod fanout;
mod state_machine;
mod archive;
mod cache;
mod functions_s3_redis;
