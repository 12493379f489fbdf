//! The `pagegate` binary: parses the command line and hands over to [`pagegate::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    pagegate::run(pagegate::Cli::parse())
}
