//! The guest's serial console as text: QEMU's output cleaned of \r and terminal escapes, and
//! the lines a guest script prints to report (its verdict, /init's exit status, `uname`).

use std::time::Duration;

use anyhow::{Result, bail};

use crate::kernels::Kernel;

/// Prefix of the line a guest script prints with its verdict.
pub const VERDICT_PREFIX: &str = "GUPTRACE-RESULT ";

/// Prefix of the line /init prints with the guest script's exit status.
pub const EXIT_PREFIX: &str = "GUPTRACE-EXIT ";

/// What the guest printed on its serial console, without \r and terminal escapes.
pub struct Console {
    pub text: String,
    /// From starting QEMU to its exit: boot plus the guest script.
    pub wall: Duration,
}

impl Console {
    /// The rest of the last line that starts with `prefix` (e.g. [`VERDICT_PREFIX`]).
    pub fn find(&self, prefix: &str) -> Option<&str> {
        find_line(&self.text, prefix)
    }

    /// The last `n` lines, for error messages.
    pub fn tail(&self, n: usize) -> String {
        tail(&self.text, n)
    }

    /// Fails unless the guest script says it ran on `kernel` (every guest script starts by
    /// printing `uname: $(uname -r)`).
    pub fn ran(&self, kernel: &Kernel) -> Result<()> {
        match self.find("uname: ") {
            Some(release) if release == kernel.release => Ok(()),
            other => bail!(
                "the guest did not run {} (its script said {other:?}); last console lines:\n{}",
                kernel.release,
                self.tail(15)
            ),
        }
    }
}

/// The rest of the last line of `text` that starts with `prefix`.
pub fn find_line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim_end)
}

pub(super) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Removes \r and terminal escape sequences from the console. SeaBIOS and the kernel reset
/// and clear the screen (ESC c, ESC [2J) without a newline, which would glue the guest's first
/// line to "Booting from ROM.." and, echoed, would clear the user's terminal; a reset or clear
/// becomes a line break instead.
#[derive(Default)]
pub(super) struct ConsoleFilter {
    state: EscapeState,
    at_line_start: bool,
}

#[derive(Default, PartialEq)]
enum EscapeState {
    #[default]
    Text,
    /// After ESC.
    Escape,
    /// Inside ESC [ ... (a CSI sequence), until its final byte.
    Csi,
}

impl ConsoleFilter {
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        for &b in bytes {
            let clears = match self.state {
                EscapeState::Text => {
                    match b {
                        b'\r' => {}
                        0x1b => self.state = EscapeState::Escape,
                        _ => {
                            out.push(b);
                            self.at_line_start = b == b'\n';
                        }
                    }
                    false
                }
                EscapeState::Escape => {
                    self.state = if b == b'[' {
                        EscapeState::Csi
                    } else {
                        EscapeState::Text
                    };
                    b == b'c'
                }
                EscapeState::Csi => {
                    let is_final = (0x40..=0x7e).contains(&b);
                    if is_final {
                        self.state = EscapeState::Text;
                    }
                    is_final && b == b'J'
                }
            };
            if clears && !self.at_line_start {
                out.push(b'\n');
                self.at_line_start = true;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_filter_breaks_lines_at_screen_clears() {
        let mut f = ConsoleFilter::default();
        let mut out = f.feed(b"Booting from ROM..\x1bc\x1b[?7l\x1b[2");
        out.extend(f.feed(b"Juname: 6.1\r\nGUPTRACE-RESULT ok\r\n"));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "Booting from ROM..\nuname: 6.1\nGUPTRACE-RESULT ok\n");
        assert_eq!(find_line(&text, "uname: "), Some("6.1"));
        assert_eq!(find_line(&text, VERDICT_PREFIX), Some("ok"));
    }
}
