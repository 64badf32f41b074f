//! AT line framing (ITU-T V.250 §5.7, 3GPP TS 27.007 §4, 3GPP TS 27.005 §3.4.1).
//!
//! A modem answers with lines framed by `<CR><LF>`, and with the bare prompt `> ` (no line
//! end) when it waits for the PDU of `AT+CMGS`. [`LineCodec`] turns the byte stream into
//! [`Frame`]s:
//! - any of `CR`, `LF` ends a line; empty lines are skipped, so `<CR><LF>` framing, bare `LF`
//!   and echo (`AT…<CR>`) are all read alike;
//! - a line that starts with `>` and has not ended is the prompt;
//! - bytes that are not UTF-8 are replaced (U+FFFD), NULs and other control bytes dropped;
//! - a line longer than [`MAX_LINE`] is cut off and reported as [`Frame::Overlong`], so a
//!   port spewing noise can never grow memory without bound.
//!
//! Nothing here panics on any input.

/// The longest line kept. A PDU line is at most 2 × (12 + 164) hex digits; the rest is slack.
pub const MAX_LINE: usize = 1024;

/// One thing the modem said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole line, trimmed, without its terminator.
    Line(String),
    /// The `> ` prompt asking for the PDU (3GPP TS 27.005 §3.5.1).
    Prompt,
    /// A line longer than [`MAX_LINE`] was discarded.
    Overlong,
}

/// Incremental splitter of modem output into [`Frame`]s.
#[derive(Debug, Default)]
pub struct LineCodec {
    line: Vec<u8>,
    /// The current line overflowed; drop bytes until its end.
    discarding: bool,
}

impl LineCodec {
    /// A codec with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes read from the port; returns the frames they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\r' | b'\n' => {
                    if self.discarding {
                        self.discarding = false;
                        out.push(Frame::Overlong);
                    } else if let Some(line) = self.take_line() {
                        out.push(Frame::Line(line));
                    }
                }
                _ if self.discarding => {}
                // Control bytes (NUL, XON/XOFF, stray Ctrl-Z echoes…) carry nothing.
                0x00..=0x08 | 0x0B | 0x0C | 0x0E..=0x1F | 0x7F => {}
                _ => {
                    if self.line.len() >= MAX_LINE {
                        self.line.clear();
                        self.discarding = true;
                    } else {
                        self.line.push(b);
                    }
                }
            }
        }
        if !self.discarding && self.line.first() == Some(&b'>') {
            let rest_is_blank = self
                .line
                .get(1..)
                .is_some_and(|r| r.iter().all(|b| *b == b' '));
            if rest_is_blank {
                self.line.clear();
                out.push(Frame::Prompt);
            }
        }
        out
    }

    /// Forgets a partial line (e.g. after a command timed out).
    pub fn reset(&mut self) {
        self.line.clear();
        self.discarding = false;
    }

    fn take_line(&mut self) -> Option<String> {
        let raw = std::mem::take(&mut self.line);
        let text = String::from_utf8_lossy(&raw);
        let trimmed = text.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_owned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<Frame> {
        v.iter().map(|s| Frame::Line((*s).to_owned())).collect()
    }

    #[test]
    fn crlf_framed_lines_and_blank_lines() {
        let mut c = LineCodec::new();
        assert_eq!(
            c.feed(b"\r\n+CPIN: READY\r\n\r\nOK\r\n"),
            lines(&["+CPIN: READY", "OK"])
        );
    }

    #[test]
    fn lines_split_across_reads() {
        let mut c = LineCodec::new();
        assert!(c.feed(b"\r\n+CM").is_empty());
        assert!(c.feed(b"TI: \"SM\",").is_empty());
        assert_eq!(c.feed(b"3\r"), lines(&["+CMTI: \"SM\",3"]));
        assert!(c.feed(b"\n").is_empty());
    }

    #[test]
    fn bare_lf_and_echo() {
        let mut c = LineCodec::new();
        assert_eq!(c.feed(b"ATE0\rOK\n"), lines(&["ATE0", "OK"]));
    }

    #[test]
    fn prompt_without_line_end() {
        let mut c = LineCodec::new();
        assert_eq!(c.feed(b"\r\n> "), vec![Frame::Prompt]);
        assert_eq!(c.feed(b"\r\n+CMGS: 7\r\n"), lines(&["+CMGS: 7"]));
        let mut c = LineCodec::new();
        assert_eq!(c.feed(b"\r\n>"), vec![Frame::Prompt]);
        // A line starting with '>' and more text is an ordinary line once it ends.
        let mut c = LineCodec::new();
        assert!(c.feed(b">x").is_empty());
        assert_eq!(c.feed(b"\r\n"), lines(&[">x"]));
    }

    #[test]
    fn garbage_never_panics_and_is_bounded() {
        let mut c = LineCodec::new();
        let noise: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let _ = c.feed(&noise);
        let mut c = LineCodec::new();
        let long = vec![b'A'; MAX_LINE * 3];
        assert!(c.feed(&long).is_empty());
        assert_eq!(
            c.feed(b"\r\nOK\r\n"),
            vec![Frame::Overlong, Frame::Line("OK".into())]
        );
        assert!(c.line.len() <= MAX_LINE);
    }

    #[test]
    fn invalid_utf8_and_controls() {
        let mut c = LineCodec::new();
        assert_eq!(
            c.feed(b"O\x00K\xff\r\n\x1a\x11\r\n"),
            lines(&["OK\u{FFFD}"])
        );
    }
}
