//! Atomics and locks through a facade, so the same scheduler code runs under the loom model
//! checker (`RUSTFLAGS="--cfg loom" cargo test -p etch-scheduler --test loom --release`), as tokio
//! does.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
