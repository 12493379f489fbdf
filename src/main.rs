//! The `pagegate` binary: parses the command line and hands over to [`pagegate::cli`].

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's allocator: measured in `bench/hop.sh`, see README "Figures".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    pagegate::cli::main(pagegate::cli::Cli::parse())
}
