//! The `codex-gate` binary: parse the command line and hand over to [`codex_gate::commands::main`].

use clap::Parser;
use codex_gate::cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    codex_gate::commands::main(Cli::parse())
}
