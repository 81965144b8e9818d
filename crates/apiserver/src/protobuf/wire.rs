//! The protobuf wire format, read without allocation: keys, varints, fixed-width numbers and
//! length-delimited slices. Entry point: [`Reader`]. Every read is bounds-checked, so hostile
//! input yields an [`Error`] and never a panic.

/// Malformed wire data. Not retryable: the client sent bad bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Error {
    #[error("truncated data")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    VarintTooLong,
    #[error("invalid field number 0")]
    ZeroTag,
    #[error("field number {0} out of range")]
    TagTooLarge(u64),
    #[error("unsupported wire type {0} (groups are not used by Kubernetes)")]
    WireType(u8),
}

/// How a value is laid out on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    pub fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "64-bit",
            WireType::Len => "length-delimited",
            WireType::Fixed32 => "32-bit",
        }
    }
}

/// One value as read from the wire, before the schema gives it meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl Raw<'_> {
    pub fn wire_type(&self) -> WireType {
        match self {
            Raw::Varint(_) => WireType::Varint,
            Raw::Fixed64(_) => WireType::Fixed64,
            Raw::Len(_) => WireType::Len,
            Raw::Fixed32(_) => WireType::Fixed32,
        }
    }
}

/// A cursor over one message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next field: its number and value; None at the end of the message.
    pub fn field(&mut self) -> Result<Option<(u32, Raw<'a>)>, Error> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = key >> 3;
        if tag == 0 {
            return Err(Error::ZeroTag);
        }
        // Field numbers are at most 2^29 - 1.
        let tag = u32::try_from(tag)
            .ok()
            .filter(|t| *t < 1 << 29)
            .ok_or(Error::TagTooLarge(tag))?;
        let raw = match key & 7 {
            0 => Raw::Varint(self.varint()?),
            1 => Raw::Fixed64(u64::from_le_bytes(self.array::<8>()?)),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Error::Truncated)?;
                Raw::Len(self.take(len)?)
            }
            5 => Raw::Fixed32(u32::from_le_bytes(self.array::<4>()?)),
            other => return Err(Error::WireType(other as u8)),
        };
        Ok(Some((tag, raw)))
    }

    /// A base-128 varint of at most 10 bytes.
    pub fn varint(&mut self) -> Result<u64, Error> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&byte, rest) = self.buf.split_first().ok_or(Error::Truncated)?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::VarintTooLong)
    }

    /// A little-endian 64-bit value (packed repeated doubles).
    pub fn fixed64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array::<8>()?))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], Error> {
        if len > self.buf.len() {
            return Err(Error::Truncated);
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_across_bytes() {
        assert_eq!(Reader::new(&[0x96, 0x01]).varint(), Ok(150));
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).varint(),
            Ok(u64::MAX)
        );
        assert_eq!(Reader::new(&[0x80; 11]).varint(), Err(Error::VarintTooLong));
        assert_eq!(Reader::new(&[0x80]).varint(), Err(Error::Truncated));
    }

    #[test]
    fn fields_carry_their_tag_and_value() {
        let mut r = Reader::new(&[0x08, 0x03, 0x12, 0x02, b'h', b'i']);
        assert_eq!(r.field(), Ok(Some((1, Raw::Varint(3)))));
        assert_eq!(r.field(), Ok(Some((2, Raw::Len(b"hi")))));
        assert_eq!(r.field(), Ok(None));
    }

    #[test]
    fn lengths_past_the_end_are_truncation_not_panics() {
        assert_eq!(
            Reader::new(&[0x12, 0x05, b'a']).field(),
            Err(Error::Truncated)
        );
        let huge = [
            0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(Reader::new(&huge).field(), Err(Error::Truncated));
        assert_eq!(Reader::new(&[0x0b]).field(), Err(Error::WireType(3)));
        assert_eq!(Reader::new(&[0x00]).field(), Err(Error::ZeroTag));
    }
}
