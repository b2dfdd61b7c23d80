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
pub mod norm;
pub mod pixel_gemm;
pub mod pool;
pub mod reduce;
pub mod sgemm;
pub mod softmax;

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
