//! `pngcast recv`: save what a ComfyUI-protocol WebSocket server streams (pngcast's or ComfyUI's).
//!
//! Images are written as `DIR/<event>_<index>_<seq>.png` (`event` is `image` when the server does
//! not name it, as ComfyUI's own nodes don't; `seq` counts images from 0 in this run); JPEG
//! previews (type 1 with format 1, or type 4 with `image/jpeg`) as `.jpg`. Every JSON message
//! goes to `DIR/events.jsonl` as received (`{"type": .., "data": ..}`), and each saved image adds
//! a `{"type": "pngcast.image", "data": {"file", "event", "index", "bytes", "metadata"}}` line,
//! `metadata` being what the server said about the image exactly as it said it (the type-4 JSON,
//! or the announcement's `data`), so the log says what arrived in which order.
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
    fn line(&mut self, v: &Value) -> Result<(), CliError> {
        serde_json::to_writer(&mut self.out, v)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .and_then(|()| self.out.flush())
            .map_err(|e| CliError::new(format!("cannot write {}: {e}", self.path.display())))
    }
}

/// Runs `pngcast recv`.
pub fn run(args: RecvArgs) -> Result<(), CliError> {
    let url = normalise_url(&args.url);
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
    let file = File::create(&path)
        .map_err(|e| CliError::new(format!("cannot create {}: {e}", path.display())))?;
    let mut log = Log {
        out: BufWriter::new(file),
        path,
    };
    eprintln!("pngcast: connected to {url} as {}", client.sid());

    let mut saved = 0u64;
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
            Some(Event::Json { kind, data }) => log.line(&json!({ "type": kind, "data": data }))?,
            Some(Event::Image {
                event,
                index,
                metadata_json,
                png,
                ..
            }) => {
                let name = event.as_deref().unwrap_or("image");
                let ext = extension(&png);
                let file = format!(
                    "{}_{}_{saved:06}.{ext}",
                    file_stem(name),
                    index.unwrap_or(0)
                );
                let dest = args.out.join(&file);
                save(&dest, &png)?;
                log.line(&json!({
                    "type": "pngcast.image",
                    "data": { "file": file, "event": event, "index": index, "bytes": png.len(),
                              "metadata": metadata_json.unwrap_or(Value::Null) },
                }))?;
                println!("{}", dest.display());
                saved += 1;
            }
            Some(Event::Other { kind, bytes }) if is_jpeg_preview(kind, &bytes) => {
                // ComfyUI's JPEG preview: type 1, format 1, then the JPEG file.
                let jpeg = &bytes[8..];
                let file = format!("image_0_{saved:06}.jpg");
                let dest = args.out.join(&file);
                save(&dest, jpeg)?;
                log.line(&json!({
                    "type": "pngcast.image",
                    "data": { "file": file, "event": Value::Null, "index": Value::Null,
                              "bytes": jpeg.len(), "metadata": Value::Null },
                }))?;
                println!("{}", dest.display());
                saved += 1;
            }
            Some(Event::Other { kind, bytes }) => log.line(&json!({
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
    fn event_names_become_safe_file_names() {
        assert_eq!(file_stem("preview"), "preview");
        assert_eq!(file_stem("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(file_stem(""), "image");
        assert_eq!(file_stem(".hidden"), "_hidden");
        assert_eq!(file_stem("a b/c\u{e9}"), "a_b_c_");
        assert_eq!(file_stem(&"x".repeat(500)).len(), MAX_NAME);
    }
}
