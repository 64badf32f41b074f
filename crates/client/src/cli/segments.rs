//! `airtext segments [--json] TEXT`: how a text would go out as SMS.

use std::io::Write;

use super::visible::visible;

use serde::Serialize;

/// Arguments of `airtext segments`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON: {"encoding", "segments", "parts", "chars_left", "units"}.
    #[arg(long)]
    pub json: bool,
    /// The message text (quote it).
    pub text: String,
}

/// The JSON form.
#[derive(Debug, Serialize)]
pub struct Output<'a> {
    /// "gsm7" or "ucs2".
    pub encoding: airtext_sms::Encoding,
    /// Number of segments.
    pub segments: usize,
    /// The exact text of each segment.
    pub parts: &'a [String],
    /// Units left in the current segment.
    pub chars_left: usize,
    /// Units (septets or UTF-16 units) of the whole text.
    pub units: usize,
}

/// Runs `airtext segments`.
pub fn run(args: &Args, out: &mut dyn Write) -> anyhow::Result<()> {
    let plan = airtext_sms::plan(&args.text);
    if args.json {
        let o = Output {
            encoding: plan.encoding,
            segments: plan.segment_count(),
            parts: &plan.segments,
            chars_left: plan.chars_left,
            units: plan.units,
        };
        serde_json::to_writer(&mut *out, &o)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "encoding: {}", plan.encoding)?;
    writeln!(out, "segments: {}", plan.segment_count())?;
    writeln!(out, "chars left: {}", plan.chars_left)?;
    let total = plan.segment_count();
    for (i, part) in plan.segments.iter().enumerate() {
        writeln!(
            out,
            "part {}/{}: {}",
            i.saturating_add(1),
            total,
            visible(part)
        )?;
    }
    Ok(())
}
