//! What the server writes to its log, and how. Text that came from a peer
//! is escaped and cut ([`peer_text`]) before it reaches a line, so a peer
//! can neither forge lines nor fill the disk. Lines go to stderr through a
//! bounded queue and a thread of their own ([`StderrLog`]), so a stderr
//! that is closed, full or slow costs lines, never a panic, a stalled
//! connection or a shutdown that does not finish.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::limits::{LOG_QUEUE_BYTES, MAX_LOGGED_PEER_BYTES, MAX_LOG_LINE_BYTES};

/// Peer bytes as a log shows them: quoted, with newlines, control
/// characters and bytes that are not UTF-8 escaped (`\n`, `\u{1b}`,
/// `\xff`), and cut after [`MAX_LOGGED_PEER_BYTES`] with the full length
/// noted: `"rm -rf /tm"...(4194304 bytes)`.
pub fn peer_text<T: AsRef<[u8]> + ?Sized>(text: &T) -> PeerText<'_> {
    PeerText(text.as_ref())
}

/// See [`peer_text`].
#[derive(Clone, Copy)]
pub struct PeerText<'a>(&'a [u8]);

impl fmt::Display for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = self.0;
        let shown = &all[..all.len().min(MAX_LOGGED_PEER_BYTES)];
        f.write_str("\"")?;
        for chunk in shown.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    // `escape_debug` would escape a quote that needs none.
                    '\'' => f.write_str("'")?,
                    c => write!(f, "{}", c.escape_debug())?,
                }
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        f.write_str("\"")?;
        if shown.len() < all.len() {
            write!(f, "...({} bytes)", all.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A `tracing` writer for the server's stderr that never blocks the thread
/// logging and never fails: each event becomes one line (cut at
/// [`MAX_LOG_LINE_BYTES`]) in a queue of at most [`LOG_QUEUE_BYTES`], and a
/// thread of its own writes the queue out. A line that does not fit is
/// dropped and counted, and the count is written once stderr takes lines
/// again; a line stderr refuses (EPIPE, EAGAIN) is dropped. Rust leaves
/// SIGPIPE ignored, so a closed stderr is an error here, not a signal.
#[derive(Clone)]
pub struct StderrLog {
    queue: Arc<Queue>,
}

struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when a line is queued, and when the writer finished one.
    changed: Condvar,
}

#[derive(Default)]
struct QueueState {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    dropped: u64,
    /// The writer holds a line it has not finished writing.
    writing: bool,
}

impl Queue {
    /// The state, even if a thread panicked holding it: a log line is
    /// never worth a second panic.
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, line: Vec<u8>) {
        let mut state = self.lock();
        if state.bytes + line.len() > LOG_QUEUE_BYTES {
            state.dropped += 1;
            return;
        }
        state.bytes += line.len();
        state.lines.push_back(line);
        drop(state);
        self.changed.notify_all();
    }
}

impl StderrLog {
    /// Starts the thread that writes to stderr.
    pub fn start() -> io::Result<StderrLog> {
        StderrLog::start_with(io::stderr())
    }

    /// Starts the writing thread on any sink; tests give it one that fails
    /// or never returns.
    pub fn start_with(sink: impl Write + Send + 'static) -> io::Result<StderrLog> {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState::default()),
            changed: Condvar::new(),
        });
        let writing = queue.clone();
        // Never joined: a thread stuck in write(2) must not keep the
        // process alive, and exiting ends it.
        std::thread::Builder::new()
            .name("ferry-log".into())
            .spawn(move || write_lines(&writing, sink))?;
        Ok(StderrLog { queue })
    }

    /// Waits up to `within` for every line queued so far to be written (or
    /// refused); whether they were. For the last lines before exit.
    pub fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut state = self.queue.lock();
        while !state.lines.is_empty() || state.writing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = match self.queue.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }
}

/// The writing thread: one line at a time, errors dropped.
fn write_lines(queue: &Queue, mut sink: impl Write) {
    loop {
        let (line, dropped) = {
            let mut state = queue.lock();
            let line = loop {
                if let Some(line) = state.lines.pop_front() {
                    break line;
                }
                state = match queue.changed.wait(state) {
                    Ok(state) => state,
                    Err(poisoned) => poisoned.into_inner(),
                };
            };
            state.bytes -= line.len();
            state.writing = true;
            (line, std::mem::take(&mut state.dropped))
        };
        if dropped > 0 {
            let note = format!("ferry: {dropped} log lines dropped: stderr was not taking them\n");
            let _ = sink.write_all(note.as_bytes());
        }
        let _ = sink.write_all(&line);
        let _ = sink.flush();
        queue.lock().writing = false;
        queue.changed.notify_all();
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrLog {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            queue: self.queue.clone(),
            buf: Vec::new(),
            total: 0,
        }
    }
}

/// One event's line, queued whole when the event is done with it.
pub struct LogLine {
    queue: Arc<Queue>,
    buf: Vec<u8>,
    /// Bytes the event wrote, kept or not.
    total: usize,
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = MAX_LOG_LINE_BYTES.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.total += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut line = std::mem::take(&mut self.buf);
        if self.total > line.len() {
            // Cut on a character, so what is kept stays readable.
            let mut keep = line.len();
            if let Err(err) = std::str::from_utf8(&line) {
                if err.error_len().is_none() {
                    keep = err.valid_up_to();
                }
            }
            line.truncate(keep);
            let note = format!("...(line cut: {} bytes)\n", self.total);
            line.extend_from_slice(note.as_bytes());
        }
        self.queue.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    fn shown(bytes: &[u8]) -> String {
        peer_text(bytes).to_string()
    }

    #[test]
    fn peer_text_escapes_what_could_forge_or_hide_a_line() {
        assert_eq!(shown(b"ls -l"), r#""ls -l""#);
        assert_eq!(
            shown(b"a\nINFO forged\r\x1b[2J\"q'"),
            r#""a\nINFO forged\r\u{1b}[2J\"q'""#
        );
        assert_eq!(shown("é\u{202e}".as_bytes()), r#""é\u{202e}""#);
        assert_eq!(shown(b"\xffok\xc3"), r#""\xffok\xc3""#);
    }

    #[test]
    fn peer_text_is_cut_at_the_cap_with_its_length_noted() {
        let long = vec![b'x'; 4 << 20];
        let text = shown(&long);
        let kept = "x".repeat(MAX_LOGGED_PEER_BYTES);
        assert_eq!(text, format!("\"{kept}\"...({} bytes)", 4 << 20));
        // Escaping makes a byte at most six (`\u{1b}`).
        let nasty = vec![0x1b; 4 << 20];
        assert!(shown(&nasty).len() <= MAX_LOGGED_PEER_BYTES * 6 + 32);
    }

    /// A sink that refuses every write, as a closed pipe does.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    /// A sink that never returns from a write, as a full pipe nobody reads.
    struct Stuck(std::sync::mpsc::Receiver<()>);
    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink that keeps what it is given.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);
    impl Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn log_line(log: &StderrLog, text: &[u8]) {
        let mut line = log.make_writer();
        line.write_all(text).unwrap();
    }

    #[test]
    fn a_closed_sink_costs_lines_and_nothing_else() {
        let log = StderrLog::start_with(Closed).unwrap();
        for _ in 0..100 {
            log_line(&log, b"a line\n");
        }
        assert!(log.flush(Duration::from_secs(10)));
    }

    #[test]
    fn a_stuck_sink_never_blocks_the_logger_and_its_queue_stays_bounded() {
        let (unstick, stuck) = std::sync::mpsc::channel();
        let log = StderrLog::start_with(Stuck(stuck)).unwrap();
        let line = vec![b'x'; 1000];
        for _ in 0..(LOG_QUEUE_BYTES / 1000) * 3 {
            log_line(&log, &line);
        }
        let state = log.queue.lock();
        assert!(state.bytes <= LOG_QUEUE_BYTES, "{} bytes", state.bytes);
        assert!(state.dropped > 0);
        drop(state);
        assert!(!log.flush(Duration::from_millis(50)));
        drop(unstick);
    }

    #[test]
    fn a_line_over_the_cap_is_cut_and_the_drops_are_counted_once_written() {
        let kept = Kept::default();
        let log = StderrLog::start_with(kept.clone()).unwrap();
        let mut long = "é".repeat(MAX_LOG_LINE_BYTES).into_bytes();
        long.push(b'\n');
        log_line(&log, &long);
        assert!(log.flush(Duration::from_secs(10)));
        let written = String::from_utf8(std::mem::take(&mut *kept.0.lock().unwrap())).unwrap();
        assert!(
            written.len() < MAX_LOG_LINE_BYTES + 100,
            "{}",
            written.len()
        );
        assert!(
            written.ends_with(&format!("...(line cut: {} bytes)\n", long.len())),
            "{}",
            &written[written.len() - 50..]
        );
        assert_eq!(written.lines().count(), 1);

        log.queue.lock().dropped = 3;
        log_line(&log, b"next\n");
        assert!(log.flush(Duration::from_secs(10)));
        let written = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            written,
            "ferry: 3 log lines dropped: stderr was not taking them\nnext\n"
        );
    }
}
