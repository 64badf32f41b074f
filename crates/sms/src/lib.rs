//! SMS knowledge with no I/O.
//!
//! Everything that decides how a text looks on the air lives here, so the gateway, the
//! client's modem backend and the composer preview agree byte for byte:
//! - [`address`]: E.164 phone numbers, short codes, `@usernames` and e-mail addresses, normalised.
//! - [`gsm7`], [`ucs2`]: the GSM 03.38 default alphabet with its extension table and septet
//!   packing (3GPP TS 23.038), and UTF-16 for everything else.
//! - [`plan()`]: encoding choice and segmentation (160/153 septets, 70/67 units) with the
//!   exact text of every segment; [`Plan::encode`] gives each segment's bytes for SMPP.
//! - [`udh`]: the User Data Header and its concatenation elements (3GPP TS 23.040 §9.2.3.24).
//! - [`tpdu`]: SMS-SUBMIT, SMS-DELIVER and SMS-STATUS-REPORT (3GPP TS 23.040 §9.2).
//! - [`reassembly`]: joining concatenated parts that arrive in any order.
//! - [`keywords`]: STOP / START / HELP.
//! - [`emergency`]: emergency numbers, which no text is sent to.
//!
//! Nothing here panics on any input text or bytes.

pub mod address;
pub mod emergency;
pub mod gsm7;
pub mod keywords;
pub mod plan;
pub mod reassembly;
pub mod tpdu;
pub mod ucs2;
pub mod udh;

pub use address::{Address, AddressError, Region};
pub use emergency::is_emergency_number;
pub use keywords::{classify, Keyword};
pub use plan::{plan, EncodedSegment, Encoding, Plan, PlanError};
pub use reassembly::{GivenUp, Message, Part, Push, Reassembler};
