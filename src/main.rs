//! The `ferry` binary: parse the command line, run, turn the outcome into an
//! exit status. Everything else is in the library and in `cli/`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
