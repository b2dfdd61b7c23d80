//! Errors for files that are not valid programs. Every error says what is wrong and where: a byte
//! offset in the file and, past the header, the path of the offending item (method, value,
//! instruction).

use alloc::string::String;
use core::fmt;

/// Where in a program a problem sits: a readable path and the byte offset of the flatbuffer table
/// (or header field) that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// e.g. `method 'forward' value 12`.
    pub path: String,
    /// File offset of the table that holds the item.
    pub byte_offset: usize,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (byte offset {})", self.path, self.byte_offset)
    }
}

/// A `.pte` or `.bpte` file that etch cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("file is {file_len} bytes; {what} needs {needed} bytes at byte offset {offset}")]
    Truncated { what: &'static str, offset: u64, needed: u64, file_len: usize },

    #[error(
        "not an ExecuTorch file: identifier {} at byte offset 4, expected {}",
        show_ident(found),
        show_ident(expected)
    )]
    BadIdentifier { found: [u8; 4], expected: [u8; 4] },

    #[error(
        "incompatible format version: identifier {} at byte offset 4; etch reads {}",
        show_ident(found),
        show_ident(expected)
    )]
    IncompatibleVersion { found: [u8; 4], expected: [u8; 4] },

    #[error("extended header at byte offset 8: {reason} (value {value})")]
    BadHeader { reason: &'static str, value: u64 },

    /// The flatbuffer verifier's report, on one line (it names byte positions).
    #[error("flatbuffer verification failed: {0}")]
    Flatbuffer(String),

    #[error("{at}: {field} {index} out of range (valid: 0..{len})")]
    IndexOutOfRange { at: Site, field: &'static str, index: i64, len: usize },

    #[error("{at}: {field}: {reason} (value {value})")]
    InvalidField { at: Site, field: &'static str, reason: &'static str, value: i64 },

    #[error("{at}: missing {field}")]
    MissingField { at: Site, field: &'static str },

    #[error("{at}: {what} at offset {offset} with {len} bytes lies outside its container of {limit} bytes")]
    OutOfBounds { at: Site, what: &'static str, offset: u64, len: u64, limit: u64 },

    #[error("{at}: not supported: {what}")]
    Unsupported { at: Site, what: &'static str },
}

impl FormatError {
    /// True when the file is well formed but uses a feature etch does not implement
    /// (ExecuTorch's `NotSupported`), false when the file is invalid (`InvalidProgram`).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, FormatError::Unsupported { .. } | FormatError::IncompatibleVersion { .. })
    }

    pub(crate) fn from_verifier(e: &flatbuffers::InvalidFlatbuffer) -> Self {
        use core::fmt::Write;
        let mut text = String::new();
        // The verifier's Display spans several lines; the contract is one line per error.
        let _ = write!(text, "{e}");
        let one_line: String = text
            .split(['\n', '\t'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<alloc::vec::Vec<_>>()
            .join("; ");
        FormatError::Flatbuffer(one_line)
    }
}

fn show_ident(b: &[u8; 4]) -> String {
    let mut s = String::from("\"");
    for &c in b {
        if c.is_ascii_graphic() {
            s.push(c as char);
        } else {
            use core::fmt::Write;
            let _ = write!(s, "\\x{c:02x}");
        }
    }
    s.push('"');
    s
}
