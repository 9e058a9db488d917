//! Support for the integration tests: a fresh migrated PostgreSQL database per test, a Redis
//! key prefix per test, and a moto server (S3, Kinesis, SQS, Step Functions) on loopback.

pub mod moto;
pub mod postgres;
pub mod redis;
