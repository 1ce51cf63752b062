//! `roar`: one binary, one subcommand per role.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
