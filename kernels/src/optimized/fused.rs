//! Kernels for calls the engine fuses at load (`engine/src/fuse.rs`), registered under no
//! operator name: the engine puts them in place of a convolution whose output only an activation
//! reads. Positions 0..=9 are those of `aten::convolution.out` (the out tensor being the
//! activation's), so the convolution's prepared state applies unchanged.

use super::conv::convolution_clamped;
use crate::args::KernelArgs;
use crate::error::KernelError;
use crate::registry::KernelContext;

/// Where a fused hardtanh's bounds follow the convolution's arguments.
pub const HARDTANH_MIN: usize = 10;
pub const HARDTANH_MAX: usize = 11;

/// Convolution then `hardtanh(min = arg 10, max = arg 11)` (ReLU6 in MobileNets).
pub fn convolution_hardtanh(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (min, max) = (args.scalar(HARDTANH_MIN)?.to_f64() as f32, args.scalar(HARDTANH_MAX)?.to_f64() as f32);
    if min.is_nan() || max.is_nan() {
        return Err(KernelError::NotImplemented("fused hardtanh with a NaN bound"));
    }
    convolution_clamped(ctx, args, min, max)
}

/// Convolution then ReLU.
pub fn convolution_relu(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    convolution_clamped(ctx, args, 0.0, f32::INFINITY)
}
