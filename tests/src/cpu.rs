//! CPU time of the processes a benchmark shares the machine with, read from Linux's `/proc`:
//! this process (the client: the pipeline's steps, the AWS SDK, the database and Redis
//! drivers), PostgreSQL (every process named `postgres`: the backends, the WAL writer, the
//! checkpointer) and the S3 emulator. Two readings taken around a run say how much CPU each
//! used for it, so on a small machine a figure can say how much of a run's time went to the
//! emulator, which on AWS is a service elsewhere, and not to the design under test.
//!
//! A backend that exits before the second reading takes its CPU time with it, so read before
//! closing the run's connections.

use std::time::Duration;

/// `/proc` counts CPU time in `USER_HZ` ticks, which Linux fixes at 100 per second.
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time, per process group, at one moment (or over a run, as the
/// difference of two readings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub client: Duration,
    pub postgres: Duration,
    pub emulator: Duration,
}

impl CpuTimes {
    /// The CPU time used so far by this process, every `postgres` process, and the process
    /// `emulator`; `None` where `/proc` cannot be read (not Linux, or the emulator is gone).
    pub fn now(emulator: u32) -> Option<Self> {
        let stat = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let client = parse_stat(&stat("self")?)?.1;
        let emulator = parse_stat(&stat(&emulator.to_string())?)?.1;
        let mut postgres = Duration::ZERO;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            // A process may exit between the listing and the read: it is skipped.
            if let Some(("postgres", cpu)) = stat(pid).as_deref().and_then(parse_stat) {
                postgres += cpu;
            }
        }
        Some(Self {
            client,
            postgres,
            emulator,
        })
    }

    /// What each group used since the reading `before` (taken with [`CpuTimes::now`] for the
    /// same `emulator`); `None` if either reading is missing.
    pub fn used_since(before: Option<Self>, emulator: u32) -> Option<Self> {
        Some(Self::now(emulator)?.since(before?))
    }

    /// What each group used between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            client: self.client.saturating_sub(earlier.client),
            postgres: self.postgres.saturating_sub(earlier.postgres),
            emulator: self.emulator.saturating_sub(earlier.emulator),
        }
    }

    /// Milliseconds of CPU per `per` units of work (`units` done), for each group:
    /// `(client, postgres, emulator)`.
    pub fn ms_per(self, units: usize, per: usize) -> (f64, f64, f64) {
        let scale = per as f64 / units.max(1) as f64;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 * scale;
        (ms(self.client), ms(self.postgres), ms(self.emulator))
    }
}

/// The command name and the user plus system CPU time in one `/proc/<pid>/stat` line. The name
/// is in parentheses and may itself hold spaces and parentheses, so the fields are counted from
/// the last `)`: the state is the first after it, `utime` the twelfth and `stime` the thirteenth
/// (fields 14 and 15 of proc(5)).
fn parse_stat(line: &str) -> Option<(&str, Duration)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line.get(open + 1..close)?;
    let mut fields = line.get(close + 1..)?.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    Some((
        comm,
        Duration::from_millis(ticks.saturating_mul(1000 / TICKS_PER_SECOND)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line as proc(5) gives it, with `utime` and `stime` in the 14th and 15th fields.
    fn line(comm: &str, utime: u64, stime: u64) -> String {
        format!(
            "4242 ({comm}) S 1 4242 4242 0 -1 4194560 9000 0 0 0 {utime} {stime} 0 0 20 0 1 0 777 1000000 500 18446744073709551615"
        )
    }

    #[test]
    fn cpu_time_is_user_plus_system_ticks_at_a_hundred_per_second() {
        assert_eq!(
            parse_stat(&line("postgres", 150, 25)),
            Some(("postgres", Duration::from_millis(1750)))
        );
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        assert_eq!(
            parse_stat(&line("tokio (rt) worker", 3, 4)),
            Some(("tokio (rt) worker", Duration::from_millis(70)))
        );
    }

    #[test]
    fn a_truncated_or_garbled_line_reads_as_nothing() {
        assert_eq!(parse_stat("4242 (postgres) S 1 2 3"), None);
        assert_eq!(parse_stat("no parentheses here"), None);
        assert_eq!(
            parse_stat(&line("postgres", 150, 25).replace(" 150 ", " x ")),
            None
        );
    }

    #[test]
    fn this_process_reads_as_the_client_and_a_run_is_the_difference_of_two_readings() {
        let me = std::process::id();
        let before = CpuTimes::now(me).expect("/proc is readable on Linux");
        let mut x = 0u64;
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(150) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = CpuTimes::now(me).expect("/proc is readable on Linux");

        let used = after.since(before);
        assert!(
            used.client >= Duration::from_millis(50),
            "150 ms of spinning used {:?} of CPU",
            used.client
        );
        assert_eq!(
            used.since(used),
            CpuTimes::default(),
            "nothing between a reading and itself"
        );
        let (client, _, _) = used.ms_per(2000, 1000);
        assert!((client - used.client.as_secs_f64() * 500.0).abs() < 1e-9);
    }
}
