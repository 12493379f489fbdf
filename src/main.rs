//! The `pagegate` binary: parses the command line and hands over to [`pagegate::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    pagegate::cli::main(pagegate::cli::Cli::parse())
}
