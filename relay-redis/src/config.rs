//! The broker address: `redis://[user[:password]@]host[:port][/db][?namespace=NAME]`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use thiserror::Error;

/// Why a relay could not start or a call was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The URL is not a usable Redis URL (the message never holds the password).
    #[error("bad Redis URL: {0}")]
    Url(String),
    /// The password file could not be read.
    #[error("cannot read the Redis password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Redis could not be reached or refused us (authentication included).
    #[error("cannot reach Redis at {addr}: {source}")]
    Connect {
        /// host:port, never the password.
        addr: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// A thread could not be started.
    #[error("cannot start the relay thread: {0}")]
    Thread(std::io::Error),
}

/// A parsed broker address with its namespace. `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct RedisUrl {
    pub(crate) info: redis::ConnectionInfo,
    namespace: String,
    display: String,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// Namespace when the URL names none.
pub const DEFAULT_NAMESPACE: &str = "default";

impl RedisUrl {
    /// Parses `redis://` (or `rediss://` with the `tls` feature) URLs. The query parameter
    /// `namespace` (letters, digits, `-`, `_`, `.`; default `default`) is ours and removed
    /// before the client sees the URL.
    pub fn parse(url: &str) -> Result<RedisUrl, RelayError> {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut namespace = DEFAULT_NAMESPACE.to_owned();
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("namespace", v)) => namespace = v.to_owned(),
                _ => rest.push(pair),
            }
        }
        if namespace.is_empty()
            || namespace.len() > 64
            || !namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(RelayError::Url(
                "namespace must be 1 to 64 of A-Z a-z 0-9 - _ .".into(),
            ));
        }
        let client_url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let info = redis::IntoConnectionInfo::into_connection_info(client_url.as_str())
            .map_err(|e| RelayError::Url(redact(&e.to_string())))?;
        let display = format!("{} (namespace {namespace})", info.addr());
        Ok(RedisUrl {
            info,
            namespace,
            display,
        })
    }

    /// Replaces the password by the first line of `path` (for `--redis-password-file`).
    pub fn with_password_file(mut self, path: &Path) -> Result<RedisUrl, RelayError> {
        let text = std::fs::read_to_string(path).map_err(|source| RelayError::PasswordFile {
            path: path.display().to_string(),
            source,
        })?;
        let password = text.lines().next().unwrap_or("").trim_end_matches('\r');
        let settings = self.info.redis_settings().clone().set_password(password);
        self.info = self.info.set_redis_settings(settings);
        Ok(self)
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The pub/sub channel of this namespace.
    pub fn channel(&self) -> String {
        format!("pngcast:{}:frames", self.namespace)
    }

    /// The key holding the newest frame of `event` sent to everyone.
    pub fn latest_key(&self, event: &str) -> String {
        format!("pngcast:{}:latest:{event}", self.namespace)
    }

    /// The set of events that have a newest-frame key.
    pub fn events_key(&self) -> String {
        format!("pngcast:{}:events", self.namespace)
    }

    pub(crate) fn connect(&self, timeout: Duration) -> Result<redis::Connection, RelayError> {
        // An error means a provider is installed already: the application's choice stands.
        #[cfg(feature = "tls")]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = redis::Client::open(self.info.clone()).map_err(|e| self.err(e))?;
        let con = client
            .get_connection_with_timeout(timeout)
            .map_err(|e| self.err(e))?;
        con.set_write_timeout(Some(timeout))
            .map_err(|e| self.err(e))?;
        con.set_read_timeout(Some(timeout))
            .map_err(|e| self.err(e))?;
        Ok(con)
    }

    pub(crate) fn err(&self, source: redis::RedisError) -> RelayError {
        RelayError::Connect {
            addr: self.info.addr().to_string(),
            source,
        }
    }
}

/// Error texts from URL parsing may quote the URL: keep only what precedes any `@`.
fn redact(s: &str) -> String {
    if s.contains('@') {
        "the URL could not be parsed (details withheld: it may hold a password)".into()
    } else {
        s.to_owned()
    }
}

/// Doubling backoff between `min` and `max`.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            next: min,
            min,
            max,
        }
    }
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let u =
            RedisUrl::parse("redis://alice:s3cret@127.0.0.1:6390/2?namespace=studio-a").unwrap();
        assert_eq!(u.namespace(), "studio-a");
        assert_eq!(u.channel(), "pngcast:studio-a:frames");
        assert_eq!(u.latest_key("preview"), "pngcast:studio-a:latest:preview");
        assert_eq!(u.info.redis_settings().password(), Some("s3cret"));
        assert_eq!(u.info.redis_settings().username(), Some("alice"));
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(RedisUrl::parse("redis://h/?namespace=a:b").is_err());
        assert!(RedisUrl::parse("redis://h/?namespace=").is_err());
        assert_eq!(RedisUrl::parse("redis://h").unwrap().namespace(), "default");
        let e = RedisUrl::parse("nope://u:s3cret@h")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn password_file_replaces_the_password() {
        let dir = std::env::temp_dir().join(format!("pngcast-pw-{}", std::process::id()));
        std::fs::write(&dir, "from-file\nignored\n").unwrap();
        let u = RedisUrl::parse("redis://127.0.0.1:1")
            .unwrap()
            .with_password_file(&dir)
            .unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(u.info.redis_settings().password(), Some("from-file"));
        assert!(RedisUrl::parse("redis://h")
            .unwrap()
            .with_password_file(&dir)
            .is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(35));
        let v: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(v, [10, 20, 35, 35]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 10);
    }
}
