//! The `kforge` command. Thin: parse arguments, call the command, render what went wrong in
//! one place, exit with 0 (success), 1 (failure) or 2 (usage error).

mod cli;
mod commands;
mod files;
mod report;

use std::process::ExitCode;

use clap::Parser;

/// How a command ended.
pub enum Outcome {
    Success,
    /// The command ran and found problems it already reported.
    Failure,
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::from(1),
        Err(e) => {
            let hint = e
                .chain()
                .find_map(|c| c.downcast_ref::<report::Hinted>())
                .and_then(|h| h.hint.clone());
            eprint!("{}", report::render_error(&e, hint.as_deref()));
            ExitCode::from(1)
        }
    }
}
