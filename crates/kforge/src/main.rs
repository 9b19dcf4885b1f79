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

/// The hidden first argument that makes this binary a simulated Talos node (`kforge-sim`),
/// so `kforge demo` needs no second executable.
pub const SIM_NODE_ARG: &str = "__sim-node";

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == SIM_NODE_ARG)
    {
        let rest = std::env::args_os().skip(2);
        return kforge_sim::command::main(std::iter::once("kforge-sim".into()).chain(rest));
    }
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
