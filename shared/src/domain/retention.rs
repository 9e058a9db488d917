//! Retention of the event store: how a day of events leaves PostgreSQL without being lost.
//!
//! A day's partition of `inventory_events` that ended more than [`RetentionConfig::days`] ago
//! is exported to the archive bucket as gzip JSON lines (one object per part of at most
//! [`PART_EVENTS`] events, in `seq` order) with a manifest, every object is read back and
//! checked, and only then is the partition dropped (the job is in
//! `adapters::postgres::retention`). This module holds the pure rules: where the objects go,
//! the checksum that ties an object to the rows it came from, the manifest, and what a run
//! reports.
//!
//! **The checksum.** Each event is exported as one line, the text PostgreSQL gives for
//! `to_jsonb(row)` (times in UTC). A line's checksum is the first eight bytes of its SHA-256,
//! read as a big-endian signed integer; a set of lines has the count of its lines and the sum
//! of their checksums. The database computes the same figure in SQL over the rows, and the job
//! computes it again from the object it reads back from S3, so a line lost, added or changed
//! on the way shows as a different count or sum. The sum does not depend on the order, so the
//! parts of a day add up to the day.

use crate::config::FromEnv;
use crate::config::Vars;
use crate::error::{ErrorKind, PipelineError};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// Events per exported object: about 30 MB of JSON, 4 MB gzip, held in memory once each
/// way.
pub const PART_EVENTS: i64 = 50_000;

pub use crate::domain::keys::EXPORT_PREFIX;

/// The fewest days a deployment may keep: a day is exported only once it is over and a whole
/// day has passed, longer than any Persist transaction that could still commit into it.
pub const MIN_RETENTION_DAYS: u32 = 2;

/// How long events stay in PostgreSQL, from `EVENT_RETENTION_DAYS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    pub days: u32,
    /// Events per exported object: [`PART_EVENTS`] unless a test wants many small parts.
    pub part_events: i64,
}

impl RetentionConfig {
    pub const DAYS_VAR: &'static str = "EVENT_RETENTION_DAYS";

    pub fn new(days: u32) -> Result<Self, PipelineError> {
        if days < MIN_RETENTION_DAYS {
            return Err(PipelineError::misconfigured(format!(
                "{} is {days}: keep at least {MIN_RETENTION_DAYS} days, so a day is exported only once it is complete",
                Self::DAYS_VAR
            )));
        }
        Ok(Self {
            days,
            part_events: PART_EVENTS,
        })
    }

    /// The same with `n` events per exported object (at least one).
    #[must_use]
    pub fn with_part_events(self, n: i64) -> Self {
        Self {
            part_events: n.max(1),
            ..self
        }
    }

    /// The partitions that end at or before this instant are due: midnight UTC `days` days
    /// before today.
    pub fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = now.date_naive();
        let day = today - chrono::Days::new(u64::from(self.days));
        day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
    }
}

impl FromEnv for RetentionConfig {
    /// Reads `EVENT_RETENTION_DAYS`: required, at least [`MIN_RETENTION_DAYS`].
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        let days: u32 = Vars::new(get).required_parsed(Self::DAYS_VAR)?;
        Self::new(days)
    }
}

/// The key of part `part` of `day`'s export.
pub fn part_key(day: NaiveDate, part: u32) -> String {
    format!("{}/part-{part:05}.jsonl.gz", day_prefix(day))
}

/// The key of `day`'s manifest, written once every part is verified.
pub fn manifest_key(day: NaiveDate) -> String {
    format!("{}/manifest.json", day_prefix(day))
}

/// Every object of `day`'s export is under this prefix.
pub fn day_prefix(day: NaiveDate) -> String {
    format!("{EXPORT_PREFIX}/{}", day.format("%Y/%m/%d"))
}

/// The count and checksum sum of a set of exported lines (see the module's docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    pub events: i64,
    /// The sum of the lines' checksums. Serialised as a string: it does not fit a JSON number
    /// every reader keeps exact.
    #[serde(with = "i128_string")]
    pub sum: i128,
}

impl Checksum {
    /// Adds one line.
    pub fn add_line(&mut self, line: &str) {
        self.events += 1;
        self.sum += i128::from(line_checksum(line));
    }

    /// The checksum of another set of lines added to this one.
    #[must_use]
    pub fn plus(self, other: Checksum) -> Checksum {
        Checksum {
            events: self.events + other.events,
            sum: self.sum + other.sum,
        }
    }

    /// The checksum the database reported: a count and a sum as decimal text.
    pub fn from_db(events: i64, sum: &str) -> Result<Self, PipelineError> {
        let sum = sum.trim().parse().map_err(|_| {
            PipelineError::new(
                ErrorKind::Internal,
                format!("the database's checksum {sum:?} is not an integer"),
            )
        })?;
        Ok(Self { events, sum })
    }

    /// The checksum of a gzip JSON-lines object, and its lines.
    pub fn of_gzip_lines(gzip: &[u8]) -> Result<(Self, Vec<String>), PipelineError> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(gzip)
            .read_to_string(&mut text)
            .map_err(|e| {
                PipelineError::new(
                    ErrorKind::Internal,
                    format!("an exported object is not gzip UTF-8 text: {e}"),
                )
            })?;
        let mut checksum = Self::default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        for line in &lines {
            checksum.add_line(line);
        }
        Ok((checksum, lines))
    }
}

/// SQL for the [`Checksum`] of the rows of `table` (aliased `e`) that `filter` selects, as
/// `events` (bigint) and `sum` (text). Must run with the session's time zone UTC, as the
/// export does.
pub fn checksum_sql(table: &str, filter: &str) -> String {
    format!(
        "SELECT count(*)::bigint AS events, \
                coalesce(sum(('x' || left(encode(sha256(convert_to(to_jsonb(e)::text, 'UTF8')), 'hex'), 16))::bit(64)::bigint), 0)::text AS sum \
         FROM {table} e WHERE {filter}"
    )
}

/// One line's checksum: the first eight bytes of its SHA-256, big-endian, signed (what
/// [`checksum_sql`] computes in PostgreSQL).
pub fn line_checksum(line: &str) -> i64 {
    let digest = Sha256::digest(line.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Gzip JSON lines: each line and a newline.
pub fn gzip_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Vec<u8>, PipelineError> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let io = |e: std::io::Error| {
        PipelineError::new(
            ErrorKind::Internal,
            format!("could not gzip an export: {e}"),
        )
    };
    for line in lines {
        gz.write_all(line.as_bytes()).map_err(io)?;
        gz.write_all(b"\n").map_err(io)?;
    }
    gz.finish().map_err(io)
}

/// One verified part of a day's export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPart {
    pub part: u32,
    pub key: String,
    /// The part holds the day's events with `after_seq < seq <= up_to_seq`.
    pub after_seq: i64,
    pub up_to_seq: i64,
    #[serde(flatten)]
    pub checksum: Checksum,
}

/// What a day's export holds: written to S3 beside the parts once all are verified, and read
/// back by `inventory read-event-export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub table: String,
    pub day: NaiveDate,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The whole day: every part added up.
    #[serde(flatten)]
    pub checksum: Checksum,
    pub parts: Vec<ExportPart>,
    pub exported_at: DateTime<Utc>,
}

impl Manifest {
    /// Checks that the parts follow each other in `seq` and add up to the day's figures.
    pub fn check(&self) -> Result<(), PipelineError> {
        let mut total = Checksum::default();
        let mut after = None;
        for (i, part) in self.parts.iter().enumerate() {
            if usize::try_from(part.part).ok() != Some(i) {
                return Err(manifest_error(
                    self.day,
                    format!("part {} is listed at position {i}", part.part),
                ));
            }
            if after.is_some_and(|a| a != part.after_seq) {
                return Err(manifest_error(
                    self.day,
                    format!(
                        "part {} does not start where the one before ended",
                        part.part
                    ),
                ));
            }
            after = Some(part.up_to_seq);
            total = total.plus(part.checksum);
        }
        if total != self.checksum {
            return Err(manifest_error(
                self.day,
                format!(
                    "its parts add up to {} events (checksum {}), the day says {} ({})",
                    total.events, total.sum, self.checksum.events, self.checksum.sum
                ),
            ));
        }
        Ok(())
    }
}

/// What a retention run did, and what is left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Partitions that end at or before this are due.
    pub cutoff: Option<DateTime<Utc>>,
    /// Days exported, verified and dropped by this run.
    pub retired_days: Vec<NaiveDate>,
    /// Parts written and verified by this run.
    pub exported_parts: u64,
    /// Events in those parts.
    pub exported_events: u64,
    /// A snapshot this run took so that a day could go.
    pub snapshot: Option<i64>,
    /// Due days still in the database when the run ended (0: the run finished its work).
    pub overdue_days: u64,
    /// Why the run stopped before its work was done, when it did.
    pub stopped: Option<String>,
    /// The start of the oldest day still in the database.
    pub oldest_from: Option<DateTime<Utc>>,
}

impl RetentionReport {
    /// Whether every due day is gone.
    pub fn complete(&self) -> bool {
        self.overdue_days == 0
    }
}

fn manifest_error(day: NaiveDate, what: String) -> PipelineError {
    PipelineError::new(
        ErrorKind::Internal,
        format!("the export manifest of {day} is inconsistent: {what}"),
    )
}

mod i128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a time")
    }

    #[test]
    fn the_checksum_query_counts_and_sums_the_chosen_rows_of_the_table() {
        let sql = checksum_sql("event_store.events_2026_11_06", "e.day = $1");
        assert!(
            sql.starts_with("SELECT count(*)::bigint AS events, "),
            "{sql}"
        );
        assert!(
            sql.contains("left(encode(sha256(convert_to(to_jsonb(e)::text, 'UTF8')), 'hex'), 16)"),
            "the first eight bytes of each row's SHA-256, as line_checksum takes: {sql}"
        );
        assert!(
            sql.ends_with("FROM event_store.events_2026_11_06 e WHERE e.day = $1"),
            "{sql}"
        );
    }

    #[test]
    fn the_cutoff_is_midnight_the_retention_before_today() {
        let config = RetentionConfig::new(30).expect("valid");
        assert_eq!(
            config.cutoff(at("2026-12-06T10:30:00Z")),
            at("2026-11-06T00:00:00Z")
        );
        assert_eq!(
            config.cutoff(at("2026-12-06T00:00:00Z")),
            at("2026-11-06T00:00:00Z")
        );
    }

    #[test]
    fn a_retention_under_two_days_or_not_a_number_is_refused_by_name() {
        let short = RetentionConfig::new(1).expect_err("too short");
        assert!(
            short.message.contains("EVENT_RETENTION_DAYS is 1"),
            "{}",
            short.message
        );
        let word = RetentionConfig::from_lookup(|_| Some("thirty".into())).expect_err("a word");
        assert!(
            word.message.contains("EVENT_RETENTION_DAYS=\"thirty\""),
            "{}",
            word.message
        );
        let missing = RetentionConfig::from_lookup(|_| None).expect_err("missing");
        assert!(
            missing.message.contains("EVENT_RETENTION_DAYS"),
            "{}",
            missing.message
        );
        let config = RetentionConfig::from_lookup(|_| Some("365".into())).expect("valid");
        assert_eq!((config.days, config.part_events), (365, PART_EVENTS));
        assert_eq!(config.with_part_events(0).part_events, 1);
    }

    #[test]
    fn keys_name_the_day_and_the_part() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 31).expect("a day");
        assert_eq!(
            part_key(day, 7),
            "event-store/inventory_events/2026/01/31/part-00007.jsonl.gz"
        );
        assert_eq!(
            manifest_key(day),
            "event-store/inventory_events/2026/01/31/manifest.json"
        );
    }

    #[test]
    fn a_line_checksum_is_the_first_eight_bytes_of_its_sha256_signed() {
        // sha256("abc") = ba7816bf8f01cfea...
        assert_eq!(
            line_checksum("abc"),
            i64::from_be_bytes([0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea])
        );
        assert!(
            line_checksum("abc") < 0,
            "read as signed, as PostgreSQL's bit(64)::bigint does"
        );
    }

    #[test]
    fn a_gzip_object_checks_back_to_its_lines_and_any_change_shows() {
        let lines = ["{\"seq\": 1}", "{\"seq\": 2}", "{\"seq\": 3}"];
        let mut expected = Checksum::default();
        lines.iter().for_each(|l| expected.add_line(l));
        let (back, read) =
            Checksum::of_gzip_lines(&gzip_lines(lines).expect("gzip")).expect("read");
        assert_eq!(back, expected);
        assert_eq!(read, lines);

        let dropped =
            Checksum::of_gzip_lines(&gzip_lines(["{\"seq\": 1}", "{\"seq\": 3}"]).expect("gzip"))
                .expect("read")
                .0;
        assert_ne!(dropped, expected);
        let changed = Checksum::of_gzip_lines(
            &gzip_lines(["{\"seq\": 1}", "{\"seq\": 2 }", "{\"seq\": 3}"]).expect("gzip"),
        )
        .expect("read")
        .0;
        assert_eq!(changed.events, expected.events);
        assert_ne!(changed.sum, expected.sum);
        assert!(Checksum::of_gzip_lines(b"not gzip").is_err());
    }

    #[test]
    fn checksums_add_up_in_any_order_and_read_the_databases_text() {
        let (mut a, mut b, mut whole) = (
            Checksum::default(),
            Checksum::default(),
            Checksum::default(),
        );
        ["x", "y"].iter().for_each(|l| a.add_line(l));
        b.add_line("z");
        ["z", "x", "y"].iter().for_each(|l| whole.add_line(l));
        assert_eq!(a.plus(b), whole);
        let db = Checksum::from_db(3, &whole.sum.to_string()).expect("parses");
        assert_eq!(db, whole);
        assert!(Checksum::from_db(3, "1.5").is_err());
    }

    fn part(n: u32, after: i64, upto: i64, lines: &[&str]) -> ExportPart {
        let mut checksum = Checksum::default();
        lines.iter().for_each(|l| checksum.add_line(l));
        ExportPart {
            part: n,
            key: part_key(NaiveDate::from_ymd_opt(2026, 1, 31).expect("day"), n),
            after_seq: after,
            up_to_seq: upto,
            checksum,
        }
    }

    fn manifest(parts: Vec<ExportPart>) -> Manifest {
        let checksum = parts
            .iter()
            .fold(Checksum::default(), |t, p| t.plus(p.checksum));
        Manifest {
            table: "inventory_events".into(),
            day: NaiveDate::from_ymd_opt(2026, 1, 31).expect("day"),
            from: at("2026-01-31T00:00:00Z"),
            to: at("2026-02-01T00:00:00Z"),
            checksum,
            parts,
            exported_at: at("2026-03-03T00:47:00Z"),
        }
    }

    #[test]
    fn a_manifest_checks_that_its_parts_follow_each_other_and_add_up() {
        let good = manifest(vec![part(0, 0, 10, &["a", "b"]), part(1, 10, 25, &["c"])]);
        good.check().expect("consistent");
        let json = serde_json::to_string(&good).expect("serialises");
        let back: Manifest = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, good);
        assert!(json.contains("\"sum\":\""), "the sum is a string: {json}");

        let gap = manifest(vec![part(0, 0, 10, &["a"]), part(1, 11, 25, &["c"])]);
        assert!(
            gap.check()
                .expect_err("gap")
                .message
                .contains("does not start")
        );
        let mut short = good.clone();
        short.checksum.events += 1;
        assert!(
            short
                .check()
                .expect_err("short")
                .message
                .contains("add up to 3 events")
        );
        let swapped = manifest(vec![part(1, 10, 25, &["c"]), part(0, 0, 10, &["a"])]);
        assert!(swapped.check().is_err());
    }
}
