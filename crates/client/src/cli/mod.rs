//! The `airtext` command line: one module per command group, each with a clap `Args` or
//! `Subcommand` type and a `run` function writing to the given output.
//!
//! Exit codes: 0 success, 1 an error (one line on stderr: `airtext: error: …`), 2 a usage
//! error (clap's message and usage on stderr).
//!
//! To add a command group: create `cli/<group>.rs` with `Args`/`Command` and
//! `run(&args, out) -> anyhow::Result<()>`, add a variant to [`Command`] and a line to
//! [`Command::run`].

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod device;
pub mod pdu;
pub mod segments;

/// Exit code for a usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for any other error.
pub const EXIT_ERROR: u8 = 1;

/// Airtext: SMS over the internet.
#[derive(Debug, Parser)]
#[command(
    name = "airtext",
    version,
    about = "Airtext: SMS over the internet",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub globals: device::Globals,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show how a text would be sent: encoding (gsm7/ucs2), segment count and each segment.
    Segments(segments::Args),
    /// Decode and encode SMS PDUs in the hex form AT+CMGS / AT+CMGR use (SMSC field first).
    #[command(subcommand)]
    Pdu(pdu::Command),
    #[command(flatten)]
    Device(device::Command),
}

impl Command {
    /// Runs the command, writing its result to `out`.
    pub fn run(&self, globals: &device::Globals, out: &mut dyn Write) -> anyhow::Result<()> {
        match self {
            Command::Segments(args) => segments::run(args, out),
            Command::Pdu(cmd) => pdu::run(cmd, out),
            Command::Device(cmd) => device::run(cmd, globals, out),
        }
    }
}

/// Parses `args` (program name first) and runs the command; returns the exit code.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let text = e.render().to_string();
            let sink: &mut dyn Write = if e.use_stderr() { err } else { out };
            let _ = sink.write_all(text.as_bytes());
            return code;
        }
    };
    match cli
        .command
        .run(&cli.globals, out)
        .and_then(|()| out.flush().map_err(Into::into))
    {
        Ok(()) => 0,
        Err(e) => {
            let line = format!("{e:#}").replace(['\n', '\r'], " ");
            let _ = writeln!(err, "airtext: error: {line}");
            EXIT_ERROR
        }
    }
}

/// The entry point of the `airtext` binary.
pub fn main() -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = run(std::env::args_os(), &mut stdout.lock(), &mut stderr.lock());
    ExitCode::from(code)
}
