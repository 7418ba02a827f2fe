//! `pngcast recv`: save what a ComfyUI-protocol WebSocket server streams (pngcast's or ComfyUI's).
//!
//! Images are written as `DIR/<event>_<index>_<seq>.png` (`event` is `image` when the server does
//! not name it, as ComfyUI's own nodes don't; `seq` counts images from 0); JPEG previews (type 1
//! with format 1, or type 4 with `image/jpeg`) as `.jpg`.
//!
//! `DIR/events.jsonl` has one JSON object per line, in arrival order, each with `t`, the receive
//! time in seconds since the Unix epoch (millisecond precision):
//! - every JSON text message (announcements of type-1 frames included) as
//!   `{"t": 1733312345.123, "raw": "<the message>"}`: `raw` is the message text verbatim, as a
//!   JSON string, so parsing the line gives back every byte the server sent (key order, spacing,
//!   number spelling);
//! - each saved image as `{"t": .., "type": "pngcast.image", "data": {"file", "event", "index",
//!   "bytes", "metadata"}}`, `metadata` being what the server said about the image (the type-4
//!   JSON, or the announcement's `data`);
//! - each other binary message as `{"t": .., "type": "pngcast.binary", "data": {"kind", "bytes"}}`;
//! - first of each run, `{"t": .., "type": "pngcast.connected", "data": {"url", "sid",
//!   "first_seq"}}`, so the runs of an `--append`ed log stay apart.
//!
//! A line holds `raw` or `type`, never both. A run never overwrites or mixes with another: a
//! `DIR` that exists and is not empty is refused, unless `--append`, which continues the image
//! numbering after the highest `seq` found in `DIR` and appends to `events.jsonl`.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use pngcast_blocking::client::{Client, ClientOptions, Event};
use serde_json::{json, Value};

use crate::error::CliError;

/// Longest event name kept in a file name.
const MAX_NAME: usize = 64;

/// Arguments of `pngcast recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    /// Server WebSocket URL, e.g. ws://127.0.0.1:8188/ws (http:// means ws://; no path means /ws).
    #[arg(value_name = "URL")]
    url: String,

    /// Directory to write into (created if missing).
    #[arg(short, long = "output", value_name = "DIR")]
    out: PathBuf,

    /// Exit after saving N images (default: until the server closes the connection).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

    /// Declare `supports_preview_metadata`, so a server that supports it sends type-4 frames with
    /// JSON metadata (event name, index, size) instead of type-1 frames.
    #[arg(long)]
    metadata: bool,

    /// The clientId to ask for (default: the server makes one).
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,

    /// Shared token, sent as `Authorization: Bearer`.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,

    /// Add to a DIR that holds an earlier run: image numbers continue after the highest found,
    /// events.jsonl is appended to. Without it a non-empty DIR is refused.
    #[arg(long)]
    append: bool,
}

/// `ws://` form of what the user typed: `http(s)://` becomes `ws(s)://`, a missing path `/ws`.
fn normalise_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => ("ws", rest),
        Some(("https", rest)) => ("wss", rest),
        Some((s, rest)) => (s, rest),
        None => ("ws", url),
    };
    if rest.contains('/') {
        format!("{scheme}://{rest}")
    } else if let Some((host, query)) = rest.split_once('?') {
        format!("{scheme}://{host}/ws?{query}")
    } else {
        format!("{scheme}://{rest}/ws")
    }
}

/// An event name made safe for a file name: `[A-Za-z0-9_.-]`, at most [`MAX_NAME`] bytes, never
/// empty, never starting with a dot.
fn file_stem(event: &str) -> String {
    let mut s: String = event
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME)
        .collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    if s.is_empty() {
        s.push_str("image");
    }
    s
}

/// Writes the log lines, flushed one by one so a killed `recv` leaves whole lines.
struct Log {
    out: BufWriter<File>,
    path: PathBuf,
}

impl Log {
    /// Writes the object `v` with the receive time `t` as its first key.
    fn line(&mut self, v: Value) -> Result<(), CliError> {
        let body = v.to_string();
        let rest = body.strip_prefix('{').unwrap_or("}");
        let sep = if rest == "}" { "" } else { "," };
        writeln!(self.out, "{{\"t\":{}{sep}{rest}", now())
            .and_then(|()| self.out.flush())
            .map_err(|e| CliError::new(format!("cannot write {}: {e}", self.path.display())))
    }
}

/// Seconds since the Unix epoch, rounded to milliseconds.
fn now() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64) / 1e3
}

/// The `seq` of a saved image's file name, `<stem>_<index>_<seq>.png|jpg`.
fn seq_of(name: &str) -> Option<u64> {
    let stem = name
        .strip_suffix(".png")
        .or_else(|| name.strip_suffix(".jpg"))?;
    let (rest, seq) = stem.rsplit_once('_')?;
    let (_, index) = rest.rsplit_once('_')?;
    if seq.len() < 6 || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok()
}

/// The first `seq` of this run: 0 into a missing or empty directory; after an earlier run's
/// highest with `--append`; a non-empty directory is refused otherwise.
fn first_seq(dir: &Path, append: bool) -> Result<u64, CliError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(CliError::new(format!("cannot read {}: {e}", dir.display()))),
    };
    let mut any = false;
    let mut next = 0;
    for entry in entries {
        let entry =
            entry.map_err(|e| CliError::new(format!("cannot read {}: {e}", dir.display())))?;
        any = true;
        if let Some(seq) = entry.file_name().to_str().and_then(seq_of) {
            next = next.max(seq + 1);
        }
    }
    if any && !append {
        return Err(CliError::new(format!(
            "{} is not empty (an earlier run?): give --append to add to it, or another --output",
            dir.display()
        )));
    }
    Ok(next)
}

/// Runs `pngcast recv`.
pub fn run(args: RecvArgs) -> Result<(), CliError> {
    let url = normalise_url(&args.url);
    // Checked before connecting: a refused directory costs no connection.
    let first = first_seq(&args.out, args.append)?;
    let mut options = ClientOptions::default().metadata(args.metadata);
    if let Some(id) = &args.client_id {
        options = options.client_id(id.clone());
    }
    if let Some(t) = &args.token {
        options = options.token(t.clone());
    }
    let mut client = Client::connect(&url, options)
        .map_err(|e| CliError::new(format!("cannot connect to {url}: {e}")))?;
    // Created only once connected, so a failed connection leaves no empty directory behind.
    std::fs::create_dir_all(&args.out)
        .map_err(|e| CliError::new(format!("cannot create {}: {e}", args.out.display())))?;
    let path = args.out.join("events.jsonl");
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| CliError::new(format!("cannot open {}: {e}", path.display())))?;
    let mut log = Log {
        out: BufWriter::new(file),
        path,
    };
    eprintln!("pngcast: connected to {url} as {}", client.sid());
    log.line(json!({
        "type": "pngcast.connected",
        "data": { "url": url, "sid": client.sid(), "first_seq": first },
    }))?;

    let mut saved = 0u64;
    let mut seq = first;
    while args.count.is_none_or(|n| saved < n) {
        let event = client
            .next_event()
            .map_err(|e| CliError::new(format!("connection to {url} failed: {e}")))?;
        match event {
            None => {
                let code = client
                    .close_code()
                    .map_or("none".to_owned(), |c| c.to_string());
                return match args.count {
                    Some(n) => Err(CliError::new(format!(
                        "server closed the connection (code {code}) after {saved} of {n} images"
                    ))),
                    None => {
                        eprintln!("pngcast: server closed the connection (code {code}); {saved} images saved");
                        Ok(())
                    }
                };
            }
            Some(Event::Json { raw, .. }) => log.line(json!({ "raw": raw }))?,
            Some(Event::Image {
                event,
                index,
                metadata_json,
                announcement,
                png,
                ..
            }) => {
                if let Some(raw) = announcement {
                    log.line(json!({ "raw": raw }))?;
                }
                let name = event.as_deref().unwrap_or("image");
                let ext = extension(&png);
                let file = format!("{}_{}_{seq:06}.{ext}", file_stem(name), index.unwrap_or(0));
                let dest = args.out.join(&file);
                save(&dest, &png)?;
                log.line(json!({
                    "type": "pngcast.image",
                    "data": { "file": file, "event": event, "index": index, "bytes": png.len(),
                              "metadata": metadata_json.unwrap_or(Value::Null) },
                }))?;
                println!("{}", dest.display());
                saved += 1;
                seq += 1;
            }
            Some(Event::Other { kind, bytes }) if is_jpeg_preview(kind, &bytes) => {
                // ComfyUI's JPEG preview: type 1, format 1, then the JPEG file.
                let jpeg = &bytes[8..];
                let file = format!("image_0_{seq:06}.jpg");
                let dest = args.out.join(&file);
                save(&dest, jpeg)?;
                log.line(json!({
                    "type": "pngcast.image",
                    "data": { "file": file, "event": Value::Null, "index": Value::Null,
                              "bytes": jpeg.len(), "metadata": Value::Null },
                }))?;
                println!("{}", dest.display());
                saved += 1;
                seq += 1;
            }
            Some(Event::Other { kind, bytes }) => log.line(json!({
                "type": "pngcast.binary",
                "data": { "kind": kind, "bytes": bytes.len() },
            }))?,
            Some(_) => {}
        }
    }
    let _ = client.close();
    eprintln!("pngcast: {saved} images saved in {}", args.out.display());
    Ok(())
}

/// `jpg` for a JPEG file (it starts FF D8 FF), else `png`.
fn extension(image: &[u8]) -> &'static str {
    if image.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "jpg"
    } else {
        "png"
    }
}

/// A type-1 message with format 1 (JPEG) and a JPEG file after its 8-byte header.
fn is_jpeg_preview(kind: u32, bytes: &[u8]) -> bool {
    kind == 1 && bytes.get(4..8) == Some(&[0, 0, 0, 1][..]) && bytes.len() > 8
}

/// Writes `bytes` to `dest` through a temporary name, so a failure leaves no partial file.
fn save(dest: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let tmp = dest.with_extension("part");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, dest))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CliError::new(format!("cannot write {}: {e}", dest.display()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised() {
        assert_eq!(normalise_url("ws://h:1/ws"), "ws://h:1/ws");
        assert_eq!(normalise_url("http://h:1"), "ws://h:1/ws");
        assert_eq!(normalise_url("https://h/api/ws"), "wss://h/api/ws");
        assert_eq!(normalise_url("h:8188"), "ws://h:8188/ws");
        assert_eq!(normalise_url("ws://h:1?token=x"), "ws://h:1/ws?token=x");
    }

    #[test]
    fn jpeg_previews_are_recognised() {
        assert_eq!(extension(b"\x89PNG\r\n\x1a\n"), "png");
        assert_eq!(extension(&[0xFF, 0xD8, 0xFF, 0xE0]), "jpg");
        assert!(is_jpeg_preview(1, &[0, 0, 0, 1, 0, 0, 0, 1, 0xFF, 0xD8]));
        assert!(!is_jpeg_preview(1, &[0, 0, 0, 1, 0, 0, 0, 2, 0x89]));
        assert!(!is_jpeg_preview(1, &[0, 0, 0, 1, 0, 0, 0, 1]));
        assert!(!is_jpeg_preview(3, &[0, 0, 0, 3, 0, 0, 0, 1, 0xFF]));
    }

    #[test]
    fn seqs_are_read_from_saved_names() {
        assert_eq!(seq_of("preview_0_000041.png"), Some(41));
        assert_eq!(seq_of("a_b_3_1234567.jpg"), Some(1_234_567));
        assert_eq!(seq_of("image_0_000002.jpg"), Some(2));
        assert_eq!(seq_of("events.jsonl"), None);
        assert_eq!(seq_of("x_0_12.png"), None);
        assert_eq!(seq_of("x_y_000001.png"), None);
        assert_eq!(seq_of("000001.png"), None);
    }

    #[test]
    fn event_names_become_safe_file_names() {
        assert_eq!(file_stem("preview"), "preview");
        assert_eq!(file_stem("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(file_stem(""), "image");
        assert_eq!(file_stem(".hidden"), "_hidden");
        assert_eq!(file_stem("a b/c\u{e9}"), "a_b_c_");
        assert_eq!(file_stem(&"x".repeat(500)).len(), MAX_NAME);
    }
}
