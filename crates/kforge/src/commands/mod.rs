//! One module per command; each calls library functions and reports through `report`.

mod demo;
mod gencommand;
mod genconfig;
mod gensecret;
mod init;
mod nodeconfig;
mod schema;
mod sops;
mod talos;
mod up;
mod validate;

use std::collections::HashMap;

use anyhow::Result;
use clap::CommandFactory;
use kforge_spec::{LoadOptions, Loaded};

use crate::Outcome;
use crate::cli::{Cli, ClusterFileArgs, Command};
use crate::files::FsReader;

pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Gensecret(a) => gensecret::run(&a),
        Command::Genconfig(a) => genconfig::run(&a),
        Command::Validate(a) => match &a.command {
            Some(crate::cli::ValidateCommand::Nodeconfig(n)) => nodeconfig::run(n),
            None => validate::run(&a),
        },
        Command::Gencommand(a) => gencommand::run(&a),
        Command::Talos(c) => talos::run(&c),
        Command::Up(a) => up::up(&a, a.generate.dry_run),
        Command::Plan(a) => up::up(&a, true),
        Command::Health(a) => up::health(&a),
        Command::Drill(crate::cli::DrillCommand::Failover(a)) => up::drill(&a),
        Command::Demo(a) => demo::run(&a),
        Command::Sops(c) => sops::run(&c),
        Command::Init(a) => init::run(&a),
        Command::Schema => schema::run(),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kforge", &mut std::io::stdout());
            Ok(Outcome::Success)
        }
    }
}

/// Loads the cluster file named on the command line.
pub fn load_cluster(args: &ClusterFileArgs, no_substitute: bool, reader: &FsReader) -> Loaded {
    let opts = LoadOptions {
        env_files: args.env_file.clone(),
        no_substitute,
        strict: args.strict,
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    kforge_spec::load(&args.config_file, &opts, reader, env)
}
