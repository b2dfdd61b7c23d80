//! Tests of the shape, index, scatter, reduction and topk kernels: results against values
//! printed by PyTorch 2.15 eager (quoted next to each case), and the error paths a hostile
//! program can reach (every one must be a typed error, never a panic).

use half::f16;

mod call;
use super::{index, reduce, shape_ops, split, topk};
use crate::KernelError;
use call::Call;

const fn at(pos: usize) -> u64 {
    1 << pos
}

fn arange(n: usize) -> Vec<f32> {
    (0..n).map(|v| v as f32).collect()
}

#[test]
fn select_copy_wraps_negative_index_and_rejects_out_of_range() {
    // torch.arange(6.).view(2, 3).select(1, -1) -> [2., 5.]
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3], &arange(6));
    let (d, i, out) = (c.int(1), c.int(-1), c.out::<f32>(&[2], false));
    let mut done = c.run(shape_ops::select_copy_int_out, &[x, d, i, out], at(3));
    assert_eq!(done.result, Ok(()));
    assert_eq!(done.read::<f32>(out).1, [2.0, 5.0]);

    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3], &arange(6));
    let (d, i, out) = (c.int(1), c.int(3), c.out::<f32>(&[2], false));
    let done = c.run(shape_ops::select_copy_int_out, &[x, d, i, out], at(3));
    assert_eq!(done.result, Err(KernelError::IndexOutOfRange { arg: 2, index: 3, size: 3 }));
}

#[test]
fn as_strided_copy_stays_inside_the_storage() {
    // torch.as_strided(torch.arange(6.).view(2, 3), (2, 2), (1, 2), 1) -> [[1., 3.], [2., 4.]]
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3], &arange(6));
    let (size, stride, offset) = (c.int_list(&[2, 2]), c.int_list(&[1, 2]), c.int(1));
    let out = c.out::<f32>(&[2, 2], false);
    let mut done = c.run(shape_ops::as_strided_copy_out, &[x, size, stride, offset, out], at(4));
    assert_eq!(done.result, Ok(()));
    assert_eq!(done.read::<f32>(out).1, [1.0, 3.0, 2.0, 4.0]);

    // The last element would be storage element 1 + 3 + 2 = 6 of 6.
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3], &arange(6));
    let (size, stride, offset) = (c.int_list(&[2, 2]), c.int_list(&[3, 2]), c.int(1));
    let out = c.out::<f32>(&[2, 2], false);
    let done = c.run(shape_ops::as_strided_copy_out, &[x, size, stride, offset, out], at(4));
    assert!(matches!(done.result, Err(KernelError::InvalidArgument { arg: 1, .. })), "{:?}", done.result);

    // Strides so large the offset arithmetic overflows.
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3], &arange(6));
    let (size, stride, offset) = (c.int_list(&[2, 2]), c.int_list(&[i64::MAX, 2]), c.int(0));
    let out = c.out::<f32>(&[2, 2], false);
    let done = c.run(shape_ops::as_strided_copy_out, &[x, size, stride, offset, out], at(4));
    assert!(matches!(done.result, Err(KernelError::InvalidArgument { arg: 1, .. })), "{:?}", done.result);
}

#[test]
fn view_copy_infers_one_size() {
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3], &arange(6));
    let (size, out) = (c.int_list(&[-1, 2]), c.out::<f32>(&[3, 2], false));
    let mut done = c.run(shape_ops::view_copy_out, &[x, size, out], at(2));
    assert_eq!(done.result, Ok(()));
    assert_eq!(done.read::<f32>(out), (vec![3, 2], arange(6)));

    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3], &arange(6));
    let (size, out) = (c.int_list(&[4, -1]), c.out::<f32>(&[3, 2], false));
    let done = c.run(shape_ops::view_copy_out, &[x, size, out], at(2));
    assert!(matches!(done.result, Err(KernelError::ShapeMismatch { arg: 1, .. })), "{:?}", done.result);
}

#[test]
fn split_with_sizes_must_cover_the_dimension() {
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3], &arange(6));
    let sizes = c.int_list(&[1, 1]);
    let dim = c.int(1);
    let (a, b) = (c.out::<f32>(&[2, 1], false), c.out::<f32>(&[2, 1], false));
    let outs = c.tensor_list(&[a, b]);
    let done = c.run(split::split_with_sizes_copy_out, &[x, sizes, dim, outs], at(3));
    assert!(matches!(done.result, Err(KernelError::InvalidArgument { arg: 1, .. })), "{:?}", done.result);
}

#[test]
fn gather_reads_along_dim_and_rejects_negative_indices() {
    // torch.gather(torch.arange(6.).view(2, 3), 1, torch.tensor([[2, 0], [1, 1]])) -> [[2., 0.], [4., 4.]]
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3], &arange(6));
    let dim = c.int(1);
    let idx = c.tensor::<i64>(&[2, 2], &[2, 0, 1, 1]);
    let (sparse, out) = (c.boolean(false), c.out::<f32>(&[2, 2], false));
    let mut done = c.run(index::gather_out, &[x, dim, idx, sparse, out], at(4));
    assert_eq!(done.result, Ok(()));
    assert_eq!(done.read::<f32>(out).1, [2.0, 0.0, 4.0, 4.0]);

    // PyTorch: "index -1 is out of bounds for dimension 1 with size 3".
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3], &arange(6));
    let dim = c.int(1);
    let idx = c.tensor::<i64>(&[2, 2], &[2, 0, -1, 1]);
    let (sparse, out) = (c.boolean(false), c.out::<f32>(&[2, 2], false));
    let done = c.run(index::gather_out, &[x, dim, idx, sparse, out], at(4));
    assert_eq!(done.result, Err(KernelError::IndexOutOfRange { arg: 2, index: -1, size: 3 }));
}

#[test]
fn embedding_rejects_rows_past_the_table() {
    let mut c = Call::default();
    let w = c.tensor::<f32>(&[3, 2], &arange(6));
    let idx = c.tensor::<i32>(&[2], &[1, 3]);
    let (pad, scale, sparse) = (c.int(-1), c.boolean(false), c.boolean(false));
    let out = c.out::<f32>(&[2, 2], false);
    let done = c.run(index::embedding_out, &[w, idx, pad, scale, sparse, out], at(5));
    assert_eq!(done.result, Err(KernelError::IndexOutOfRange { arg: 1, index: 3, size: 3 }));
}

#[test]
fn index_tensor_with_a_mask_and_out_of_range_indices() {
    // torch.arange(24.).view(2, 3, 4)[:, torch.tensor([True, False, True])]
    //   -> [[[0..3], [8..11]], [[12..15], [20..23]]]
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3, 4], &arange(24));
    let mask = c.tensor::<crate::Bool>(&[3], &[crate::Bool::TRUE, crate::Bool::FALSE, crate::Bool::TRUE]);
    let list = c.opt_tensor_list(&[crate::NONE_INDEX, mask]);
    let out = c.out::<f32>(&[2, 2, 4], false);
    let mut done = c.run(index::index_tensor_out, &[x, list, out], at(2));
    assert_eq!(done.result, Ok(()));
    let want: Vec<f32> = [0..4, 8..12, 12..16, 20..24].into_iter().flatten().map(|v| v as f32).collect();
    assert_eq!(done.read::<f32>(out), (vec![2, 2, 4], want));

    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2, 3, 4], &arange(24));
    let idx = c.tensor::<i64>(&[1], &[-3]);
    let list = c.opt_tensor_list(&[idx]);
    let out = c.out::<f32>(&[1, 3, 4], false);
    let done = c.run(index::index_tensor_out, &[x, list, out], at(2));
    assert_eq!(done.result, Err(KernelError::IndexOutOfRange { arg: 1, index: -3, size: 2 }));
}

#[test]
fn data_dependent_outputs_stay_within_their_planned_bytes() {
    // torch.nonzero(torch.tensor([[0, 1], [2, 0]])) -> [[0, 1], [1, 0]]
    let mut c = Call::default();
    let x = c.tensor::<i32>(&[2, 2], &[0, 1, 2, 0]);
    let out = c.out::<i64>(&[4, 2], true);
    let mut done = c.run(index::nonzero_out, &[x, out], at(1));
    assert_eq!(done.result, Ok(()));
    assert_eq!(done.read::<i64>(out), (vec![2, 2], vec![0, 1, 1, 0]));

    // Three selected elements do not fit a two-element output.
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[3], &[1.0, 2.0, 3.0]);
    let mask = c.tensor::<crate::Bool>(&[3], &[crate::Bool::TRUE; 3]);
    let out = c.out::<f32>(&[2], true);
    let done = c.run(index::masked_select_out, &[x, mask, out], at(2));
    assert!(matches!(done.result, Err(KernelError::Resize { arg: 2, .. })), "{:?}", done.result);

    // torch.repeat_interleave(torch.tensor([1, -1])): "repeats can not be negative".
    let mut c = Call::default();
    let r = c.tensor::<i64>(&[2], &[1, -1]);
    let (size, out) = (c.none(), c.out::<i64>(&[4], true));
    let done = c.run(index::repeat_interleave_tensor_out, &[r, size, out], at(2));
    assert!(matches!(done.result, Err(KernelError::ValueOutOfRange { arg: 0, value: -1, .. })), "{:?}", done.result);
}

#[test]
fn topk_puts_nan_first_and_checks_k() {
    // torch.topk(torch.tensor([1., nan, 3.]), 2) -> values [nan, 3.], indices [1, 2]
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[3], &[1.0, f32::NAN, 3.0]);
    let (k, dim, largest, sorted) = (c.int(2), c.int(-1), c.boolean(true), c.boolean(true));
    let (values, indices) = (c.out::<f32>(&[2], false), c.out::<i64>(&[2], false));
    let mut done = c.run(topk::topk_values, &[x, k, dim, largest, sorted, values, indices], at(5) | at(6));
    assert_eq!(done.result, Ok(()));
    let v = done.read::<f32>(values).1;
    assert!(v[0].is_nan() && v[1] == 3.0, "{v:?}");
    assert_eq!(done.read::<i64>(indices).1, [1, 2]);

    let mut c = Call::default();
    let x = c.tensor::<f32>(&[3], &[1.0, 2.0, 3.0]);
    let (k, dim, largest, sorted) = (c.int(4), c.int(-1), c.boolean(true), c.boolean(true));
    let (values, indices) = (c.out::<f32>(&[3], false), c.out::<i64>(&[3], false));
    let done = c.run(topk::topk_values, &[x, k, dim, largest, sorted, values, indices], at(5) | at(6));
    assert!(matches!(done.result, Err(KernelError::ValueOutOfRange { arg: 1, value: 4, .. })), "{:?}", done.result);
}

#[test]
fn reductions_follow_pytorch_on_nan_overflow_and_empty_input() {
    // torch.argmax(torch.tensor([1., nan, 3., nan])) -> 1
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[4], &[1.0, f32::NAN, 3.0, f32::NAN]);
    let (dim, keep, out) = (c.none(), c.boolean(false), c.out::<i64>(&[], false));
    let mut done = c.run(reduce::argmax_out, &[x, dim, keep, out], at(3));
    assert_eq!(done.result, Ok(()));
    assert_eq!(done.read::<i64>(out).1, [1]);

    // torch.var(torch.tensor([1., 2.]), correction=3) -> inf
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[2], &[1.0, 2.0]);
    let dims = c.none();
    let correction = c.int(3);
    let (keep, out) = (c.boolean(false), c.out::<f32>(&[], false));
    let mut done = c.run(reduce::var_correction_out, &[x, dims, correction, keep, out], at(4));
    assert_eq!(done.result, Ok(()));
    assert_eq!(done.read::<f32>(out).1, [f32::INFINITY]);

    // torch.prod(torch.tensor([100, 100, 100, 0.001], dtype=torch.float16)) -> inf (rounds each step)
    let mut c = Call::default();
    let x = c.tensor::<f16>(&[4], &[100.0, 100.0, 100.0, 0.001].map(f16::from_f32));
    let (dtype, out) = (c.none(), c.out::<f16>(&[], false));
    let mut done = c.run(reduce::prod_out, &[x, dtype, out], at(2));
    assert_eq!(done.result, Ok(()));
    assert_eq!(done.read::<f16>(out).1, [f16::INFINITY]);

    // torch.cumsum(torch.tensor([100, 100], dtype=torch.int8), 0) -> [100, 200] (int64)
    let mut c = Call::default();
    let x = c.tensor::<i8>(&[2], &[100, 100]);
    let (dim, dtype, out) = (c.int(0), c.none(), c.out::<i64>(&[2], false));
    let mut done = c.run(reduce::cumsum_out, &[x, dim, dtype, out], at(3));
    assert_eq!(done.result, Ok(()));
    assert_eq!(done.read::<i64>(out).1, [100, 200]);

    // torch.max(torch.zeros(0)): "Expected reduction dim to be specified for input.numel() == 0"
    let mut c = Call::default();
    let x = c.tensor::<f32>(&[0], &[]);
    let out = c.out::<f32>(&[], false);
    let done = c.run(reduce::max_unary_out, &[x, out], at(1));
    assert!(matches!(done.result, Err(KernelError::InvalidArgument { arg: 0, .. })), "{:?}", done.result);
}
