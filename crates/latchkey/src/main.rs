#![forbid(unsafe_code)]
//! `latchkey`: wires the command line to the token service.

mod access_line;
mod cli;
mod cluster;
mod crd;
mod error;
mod files;
mod hash_password;
mod keys_command;
mod load_error;
mod log_buffer;
mod logging;
mod observe;
// Issue 13
mod rotate_secret;
mod self_signed;
mod service_account_api;
mod serving;
mod shards;
mod standalone;
mod tokens_command;
// Issue 13: registration in a cluster.
mod registration_cluster;
mod registration_resource;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One crypto provider for the whole process, installed before anything uses TLS.
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("latchkey: a TLS crypto provider was already installed");
        return std::process::ExitCode::FAILURE;
    }
    // Held to the end: dropping it writes out every queued log line.
    let mut log = None;
    let result = match cli.command {
        Command::Standalone(args) => start_logging(&args.serve, &mut log)
            .and_then(|()| runtime()?.block_on(standalone::run(args))),
        Command::Keys(args) => runtime().and_then(|rt| rt.block_on(keys_command::run(args))),
        Command::Run(args) => start_logging(&args.serve, &mut log)
            .and_then(|()| runtime()?.block_on(cluster::run(args))),
        // Issue 13
        Command::Clients(args) => runtime().and_then(|rt| rt.block_on(rotate_secret::run(args))),
        Command::Tokens(args) => runtime().and_then(|rt| rt.block_on(tokens_command::run(args))),
        // Only prints: no logging, no runtime.
        Command::Crd(args) => crd::print(args.kind),
        Command::HashPassword => hash_password::run(),
    };
    let code = match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "latchkey stopped");
            eprintln!("latchkey: {e}");
            std::process::ExitCode::FAILURE
        }
    };
    drop(log);
    code
}

fn start_logging(
    args: &cli::ServeArgs,
    guard: &mut Option<logging::LogGuard>,
) -> Result<(), error::Error> {
    *guard = Some(logging::init(
        args.log_format,
        &args.log_level,
        args.log_buffer_lines,
    )?);
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, error::Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(error::Error::Runtime)
}
