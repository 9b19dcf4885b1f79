//! `kforge-sim`: one simulated Talos node.

fn main() -> std::process::ExitCode {
    kforge_sim::command::main(std::env::args_os())
}
