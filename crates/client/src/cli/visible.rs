//! Text from other people (a sender's body, a device or contact name, a gateway's message)
//! shown on a terminal: control characters are drawn, never obeyed.
//!
//! Invariant: everything the CLI prints for people passes through [`visible`], so a remote
//! sender's ESC, BEL or CR cannot move the cursor, recolour, retitle or rewrite the terminal.
//! `--json` output is exact (JSON escapes control characters itself).
//!
//! - C0 controls (U+0000–U+001F) become their Unicode Control Pictures (ESC → `␛`,
//!   BEL → `␇`, CR → `␍`, NUL → `␀`); a line feed becomes `␤`, so one record stays on one
//!   line; a tab stays a tab (it moves the cursor forward only, and keeps columns readable).
//! - DEL (U+007F) becomes `␡`.
//! - C1 controls (U+0080–U+009F; U+009B is a one-byte CSI on some terminals) and the bidi
//!   overrides and isolates (U+202A–U+202E, U+2066–U+2069, which reorder what follows) are
//!   written as `<U+XXXX>`.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` safe to print on a terminal, on one line (borrowed when nothing needed drawing).
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_drawing) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push('\t'),
            '\n' => out.push('\u{2424}'),
            '\u{0}'..='\u{1f}' => out.push(char::from_u32(0x2400 + u32::from(c)).unwrap_or('?')),
            '\u{7f}' => out.push('\u{2421}'),
            c if needs_drawing(c) => {
                let _ = write!(out, "<U+{:04X}>", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_drawing(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c0_controls_become_control_pictures() {
        assert_eq!(visible("a\u{1b}[31mred\u{7}\rX"), "a␛[31mred␇␍X");
        assert_eq!(visible("\u{0}\u{1}\u{1f}\u{7f}"), "␀␁␟␡");
        assert_eq!(visible("\u{1b}]0;pwned\u{7}"), "␛]0;pwned␇");
    }

    #[test]
    fn a_line_feed_keeps_the_record_on_one_line_and_a_tab_stays() {
        assert_eq!(visible("one\ntwo"), "one␤two");
        assert_eq!(visible("a\tb"), "a\tb");
        assert_eq!(visible("crlf\r\n"), "crlf␍␤");
    }

    #[test]
    fn c1_controls_and_bidi_overrides_are_spelt_out() {
        assert_eq!(visible("\u{9b}31m"), "<U+009B>31m");
        assert_eq!(visible("abc\u{202e}txt.exe"), "abc<U+202E>txt.exe");
        assert_eq!(visible("\u{2066}x\u{2069}"), "<U+2066>x<U+2069>");
    }

    #[test]
    fn ordinary_text_is_untouched_and_borrowed() {
        for text in ["", "hello", "héllo 😀 €", "שלום עולם", "see you at 6 → ok"] {
            assert!(matches!(visible(text), Cow::Borrowed(t) if t == text));
        }
        // Every output char is printable (or a tab).
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(visible(&all)
            .chars()
            .all(|c| c == '\t' || !needs_drawing(c)));
    }
}
