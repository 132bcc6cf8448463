//! The protobuf wire format, read in place over `&[u8]`: varints, fixed-width values,
//! length-delimited fields, and skipping unknown fields (groups included), with prost's
//! recursion budget so that hostile nesting is a decode error, never a stack overflow.
//!
//! Every rule mirrors prost 0.14 so that the borrowed decoder accepts exactly what
//! `prost::Message::decode` accepts.

use crate::error::WireError;

/// prost's `RECURSION_LIMIT`: the budget of the top-level message's fields. Entering a nested
/// message (or skipping an unknown field, or a group level) needs a budget above zero.
pub const RECURSION_LIMIT: u32 = 100;

/// Wire types (the low three bits of a field key).
pub mod wt {
    pub const VARINT: u8 = 0;
    pub const I64: u8 = 1;
    pub const LEN: u8 = 2;
    pub const START_GROUP: u8 = 3;
    pub const END_GROUP: u8 = 4;
    pub const I32: u8 = 5;
}

/// Result of the wire layer.
pub type WireResult<T> = Result<T, WireError>;

/// Checks a known field's wire type.
#[inline(always)]
pub fn expect(actual: u8, expected: u8) -> WireResult<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(WireError::UnexpectedWireType)
    }
}

/// The budget of a nested message's fields, or the recursion error when `ctx` is spent.
#[inline(always)]
pub fn enter(ctx: u32) -> WireResult<u32> {
    ctx.checked_sub(1).ok_or(WireError::RecursionLimit)
}

/// A cursor over the bytes of one message.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over one message's bytes (without its length prefix).
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// How many bytes are left to read.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Whether every field has been read.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// A LEB128 varint of at most 10 bytes whose 10th byte is 0 or 1 (prost's overflow rule).
    #[inline(always)]
    pub fn varint(&mut self) -> WireResult<u64> {
        match self.rest.first() {
            Some(&b) if b < 0x80 => {
                self.rest = &self.rest[1..];
                Ok(u64::from(b))
            }
            _ => self.varint_slow(),
        }
    }

    fn varint_slow(&mut self) -> WireResult<u64> {
        let mut value = 0u64;
        for (i, &b) in self.rest.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b >= 2 {
                    return Err(WireError::InvalidVarint);
                }
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError::InvalidVarint)
    }

    /// A field key: (tag, wire type), checked like prost's `decode_key`.
    #[inline(always)]
    pub fn key(&mut self) -> WireResult<(u32, u8)> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(WireError::InvalidKey);
        }
        let wire_type = (key & 7) as u8;
        if wire_type > wt::I32 {
            return Err(WireError::InvalidWireType);
        }
        let tag = (key >> 3) as u32;
        if tag == 0 {
            return Err(WireError::InvalidTag);
        }
        Ok((tag, wire_type))
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> WireResult<&'a [u8]> {
        if n > self.rest.len() {
            return Err(WireError::BufferUnderflow);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Eight little-endian bytes (fixed64, sfixed64, double).
    #[inline(always)]
    pub fn fixed64(&mut self) -> WireResult<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// The payload of a length-delimited field.
    #[inline(always)]
    pub fn len_delimited(&mut self) -> WireResult<&'a [u8]> {
        let len = self.varint()?;
        if len > self.rest.len() as u64 {
            return Err(WireError::BufferUnderflow);
        }
        self.take(len as usize)
    }

    /// A `string` field: length-delimited, valid UTF-8.
    #[inline(always)]
    pub fn string(&mut self, wire_type: u8) -> WireResult<&'a str> {
        expect(wire_type, wt::LEN)?;
        utf8(self.len_delimited()?)
    }

    /// A `bytes` field.
    #[inline(always)]
    pub fn bytes(&mut self, wire_type: u8) -> WireResult<&'a [u8]> {
        expect(wire_type, wt::LEN)?;
        self.len_delimited()
    }

    /// A varint-encoded scalar field (int32, int64, uint32, uint64, bool, enum, sint32).
    #[inline(always)]
    pub fn varint_field(&mut self, wire_type: u8) -> WireResult<u64> {
        expect(wire_type, wt::VARINT)?;
        self.varint()
    }

    /// A fixed64-encoded scalar field (fixed64, sfixed64, double).
    #[inline(always)]
    pub fn fixed64_field(&mut self, wire_type: u8) -> WireResult<u64> {
        expect(wire_type, wt::I64)?;
        self.fixed64()
    }

    /// A fixed32-encoded scalar field (fixed32, sfixed32, float).
    #[inline(always)]
    pub fn fixed32_field(&mut self, wire_type: u8) -> WireResult<u32> {
        expect(wire_type, wt::I32)?;
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    /// A nested message: its bytes and the budget its own fields are read with.
    #[inline(always)]
    pub fn message(&mut self, wire_type: u8, ctx: u32) -> WireResult<(&'a [u8], u32)> {
        expect(wire_type, wt::LEN)?;
        let inner = enter(ctx)?;
        Ok((self.len_delimited()?, inner))
    }

    /// Skips an unknown field like prost's `skip_field`: it spends recursion budget (even for
    /// a varint), and a group is skipped up to its matching end-group key, each inner level
    /// one deeper. A stray end-group key is an error.
    pub fn skip(&mut self, tag: u32, wire_type: u8, ctx: u32) -> WireResult<()> {
        if ctx == 0 {
            return Err(WireError::RecursionLimit);
        }
        match wire_type {
            wt::VARINT => self.varint().map(drop),
            wt::I64 => self.take(8).map(drop),
            wt::LEN => self.len_delimited().map(drop),
            wt::I32 => self.take(4).map(drop),
            wt::START_GROUP => loop {
                let (inner_tag, inner_type) = self.key()?;
                if inner_type == wt::END_GROUP {
                    if inner_tag != tag {
                        return Err(WireError::UnexpectedEndGroup);
                    }
                    return Ok(());
                }
                self.skip(inner_tag, inner_type, ctx - 1)?;
            },
            _ => Err(WireError::UnexpectedEndGroup),
        }
    }
}

/// Checks UTF-8 like prost does for every `string` field. Keys and values are nearly always
/// short ASCII, where the inlined `is_ascii` word scan is several times cheaper than a call to
/// `std::str::from_utf8` (which was the largest single cost of decoding).
#[inline(always)]
pub fn utf8(bytes: &[u8]) -> WireResult<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).map_err(|_| WireError::InvalidString)
    }
}

/// Appends the elements of a repeated fixed64 field (fixed64 or double, converted by `f`)
/// from one occurrence: packed (a length-delimited run whose length must be a multiple of 8)
/// or one unpacked element. prost accepts both for every repeated numeric field.
#[inline]
pub fn repeated_fixed64<T>(
    r: &mut Reader<'_>,
    wire_type: u8,
    out: &mut Vec<T>,
    f: impl Fn(u64) -> T,
) -> WireResult<()> {
    if wire_type == wt::LEN {
        let run = r.len_delimited()?;
        if run.len() % 8 != 0 {
            return Err(WireError::BufferUnderflow);
        }
        out.extend(
            run.chunks_exact(8)
                .map(|c| f(u64::from_le_bytes(c.try_into().expect("8 bytes")))),
        );
    } else {
        out.push(f(r.fixed64_field(wire_type)?));
    }
    Ok(())
}

/// Like [`repeated_fixed64`] for a repeated varint field (uint64): a packed run must end
/// exactly on a varint boundary.
pub fn repeated_varint(r: &mut Reader<'_>, wire_type: u8, out: &mut Vec<u64>) -> WireResult<()> {
    if wire_type == wt::LEN {
        let mut run = Reader::new(r.len_delimited()?);
        while !run.is_empty() {
            out.push(run.varint()?);
        }
        Ok(())
    } else {
        out.push(r.varint_field(wire_type)?);
        Ok(())
    }
}

/// The zigzag decoding of an `sint32` varint (prost truncates to 32 bits first).
pub fn zigzag32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}
