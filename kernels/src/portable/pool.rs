//! 2-D pooling: `avg_pool2d`, `max_pool2d_with_indices` and `_adaptive_avg_pool2d`, on
//! `[C, H, W]` or `[N, C, H, W]` inputs in any dim order (contiguous and channels-last alike).
//! Window bounds, divisors and the index/NaN rules follow PyTorch's CPU kernels.

use crate::args::KernelArgs;
use crate::dtype::{DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::{FLOAT_DTYPES, REAL_DTYPES};
use crate::portable::spatial::{
    Acc, Dims5, dispatch_float, dispatch_int, short, spatial_param, to_i64, to_size, window_output_size,
};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::tensor::{Tensor, TensorMut};

/// Checks the input of a 2-D pooling op: 3-D or 4-D, with non-empty C, H and W (the batch may
/// be empty), and the output's dtype (each kernel's dispatch rejects dtypes it does not support).
fn check_pool_input(x: &Tensor<'_>, out: &TensorMut<'_>) -> Result<(), KernelError> {
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: out.arg(), expected: x.dtype(), found: out.dtype() });
    }
    let rank = x.dim();
    if !(rank == 3 || rank == 4) || x.sizes()[rank - 3..].contains(&0) {
        return Err(KernelError::ShapeMismatch {
            arg: 0,
            reason: "expected a 3-D or 4-D input with non-empty channel and spatial dims",
        });
    }
    Ok(())
}

/// The checked window parameters of `avg_pool2d` / `max_pool2d_with_indices`, `[H, W]` order.
pub(crate) struct PoolWindow {
    pub(crate) kernel: [i64; 2],
    pub(crate) stride: [i64; 2],
    pub(crate) padding: [i64; 2],
    pub(crate) dilation: [i64; 2],
}

impl PoolWindow {
    /// Reads kernel size, stride (empty means the kernel size), padding and (when the op has it)
    /// dilation, with PyTorch's checks (padding at most half the kernel).
    pub(crate) fn read(
        args: &KernelArgs<'_>,
        kernel_arg: usize,
        dilation_arg: Option<usize>,
    ) -> Result<PoolWindow, KernelError> {
        let k = spatial_param(args, kernel_arg, 2, 1, None)?;
        let kernel = [k[1], k[2]];
        let s = spatial_param(args, kernel_arg + 1, 2, 1, Some(k))?;
        let p = spatial_param(args, kernel_arg + 2, 2, 0, None)?;
        let d = match dilation_arg {
            Some(arg) => spatial_param(args, arg, 2, 1, None)?,
            None => [1; 3],
        };
        let padding = [p[1], p[2]];
        if padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2 {
            return Err(KernelError::InvalidArgument {
                arg: kernel_arg + 2,
                reason: "pad should be at most half of the kernel size",
            });
        }
        Ok(PoolWindow { kernel, stride: [s[1], s[2]], padding, dilation: [d[1], d[2]] })
    }

    /// Output `[H, W]` for input `[H, W]`, or an error when a window does not fit.
    pub(crate) fn output_size(&self, x: &Dims5, ceil: bool) -> Result<[usize; 2], KernelError> {
        let mut out = [0usize; 2];
        for (i, o) in out.iter_mut().enumerate() {
            let size = window_output_size(
                to_i64(x.size[3 + i]),
                self.kernel[i],
                self.padding[i],
                self.stride[i],
                self.dilation[i],
                ceil,
            )
            .ok_or(KernelError::Overflow { arg: 1, what: "pooling output size" })?;
            if size < 1 {
                return Err(KernelError::ShapeMismatch { arg: 1, reason: "pooling output size is too small" });
            }
            *o = to_size(size, 1, "pooling output size")?;
        }
        Ok(out)
    }
}

/// The output shape: the input's with H and W replaced.
fn pooled_shape(x: &Tensor<'_>, hw: [usize; 2]) -> crate::shape::Shape {
    let mut s = x.shape();
    let rank = x.dim();
    s.as_mut_slice()[rank - 2] = hw[0];
    s.as_mut_slice()[rank - 1] = hw[1];
    s
}

/// `aten::avg_pool2d.out(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0,
/// bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None, *,
/// Tensor(a!) out) -> Tensor(a!)`
pub fn avg_pool2d_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let window = PoolWindow::read(args, 1, None)?;
    let ceil = args.bool(4)?;
    let count_include_pad = args.bool(5)?;
    let divisor = args.opt_int(6)?;
    if divisor == Some(0) {
        return Err(KernelError::InvalidArgument { arg: 6, reason: "divisor must not be zero" });
    }
    let mut out = args.tensor_mut(7)?;
    check_pool_input(&x, &out)?;
    let xd = Dims5::new(x.sizes(), x.strides(), 2, x.dim() == 4);
    let hw = window.output_size(&xd, ceil)?;
    out.resize(&pooled_shape(&x, hw))?;
    let od = Dims5::new(out.sizes(), &out.strides(), 2, x.dim() == 4);
    let pool = AvgPool { xd, od, window, count_include_pad, divisor };
    let dtype = x.dtype();
    match dtype {
        // PyTorch pools int64 too: a wrapping sum and a truncating division.
        DType::Long => {
            pool.run(x.data::<i64>()?, out.data_mut::<i64>()?, 0i64, |s, v| s.wrapping_add(v), |s, d| s.wrapping_div(d))
        }
        _ => dispatch_float!(dtype, T, C => {
            let (xs, o) = (x.data::<T>()?, out.data_mut::<T>()?);
            pool.run(xs, o, C::ZERO, |s, v: T| s + C::cast_from(v), |s, d| T::cast_from(s / C::from_f64(d as f64)))
        }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype })),
    }
}

/// The geometry of one `avg_pool2d` call.
struct AvgPool {
    xd: Dims5,
    od: Dims5,
    window: PoolWindow,
    count_include_pad: bool,
    divisor: Option<i64>,
}

impl AvgPool {
    /// Writes each window's `finish(sum, divisor)`, summing elements with `add` from `zero`.
    fn run<T: Element, S: Copy>(
        &self,
        xs: &[T],
        o: &mut [T],
        zero: S,
        add: impl Fn(S, T) -> S,
        finish: impl Fn(S, i64) -> T,
    ) -> Result<(), KernelError> {
        let (xd, window) = (&self.xd, &self.window);
        let (h, w) = (to_i64(xd.size[3]), to_i64(xd.size[4]));
        for_each_output(&self.od, |n, c, oy, ox, at| {
            let y0 = to_i64(oy) * window.stride[0] - window.padding[0];
            let x0 = to_i64(ox) * window.stride[1] - window.padding[1];
            let y1 = (y0 + window.kernel[0]).min(h + window.padding[0]);
            let x1 = (x0 + window.kernel[1]).min(w + window.padding[1]);
            let pool_size =
                (y1 - y0).checked_mul(x1 - x0).ok_or(KernelError::Overflow { arg: 1, what: "window size" })?;
            let (y0, x0, y1, x1) = (y0.max(0), x0.max(0), y1.min(h), x1.min(w));
            let slot = o.get_mut(at).ok_or(short(7))?;
            if y0 >= y1 || x0 >= x1 {
                *slot = T::from_f64(0.0);
                return Ok(());
            }
            let mut sum = zero;
            for iy in y0..y1 {
                for ix in x0..x1 {
                    sum = add(sum, *xs.get(xd.at(n, c, 0, iy as usize, ix as usize)).ok_or(short(0))?);
                }
            }
            let divide_by = match self.divisor {
                Some(d) => d,
                None if self.count_include_pad => pool_size,
                None => (y1 - y0) * (x1 - x0),
            };
            *slot = finish(sum, divide_by);
            Ok(())
        })
    }
}

/// `aten::max_pool2d_with_indices.out(Tensor self, int[2] kernel_size, int[2] stride=[],
/// int[2] padding=0, int[2] dilation=1, bool ceil_mode=False, *, Tensor(a!) out,
/// Tensor(b!) indices) -> (Tensor(a!), Tensor(b!))`
///
/// `indices` holds, for each output, the flat position `h * W + w` of the maximum within its
/// input plane. A NaN in the window wins (the last NaN, as in PyTorch); a window of `-inf` only
/// reports its first position.
pub fn max_pool2d_with_indices_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let window = PoolWindow::read(args, 1, Some(4))?;
    let ceil = args.bool(5)?;
    let mut out = args.tensor_mut(6)?;
    let mut indices = args.tensor_mut(7)?;
    check_pool_input(&x, &out)?;
    if indices.dtype() != DType::Long {
        return Err(KernelError::DtypeMismatch { arg: 7, expected: DType::Long, found: indices.dtype() });
    }
    let xd = Dims5::new(x.sizes(), x.strides(), 2, x.dim() == 4);
    let hw = window.output_size(&xd, ceil)?;
    let shape = pooled_shape(&x, hw);
    out.resize(&shape)?;
    indices.resize(&shape)?;
    let od = Dims5::new(out.sizes(), &out.strides(), 2, x.dim() == 4);
    let id = Dims5::new(indices.sizes(), &indices.strides(), 2, x.dim() == 4);
    let idx = indices.data_mut::<i64>()?;
    let pool = MaxPool { xd, od, id, window };
    let dtype = x.dtype();
    dispatch_float!(dtype, T, C => pool.run::<T>(x.data::<T>()?, out.data_mut::<T>()?, idx, |v, best| {
            let (v, best) = (C::cast_from(v), C::cast_from(best));
            v > best || v.is_nan()
        }),
        _ => dispatch_int!(dtype, T => pool.run::<T>(x.data::<T>()?, out.data_mut::<T>()?, idx, |v, best| {
            v.to_i64() > best.to_i64()
        }),
        _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype })))
}

/// The geometry of one `max_pool2d_with_indices` call.
struct MaxPool {
    xd: Dims5,
    od: Dims5,
    id: Dims5,
    window: PoolWindow,
}

impl MaxPool {
    /// Writes each window's maximum and its flat position; `beats(v, best)` says whether `v`
    /// replaces the maximum so far (for floats: greater, or NaN).
    fn run<T: Element>(
        &self,
        xs: &[T],
        o: &mut [T],
        idx: &mut [i64],
        beats: impl Fn(T, T) -> bool,
    ) -> Result<(), KernelError> {
        let (xd, window) = (&self.xd, &self.window);
        let (h, w) = (to_i64(xd.size[3]), to_i64(xd.size[4]));
        let [dy, dx] = window.dilation;
        for_each_output(&self.od, |n, c, oy, ox, at| {
            let mut y0 = to_i64(oy) * window.stride[0] - window.padding[0];
            let mut x0 = to_i64(ox) * window.stride[1] - window.padding[1];
            let y1 = (y0 + (window.kernel[0] - 1) * dy + 1).min(h);
            let x1 = (x0 + (window.kernel[1] - 1) * dx + 1).min(w);
            // Skip the taps that fall in the top/left padding.
            let overflow = KernelError::Overflow { arg: 4, what: "dilated window" };
            if y0 < 0 {
                y0 += (-y0).checked_add(dy - 1).ok_or(overflow)? / dy * dy;
            }
            if x0 < 0 {
                x0 += (-x0).checked_add(dx - 1).ok_or(overflow)? / dx * dx;
            }
            // A window that misses the input keeps this start position, which may be far outside
            // (PyTorch computes the same int64 product; wrapping only avoids the overflow trap).
            let mut best_index = y0.wrapping_mul(w).wrapping_add(x0);
            // -inf for floats; the saturating conversion gives integers their lowest value.
            let mut best = T::from_f64(f64::NEG_INFINITY);
            let mut iy = y0;
            while iy < y1 {
                let mut ix = x0;
                while ix < x1 {
                    let v = *xs.get(xd.at(n, c, 0, iy as usize, ix as usize)).ok_or(short(0))?;
                    if beats(v, best) {
                        best = v;
                        best_index = iy * w + ix;
                    }
                    let Some(next) = ix.checked_add(dx) else { break };
                    ix = next;
                }
                let Some(next) = iy.checked_add(dy) else { break };
                iy = next;
            }
            *o.get_mut(at).ok_or(short(6))? = best;
            *idx.get_mut(self.id.at(n, c, 0, oy, ox)).ok_or(short(7))? = best_index;
            Ok(())
        })
    }
}

/// `aten::_adaptive_avg_pool2d.out(Tensor self, SymInt[2] output_size, *, Tensor(a!) out)
/// -> Tensor(a!)`
///
/// Output cell `o` of `O` averages input rows `floor(o * I / O) .. ceil((o + 1) * I / O)`.
pub fn adaptive_avg_pool2d_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let size = spatial_param(args, 1, 2, 0, None)?;
    let mut out = args.tensor_mut(2)?;
    check_pool_input(&x, &out)?;
    let hw = [to_size(size[1], 1, "output size")?, to_size(size[2], 1, "output size")?];
    out.resize(&pooled_shape(&x, hw))?;
    let xd = Dims5::new(x.sizes(), x.strides(), 2, x.dim() == 4);
    let od = Dims5::new(out.sizes(), &out.strides(), 2, x.dim() == 4);
    // Window bounds as PyTorch's start_index / end_index: floor(o * I / O) and
    // ceil((o + 1) * I / O), in u128 so the products cannot overflow.
    let start = |o: usize, input: usize, output: usize| (o as u128 * input as u128 / output as u128) as usize;
    let end =
        |o: usize, input: usize, output: usize| ((o as u128 + 1) * input as u128).div_ceil(output as u128) as usize;
    let dtype = x.dtype();
    dispatch_float!(dtype, T, C => {
        let (xs, o) = (x.data::<T>()?, out.data_mut::<T>()?);
        for_each_output(&od, |n, c, oy, ox, at| {
            let (y0, y1) = (start(oy, xd.size[3], hw[0]), end(oy, xd.size[3], hw[0]));
            let (x0, x1) = (start(ox, xd.size[4], hw[1]), end(ox, xd.size[4], hw[1]));
            let mut sum = C::ZERO;
            for iy in y0..y1 {
                for ix in x0..x1 {
                    sum += C::cast_from(*xs.get(xd.at(n, c, 0, iy, ix)).ok_or(short(0))?);
                }
            }
            *o.get_mut(at).ok_or(short(2))? = T::cast_from(sum / C::from_usize(y1 - y0) / C::from_usize(x1 - x0));
            Ok(())
        })
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// Calls `f(n, c, oy, ox, out_offset)` for every output element of a 2-D pooling op.
fn for_each_output(
    od: &Dims5,
    mut f: impl FnMut(usize, usize, usize, usize, usize) -> Result<(), KernelError>,
) -> Result<(), KernelError> {
    for n in 0..od.size[0] {
        for c in 0..od.size[1] {
            for oy in 0..od.size[3] {
                for ox in 0..od.size[4] {
                    f(n, c, oy, ox, od.at(n, c, 0, oy, ox))?;
                }
            }
        }
    }
    Ok(())
}

/// Floating dtypes and int64 (`avg_pool2d`).
const FLOAT_AND_LONG: &[DType] = &[DType::Long, DType::Half, DType::BFloat16, DType::Float, DType::Double];

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::avg_pool2d.out(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_AND_LONG,
            avg_pool2d_out,
        ),
        (
            "aten::max_pool2d_with_indices.out(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False, *, Tensor(a!) out, Tensor(b!) indices) -> (Tensor(a!), Tensor(b!))",
            REAL_DTYPES,
            max_pool2d_with_indices_out,
        ),
        (
            "aten::_adaptive_avg_pool2d.out(Tensor self, SymInt[2] output_size, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            adaptive_avg_pool2d_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::test_support::Call;

    const EXTREMES: [i64; 8] = [i64::MIN, -1, 0, 1, 2, 3, i64::MAX / 2, i64::MAX];

    fn max_pool(x: &[usize], k: &[i64], s: &[i64], p: &[i64], d: &[i64], ceil: bool) -> Result<(), KernelError> {
        let rank = x.len();
        Call::new()
            .ramp(DType::Float, x, 0.5)
            .ints(k)
            .ints(s)
            .ints(p)
            .ints(d)
            .bool(ceil)
            .out(DType::Float, &vec![1; rank], 256)
            .out(DType::Long, &vec![1; rank], 256)
            .run(max_pool2d_with_indices_out)
            .0
    }

    fn avg_pool(x: &[usize], k: &[i64], s: &[i64], p: &[i64], divisor: Option<i64>) -> Result<(), KernelError> {
        let c = Call::new().ramp(DType::Float, x, 0.5).ints(k).ints(s).ints(p).bool(true).bool(false);
        let c = match divisor {
            Some(d) => c.int(d),
            None => c.none(),
        };
        c.out(DType::Float, &vec![1; x.len()], 256).run(avg_pool2d_out).0
    }

    #[test]
    fn max_pool_indices_are_flat_plane_positions() {
        let (r, mut done) = Call::new()
            .ramp(DType::Float, &[1, 1, 4, 4], 1.0)
            .ints(&[2])
            .ints(&[])
            .ints(&[0])
            .ints(&[1])
            .bool(false)
            .out(DType::Float, &[1, 1, 1, 1], 4)
            .out(DType::Long, &[1, 1, 1, 1], 4)
            .run(max_pool2d_with_indices_out);
        r.unwrap();
        assert_eq!(done.tensor::<f32>(6).1, [5.0, 7.0, 13.0, 15.0]);
        assert_eq!(done.tensor::<i64>(7).1, [5, 7, 13, 15]);
    }

    #[test]
    fn integer_pools_match_pytorch() {
        // F.avg_pool2d(int64 [[-7, 9], [-3, 20]], 2, 1, 1): integer division truncates.
        let (r, mut done) = Call::new()
            .tensor(&[1, 1, 2, 2], &[-7i64, 9, -3, 20])
            .ints(&[2])
            .ints(&[1])
            .ints(&[1])
            .bool(false)
            .bool(true)
            .none()
            .out(DType::Long, &[1, 1, 1, 1], 9)
            .run(avg_pool2d_out);
        r.unwrap();
        assert_eq!(done.tensor::<i64>(7).1, [-1, 0, 2, -2, 4, 7, 0, 4, 5]);
        // Max pool over negative integers finds them (not a zero initial maximum).
        let x: Vec<i8> = (1..=16).map(|v| -v).collect();
        let (r, mut done) = Call::new()
            .tensor(&[1, 1, 4, 4], &x)
            .ints(&[2])
            .ints(&[])
            .ints(&[0])
            .ints(&[1])
            .bool(false)
            .out(DType::Char, &[1, 1, 1, 1], 4)
            .out(DType::Long, &[1, 1, 1, 1], 4)
            .run(max_pool2d_with_indices_out);
        r.unwrap();
        assert_eq!(done.tensor::<i8>(6).1, [-1, -3, -9, -11]);
        assert_eq!(done.tensor::<i64>(7).1, [0, 2, 8, 10]);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = [1, 2, 6, 6];
        assert!(max_pool(&x, &[3], &[2], &[1], &[1], true).is_ok());
        assert!(max_pool(&[2, 6, 6, 6, 1], &[3], &[2], &[1], &[1], false).is_err(), "rank 5");
        assert!(max_pool(&[6, 6], &[3], &[2], &[1], &[1], false).is_err(), "rank 2");
        assert!(max_pool(&[1, 0, 6, 6], &[3], &[2], &[1], &[1], false).is_err(), "no channels");
        assert!(max_pool(&x, &[0], &[2], &[0], &[1], false).is_err(), "kernel 0");
        assert!(max_pool(&x, &[3], &[0], &[1], &[1], false).is_err(), "stride 0");
        assert!(max_pool(&x, &[3], &[2], &[2], &[1], false).is_err(), "pad over half the kernel");
        assert!(max_pool(&x, &[3], &[2], &[1], &[0], false).is_err(), "dilation 0");
        assert!(max_pool(&x, &[7], &[2], &[0], &[1], false).is_err(), "kernel over the input");
        assert!(max_pool(&x, &[3, 3, 3], &[2], &[1], &[1], false).is_err(), "kernel list");
        assert!(avg_pool(&x, &[3], &[2], &[1], Some(0)).is_err(), "divisor 0");
        assert!(avg_pool(&x, &[3], &[2], &[1], Some(-3)).is_ok(), "negative divisor is allowed");
        // Indices must be int64.
        let wrong_indices = Call::new()
            .ramp(DType::Float, &x, 0.5)
            .ints(&[2])
            .ints(&[])
            .ints(&[0])
            .ints(&[1])
            .bool(false)
            .out(DType::Float, &[1; 4], 64)
            .out(DType::Int, &[1; 4], 64)
            .run(max_pool2d_with_indices_out)
            .0;
        assert!(matches!(wrong_indices, Err(KernelError::DtypeMismatch { arg: 7, .. })));
        let adaptive = |x: &[usize], size: &[i64]| {
            Call::new()
                .ramp(DType::Float, x, 0.5)
                .ints(size)
                .out(DType::Float, &vec![1; x.len()], 256)
                .run(adaptive_avg_pool2d_out)
                .0
        };
        assert!(adaptive(&x, &[3, 2]).is_ok());
        assert!(adaptive(&x, &[-1, 2]).is_err());
        assert!(adaptive(&x, &[i64::MAX, 2]).is_err());
        assert!(adaptive(&[1, 2, 0, 6], &[3, 2]).is_err());
    }

    #[test]
    fn extreme_parameters_never_panic() {
        let x = [1, 2, 5, 6];
        for &k in &EXTREMES {
            for &s in &EXTREMES {
                for &p in &EXTREMES {
                    for &d in &EXTREMES {
                        for ceil in [false, true] {
                            let _ = max_pool(&x, &[k, 2], &[s, 1], &[p, 0], &[d, 1], ceil);
                        }
                    }
                    let _ = avg_pool(&x, &[k, 2], &[s, 1], &[p, 0], None);
                    let _ = avg_pool(&x, &[k], &[s], &[p], Some(i64::MIN));
                }
            }
        }
    }
}
