//! `paperclipd`: parse, dispatch, print an error once, map it to the
//! documented exit code. The parts live in the library (`src/lib.rs`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match paperclipd::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and exit 0; real usage
            // errors exit 2, as documented.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match paperclipd::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            paperclipd::print_error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}
