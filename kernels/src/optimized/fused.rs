//! Kernels for calls the engine fuses at load (`engine/src/fuse.rs`), registered under no
//! operator name: the engine puts them in place of a convolution whose output only an activation
//! reads, or whose weights a batch norm scales. Positions 0..=9 are those of
//! `aten::convolution.out` (the out tensor being the last fused call's), so the convolution's
//! prepared state applies unchanged. A scaled convolution has its weight scale at
//! [`SCALE`](super::conv::SCALE); a fused hardtanh has its bounds in the last two positions.
//!
//! [`linear`] takes the place of an `aten::addmm.out` whose `mat2` was the transpose of a constant
//! weight: same positions, with the weight itself at `mat2`.

use super::conv::convolution_clamped;
use crate::args::KernelArgs;
use crate::error::KernelError;
use crate::registry::KernelContext;

/// The bounds of a fused hardtanh: the call's last two arguments.
fn hardtanh_bounds(args: &KernelArgs<'_>) -> Result<(f32, f32), KernelError> {
    let at = args.len().checked_sub(2).ok_or(KernelError::MissingArg { arg: 10, len: args.len() })?;
    let (min, max) = (args.scalar(at)?.to_f64() as f32, args.scalar(at + 1)?.to_f64() as f32);
    if min.is_nan() || max.is_nan() {
        return Err(KernelError::NotImplemented("fused hardtanh with a NaN bound"));
    }
    Ok((min, max))
}

/// Convolution then `hardtanh(min, max)` (ReLU6 in MobileNets).
pub fn convolution_hardtanh(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (min, max) = hardtanh_bounds(args)?;
    convolution_clamped(ctx, args, min, max)
}

/// Convolution then ReLU.
pub fn convolution_relu(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    convolution_clamped(ctx, args, 0.0, f32::INFINITY)
}

/// Convolution with a batch norm folded in (weights scaled per output channel).
pub fn convolution_scaled(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    super::conv::convolution_scaled(ctx, args, f32::NEG_INFINITY, f32::INFINITY)
}

/// Scaled convolution then `hardtanh(min, max)`.
pub fn convolution_scaled_hardtanh(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (min, max) = hardtanh_bounds(args)?;
    super::conv::convolution_scaled(ctx, args, min, max)
}

/// Scaled convolution then ReLU.
pub fn convolution_scaled_relu(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    super::conv::convolution_scaled(ctx, args, 0.0, f32::INFINITY)
}

/// `aten::addmm.out` reading `mat2` as the transpose of the `[p, k]` weight at its position: a
/// linear layer `x @ Wᵀ + b` without the transposed copy of `W`.
pub fn linear(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    super::linalg::addmm_weight_transposed(ctx, args)
}
