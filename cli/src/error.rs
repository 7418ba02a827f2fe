//! The CLI's error: one human line naming the problem.

use std::fmt;
use std::process::ExitCode;

use clap::error::ErrorKind;

/// A failure the user can act on. Its `Display` is always a single line (newlines of wrapped
/// messages are folded into spaces), printed as `pngcast: error: <message>`.
#[derive(Debug)]
pub struct CliError(String);

impl CliError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        CliError(msg.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&one_line(&self.0))
    }
}

impl From<pngcast_core::Error> for CliError {
    fn from(e: pngcast_core::Error) -> Self {
        CliError(e.to_string())
    }
}

/// Folds a possibly multi-line message into one line.
pub fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reports a clap parse result that is not a parsed command line: help and version go to stdout
/// with exit 0; a bare `pngcast` prints the help to stderr; every other usage error becomes one
/// `pngcast: error: ...` line. All failures exit 2.
pub fn report_clap(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Printing to a closed stdout is not worth a second error.
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(crate::EXIT_FAILURE)
        }
        _ => {
            let rendered = e.render().to_string();
            let msg = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            eprintln!("pngcast: error: {msg} (see `pngcast --help`)");
            ExitCode::from(crate::EXIT_FAILURE)
        }
    }
}
