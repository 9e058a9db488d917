//! The `inventory` binary end to end: against moto's Kinesis, SQS and S3 (through a proxy that
//! fails chosen PutRecords entries) and a real PostgreSQL.

mod operators;
mod push;
mod support;
