//! crius: a Kubernetes CRI runtime.

mod apparmor;
mod config;
mod container;
mod daemon;
mod error;
mod events;
mod fault;
mod grpc;
mod id;
mod image;
mod monitor;
mod runtime;
mod sandbox;
mod stats;
mod store;
mod streaming;
mod task;
#[cfg(test)]
mod testutil;
mod validation;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "crius", version, about = "A Kubernetes CRI container runtime")]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the CRI daemon in the foreground (the default).
    Daemon,
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the default configuration, every field documented.
    Default,
}

fn main() -> ExitCode {
    // The monitor is dispatched before anything else: it must fork before any thread
    // exists, and it keeps its footprint small by never running clap.
    let mut argv = std::env::args_os().skip(1);
    if argv.next().is_some_and(|a| a == "monitor") {
        return match monitor::MonitorArgs::parse(argv) {
            Ok(args) => monitor::run(args),
            Err(e) => {
                eprintln!("crius monitor: {e}");
                ExitCode::from(2)
            }
        };
    }
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Daemon) {
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::Daemon => {
            let (path, explicit) = match cli.config {
                Some(p) => (p, true),
                None => (PathBuf::from(config::DEFAULT_CONFIG_PATH), false),
            };
            match config::Config::load(&path, explicit) {
                Ok(cfg) => run_daemon(cfg),
                Err(e) => {
                    eprintln!("crius: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_daemon(cfg: config::Config) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Two workers match the small machines crius targets; blocking work (mounts,
    // namespace setup, file I/O) goes to the blocking pool.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crius: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(daemon::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "crius failed");
            ExitCode::FAILURE
        }
    }
}
