//! The transfer progress bar: bytes, rate, ETA and the current file's name,
//! one bar for the whole transfer. It draws only on a terminal, only
//! without `-q`, and only once the transfer has run for about a second, so
//! quick transfers and scripts see nothing.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry::services::files::transfer::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output::escape_line;

/// How long a transfer runs before its bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// A progress bar on stderr that appears after a second.
pub struct TransferBar {
    bar: ProgressBar,
    started: Instant,
    enabled: bool,
    shown: Mutex<bool>,
}

impl TransferBar {
    /// A bar that will draw if stderr is a terminal and `quiet` is off.
    pub fn new(quiet: bool) -> TransferBar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta:>4} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        TransferBar {
            bar,
            started: Instant::now(),
            enabled: !quiet && std::io::stderr().is_terminal(),
            shown: Mutex::new(false),
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn maybe_show(&self) {
        if !self.enabled || self.started.elapsed() < SHOW_AFTER {
            return;
        }
        if let Ok(mut shown) = self.shown.lock() {
            if !*shown {
                *shown = true;
                self.bar.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
    }
}

impl Progress for TransferBar {
    fn begin(&self, total_bytes: u64) {
        self.bar
            .set_length(self.bar.length().unwrap_or(0) + total_bytes);
    }

    fn file_started(&self, path: &[u8], _size: u64) {
        if !path.is_empty() {
            self.bar
                .set_message(escape_line(&String::from_utf8_lossy(path)));
        }
        self.maybe_show();
    }

    fn advanced(&self, bytes: u64) {
        self.bar.inc(bytes);
        self.maybe_show();
    }
}
