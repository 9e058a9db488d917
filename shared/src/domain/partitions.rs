//! The event store's daily partitions: what their maintenance reports (the job is
//! `adapters::postgres::maintain_event_store`), and when that state is unhealthy.

use crate::error::{ErrorKind, PipelineError};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The partitions should always reach at least this far past now; maintenance runs daily and
/// makes seven days ahead, so less means it has not run for days.
pub const MIN_DAYS_AHEAD: i64 = 2;

/// What the event store's partitions look like after maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReport {
    /// Daily partitions of `inventory_events` (the default partition not counted).
    pub partitions: i64,
    /// The start of the oldest partition.
    pub oldest_from: Option<DateTime<Utc>>,
    /// The end of the newest partition: an event recorded at or after this goes to the
    /// default partition.
    pub covered_until: Option<DateTime<Utc>>,
    /// Events in the default partition (0 when healthy).
    pub default_rows: i64,
    /// Idempotency keys this run forgot (first seen more than
    /// [`KEY_RETENTION`](crate::domain::update::KEY_RETENTION) ago).
    #[serde(default)]
    pub pruned_keys: u64,
    /// The whole database's size on disk (`pg_database_size`), which the stack's alarm on
    /// the storage ceiling reads from the maintenance's log line.
    #[serde(default)]
    pub database_bytes: i64,
}

impl PartitionReport {
    /// `Err` naming the problem when the partitions do not reach [`MIN_DAYS_AHEAD`] past
    /// `now`, or when events sit in the default partition.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), PipelineError> {
        let needed = now + Duration::days(MIN_DAYS_AHEAD);
        match self.covered_until {
            None => {
                return Err(PipelineError::new(
                    ErrorKind::Internal,
                    "inventory_events has no daily partitions: run the migrations",
                ));
            }
            Some(until) if until < needed => {
                return Err(PipelineError::new(
                    ErrorKind::Internal,
                    format!(
                        "inventory_events' partitions end at {}, less than {MIN_DAYS_AHEAD} days ahead",
                        until.to_rfc3339()
                    ),
                ));
            }
            Some(_) => {}
        }
        if self.default_rows > 0 {
            return Err(PipelineError::new(
                ErrorKind::Internal,
                format!(
                    "{} events are in inventory_events' default partition: maintenance was late; \
                     move them with partman.partition_data_proc (docs/runbooks.md)",
                    self.default_rows
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a time")
    }

    fn report(covered_until: Option<&str>, default_rows: i64) -> PartitionReport {
        PartitionReport {
            partitions: 9,
            oldest_from: Some(at("2026-12-01T00:00:00Z")),
            covered_until: covered_until.map(at),
            default_rows,
            pruned_keys: 0,
            database_bytes: 0,
        }
    }

    #[test]
    fn partitions_that_reach_far_enough_and_an_empty_default_are_healthy() {
        let now = at("2026-12-06T12:00:00Z");
        assert!(report(Some("2026-12-13T00:00:00Z"), 0).check(now).is_ok());
        assert!(report(Some("2026-12-08T12:00:00Z"), 0).check(now).is_ok());
    }

    #[test]
    fn partitions_ending_soon_or_events_in_the_default_partition_are_errors_that_say_so() {
        let now = at("2026-12-06T12:00:00Z");
        let soon = report(Some("2026-12-08T00:00:00Z"), 0)
            .check(now)
            .expect_err("too close");
        assert!(
            soon.message.contains("less than 2 days ahead"),
            "{}",
            soon.message
        );
        let none = report(None, 0).check(now).expect_err("no partitions");
        assert!(
            none.message.contains("no daily partitions"),
            "{}",
            none.message
        );
        let late = report(Some("2026-12-13T00:00:00Z"), 3)
            .check(now)
            .expect_err("default rows");
        assert!(late.message.contains("3 events are in"), "{}", late.message);
    }
}
