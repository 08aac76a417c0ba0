//! The `proxyconf` binary: parses flags and runs the client on a single-threaded runtime.

use std::process::ExitCode;

use clap::{Parser, error::ErrorKind};

fn main() -> ExitCode {
    let cli = match proxyconf::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxyconf: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(proxyconf::run(cli)) {
        Ok(code) => code,
        Err(proxyconf::exit::Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("proxyconf: error: {failure}");
            failure.exit_code()
        }
    }
}

/// Prints clap's message (help and version too) and, for a usage error of `env`, the shell failure
/// guard on stdout: `eval "$(proxyconf env --misspelt-flag)"` must stop a `set -e` script as any
/// other failure of `env` does.
fn usage_error(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return ExitCode::SUCCESS;
    }
    if std::env::args_os().skip(1).any(|arg| arg == "env") {
        print!(
            "{}",
            proxyconf::render::shell_failure_guard(proxyconf::exit::USAGE)
        );
    }
    ExitCode::from(proxyconf::exit::USAGE)
}
