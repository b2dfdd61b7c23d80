//! The ExecuTorch program format, as etch reads it.
//!
//! A `.pte` file is a flatbuffer (identifier `ET12`) optionally followed by segments (constant
//! tensors, mutable-state initial values, delegate blobs, named data) that an extended header
//! (`eh00`, at byte 8) locates. [`parse_program`] checks a file once — header, flatbuffer
//! verification, then every index, size and offset with checked arithmetic — and returns a
//! [`ProgramDef`]: an owned model whose byte ranges point back into the file, so tensor data is
//! never copied. Everything downstream (the engine) trusts the invariants listed in [`model`].
//!
//! This crate knows nothing about executing programs, and it never uses `unsafe`: the generated
//! flatbuffer accessors live in `etch-fbs` and are only reached through the verifier.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod bundled;
mod error;
mod header;
pub mod model;
mod parse;
mod scalar_type;

pub use bundled::{BundledProgramDef, BundledValue, TestCaseDef, TestSuiteDef, parse_bundled_program};
pub use error::{FormatError, Site};
pub use header::{ExtendedHeader, PROGRAM_IDENTIFIER};
pub use model::*;
pub use parse::parse_program;
pub use scalar_type::ScalarType;
