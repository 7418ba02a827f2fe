//! The `pngcast` command line.
//!
//! One module per subcommand: adding one is a `mod` line, a [`Command`] variant and a match arm in
//! [`run`]. Every failure, usage errors included, ends as one `pngcast: error: ...` line on stderr
//! and exit code 2; `--help` and `--version` print to stdout and exit 0.
#![forbid(unsafe_code)]
// Argument doc comments are the command-line help: `[B,H,W,C]` there is text, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

mod encode;
mod error;
mod ingest;
mod logging;
mod npy;
mod output;
mod pngin;
mod recv;
mod serve;
mod source;

use std::process::ExitCode;

use std::sync::OnceLock;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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

/// `pngcast --version`: the version, the build, and the SIMD kernels this CPU runs.
fn version_long() -> &'static str {
    static LONG: OnceLock<String> = OnceLock::new();
    LONG.get_or_init(|| {
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        let commit = option_env!("PNGCAST_GIT_COMMIT")
            .map(|c| format!(", commit {c}"))
            .unwrap_or_default();
        format!(
            "{} ({profile} build for {}{commit})\nconversion kernel: {}\nfast coder kernel: {}",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH,
            pngcast_core::convert::kernel_name(),
            pngcast_core::png::fast_kernel_name(),
        )
    })
}

fn main() -> ExitCode {
    let command = Cli::command().long_version(version_long());
    let cli = match command
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
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
