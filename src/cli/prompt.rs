//! The tutorial's client loop, shared by `ferry echo` and `ferry exec`:
//! read lines from stdin, with a `>> ` prompt on stderr when stdin is a
//! terminal (stdout stays the answers only), skipping empty lines, until
//! EOF.

use std::io::{IsTerminal, Write};

use tokio::io::{AsyncBufReadExt, BufReader, Stdin};

/// Lines typed or piped in, one at a time.
pub struct PromptedLines {
    interactive: bool,
    stdin: BufReader<Stdin>,
    line: Vec<u8>,
}

impl PromptedLines {
    /// Lines from this process's stdin.
    pub fn new() -> PromptedLines {
        PromptedLines {
            interactive: std::io::stdin().is_terminal(),
            stdin: BufReader::new(tokio::io::stdin()),
            line: Vec::new(),
        }
    }

    /// The next line that is not blank, without its line ending; `None` at
    /// EOF.
    pub async fn next(&mut self) -> std::io::Result<Option<&[u8]>> {
        loop {
            if self.interactive {
                eprint!(">> ");
                std::io::stderr().flush()?;
            }
            self.line.clear();
            if self.stdin.read_until(b'\n', &mut self.line).await? == 0 {
                if self.interactive {
                    eprintln!();
                }
                return Ok(None);
            }
            let text = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if !text.trim_ascii().is_empty() {
                let len = text.len();
                return Ok(Some(&self.line[..len]));
            }
        }
    }
}
