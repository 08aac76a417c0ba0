//! The `proxyconf` binary: parses flags and runs the client on a single-threaded runtime.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = proxyconf::cli::Cli::parse();
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
        Err(failure) => {
            eprintln!("proxyconf: error: {failure}");
            failure.exit_code()
        }
    }
}
