//! Shell integration from the same definitions as the parser: `airtext completions SHELL`
//! (bash, zsh, fish, elvish, PowerShell) and `airtext man [COMMAND]` (roff man pages).

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

/// Arguments of `airtext man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// A command to print the page of (e.g. `send`, `numbers release`) [default: airtext's].
    pub command: Vec<String>,
}

/// Prints the man page (section 1) of `airtext` or of one of its commands.
pub fn man(args: &ManArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut command = Cli::command();
    // Built, each command's display name is its path (`airtext-numbers-release`): the title.
    command.build();
    let mut path = "airtext".to_owned();
    for word in &args.command {
        let Some(sub) = command.find_subcommand(word).cloned() else {
            anyhow::bail!("`{path}` has no command {word:?} (see `{path} --help`)");
        };
        path = format!("{path} {word}");
        command = sub;
    }
    clap_mangen::Man::new(command).render(out)?;
    Ok(())
}
