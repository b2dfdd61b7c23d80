//! etch's portable kernels: plain, readable Rust that defines what each operator computes. Faster
//! kernels are tested against these.

pub mod binary;
pub mod elementwise;
pub mod layout;
pub mod linalg;
pub mod reduce;
pub mod shape_ops;
pub mod softmax;
pub mod unary;

use crate::registry::KernelRegistry;
use elementwise::{ALL_DTYPES, FLOAT_DTYPES, REAL_DTYPES};

/// Registers every portable kernel.
pub fn register_all(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [crate::DType], crate::registry::KernelFn)] = &[
        (
            "aten::add.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::add_out,
        ),
        (
            "aten::add.Scalar_out(Tensor self, Scalar other, Scalar alpha=1, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::add_scalar_out,
        ),
        (
            "aten::sub.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            binary::sub_out,
        ),
        (
            "aten::sub.Scalar_out(Tensor self, Scalar other, Scalar alpha=1, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            binary::sub_scalar_out,
        ),
        ("aten::mul.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, binary::mul_out),
        (
            "aten::mul.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::mul_scalar_out,
        ),
        ("aten::div.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, binary::div_out),
        (
            "aten::div.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::div_scalar_out,
        ),
        (
            "aten::maximum.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::maximum_out,
        ),
        (
            "aten::minimum.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::minimum_out,
        ),
        (
            "aten::pow.Tensor_Scalar_out(Tensor self, Scalar exponent, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            binary::pow_tensor_scalar_out,
        ),
        (
            "aten::eq.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::eq_tensor_out,
        ),
        (
            "aten::eq.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::eq_scalar_out,
        ),
        (
            "aten::ne.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::ne_tensor_out,
        ),
        (
            "aten::ne.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::ne_scalar_out,
        ),
        (
            "aten::gt.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::gt_tensor_out,
        ),
        (
            "aten::gt.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::gt_scalar_out,
        ),
        (
            "aten::ge.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::ge_tensor_out,
        ),
        (
            "aten::ge.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::ge_scalar_out,
        ),
        (
            "aten::lt.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::lt_tensor_out,
        ),
        (
            "aten::lt.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::lt_scalar_out,
        ),
        (
            "aten::le.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::le_tensor_out,
        ),
        (
            "aten::le.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::le_scalar_out,
        ),
        (
            "aten::where.self_out(Tensor condition, Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            binary::where_self_out,
        ),
        ("aten::abs.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, unary::abs_out),
        ("aten::relu.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, unary::relu_out),
        ("aten::sin.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", FLOAT_DTYPES, unary::sin_out),
        ("aten::cos.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", FLOAT_DTYPES, unary::cos_out),
        ("aten::mm.out(Tensor self, Tensor mat2, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, linalg::mm_out),
        ("aten::bmm.out(Tensor self, Tensor mat2, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, linalg::bmm_out),
        (
            "aten::addmm.out(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            linalg::addmm_out,
        ),
        (
            "aten::sum.IntList_out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            reduce::sum_intlist_out,
        ),
        (
            "aten::mean.out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            reduce::mean_out,
        ),
        (
            "aten::_softmax.out(Tensor self, int dim, bool half_to_float, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            softmax::softmax_out,
        ),
        (
            "aten::_log_softmax.out(Tensor self, int dim, bool half_to_float, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            softmax::log_softmax_out,
        ),
        (
            "aten::permute_copy.out(Tensor self, int[] dims, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            shape_ops::permute_copy_out,
        ),
        (
            "aten::slice_copy.Tensor_out(Tensor self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            shape_ops::slice_copy_tensor_out,
        ),
        ("aten::cat.out(Tensor[] tensors, int dim=0, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, shape_ops::cat_out),
        (
            "aten::copy_(Tensor(a!) self, Tensor src, bool non_blocking=False) -> Tensor(a!)",
            ALL_DTYPES,
            shape_ops::copy_,
        ),
        (
            "dim_order_ops::_to_dim_order_copy.out(Tensor self, *, bool non_blocking=False, int[]? dim_order=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            shape_ops::to_dim_order_copy_out,
        ),
        (
            "dim_order_ops::_clone_dim_order.out(Tensor self, *, bool non_blocking=False, int[]? dim_order=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            shape_ops::clone_dim_order_out,
        ),
        ("aten::logical_not.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, unary::logical_not_out),
    ];
    for (schema, dtypes, run) in table {
        // The table is etch's own; a failure here is a bug in this file, caught by the tests.
        if let Err(e) = r.register(schema, dtypes, *run) {
            debug_assert!(false, "{e}");
        }
    }
}
