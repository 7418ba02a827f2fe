//! Reading a request head: a resumable parser with a size limit, and its errors.

#[allow(unused_imports)]
use super::*;

/// Why a request head could not be read. Each maps to an HTTP answer ([`HttpError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Not an HTTP/1.x request head.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The head grew past the limit without ending.
    #[error("request head exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl HttpError {
    /// 400 for malformed requests, 431 for oversized heads.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) => 400,
            HttpError::TooLarge { .. } => 431,
        }
    }
    /// The complete response to send before closing.
    pub fn response(&self) -> Vec<u8> {
        refusal_response(self.status(), &self.to_string())
    }
}

/// A parsed HTTP request head: method, target, version and headers, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method, e.g. `GET`.
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// HTTP minor version (`1` for HTTP/1.1).
    pub version: u8,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

pub(super) const MAX_HEADERS: usize = 64;

impl RequestHead {
    /// Reads a head from the start of `buf` with the default 8 KiB limit. See
    /// [`Self::parse_with_limit`].
    pub fn parse(buf: &[u8]) -> std::result::Result<Option<(RequestHead, usize)>, HttpError> {
        Self::parse_with_limit(buf, DEFAULT_MAX_HANDSHAKE_BYTES)
    }

    /// Reads a head from the start of `buf`: `Ok(Some((head, len)))` when complete (`len` bytes
    /// consumed), `Ok(None)` when more bytes are needed, an error for a malformed head, more than
    /// 64 headers, or no end within `max_bytes`.
    pub fn parse_with_limit(
        buf: &[u8],
        max_bytes: usize,
    ) -> std::result::Result<Option<(RequestHead, usize)>, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                if len > max_bytes {
                    return Err(HttpError::TooLarge { limit: max_bytes });
                }
                let mut hs = Vec::with_capacity(req.headers.len());
                for h in req.headers.iter() {
                    let v = std::str::from_utf8(h.value).map_err(|_| {
                        HttpError::Malformed(format!("header `{}` is not UTF-8", h.name))
                    })?;
                    hs.push((h.name.to_owned(), v.trim().to_owned()));
                }
                let head = RequestHead {
                    method: req.method.unwrap_or_default().to_owned(),
                    target: req.path.unwrap_or_default().to_owned(),
                    version: req.version.unwrap_or(0),
                    headers: hs,
                };
                Ok(Some((head, len)))
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() >= max_bytes {
                    Err(HttpError::TooLarge { limit: max_bytes })
                } else {
                    Ok(None)
                }
            }
            Err(httparse::Error::TooManyHeaders) => Err(HttpError::Malformed(format!(
                "more than {MAX_HEADERS} headers"
            ))),
            Err(e) => Err(HttpError::Malformed(e.to_string())),
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many headers are named `name` (case-insensitive).
    pub fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The percent-decoded value of the first query parameter `name`.
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, q) = self.target.split_once('?')?;
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k).as_deref() == Some(name))
                .then(|| percent_decode(v))
                .flatten()
        })
    }

    /// True when a comma-separated header holds `token` (case-insensitive), e.g. `Connection:
    /// keep-alive, Upgrade`.
    pub(super) fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Decodes `%XX` escapes and `+` (as a space); `None` for bad escapes or invalid UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
