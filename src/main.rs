use clap::Parser;

fn main() -> std::process::ExitCode {
    kafka_tasks::cli::run(kafka_tasks::cli::Cli::parse())
}
