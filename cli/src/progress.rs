//! Progress on stderr while records go out: a bar on a terminal, or `progress ...` lines a
//! program can read (`--progress lines`; the demo follows the push this way).

use crate::send::Counters;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal and the feed is long, nothing otherwise.
    Auto,
    /// Always a bar.
    Bar,
    /// A `progress sent=N total=N retried=N throttled=N` line four times a second.
    Lines,
    /// Nothing until the summary.
    None,
}

/// Feeds shorter than this finish before a bar would help.
const LONG_FEED: u64 = 2_000;
const TICK: Duration = Duration::from_millis(250);

/// A running display; [`Progress::finish`] stops it.
#[derive(Debug)]
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(mode: ProgressMode, total: u64, counters: Arc<Counters>) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() && total >= LONG_FEED => {
                ProgressMode::Bar
            }
            ProgressMode::Auto => ProgressMode::None,
            m => m,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (mode != ProgressMode::None).then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || run(mode, total, &counters, &stop))
        });
        Self { stop, thread }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mode: ProgressMode, total: u64, counters: &Counters, stop: &AtomicBool) {
    let started = Instant::now();
    let mut last = None;
    loop {
        let done = stop.load(Ordering::Relaxed);
        let sent = counters.sent.load(Ordering::Relaxed);
        let retried = counters.retried.load(Ordering::Relaxed);
        let throttled = counters.throttled.load(Ordering::Relaxed);
        let mut err = std::io::stderr().lock();
        if mode == ProgressMode::Lines {
            if last != Some((sent, retried)) || done {
                let _ = writeln!(
                    err,
                    "progress sent={sent} total={total} retried={retried} throttled={throttled}"
                );
                last = Some((sent, retried));
            }
        } else {
            let _ = write!(err, "\r{}", bar(sent, total, retried, started.elapsed()));
            if done {
                let _ = writeln!(err);
            }
        }
        let _ = err.flush();
        drop(err);
        if done {
            return;
        }
        std::thread::sleep(TICK);
    }
}

/// One line: `[#####.....]  1200/20000 records  6.0% 2400/s  retried 3`.
pub fn bar(sent: u64, total: u64, retried: u64, elapsed: Duration) -> String {
    const WIDTH: u64 = 30;
    let filled = (sent.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH);
    let rate = sent as f64 / elapsed.as_secs_f64().max(0.001);
    format!(
        "[{}{}] {sent:>8}/{total} records {:5.1}% {rate:8.0}/s  retried {retried}",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize),
        if total == 0 {
            100.0
        } else {
            sent as f64 * 100.0 / total as f64
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_in_proportion_to_what_was_sent() {
        let half = bar(500, 1000, 2, Duration::from_secs(1));
        assert!(
            half.starts_with(&format!("[{}{}]", "#".repeat(15), ".".repeat(15))),
            "{half}"
        );
        assert!(
            half.contains("50.0%") && half.contains("retried 2"),
            "{half}"
        );
        assert!(bar(0, 0, 0, Duration::ZERO).contains("100.0%"));
    }
}
