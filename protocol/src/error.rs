#![forbid(unsafe_code)]
//! The error type of `pngcast-protocol`.

use thiserror::Error;

/// Everything the protocol layer itself refuses: a malformed wire message, a server
/// configuration out of range, or an encoder error from `pngcast-core`.
///
/// The enum is `#[non_exhaustive]`: new kinds may appear in minor releases.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A wire message could not be parsed ([`crate::wire::parse_binary`],
    /// [`crate::wire::parse_text`]).
    #[error("malformed wire message: {0}")]
    Wire(String),
    /// A [`crate::http::ServerConfig`] value is out of its documented range.
    #[error("invalid option: {0}")]
    InvalidConfig(String),
    /// An error from `pngcast-core` (tensor shapes, encode options), with its own message.
    #[error(transparent)]
    Core(#[from] pngcast_core::Error),
}

/// `Result` with [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_sources() {
        use std::error::Error as _;
        assert_eq!(
            Error::Wire("x".into()).to_string(),
            "malformed wire message: x"
        );
        assert_eq!(
            Error::InvalidConfig("port must be > 0".into()).to_string(),
            "invalid option: port must be > 0"
        );
        let core = pngcast_core::Error::UnsupportedChannels(7);
        let e = Error::from(core.clone());
        assert_eq!(e.to_string(), core.to_string());
        assert_eq!(e, Error::Core(core));
        assert!(
            e.source().is_none(),
            "transparent: the core error's own source"
        );
    }
}
