#![forbid(unsafe_code)]
//! A 64-bit LSB-first bit writer over a pre-sized byte buffer.
//!
//! Every write stores the whole 64-bit accumulator (8 bytes, unaligned) and then advances by
//! the number of complete bytes: no branch on "is the buffer full". After a write at most 7 bits
//! stay pending, so one write may carry up to 56 bits. The buffer must have 8 bytes of slack past
//! the last byte that will be written; the caller sizes it (a bounds check guards the rest).

/// Bits pending in `acc` never exceed 7 between writes, so a write may add up to this many.
pub(crate) const MAX_WRITE_BITS: u32 = 56;

/// Anything that takes LSB-first bits: the checked [`BitWriter`], or a kernel's own unchecked
/// writer for its hot loop (see [`BitWriter::tail`]).
pub(crate) trait Bits {
    /// Appends the low `n` bits of `bits` (n <= 56; bits above n must be zero).
    fn write(&mut self, bits: u64, n: u32);
}

impl Bits for BitWriter<'_> {
    #[inline(always)]
    fn write(&mut self, bits: u64, n: u32) {
        BitWriter::write(self, bits, n)
    }
}

/// Where a [`BitWriter`] stands, apart from its buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterState {
    pos: usize,
    acc: u64,
    nbits: u32,
}

/// The writer. `buf` is owned by the caller's scratch and reused across stripes.
#[derive(Debug)]
pub(crate) struct BitWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
    acc: u64,
    nbits: u32,
}

impl<'a> BitWriter<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            acc: 0,
            nbits: 0,
        }
    }

    /// Moves the writer out (leaving an empty one), so a hot loop can keep it in registers: a
    /// writer reached through `&mut` is reloaded from memory after every store to the buffer.
    /// Put it back with plain assignment.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub fn detach(&mut self) -> BitWriter<'a> {
        BitWriter {
            buf: std::mem::take(&mut self.buf),
            pos: self.pos,
            acc: self.acc,
            nbits: self.nbits,
        }
    }

    /// Appends the low `n` bits of `bits` (n <= 56; bits above n must be zero).
    #[inline(always)]
    pub fn write(&mut self, bits: u64, n: u32) {
        debug_assert!(n <= MAX_WRITE_BITS);
        debug_assert!(n == 64 || bits >> n == 0);
        self.acc |= bits << self.nbits;
        self.nbits += n;
        self.buf[self.pos..self.pos + 8].copy_from_slice(&self.acc.to_le_bytes());
        let bytes = self.nbits >> 3;
        self.pos += bytes as usize;
        self.nbits &= 7;
        // bytes <= 7, so the shift is < 64.
        self.acc >>= bytes * 8;
    }

    /// The unwritten rest of the buffer (from the byte that holds the pending bits) and the
    /// pending bits (`acc`, `nbits`), for a kernel that runs its own write loop. Hand the result
    /// back with [`BitWriter::resume`].
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub fn tail(&mut self) -> (&mut [u8], u64, u32) {
        (&mut self.buf[self.pos..], self.acc, self.nbits)
    }

    /// Continues after a kernel completed `bytes` whole bytes of [`BitWriter::tail`] and left
    /// `nbits < 8` bits pending in `acc`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub fn resume(&mut self, bytes: usize, acc: u64, nbits: u32) {
        assert!(nbits < 8 && self.pos + bytes + 8 <= self.buf.len());
        self.pos += bytes;
        self.acc = acc;
        self.nbits = nbits;
    }

    /// Bytes of buffer from its start (what was written and the room left).
    pub fn room(&self) -> usize {
        self.buf.len()
    }

    /// The writer's state without its buffer, to continue on a longer one (the same bytes
    /// extended) with [`BitWriter::continue_on`].
    pub fn into_state(self) -> WriterState {
        WriterState {
            pos: self.pos,
            acc: self.acc,
            nbits: self.nbits,
        }
    }

    /// Continues `state` on `buf`, whose first bytes are those the writer wrote before.
    pub fn continue_on(buf: &'a mut [u8], state: WriterState) -> Self {
        assert!(state.pos <= buf.len());
        Self {
            buf,
            pos: state.pos,
            acc: state.acc,
            nbits: state.nbits,
        }
    }

    /// Pads with zero bits to a byte boundary.
    pub fn align(&mut self) {
        if self.nbits != 0 {
            self.write(0, 8 - self.nbits);
        }
    }

    /// Bytes written so far, counting a partial byte as whole.
    pub fn len_bytes(&self) -> usize {
        self.pos + (self.nbits != 0) as usize
    }

    /// Bits written so far.
    #[cfg(test)]
    pub fn len_bits(&self) -> u64 {
        self.pos as u64 * 8 + self.nbits as u64
    }

    /// Aligns and returns the number of bytes written.
    pub fn finish(mut self) -> usize {
        self.align();
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_lsb_first() {
        let mut buf = vec![0u8; 64];
        let mut w = BitWriter::new(&mut buf);
        w.write(0b1, 1);
        w.write(0b10, 2);
        w.write(0x1F, 5);
        w.write(0xABCD, 16);
        w.write((1 << 56) - 1, 56);
        w.write(0b101, 3);
        let n = w.finish();
        assert_eq!(n, (1 + 2 + 5 + 16 + 56 + 3u32).div_ceil(8) as usize);
        assert_eq!(buf[0], 0b1111_1101);
        assert_eq!(buf[1], 0xCD);
        assert_eq!(buf[2], 0xAB);
        assert_eq!(&buf[3..10], &[0xFF; 7]);
        assert_eq!(buf[10], 0b101);
    }
}
