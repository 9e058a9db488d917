//! The screen `inventory status` prints for people: one line per part, the groups below it.

use super::status::{Part, Report};
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

/// `12 s`, `4 min`, `3.2 h`, `2.0 d`.
fn age(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7_200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3_600.0),
        s => format!("{:.1} d", s / 86_400.0),
    }
}

/// `812 B`, `8.1 MiB`, `12.4 GiB`.
fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "no data".to_owned(), f)
}

/// The part's line, or why there is none.
fn line<T>(part: &Part<T>, f: impl Fn(&T) -> String) -> String {
    match part {
        Part::Read(v) => f(v),
        Part::NotApplicable { not_applicable } => format!("n/a ({not_applicable})"),
        Part::Unavailable { unavailable } => format!("UNAVAILABLE: {unavailable}"),
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let env = r.environment.as_deref().unwrap_or("unknown environment");
    let _ = writeln!(
        out,
        "inventory pipeline ({env}) at {}; window since {}",
        time(r.at),
        time(r.since)
    );
    let _ = writeln!(
        out,
        "stream        {}",
        line(&r.stream, |s| format!(
            "iterator age {} now, {} max; {} records in ({}/s)",
            opt(s.iterator_age_now_s, age),
            opt(s.iterator_age_max_s, age),
            opt(s.incoming_records, |n| format!("{n:.0}")),
            opt(s.records_per_second, |n| format!("{n:.2}")),
        ))
    );
    let _ = writeln!(
        out,
        "executions    {}",
        line(&r.executions, |c| format!(
            "{} succeeded, {} failed, {} timed out, {} aborted (started in the window); {} running",
            c.succeeded, c.failed, c.timed_out, c.aborted, c.running
        ))
    );
    let _ = writeln!(
        out,
        "  failed by   {}",
        line(&r.failures, |f| if f.of == 0 {
            "none".to_owned()
        } else {
            format!("state and error (the newest {} of {}):", f.looked_at, f.of)
        })
    );
    if let Part::Read(f) = &r.failures {
        for g in &f.groups {
            let _ = writeln!(
                out,
                "    {:>6}  {}  {}  e.g. {}",
                g.count,
                g.state.as_deref().unwrap_or("(no state)"),
                g.error.as_deref().unwrap_or("(no error)"),
                g.example
            );
        }
    }
    for (name, part) in &r.dlqs {
        let _ = writeln!(
            out,
            "{name:<20}{}",
            line(part, |d| format!(
                "{} messages ({} in flight)",
                d.visible, d.in_flight
            ))
        );
    }
    let _ = writeln!(
        out,
        "quarantine    {}",
        line(&r.quarantine, |q| format!(
            "{} pending, {} replayed{}",
            q.pending.iter().map(|c| c.count).sum::<usize>(),
            q.replayed,
            if q.pending.is_empty() {
                ""
            } else {
                "; pending by reason and supplier:"
            }
        ))
    );
    if let Part::Read(q) = &r.quarantine {
        for c in &q.pending {
            let _ = writeln!(out, "    {:>6}  {}  {}", c.count, c.reason, c.supplier);
        }
    }
    let _ = writeln!(
        out,
        "newest event  {}",
        line(&r.database, |d| opt(d.newest_event_age_s, |s| format!(
            "{} ago",
            age(s)
        )))
    );
    let _ = writeln!(
        out,
        "database      {}; free storage {}",
        line(&r.database, |d| format!(
            "{} used",
            bytes(d.size_bytes as f64)
        )),
        line(&r.free_storage_bytes, |f| opt(*f, bytes))
    );
    let _ = writeln!(
        out,
        "alarms        {}",
        line(&r.alarms, |a| if a.is_empty() {
            "none in ALARM".to_owned()
        } else {
            format!("{} in ALARM:", a.len())
        })
    );
    if let Part::Read(alarms) = &r.alarms {
        for a in alarms {
            let _ = writeln!(
                out,
                "    {} since {}: {}",
                a.name,
                a.since.map_or_else(|| "?".to_owned(), time),
                a.reason.as_deref().unwrap_or("")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_read_at_a_glance() {
        assert_eq!(age(12.4), "12 s");
        assert_eq!(age(600.0), "10 min");
        assert_eq!(age(3.0 * 86_400.0), "3.0 d");
        assert_eq!(bytes(812.0), "812 B");
        assert_eq!(bytes(8.5 * 1024.0 * 1024.0), "8.5 MiB");
    }
}
