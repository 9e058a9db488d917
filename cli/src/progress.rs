//! Progress on stderr while records go out: a bar on a terminal, or `progress ...` lines a
//! program can read (`--progress lines`; the demo follows the push this way).

use crate::send::Counters;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal and the feed is long, nothing otherwise.
    Auto,
    /// A bar (indicatif draws it when stderr is a terminal).
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
    let bar = (mode == ProgressMode::Bar).then(|| {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(bar_style());
        bar
    });
    let mut last = None;
    loop {
        let done = stop.load(Ordering::Relaxed);
        let sent = counters.sent.load(Ordering::Relaxed);
        let retried = counters.retried.load(Ordering::Relaxed);
        let throttled = counters.throttled.load(Ordering::Relaxed);
        if let Some(bar) = &bar {
            bar.set_position(sent.min(total));
            bar.set_message(format!("retried {retried}"));
            if done {
                bar.finish();
            }
        } else if last != Some((sent, retried)) || done {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "progress sent={sent} total={total} retried={retried} throttled={throttled}"
            );
            let _ = err.flush();
            last = Some((sent, retried));
        }
        if done {
            return;
        }
        std::thread::sleep(TICK);
    }
}

/// `[#####.....]  1200/20000 records  6% 2400/s  retried 3`; indicatif draws it, on a
/// terminal only.
const BAR_TEMPLATE: &str = "[{bar:30}] {pos:>8}/{len} records {percent:>3}% {per_sec:>10}  {msg}";

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(BAR_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bars_template_is_one_indicatif_accepts() {
        // A template indicatif refuses would silently fall back to its default bar.
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }
}
