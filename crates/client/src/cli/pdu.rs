//! `airtext pdu …`: SMS PDUs as hex, SMSC-address field first (`00` = the modem's SMSC), the
//! form `AT+CMGS` and `AT+CMGR` use in PDU mode.

use std::io::Write;

use super::visible::visible;

use anyhow::{bail, Context};
use serde::Serialize;

use airtext_sms::tpdu::{self, Decoded, SubmitOptions, TpAddress, Tpdu, Validity};
use airtext_sms::udh::Concat;
use airtext_sms::{Address, Region};

/// `airtext pdu` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Decode an SMS-DELIVER, SMS-SUBMIT or SMS-STATUS-REPORT.
    #[command(
        after_help = "Example:\n  airtext pdu decode 0791136200000000040B911346610089F60000208062917314080CC8F71D14969741F977FD07"
    )]
    Decode(DecodeArgs),
    /// Encode a text as SMS-SUBMIT PDUs, one per segment.
    #[command(after_help = "Example:\n  airtext pdu encode-submit --to +14155550100 'Hello'")]
    EncodeSubmit(EncodeSubmitArgs),
}

/// Arguments of `airtext pdu decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// Print JSON: {"type", "from", "to", "text", "timestamp", "concat", ...}.
    #[arg(long)]
    pub json: bool,
    /// The PDU in hex, starting with the SMSC field.
    pub hex: String,
}

/// Arguments of `airtext pdu encode-submit`.
#[derive(Debug, clap::Args)]
pub struct EncodeSubmitArgs {
    /// The recipient: +E.164, a short code, or a national number with --region.
    #[arg(long, value_name = "NUMBER")]
    pub to: String,
    /// Region (ISO 3166 code, e.g. US) for reading a national --to number.
    #[arg(long)]
    pub region: Option<String>,
    /// The concatenation reference shared by the parts (0-255).
    #[arg(long, default_value_t = 0)]
    pub reference: u8,
    /// TP-MR of each PDU (a modem assigns its own).
    #[arg(long, default_value_t = 0)]
    pub message_reference: u8,
    /// Request a delivery receipt (TP-SRR).
    #[arg(long)]
    pub status_report: bool,
    /// Relative validity period in minutes (rounded up to what TP-VP can say).
    #[arg(long, value_name = "MINUTES")]
    pub validity: Option<u32>,
    /// SMSC number to put in front instead of 00.
    #[arg(long, value_name = "NUMBER")]
    pub smsc: Option<String>,
    /// Print JSON: {"pdus": [{"hex", "tpdu_length"}]}.
    #[arg(long)]
    pub json: bool,
    /// The message text.
    pub text: String,
}

/// Runs an `airtext pdu` subcommand.
pub fn run(cmd: &Command, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        Command::Decode(a) => decode(a, out),
        Command::EncodeSubmit(a) => encode_submit(a, out),
    }
}

/// The JSON form of a decoded PDU.
#[derive(Debug, Serialize)]
pub struct DecodedJson {
    /// "deliver", "submit" or "status-report".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The sender (SMS-DELIVER).
    pub from: Option<String>,
    /// The recipient (SMS-SUBMIT, SMS-STATUS-REPORT).
    pub to: Option<String>,
    /// The text, when there is user data.
    pub text: Option<String>,
    /// RFC 3339: TP-SCTS of a DELIVER or STATUS-REPORT.
    pub timestamp: Option<String>,
    /// Concatenation element, or null.
    pub concat: Option<Concat>,
    /// "gsm7", "8bit" or "ucs2", when there is user data.
    pub encoding: Option<tpdu::Alphabet>,
    /// The SMSC address, or null for 00.
    pub smsc: Option<String>,
    /// Octets of the TPDU.
    pub tpdu_length: usize,
    /// TP-MR (SUBMIT, STATUS-REPORT).
    pub message_reference: Option<u8>,
    /// TP-SRR (SUBMIT) / TP-SRI (DELIVER).
    pub status_report: Option<bool>,
    /// Relative TP-VP in minutes (SUBMIT).
    pub validity_minutes: Option<u32>,
    /// TP-DT, RFC 3339 (STATUS-REPORT).
    pub discharge_time: Option<String>,
    /// TP-ST (STATUS-REPORT).
    pub status: Option<u8>,
    /// "delivered", "pending" or "failed" (STATUS-REPORT).
    pub status_class: Option<tpdu::StatusClass>,
}

fn to_json(d: &Decoded) -> DecodedJson {
    let mut j = DecodedJson {
        kind: d.tpdu.kind(),
        from: None,
        to: None,
        text: None,
        timestamp: None,
        concat: None,
        encoding: None,
        smsc: d.smsc.as_ref().map(ToString::to_string),
        tpdu_length: d.tpdu_length,
        message_reference: None,
        status_report: None,
        validity_minutes: None,
        discharge_time: None,
        status: None,
        status_class: None,
    };
    match &d.tpdu {
        Tpdu::Deliver(m) => {
            j.from = Some(m.originator.to_string());
            j.text = Some(m.text());
            j.timestamp = Some(m.timestamp.to_rfc3339());
            j.concat = m.concat();
            j.encoding = Some(m.user_data.alphabet);
            j.status_report = Some(m.status_report_indication);
        }
        Tpdu::Submit(m) => {
            j.to = Some(m.destination.to_string());
            j.text = Some(m.text());
            j.concat = m.user_data.concat();
            j.encoding = Some(m.user_data.alphabet);
            j.message_reference = Some(m.message_reference);
            j.status_report = Some(m.status_report_request);
            j.validity_minutes = m.validity.and_then(|v| v.relative_minutes());
        }
        Tpdu::StatusReport(m) => {
            j.to = Some(m.recipient.to_string());
            j.text = m.user_data.as_ref().map(|u| u.text());
            j.concat = m.user_data.as_ref().and_then(|u| u.concat());
            j.encoding = m.user_data.as_ref().map(|u| u.alphabet);
            j.timestamp = Some(m.sc_timestamp.to_rfc3339());
            j.message_reference = Some(m.message_reference);
            j.discharge_time = Some(m.discharge_time.to_rfc3339());
            j.status = Some(m.status);
            j.status_class = Some(m.class());
        }
    }
    j
}

fn decode(args: &DecodeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let decoded = tpdu::decode_hex_with_smsc(&args.hex).context("cannot decode the PDU")?;
    let j = to_json(&decoded);
    if args.json {
        serde_json::to_writer(&mut *out, &j)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "type: {}", j.kind)?;
    let lines: [(&str, Option<String>); 12] = [
        ("smsc", j.smsc.clone()),
        ("from", j.from.clone()),
        ("to", j.to.clone()),
        ("timestamp", j.timestamp.clone()),
        ("discharge time", j.discharge_time.clone()),
        (
            "status",
            j.status.zip(j.status_class).map(|(s, c)| {
                format!(
                    "0x{s:02X} ({})",
                    serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )
            }),
        ),
        (
            "message reference",
            j.message_reference.map(|r| r.to_string()),
        ),
        (
            "validity",
            j.validity_minutes.map(|m| format!("{m} minutes")),
        ),
        (
            "encoding",
            j.encoding
                .and_then(|e| serde_json::to_value(e).ok())
                .and_then(|v| v.as_str().map(str::to_owned)),
        ),
        (
            "concat",
            j.concat
                .map(|c| format!("part {}/{} ref {}", c.seq, c.total, c.reference)),
        ),
        ("tpdu length", Some(j.tpdu_length.to_string())),
        ("text", j.text.clone()),
    ];
    for (name, value) in lines {
        if let Some(v) = value {
            writeln!(out, "{name}: {}", visible(&v))?;
        }
    }
    Ok(())
}

/// One PDU in the JSON form of `encode-submit`.
#[derive(Debug, Serialize)]
pub struct PduJson {
    /// SMSC field + TPDU, upper-case hex.
    pub hex: String,
    /// Octets of the TPDU (the `AT+CMGS=` argument).
    pub tpdu_length: usize,
}

/// The JSON form of `encode-submit`.
#[derive(Debug, Serialize)]
pub struct EncodeSubmitJson {
    /// One per segment, in order.
    pub pdus: Vec<PduJson>,
}

fn destination(to: &str, region: Option<&str>) -> anyhow::Result<String> {
    let region: Option<Region> = region.map(str::parse).transpose()?;
    match Address::parse(to, region)? {
        Address::Phone(n) | Address::ShortCode(n) => Ok(n),
        other => bail!("{other} is not a phone number; an SMS PDU needs one"),
    }
}

fn encode_submit(args: &EncodeSubmitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let to = destination(&args.to, args.region.as_deref())?;
    let smsc = args
        .smsc
        .as_deref()
        .map(|s| {
            TpAddress::phone(&destination(s, args.region.as_deref())?).map_err(anyhow::Error::from)
        })
        .transpose()?;
    let opts = SubmitOptions {
        message_reference: args.message_reference,
        concat_reference: args.reference,
        status_report_request: args.status_report,
        validity: args.validity.map(Validity::from_minutes),
        reject_duplicates: false,
        smsc,
    };
    let pdus = tpdu::encode_submit(&to, &args.text, &opts)?;
    let j = EncodeSubmitJson {
        pdus: pdus
            .iter()
            .map(|p| PduJson {
                hex: p.hex(),
                tpdu_length: p.tpdu_length,
            })
            .collect(),
    };
    if args.json {
        serde_json::to_writer(&mut *out, &j)?;
        writeln!(out)?;
        return Ok(());
    }
    for p in &j.pdus {
        writeln!(out, "AT+CMGS={}", p.tpdu_length)?;
        writeln!(out, "{}", p.hex)?;
    }
    Ok(())
}
