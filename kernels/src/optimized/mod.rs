//! Optimized kernels, registered over the portable ones (`KernelRegistry::optimized`). Each covers
//! the common fast cases (dtypes, layouts) and hands everything else to the portable kernel, which
//! stays the reference: tests compare the two across shapes.

pub mod conv;
pub mod copy;
pub mod depthwise_avx512;
pub mod depthwise_phased;
pub mod elementwise;
pub mod fused;
pub mod linalg;
pub mod mask;
pub mod masked_rows;
pub mod pixel_gemm;
pub mod pool;
pub mod sgemm;
pub mod softmax;

/// Defines `fn $name(args) [-> R]` that runs `$body` (an `#[inline(always)]` function of the same
/// signature) compiled for the widest SIMD level this CPU has: AVX-512F, AVX2, or the baseline.
/// For loops the compiler vectorizes; the body must compute the same operations in the same
/// order on every level (no fused multiply-adds are formed without `fma`), so results do not
/// depend on the CPU.
macro_rules! widest_simd {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:ident) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked just above), all `avx512` requires.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above), all `avx2` requires.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

// After the macro: textual scope.
pub mod norm;
pub mod reduce;

use crate::args::KernelArgs;
use crate::registry::{KernelFn, KernelRegistry};

/// Whether argument `arg` is a tensor of `dtype` in the contiguous dim order (what the fast paths
/// cover; the portable kernels take the rest).
pub(super) fn contiguous(args: &KernelArgs<'_>, arg: usize, dtype: crate::DType) -> bool {
    args.tensor_dtype(arg).is_ok_and(|d| d == dtype) && args.tensor_dim_order(arg).is_ok_and(|o| o.is_contiguous())
}

/// Registers every optimized kernel, replacing the portable ones of the same name.
pub fn register_all(r: &mut KernelRegistry) {
    linalg::register(r);
    conv::register(r);
    copy::register(r);
    elementwise::register(r);
    reduce::register(r);
    norm::register(r);
    pool::register(r);
    softmax::register(r);
    mask::register(r);
}

pub(crate) fn replace_table(r: &mut KernelRegistry, table: &[(&str, &'static [crate::DType], KernelFn)]) {
    for (schema, dtypes, run) in table {
        if let Err(e) = r.replace_pure(schema, dtypes, *run) {
            debug_assert!(false, "{e}");
        }
    }
}
