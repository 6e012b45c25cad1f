//! crius: a Kubernetes CRI runtime.

mod config;
mod container;
mod error;
mod grpc;
mod image;
mod monitor;
mod runtime;
mod sandbox;
mod store;

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
    /// Internal: the per-pod monitor, started by the daemon.
    #[command(hide = true)]
    Monitor(monitor::MonitorArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the default configuration, every field documented.
    Default,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Daemon) {
        // The monitor must fork before any thread exists: dispatch it first.
        Command::Monitor(args) => monitor::run(args),
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
                Ok(cfg) => {
                    let _ = cfg;
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("crius: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
