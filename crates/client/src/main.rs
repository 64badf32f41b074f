//! `airtext`: the command-line client. All the work is in [`airtext_client::cli`].
fn main() -> std::process::ExitCode {
    airtext_client::cli::main()
}
