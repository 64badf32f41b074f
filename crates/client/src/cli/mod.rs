//! The `airtext` command line: one module per command group, each with a clap `Args` or
//! `Subcommand` type and a `run` function writing to the given output.
//!
//! Exit codes ([`exit`]): 0 done, 1 refused (one line on stderr: `airtext: error: …`), 2 a
//! usage error (clap's message and usage on stderr), 3 queued for later, 4 gateway
//! unreachable.
//!
//! To add a command group: create `cli/<group>.rs` with `Args`/`Command` and
//! `run(&args, out) -> anyhow::Result<()>`, add a variant to [`Command`] and a line to
//! [`Command::run`]. Every command's help ends with an example, and docs/cli.md lists every
//! command (`tests/cli.rs` checks both).
//!
//! Everything printed for people passes through [`visible::visible`]: text from others
//! cannot drive the terminal. `--json` output is exact.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod account;
pub mod device;
pub mod exit;
pub mod pdu;
pub mod segments;
pub mod shell;
pub mod visible;

/// What `airtext --help` ends with: examples, and the exit codes scripts branch on.
const AFTER_HELP: &str = "\
Examples:
  airtext --gateway https://sms.example.org signup alice   (password from AIRTEXT_PASSWORD)
  airtext send @bob 'see you at 6'
  airtext conversations
  airtext messages @bob --json
  airtext --offline search station
  airtext completions bash > ~/.local/share/bash-completion/completions/airtext

Exit codes:
  0  done
  1  refused or failed (one line on standard error says why)
  2  usage: the command line is wrong
  3  queued: the text is in this device's outbox and will be sent (do not send it again)
  4  the gateway could not be reached (nothing changed there; try again later)

Every command is listed in docs/cli.md; `airtext man` prints the man page.";

/// Airtext: SMS over the internet.
#[derive(Debug, Parser)]
#[command(
    name = "airtext",
    version,
    about = "Airtext: SMS over the internet",
    after_help = AFTER_HELP,
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
    #[command(after_help = "Example:\n  airtext segments 'Hello €, see you at 6'")]
    Segments(segments::Args),
    /// Decode and encode SMS PDUs in the hex form AT+CMGS / AT+CMGR use (SMSC field first).
    #[command(
        subcommand,
        after_help = "Example:\n  airtext pdu encode-submit --to +14155550100 'Hello'"
    )]
    Pdu(pdu::Command),
    #[command(flatten)]
    Device(device::Command),
    /// Print a completion script for a shell.
    #[command(
        after_help = "Examples:\n  airtext completions bash > ~/.local/share/bash-completion/completions/airtext\n  \
                            airtext completions zsh > ~/.zfunc/_airtext\n  \
                            airtext completions fish > ~/.config/fish/completions/airtext.fish"
    )]
    Completions(shell::CompletionsArgs),
    /// Print the man page (roff) of airtext or of one command.
    #[command(
        after_help = "Examples:\n  airtext man > ~/.local/share/man/man1/airtext.1\n  \
                            airtext man numbers release | man -l -"
    )]
    Man(shell::ManArgs),
}

impl Command {
    /// Runs the command, writing its result to `out`.
    pub fn run(&self, globals: &device::Globals, out: &mut dyn Write) -> anyhow::Result<()> {
        match self {
            Command::Segments(args) => segments::run(args, out),
            Command::Pdu(cmd) => pdu::run(cmd, out),
            Command::Device(cmd) => device::run(cmd, globals, out),
            Command::Completions(args) => shell::completions(args, out),
            Command::Man(args) => shell::man(args, out),
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
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::DONE
            };
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
        Ok(()) => exit::DONE,
        Err(e) => {
            let code = exit::code_for(&e);
            let line = format!("{e:#}").replace(['\n', '\r'], " ");
            let line = visible::visible(&line);
            let kind = if code == exit::QUEUED {
                "note"
            } else {
                "error"
            };
            let _ = writeln!(err, "airtext: {kind}: {line}");
            code
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
