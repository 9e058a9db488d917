//! Support for the integration tests: a fresh migrated PostgreSQL database per test, a Redis
//! key prefix per test, and a moto server (S3, Kinesis, SQS, Step Functions) on loopback; for
//! the benchmarks, the CPU time each process on the machine used.

pub mod cpu;
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

/// Midnight UTC two days before this process first asked, the same for the whole process: a
/// day whose hours are all inside the pipeline's dedup window and none in the future.
pub fn recent_day() -> chrono::DateTime<chrono::Utc> {
    static DAY: std::sync::LazyLock<chrono::DateTime<chrono::Utc>> =
        std::sync::LazyLock::new(|| {
            let two_days_ago = (chrono::Utc::now() - chrono::Duration::days(2)).timestamp();
            chrono::DateTime::from_timestamp(two_days_ago - two_days_ago.rem_euclid(86_400), 0)
                .unwrap_or_default()
        });
    *DAY
}
