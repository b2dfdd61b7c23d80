//! Generated code only: flatc 25.12.19 output for `program.fbs` and `bundled_program.fbs`.
//!
//! Do not edit the `*_generated.rs` files; edit the `.fbs` and run `schema/fbs/regenerate.sh`.
//!
//! flatc's accessors contain `unsafe` blocks that are sound only for buffers that passed the
//! flatbuffers verifier. `etch-schema` (which forbids `unsafe`) is the only user, and it reaches
//! every table through `flatbuffers::root_with_opts`, which verifies first. This crate is kept
//! separate so that the hand-written format code can carry `#![forbid(unsafe_code)]`.
#![no_std]
#![allow(
    clippy::all,
    clippy::pedantic,
    unused_imports,
    dead_code,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    mismatched_lifetime_syntaxes,
    unsafe_op_in_unsafe_fn
)]

#[rustfmt::skip]
#[path = "program_generated.rs"]
mod program_generated;

#[rustfmt::skip]
#[path = "bundled_program_generated.rs"]
mod bundled_program_generated;

/// Tables of the program schema (`ET12`).
pub use program_generated::executorch_flatbuffer as program;

/// Tables of the bundled-program schema (`BP08`).
pub use bundled_program_generated::bundled_program_flatbuffer as bundled;
