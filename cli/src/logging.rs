//! Log lines of `pngcast serve`: timestamped and levelled, on stderr, as text or JSON lines,
//! through `log` and `env_logger`.
//!
//! The level comes from `-v` / `-q` (info by default; `-v` debug, `-vv` trace; `-q` warnings
//! only, `-qq` errors only), or from `RUST_LOG` when it is set (it wins, with env_logger's
//! syntax, e.g. `RUST_LOG=pngcast=debug`).
#![forbid(unsafe_code)]

use std::io::Write;

use clap::ValueEnum;
use log::LevelFilter;

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-01-31T12:00:00.123Z INFO  pngcast: message`
    Text,
    /// One JSON object per line: `{"ts": .., "level": .., "target": .., "msg": ..}`.
    Json,
}

/// The level for `-v` given `verbose` times and `-q` given `quiet` times.
pub fn level(verbose: u8, quiet: u8) -> LevelFilter {
    match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-2 => LevelFilter::Error,
        -1 => LevelFilter::Warn,
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Installs the logger (once per process; later calls change nothing).
pub fn init(level: LevelFilter, format: LogFormat) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    match format {
        LogFormat::Text => b.format(|buf, r| {
            writeln!(
                buf,
                "{} {:<5} pngcast: {}",
                buf.timestamp_millis(),
                r.level(),
                r.args()
            )
        }),
        LogFormat::Json => b.format(|buf, r| {
            let line = serde_json::json!({
                "ts": buf.timestamp_millis().to_string(),
                "level": r.level().as_str(),
                "target": r.target(),
                "msg": r.args().to_string(),
            });
            writeln!(buf, "{line}")
        }),
    };
    let _ = b.try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(level(0, 0), LevelFilter::Info);
        assert_eq!(level(1, 0), LevelFilter::Debug);
        assert_eq!(level(3, 0), LevelFilter::Trace);
        assert_eq!(level(0, 1), LevelFilter::Warn);
        assert_eq!(level(0, 5), LevelFilter::Error);
        assert_eq!(level(1, 1), LevelFilter::Info);
    }
}
