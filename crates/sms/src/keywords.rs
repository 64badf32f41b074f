//! Opt-out and help keywords on inbound messages (the CTIA / carrier conventions that US
//! short codes and 10DLC numbers must honour).
//!
//! Only the whole body counts: `"stop"` and `"  Stop \n"` are STOP; `"please stop"` and
//! `"STOP!"` are not. Case (ASCII) and surrounding whitespace are ignored.

use serde::{Deserialize, Serialize};

/// What an inbound body asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keyword {
    /// Opt out: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT.
    Stop,
    /// Opt back in: START, UNSTOP, YES.
    Start,
    /// Ask for help: HELP, INFO.
    Help,
    /// An ordinary message.
    None,
}

const STOP: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
const START: &[&str] = &["START", "UNSTOP", "YES"];
const HELP: &[&str] = &["HELP", "INFO"];

/// Classifies an inbound body.
pub fn classify(body: &str) -> Keyword {
    let word = body.trim();
    let is = |list: &[&str]| list.iter().any(|k| k.eq_ignore_ascii_case(word));
    if is(STOP) {
        Keyword::Stop
    } else if is(START) {
        Keyword::Start
    } else if is(HELP) {
        Keyword::Help
    } else {
        Keyword::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_in_any_case_with_whitespace() {
        for (list, kw) in [
            (STOP, Keyword::Stop),
            (START, Keyword::Start),
            (HELP, Keyword::Help),
        ] {
            for k in list {
                assert_eq!(classify(k), kw, "{k}");
                assert_eq!(classify(&k.to_lowercase()), kw, "{k}");
                assert_eq!(classify(&format!(" \t{}\r\n", k.to_lowercase())), kw);
            }
        }
        assert_eq!(classify("Stop"), Keyword::Stop);
        assert_eq!(classify("\u{a0}unsubscribe\u{3000}"), Keyword::Stop);
    }

    #[test]
    fn only_the_whole_body_counts() {
        for body in [
            "",
            "   ",
            "please stop",
            "stop it",
            "STOP!",
            "S T O P",
            "stopp",
            "help me",
            "yes please",
            "ſtop",
        ] {
            assert_eq!(classify(body), Keyword::None, "{body:?}");
        }
    }
}
