//! Support for the integration tests: a fresh migrated PostgreSQL database per test, a Redis
//! key prefix per test, and a moto server (S3, Kinesis, SQS, Step Functions) on loopback.

pub mod moto;
pub mod postgres;
pub mod redis;

/// An `occurred_at` for records sent through the pipeline: an hour before this process first
/// asked, to the second, the same for the whole process (tests that used one fixed time keep
/// one fixed time). The pipeline refuses updates older than the dedup window before their
/// arrival, so a fixed date in the past would stop being accepted as time goes on.
pub fn recent_occurred_at() -> &'static str {
    static AT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        (chrono::Utc::now() - chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    &AT
}
