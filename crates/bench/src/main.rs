//! `kafka-tasks-bench`: measures a `kafka-tasks` server (see the library's documentation). A
//! binary of its own so that the service does not carry the load generator.

use std::process::ExitCode;

use clap::Parser;

/// Measure kafka-tasks: seeds a store, starts the server, drives it over loopback.
#[derive(Parser)]
#[command(name = "kafka-tasks-bench", version)]
struct Cli {
    #[command(flatten)]
    args: kafka_tasks_bench::BenchArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAFKA_TASKS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kafka_tasks_bench::run(cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
