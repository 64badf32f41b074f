//! Shell integration from the same definitions as the parser: `airtext completions SHELL`
//! (bash, zsh, fish, elvish, PowerShell) and `airtext man` (a roff man page).

use std::io::Write;

use clap::CommandFactory;

use super::Cli;

/// Arguments of `airtext completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    pub shell: clap_complete::Shell,
}

/// Prints the completion script for `args.shell`.
pub fn completions(args: &CompletionsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "airtext", out);
    Ok(())
}

/// Prints the man page (section 1).
pub fn man(out: &mut dyn Write) -> anyhow::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)?;
    Ok(())
}
