//! `--since` / `--until` of the operator commands: an RFC 3339 time, or a duration back from
//! now as humantime writes it (`90s`, `30m`, `1h`, `14d`).

use chrono::{DateTime, TimeDelta, Utc};
use std::str::FromStr;

/// A point in time, absolute or relative to when the command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeArg {
    At(DateTime<Utc>),
    Ago(TimeDelta),
}

impl TimeArg {
    /// The time this means when the command runs at `now`.
    pub fn at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            TimeArg::At(t) => *t,
            TimeArg::Ago(d) => now - *d,
        }
    }
}

impl FromStr for TimeArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(TimeArg::At(t.with_timezone(&Utc)));
        }
        let d = humantime::parse_duration(s).map_err(|e| {
            format!("{s:?} is neither an RFC 3339 time nor a duration such as 30m, 2h or 3d ({e})")
        })?;
        TimeDelta::from_std(d)
            .map(TimeArg::Ago)
            .map_err(|_| format!("{s:?} is too long a duration"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_absolute_or_a_duration_back_from_now() {
        let now = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let ago: TimeArg = "90m".parse().expect("duration");
        assert_eq!(ago.at(now), now - TimeDelta::minutes(90));
        let at: TimeArg = "2026-02-28T10:00:00Z".parse().expect("rfc3339");
        assert_eq!(at.at(now).to_rfc3339(), "2026-02-28T10:00:00+00:00");
        let err = "yesterday".parse::<TimeArg>().expect_err("bad");
        assert!(err.contains("yesterday"), "{err}");
    }
}
