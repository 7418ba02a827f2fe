//! The `pngcast` command line.
//!
//! One module per subcommand: adding one is a `mod` line, a [`Command`] variant and a match arm in
//! [`run`]. Every failure, usage errors included, ends as one `pngcast: error: ...` line on stderr
//! and exit code 2; `--help` and `--version` print to stdout and exit 0.
#![forbid(unsafe_code)]

mod encode;
mod error;
mod logging;
mod npy;
mod output;
mod pngin;
mod recv;
mod serve;
mod source;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

/// Exit code of every failure (bad input, bad option, unwritable output, usage error).
const EXIT_FAILURE: u8 = 2;

/// pngcast: image tensors to PNG frames, fast.
#[derive(Debug, Parser)]
#[command(name = "pngcast", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Encode a .npy tensor (f32, f16, u8) or a PNG into PNG file(s).
    Encode(encode::EncodeArgs),
    /// Stream frames (the demo scene, or files) to WebSocket clients and serve the live viewer.
    Serve(serve::ServeArgs),
    /// Save the images and events a ComfyUI-protocol WebSocket server streams.
    Recv(recv::RecvArgs),
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Encode(args) => encode::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Recv(args) => recv::run(args),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return error::report_clap(e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pngcast: error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
