//! The `proxyconf-bench` binary: runs the whole benchmark suite and prints the figures table, or
//! one part of it (the bare server; a load against a given server).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use proxyconf_bench::{
    bare, client_runs, costs::CountingAllocator, fanout, load, percentiles, suite,
};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// proxyconf's benchmarks. Build the workspace's binaries first:
/// `cargo build --release --workspace --bins && target/release/proxyconf-bench all`.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every benchmark and print the figures table (Markdown).
    All {
        /// A tiny configuration that only proves everything runs (what CI does).
        #[arg(long)]
        smoke: bool,
        /// Also measure the fan-out to 100,000 subscribers over 1,000 connections (minutes).
        #[arg(long, conflicts_with = "smoke")]
        large_fan_out: bool,
    },
    /// Measure one Watch fan-out: one ConfigMap change on a Kubernetes API to every subscriber,
    /// and the server's memory per idle subscriber; then the same for the bare tonic floor.
    Fanout {
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
        #[arg(long, default_value_t = 100)]
        connections: usize,
    },
    /// Serve a constant answer (an encoded proxyconf.v1.Resolution) as fast as tonic can.
    BareServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long)]
        answer: PathBuf,
    },
    /// Run a command and print its wall time (ns) and peak RSS (KiB); used for `proxyconf env`.
    Measure {
        #[arg(required = true, last = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Load a running server (proxyconf-server or the bare one) with unary Resolve calls.
    Unary {
        /// HOST:PORT.
        #[arg(long)]
        server: String,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxyconf-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::All {
                smoke,
                large_fan_out,
            } => {
                let scale = if smoke {
                    suite::Scale::smoke()
                } else {
                    suite::Scale {
                        large_fan_out: large_fan_out.then_some((100_000, 1_000)),
                        ..suite::Scale::full()
                    }
                };
                let table = suite::run(&scale).await?;
                print!("{}", table.markdown());
            }
            Command::Fanout {
                subscribers,
                connections,
            } => {
                let streams = subscribers.to_string();
                let args = ["--max-watch-streams", streams.as_str()];
                let (real, answer) = fanout::kubernetes(subscribers, connections, &args).await?;
                let floor = fanout::bare(subscribers, connections, &answer).await?;
                for (what, measured) in [("proxyconf-server", real), ("bare tonic", floor)] {
                    println!(
                        "{what}: {subscribers} subscribers over {connections} connections: \
                         first {:?}, p50 {:?}, p99 {:?}; server CPU {:.1} µs per message; \
                         {:.2} KiB per idle subscriber",
                        measured.first,
                        measured.p50,
                        measured.p99,
                        measured.cpu_per_message_us(),
                        measured.per_subscriber_kib()
                    );
                }
            }
            Command::BareServer { listen, answer } => bare::serve(listen, &answer).await?,
            Command::Measure { command } => client_runs::measure(&command)?,
            Command::Unary {
                server,
                connections,
                concurrency,
                duration,
            } => {
                let channels = load::connect(&server, connections).await?;
                let (rps, mut latencies) =
                    load::closed_loop(&channels, concurrency, duration).await?;
                let (p50, p99) = percentiles(&mut latencies);
                println!("{rps:.0} requests/s, p50 {p50:?}, p99 {p99:?}");
            }
        }
        Ok::<_, anyhow::Error>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxyconf-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
