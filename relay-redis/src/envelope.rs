//! The binary envelope one Redis message carries: a frame (or a JSON text) and its target.
//!
//! Layout (integers big-endian; `str16` is a `u16` length then UTF-8 bytes):
//!
//! ```text
//! magic   4  b"PNGR"
//! version 1  1
//! kind    1  1 = image, 2 = text
//! flags   1  bit 0: announce (legacy announcement on); other bits 0
//! policy  1  0 = LatestWins, 1 = Reliable (the publisher's delivery policy, advisory)
//! target  1  0 = all, 1 = one client, then str16 clientId
//! image:  str16 event, u32 index, u32 count, u32 width, u32 height,
//!         5 x (u8 present, str16 if present): prompt_id, node_id, display_node_id,
//!         parent_node_id, real_node_id; then u32 png_len and the PNG (exactly to the end)
//! text:   u32 len and the UTF-8 text (exactly to the end)
//! ```
//!
//! The PNG travels as the wire carries it, so an edge rebuilds the same [`WireFrame`] with
//! [`WireFrame::new`], byte for byte what a local sender would have sent.

use std::sync::Arc;

use thiserror::Error;

use crate::core_api::{ImageMeta, Policy, Target, WireFrame};

/// First bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"PNGR";
/// Envelope version this crate writes and reads.
pub const VERSION: u8 = 1;

const KIND_IMAGE: u8 = 1;
const KIND_TEXT: u8 = 2;
const FLAG_ANNOUNCE: u8 = 1;

/// Why an envelope could not be read. The edge counts these and goes on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not a pngcast envelope (wrong magic).
    #[error("not a pngcast envelope")]
    BadMagic,
    /// A version this build does not read.
    #[error("unsupported envelope version {0}")]
    Version(u8),
    /// Ends before a field is complete.
    #[error("envelope truncated")]
    Truncated,
    /// A field holds a value no writer produces (unknown kind, flag, policy or target, bad
    /// UTF-8, bytes after the end).
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
}

/// What an envelope carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// An image frame, ready for `FrameSink::send_image`.
    Image(WireFrame),
    /// A text message (serialised JSON), ready for `FrameSink::send_text`.
    Text(Arc<str>),
}

/// A decoded envelope.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Who gets it.
    pub target: Target,
    /// The publisher's delivery policy (advisory: an edge delivers with its own server's policy).
    pub policy: Policy,
    /// The frame or text.
    pub payload: Payload,
}

fn put_str16(out: &mut Vec<u8>, s: &str) -> Result<(), EnvelopeError> {
    let len = u16::try_from(s.len()).map_err(|_| EnvelopeError::Malformed("string over 64 KiB"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_head(
    out: &mut Vec<u8>,
    kind: u8,
    flags: u8,
    policy: Policy,
    target: &Target,
) -> Result<(), EnvelopeError> {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.push(flags);
    out.push(match policy {
        Policy::Reliable => 1,
        _ => 0,
    });
    match target {
        Target::All => out.push(0),
        Target::Client(id) => {
            out.push(1);
            put_str16(out, id)?;
        }
    }
    Ok(())
}

/// Writes the envelope of an image frame into `out` (cleared first; its capacity is reused).
pub fn encode_image(
    out: &mut Vec<u8>,
    target: &Target,
    policy: Policy,
    frame: &WireFrame,
) -> Result<(), EnvelopeError> {
    let flags = if frame.announcement().is_some() {
        FLAG_ANNOUNCE
    } else {
        0
    };
    put_head(out, KIND_IMAGE, flags, policy, target)?;
    let m = frame.meta();
    put_str16(out, &m.event)?;
    for v in [m.index, m.count, m.width, m.height] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    for key in [
        &m.prompt_id,
        &m.node_id,
        &m.display_node_id,
        &m.parent_node_id,
        &m.real_node_id,
    ] {
        match key {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                put_str16(out, s)?;
            }
        }
    }
    let png = frame.png();
    let len = u32::try_from(png.len()).map_err(|_| EnvelopeError::Malformed("PNG over 4 GiB"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(png);
    Ok(())
}

/// Writes the envelope of a text message into `out` (cleared first).
pub fn encode_text(
    out: &mut Vec<u8>,
    target: &Target,
    policy: Policy,
    text: &str,
) -> Result<(), EnvelopeError> {
    put_head(out, KIND_TEXT, 0, policy, target)?;
    let len = u32::try_from(text.len()).map_err(|_| EnvelopeError::Malformed("text over 4 GiB"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        if self.buf.len() < n {
            return Err(EnvelopeError::Truncated);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, EnvelopeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn str16(&mut self) -> Result<&'a str, EnvelopeError> {
        let n = usize::from(self.u16()?);
        std::str::from_utf8(self.take(n)?).map_err(|_| EnvelopeError::Malformed("invalid UTF-8"))
    }
    fn opt_str16(&mut self) -> Result<Option<String>, EnvelopeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str16()?.to_owned())),
            _ => Err(EnvelopeError::Malformed("bad presence byte")),
        }
    }
    /// A u32-length field that must end exactly at the end of the envelope.
    fn tail(&mut self) -> Result<&'a [u8], EnvelopeError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        if !self.buf.is_empty() {
            return Err(EnvelopeError::Malformed("bytes after the end"));
        }
        Ok(b)
    }
}

/// Reads an envelope. Never panics; `max_payload` bounds the PNG or text it accepts.
pub fn decode(buf: &[u8], max_payload: usize) -> Result<Envelope, EnvelopeError> {
    let mut r = Reader { buf };
    if r.take(4)? != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    let kind = r.u8()?;
    let flags = r.u8()?;
    if flags & !FLAG_ANNOUNCE != 0 {
        return Err(EnvelopeError::Malformed("unknown flags"));
    }
    let policy = match r.u8()? {
        0 => Policy::LatestWins,
        1 => Policy::Reliable,
        _ => return Err(EnvelopeError::Malformed("unknown policy")),
    };
    let target = match r.u8()? {
        0 => Target::All,
        1 => Target::client(r.str16()?),
        _ => return Err(EnvelopeError::Malformed("unknown target")),
    };
    let payload = match kind {
        KIND_IMAGE => {
            let event = r.str16()?.to_owned();
            let (index, count, width, height) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
            let meta = ImageMeta {
                event,
                index,
                count,
                width,
                height,
                prompt_id: r.opt_str16()?,
                node_id: r.opt_str16()?,
                display_node_id: r.opt_str16()?,
                parent_node_id: r.opt_str16()?,
                real_node_id: r.opt_str16()?,
            };
            let png = r.tail()?;
            if png.len() > max_payload {
                return Err(EnvelopeError::Malformed(
                    "frame over the configured maximum",
                ));
            }
            Payload::Image(WireFrame::new(
                &meta,
                Arc::new(png.to_vec()),
                flags & FLAG_ANNOUNCE != 0,
            ))
        }
        KIND_TEXT => {
            if flags != 0 {
                return Err(EnvelopeError::Malformed("flags on a text"));
            }
            let text = r.tail()?;
            if text.len() > max_payload {
                return Err(EnvelopeError::Malformed("text over the configured maximum"));
            }
            let text =
                std::str::from_utf8(text).map_err(|_| EnvelopeError::Malformed("invalid UTF-8"))?;
            Payload::Text(Arc::from(text))
        }
        _ => return Err(EnvelopeError::Malformed("unknown kind")),
    };
    Ok(Envelope {
        target,
        policy,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(announce: bool) -> WireFrame {
        let meta = ImageMeta {
            event: "preview".into(),
            index: 1,
            count: 3,
            width: 7,
            height: 5,
            prompt_id: Some("p-1".into()),
            node_id: None,
            display_node_id: Some("9".into()),
            parent_node_id: None,
            real_node_id: Some("12".into()),
        };
        WireFrame::new(
            &meta,
            Arc::new(vec![0x89, b'P', b'N', b'G', 1, 2, 3]),
            announce,
        )
    }

    #[test]
    fn image_round_trip_rebuilds_the_same_wire_bytes() {
        for announce in [false, true] {
            for target in [Target::All, Target::client("abc")] {
                let f = frame(announce);
                let mut buf = Vec::new();
                encode_image(&mut buf, &target, Policy::Reliable, &f).unwrap();
                let env = decode(&buf, 1 << 20).unwrap();
                assert_eq!(env.target, target);
                assert_eq!(env.policy, Policy::Reliable);
                let Payload::Image(g) = env.payload else {
                    panic!("not an image")
                };
                assert_eq!(g.meta(), f.meta());
                assert_eq!(g.png(), f.png());
                assert_eq!(g.announcement(), f.announcement());
                assert_eq!(g.binary_message(true), f.binary_message(true));
                assert_eq!(g.binary_message(false), f.binary_message(false));
            }
        }
    }

    #[test]
    fn text_round_trip() {
        let mut buf = Vec::new();
        encode_text(
            &mut buf,
            &Target::client("x"),
            Policy::LatestWins,
            "{\"type\":\"a\"}",
        )
        .unwrap();
        let env = decode(&buf, 1 << 20).unwrap();
        assert_eq!(env.target, Target::client("x"));
        let Payload::Text(t) = env.payload else {
            panic!("not a text")
        };
        assert_eq!(&*t, "{\"type\":\"a\"}");
    }

    #[test]
    fn every_truncation_and_random_bytes_are_errors_not_panics() {
        let mut buf = Vec::new();
        encode_image(
            &mut buf,
            &Target::client("c"),
            Policy::LatestWins,
            &frame(true),
        )
        .unwrap();
        for n in 0..buf.len() {
            assert!(decode(&buf[..n], 1 << 20).is_err(), "prefix {n} accepted");
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert!(decode(&longer, 1 << 20).is_err());
        assert_eq!(
            decode(&buf, 3).unwrap_err(),
            EnvelopeError::Malformed("frame over the configured maximum")
        );
        let mut rng = fastrand::Rng::with_seed(7);
        let mut accepted = 0;
        for i in 0..20_000 {
            let mut b = buf.clone();
            // Flip 1..4 random bytes, or keep the valid head and randomise the rest.
            if i % 2 == 0 {
                for _ in 0..rng.usize(1..5) {
                    let at = rng.usize(..b.len());
                    b[at] = rng.u8(..);
                }
            } else {
                let keep = rng.usize(..b.len());
                b.truncate(keep);
                let extra = rng.usize(..64);
                b.extend((0..extra).map(|_| rng.u8(..)));
            }
            if decode(&b, 1 << 20).is_ok() {
                accepted += 1;
            }
        }
        // Flips inside the PNG or the metadata values still make a valid envelope; the point is
        // that nothing panicked. Most mutations must be rejected.
        assert!(accepted < 20_000);
        let mut junk = vec![0u8; 256];
        for _ in 0..5_000 {
            let n = rng.usize(..junk.len());
            junk.iter_mut().for_each(|b| *b = rng.u8(..));
            assert!(decode(&junk[..n], 1 << 20).is_err());
        }
    }
}
