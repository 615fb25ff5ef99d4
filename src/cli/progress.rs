//! The transfer progress bar: bytes, rate, ETA and the current file's name,
//! one bar for the whole transfer. It draws only on a terminal, only
//! without `-q`, and only once the transfer has run for about a second, so
//! quick transfers and scripts see nothing.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry::client::{Progress, TransferEvent};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output::escape_line;

/// How long a transfer runs before its bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// Says what happened to a transfer's connection (`-v`, `--json`).
pub type EventPrinter = Box<dyn Fn(&TransferEvent) + Send + Sync>;

/// A progress bar on stderr that appears after a second.
pub struct TransferBar {
    bar: ProgressBar,
    started: Instant,
    show_after: Duration,
    /// Where the bar will draw once shown; `None` when it never draws, or
    /// once it is drawing there.
    target: Mutex<Option<ProgressDrawTarget>>,
    /// Where connection events go, if anywhere.
    events: Option<EventPrinter>,
}

impl TransferBar {
    /// A bar that will draw if stderr is a terminal and `quiet` is off.
    pub fn new(quiet: bool) -> TransferBar {
        let target = (!quiet && std::io::stderr().is_terminal()).then(ProgressDrawTarget::stderr);
        TransferBar::drawing_to(target, SHOW_AFTER)
    }

    /// A bar that draws to `target` (never, if `None`) once `show_after`
    /// has passed.
    fn drawing_to(target: Option<ProgressDrawTarget>, show_after: Duration) -> TransferBar {
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
            show_after,
            target: Mutex::new(target),
            events: None,
        }
    }

    /// The bar, with connection events told to `print` (between the bar's
    /// drawings, so a line never lands inside it).
    pub fn with_events(mut self, print: EventPrinter) -> TransferBar {
        self.events = Some(print);
        self
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn maybe_show(&self) {
        if self.started.elapsed() < self.show_after {
            return;
        }
        let target = self.target.lock().ok().and_then(|mut target| target.take());
        if let Some(target) = target {
            self.bar.set_draw_target(target);
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

    fn event(&self, event: &TransferEvent) {
        if let TransferEvent::Reconnected { .. } = event {
            // What moved counts as done; the next attempt adds what is
            // left (its `begin`), so the bar does not count a file twice.
            self.bar.set_length(self.bar.position());
        }
        if let Some(print) = &self.events {
            self.bar.suspend(|| print(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::TermLike;
    use std::sync::Arc;

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Default, Clone)]
    struct Screen(Arc<Mutex<String>>);

    impl Screen {
        fn text(&self) -> String {
            self.0.lock().unwrap().clone()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            let mut text = self.0.lock().unwrap();
            text.push_str(s);
            text.push('\n');
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn bar_on(screen: &Screen, show_after: Duration) -> TransferBar {
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        TransferBar::drawing_to(Some(target), show_after)
    }

    #[test]
    fn the_bar_shows_bytes_rate_eta_and_the_current_file_escaped() {
        let screen = Screen::default();
        let bar = bar_on(&screen, Duration::ZERO);
        bar.begin(3 << 20);
        bar.file_started(b"photos/a.jpg", 1 << 20);
        bar.advanced(1 << 20);
        bar.file_started(b"photos/\x1b[31mred.jpg", 2 << 20);
        bar.advanced(1 << 20);
        bar.bar.tick();
        let text = screen.text();
        // The last drawing of the bar: from its byte count on.
        let last = &text[text.rfind("2.00 MiB/3.00 MiB").expect(&text)..];
        assert!(last.contains("/s ETA"), "a rate and an ETA: {text:?}");
        assert!(
            last.contains("photos/\\u{1b}[31mred.jpg"),
            "escaped: {text:?}"
        );
        assert!(
            !text.contains('\x1b'),
            "no raw escape from a name: {text:?}"
        );
    }

    #[test]
    fn after_a_reconnect_the_bar_counts_what_is_left_once() {
        let bar = TransferBar::drawing_to(None, Duration::ZERO);
        bar.begin(4 << 20);
        bar.advanced(1 << 20);
        bar.event(&TransferEvent::Reconnected { attempt: 1, of: 5 });
        // The retry wants the 3 MiB left.
        bar.begin(3 << 20);
        assert_eq!(bar.bar.length(), Some(4 << 20));
        assert_eq!(bar.bar.position(), 1 << 20);
    }

    #[test]
    fn the_bar_stays_hidden_for_a_quick_transfer() {
        let screen = Screen::default();
        let bar = bar_on(&screen, Duration::from_secs(3600));
        bar.begin(1 << 20);
        bar.file_started(b"a.bin", 1 << 20);
        bar.advanced(1 << 20);
        bar.bar.tick();
        bar.finish();
        assert_eq!(screen.text(), "");
    }

    #[test]
    fn with_q_or_without_a_terminal_the_bar_never_draws() {
        let quiet = TransferBar::new(true);
        assert!(quiet.target.lock().unwrap().is_none());
        let plain = TransferBar::new(false);
        let draws = plain.target.lock().unwrap().is_some();
        assert_eq!(draws, std::io::stderr().is_terminal());
    }
}
