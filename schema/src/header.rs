//! The first bytes of a `.pte`: flatbuffer root offset, file identifier and the optional extended
//! header that locates the segments after the flatbuffer.

use crate::error::FormatError;

/// Byte offset of the file identifier.
const IDENTIFIER_OFFSET: usize = 4;
/// The identifier etch reads.
pub const PROGRAM_IDENTIFIER: &[u8; 4] = b"ET12";
/// Byte offset of the extended header, when present.
const EXTENDED_HEADER_OFFSET: usize = 8;
const EXTENDED_HEADER_MAGIC: &[u8; 4] = b"eh00";
/// The extended header fields etch needs end here (magic, length, program_size, segment_base_offset).
const MIN_EXTENDED_HEADER_LEN: u32 = 24;
/// Length from which `segment_data_size` is present.
const HEADER_LEN_WITH_SEGMENT_DATA_SIZE: u32 = 32;

/// The extended header (`eh00`) at byte 8: where the flatbuffer ends and the segments begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedHeader {
    /// Length of the header in bytes, as written in the file.
    pub header_len: u32,
    /// Size of the flatbuffer, counted from byte 0 of the file.
    pub program_size: u64,
    /// File offset from which `DataSegment.offset` is counted (0 when there are no segments).
    pub segment_base_offset: u64,
    /// Total size of the segment data, when the header is long enough to record it.
    pub segment_data_size: Option<u64>,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let b: [u8; 4] = bytes.get(at..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    let b: [u8; 8] = bytes.get(at..end)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// Checks the file identifier: `ET12` passes; another `ETnn` is an incompatible version.
pub fn check_identifier(file: &[u8], expected: &[u8; 4]) -> Result<(), FormatError> {
    let found: [u8; 4] = file.get(IDENTIFIER_OFFSET..IDENTIFIER_OFFSET + 4).and_then(|b| b.try_into().ok()).ok_or(
        FormatError::Truncated {
            what: "file identifier",
            offset: IDENTIFIER_OFFSET as u64,
            needed: 4,
            file_len: file.len(),
        },
    )?;
    if &found == expected {
        return Ok(());
    }
    if found[..2] == expected[..2] {
        return Err(FormatError::IncompatibleVersion { found, expected: *expected });
    }
    Err(FormatError::BadIdentifier { found, expected: *expected })
}

impl ExtendedHeader {
    /// Reads the extended header. `Ok(None)` when the magic is absent: then the whole file is the
    /// flatbuffer and there are no segments.
    pub fn parse(file: &[u8]) -> Result<Option<ExtendedHeader>, FormatError> {
        let magic_end = EXTENDED_HEADER_OFFSET + 4;
        if file.get(EXTENDED_HEADER_OFFSET..magic_end) != Some(&EXTENDED_HEADER_MAGIC[..]) {
            return Ok(None);
        }
        let bad = |reason: &'static str, value: u64| FormatError::BadHeader { reason, value };
        let header_len = read_u32(file, magic_end).ok_or(FormatError::Truncated {
            what: "extended header length",
            offset: magic_end as u64,
            needed: 4,
            file_len: file.len(),
        })?;
        if header_len < MIN_EXTENDED_HEADER_LEN {
            return Err(bad("header length below 24", u64::from(header_len)));
        }
        let header_end = (EXTENDED_HEADER_OFFSET as u64)
            .checked_add(u64::from(header_len))
            .ok_or(bad("header length overflows", u64::from(header_len)))?;
        if header_end > file.len() as u64 {
            return Err(FormatError::Truncated {
                what: "extended header",
                offset: EXTENDED_HEADER_OFFSET as u64,
                needed: u64::from(header_len),
                file_len: file.len(),
            });
        }
        // The length check above makes these reads in bounds; `?`-style fallbacks keep it panic-free.
        let field = |at: usize| read_u64(file, at).ok_or(bad("header field out of range", at as u64));
        let program_size = field(16)?;
        let segment_base_offset = field(24)?;
        let segment_data_size = if header_len >= HEADER_LEN_WITH_SEGMENT_DATA_SIZE { Some(field(32)?) } else { None };
        let header = ExtendedHeader { header_len, program_size, segment_base_offset, segment_data_size };
        header.check(file.len())?;
        Ok(Some(header))
    }

    fn check(&self, file_len: usize) -> Result<(), FormatError> {
        let file_len_u64 = file_len as u64;
        if self.program_size < EXTENDED_HEADER_OFFSET as u64 + u64::from(self.header_len) {
            return Err(FormatError::BadHeader {
                reason: "program_size smaller than the header",
                value: self.program_size,
            });
        }
        if self.program_size > file_len_u64 {
            return Err(FormatError::Truncated {
                what: "flatbuffer (extended header program_size)",
                offset: 0,
                needed: self.program_size,
                file_len,
            });
        }
        if self.segment_base_offset != 0 {
            if self.segment_base_offset < self.program_size {
                return Err(FormatError::BadHeader {
                    reason: "segment_base_offset inside the flatbuffer",
                    value: self.segment_base_offset,
                });
            }
            if self.segment_base_offset > file_len_u64 {
                return Err(FormatError::Truncated {
                    what: "segment data (extended header segment_base_offset)",
                    offset: self.segment_base_offset,
                    needed: 0,
                    file_len,
                });
            }
        }
        if let Some(size) = self.segment_data_size {
            let end = self.segment_base_offset.checked_add(size).ok_or(FormatError::BadHeader {
                reason: "segment_base_offset + segment_data_size overflows",
                value: size,
            })?;
            if self.segment_base_offset != 0 && end > file_len_u64 {
                return Err(FormatError::Truncated {
                    what: "segment data (extended header segment_data_size)",
                    offset: self.segment_base_offset,
                    needed: size,
                    file_len,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn header_bytes(len: u32, program_size: u64, base: u64, data: u64) -> Vec<u8> {
        let mut f = vec![0u8; 8];
        f[4..8].copy_from_slice(b"ET12");
        f.extend_from_slice(b"eh00");
        f.extend_from_slice(&len.to_le_bytes());
        f.extend_from_slice(&program_size.to_le_bytes());
        f.extend_from_slice(&base.to_le_bytes());
        f.extend_from_slice(&data.to_le_bytes());
        f.resize(256, 0);
        f
    }

    #[test]
    fn reads_all_fields() {
        let f = header_bytes(32, 128, 128, 64);
        let h = ExtendedHeader::parse(&f).unwrap().unwrap();
        assert_eq!(h.program_size, 128);
        assert_eq!(h.segment_base_offset, 128);
        assert_eq!(h.segment_data_size, Some(64));
    }

    #[test]
    fn no_magic_means_no_header() {
        let mut f = header_bytes(32, 128, 128, 64);
        f[8] = b'x';
        assert_eq!(ExtendedHeader::parse(&f).unwrap(), None);
    }

    #[test]
    fn rejects_sizes_past_the_end() {
        let f = header_bytes(32, 1 << 40, 0, 0);
        assert!(matches!(ExtendedHeader::parse(&f), Err(FormatError::Truncated { .. })));
        let f = header_bytes(32, 128, 200, 1000);
        assert!(matches!(ExtendedHeader::parse(&f), Err(FormatError::Truncated { .. })));
        let f = header_bytes(32, 128, u64::MAX, 2);
        assert!(ExtendedHeader::parse(&f).is_err());
        let f = header_bytes(8, 128, 0, 0);
        assert!(matches!(ExtendedHeader::parse(&f), Err(FormatError::BadHeader { .. })));
    }

    #[test]
    fn identifier_versions() {
        let mut f = vec![0u8; 8];
        f[4..8].copy_from_slice(b"ET12");
        assert!(check_identifier(&f, PROGRAM_IDENTIFIER).is_ok());
        f[4..8].copy_from_slice(b"ET11");
        assert!(matches!(check_identifier(&f, PROGRAM_IDENTIFIER), Err(FormatError::IncompatibleVersion { .. })));
        f[4..8].copy_from_slice(b"XXXX");
        assert!(matches!(check_identifier(&f, PROGRAM_IDENTIFIER), Err(FormatError::BadIdentifier { .. })));
        assert!(check_identifier(&f[..6], PROGRAM_IDENTIFIER).is_err());
    }
}
