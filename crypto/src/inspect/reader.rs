//! A bounds-checked cursor over TLS presentation language bytes (RFC 8446 §3)
//! with the variable-length vector header of RFC 9420 §2.1.2.

use super::InspectError;

/// Reads fixed-size integers and `opaque<V>` vectors from a byte slice.
///
/// Every read checks the remaining length first, so no input can make it
/// panic or allocate: vectors are returned as sub-slices of the input.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The bytes consumed from position `start` to the current position.
    pub(crate) fn consumed_since(&self, start: usize) -> &'a [u8] {
        self.bytes.get(start..self.pos).unwrap_or_default()
    }

    /// Bytes not consumed yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], InspectError> {
        if n > self.remaining() {
            return Err(InspectError::Truncated { field });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, InspectError> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, InspectError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, InspectError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, InspectError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads the variable-length header of RFC 9420 §2.1.2: the two top bits of
    /// the first byte give the header size (1, 2 or 4 bytes); `0b11` is invalid
    /// and the shortest encoding is required.
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<usize, InspectError> {
        let first = self.u8(field)?;
        let (value, min) = match first >> 6 {
            0 => return Ok(usize::from(first & 0x3f)),
            1 => {
                let b = self.u8(field)?;
                (u32::from(first & 0x3f) << 8 | u32::from(b), 64)
            }
            2 => {
                let b = self.take(3, field)?;
                (
                    u32::from(first & 0x3f) << 24 | u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]),
                    1 << 14,
                )
            }
            _ => return Err(InspectError::InvalidLength { field }),
        };
        if value < min {
            return Err(InspectError::InvalidLength { field });
        }
        usize::try_from(value).map_err(|_| InspectError::InvalidLength { field })
    }

    /// Reads an `opaque field<V>`.
    pub(crate) fn opaque(&mut self, field: &'static str) -> Result<&'a [u8], InspectError> {
        let len = self.varint(field)?;
        self.take(len, field)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), InspectError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(InspectError::TrailingBytes { count }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn varint_sizes_and_minimality() {
        assert_eq!(Reader::new(&[0x25]).varint("x"), Ok(0x25));
        assert_eq!(Reader::new(&[0x7b, 0xbd]).varint("x"), Ok(15293));
        assert_eq!(Reader::new(&[0x9d, 0x7f, 0x3e, 0x7d]).varint("x"), Ok(494_878_333));
        // 37 encoded on two bytes is not minimal.
        assert_eq!(
            Reader::new(&[0x40, 0x25]).varint("x"),
            Err(InspectError::InvalidLength { field: "x" })
        );
        assert_eq!(
            Reader::new(&[0xc0, 0, 0, 0, 0, 0, 0, 1]).varint("x"),
            Err(InspectError::InvalidLength { field: "x" })
        );
        assert_eq!(
            Reader::new(&[0x80, 0x01]).varint("x"),
            Err(InspectError::Truncated { field: "x" })
        );
    }

    #[test]
    fn opaque_longer_than_input_is_truncated_not_allocated() {
        let mut r = Reader::new(&[0x80, 0xff, 0xff, 0xff, 1, 2]);
        assert_eq!(r.opaque("data"), Err(InspectError::Truncated { field: "data" }));
    }
}
