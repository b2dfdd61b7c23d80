//! Resampling: `upsample_nearest2d.vec`, `upsample_bilinear2d.vec`, `_upsample_bilinear2d_aa` and
//! `grid_sampler_2d`, on `[N, C, H, W]` inputs in any dim order. Source positions, weights and
//! the precision they are computed in follow PyTorch's CPU kernels (`UpSample.h`,
//! `UpSampleKernel.cpp`, `GridSampler.h`): scales and weights in the compute type (f32 for
//! 16/32-bit floats, f64 for f64).

use crate::args::KernelArgs;
use crate::dtype::Element;
use crate::error::KernelError;
use crate::portable::elementwise::{FLOAT_DTYPES, REAL_DTYPES};
use crate::portable::spatial::{Acc, Dims5, dispatch_float, dispatch_int, short, to_size};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::tensor::{Tensor, TensorMut};

/// Checks a 4-D input with non-empty H and W and an output of its dtype (each kernel's dispatch
/// rejects dtypes it does not support).
fn check_image(x: &Tensor<'_>, out: &TensorMut<'_>) -> Result<(), KernelError> {
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: out.arg(), expected: x.dtype(), found: out.dtype() });
    }
    if x.dim() != 4 || x.sizes()[2] == 0 || x.sizes()[3] == 0 {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "expected a 4-D input with non-empty H and W" });
    }
    Ok(())
}

/// Output `[H, W]` and the scales to pass on, from exactly one of `output_size` and
/// `scale_factors` (PyTorch's `compute_output_size`: `floor(in * scale)` for scale factors).
fn resolve_output_size(
    args: &KernelArgs<'_>,
    x: &Tensor<'_>,
    size_arg: usize,
    scales_arg: usize,
) -> Result<([usize; 2], [Option<f64>; 2]), KernelError> {
    let size = args.opt_int_list(size_arg)?;
    let scales = args.opt_double_list(scales_arg)?;
    let mut hw = [0usize; 2];
    let mut out_scales = [None; 2];
    match (size, scales) {
        (Some(size), None) => {
            let [h, w] = size.to_array::<2>()?;
            hw = [to_size(h, size_arg, "negative output size")?, to_size(w, size_arg, "negative output size")?];
        }
        (None, Some(scales)) => {
            let &[sh, sw] = scales else {
                return Err(KernelError::InvalidArgument { arg: scales_arg, reason: "expected two scale factors" });
            };
            for (k, s) in [sh, sw].into_iter().enumerate() {
                // `as` saturates (and maps NaN to 0), which the size check below rejects.
                let size = (x.sizes()[2 + k] as f64 * s) as i64;
                hw[k] = to_size(size, scales_arg, "scale factor gives a negative size")?;
                out_scales[k] = Some(s);
            }
        }
        _ => {
            return Err(KernelError::InvalidArgument {
                arg: size_arg,
                reason: "specify exactly one of output_size and scale_factors",
            });
        }
    }
    if hw.contains(&0) {
        return Err(KernelError::InvalidArgument { arg: size_arg, reason: "output sizes must be greater than 0" });
    }
    Ok((hw, out_scales))
}

/// PyTorch's `area_pixel_compute_scale`: the input step per output step.
fn pixel_scale<C: Acc>(input: usize, output: usize, align_corners: bool, scale: Option<f64>) -> C {
    if align_corners {
        if output > 1 { C::from_usize(input - 1) / C::from_usize(output - 1) } else { C::ZERO }
    } else {
        match scale {
            Some(s) if s > 0.0 => C::from_f64(1.0 / s),
            _ => C::from_usize(input) / C::from_usize(output),
        }
    }
}

/// The input index nearest-neighbour resampling reads for output index `o` (PyTorch's legacy
/// `nearest` mode: `floor(o * scale)`, with the floor taken in f32 as `floorf` does).
fn nearest_source<C: Acc>(o: usize, input: usize, scale: C) -> usize {
    let real = (scale * C::from_usize(o)).to_f64() as f32;
    (real.floor() as usize).min(input - 1)
}

/// `[N, C, H, W]` sizes of the output with the input's N and C.
fn image_shape(x: &Tensor<'_>, hw: [usize; 2]) -> [usize; 4] {
    [x.sizes()[0], x.sizes()[1], hw[0], hw[1]]
}

/// `aten::upsample_nearest2d.vec_out(Tensor input, SymInt[]? output_size, float[]? scale_factors,
/// *, Tensor(a!) out) -> Tensor(a!)`
pub fn upsample_nearest2d_vec_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(3)?;
    check_image(&x, &out)?;
    let (hw, scales) = resolve_output_size(args, &x, 1, 2)?;
    out.resize(&image_shape(&x, hw))?;
    let xd = Dims5::new(x.sizes(), x.strides(), 2, true);
    let od = Dims5::new(out.sizes(), &out.strides(), 2, true);
    let dtype = x.dtype();
    // Source indices are computed in the float compute type; integer inputs (which PyTorch
    // supports for uint8) use f32, as PyTorch does for them.
    dispatch_float!(dtype, T, C => nearest_copy::<T, C>(x.data::<T>()?, out.data_mut::<T>()?, &xd, &od, scales),
        _ => dispatch_int!(dtype, T => nearest_copy::<T, f32>(x.data::<T>()?, out.data_mut::<T>()?, &xd, &od, scales),
        _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype })))
}

/// Copies each output element from its nearest source, with index arithmetic in `C`.
fn nearest_copy<T: Element, C: Acc>(
    xs: &[T],
    o: &mut [T],
    xd: &Dims5,
    od: &Dims5,
    scales: [Option<f64>; 2],
) -> Result<(), KernelError> {
    let scale_h: C = pixel_scale(xd.size[3], od.size[3], false, scales[0]);
    let scale_w: C = pixel_scale(xd.size[4], od.size[4], false, scales[1]);
    for n in 0..od.size[0] {
        for c in 0..od.size[1] {
            for oy in 0..od.size[3] {
                let iy = nearest_source(oy, xd.size[3], scale_h);
                for ox in 0..od.size[4] {
                    let ix = nearest_source(ox, xd.size[4], scale_w);
                    let v = *xs.get(xd.at(n, c, 0, iy, ix)).ok_or(short(0))?;
                    *o.get_mut(od.at(n, c, 0, oy, ox)).ok_or(short(3))? = v;
                }
            }
        }
    }
    Ok(())
}

/// The two input indices and weights of linear interpolation for one output index (PyTorch's
/// `compute_source_index_and_lambda`).
#[derive(Clone, Copy)]
struct LinearTap<C> {
    i0: usize,
    i1: usize,
    w0: C,
    w1: C,
}

fn linear_tap<T: Element, C: Acc>(
    o: usize,
    input: usize,
    output: usize,
    scale: C,
    align_corners: bool,
) -> LinearTap<C> {
    if input == output {
        return LinearTap { i0: o, i1: o, w0: C::ONE, w1: C::ZERO };
    }
    let real = if align_corners {
        scale * C::from_usize(o)
    } else {
        let r = scale * (C::from_usize(o) + C::from_f64(0.5)) - C::from_f64(0.5);
        if r < C::ZERO { C::ZERO } else { r }
    };
    let i0 = (real.floor().to_f64() as usize).min(input - 1);
    let mut w1 = real - C::from_usize(i0);
    w1 = if w1 < C::ZERO {
        C::ZERO
    } else if w1 > C::ONE {
        C::ONE
    } else {
        w1
    };
    let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
    // PyTorch stores the weights in the input dtype before using them.
    let (w0, w1) = (C::cast_from(T::cast_from(C::ONE - w1)), C::cast_from(T::cast_from(w1)));
    LinearTap { i0, i1, w0, w1 }
}

/// `aten::upsample_bilinear2d.vec_out(Tensor input, SymInt[]? output_size, bool align_corners,
/// float[]? scale_factors, *, Tensor(a!) out) -> Tensor(a!)`
pub fn upsample_bilinear2d_vec_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let align_corners = args.bool(2)?;
    let mut out = args.tensor_mut(4)?;
    check_image(&x, &out)?;
    let (hw, scales) = resolve_output_size(args, &x, 1, 3)?;
    out.resize(&image_shape(&x, hw))?;
    let xd = Dims5::new(x.sizes(), x.strides(), 2, true);
    let od = Dims5::new(out.sizes(), &out.strides(), 2, true);
    let dtype = x.dtype();
    dispatch_float!(dtype, T, C => {
        let (xs, o) = (x.data::<T>()?, out.data_mut::<T>()?);
        let (ih, iw) = (xd.size[3], xd.size[4]);
        let scale_h: C = pixel_scale(ih, hw[0], align_corners, scales[0]);
        let scale_w: C = pixel_scale(iw, hw[1], align_corners, scales[1]);
        let read = |n, c, y, x| xs.get(xd.at(n, c, 0, y, x)).map(|&v| C::cast_from(v)).ok_or(short(0));
        for n in 0..od.size[0] {
            for c in 0..od.size[1] {
                for oy in 0..hw[0] {
                    let ty = linear_tap::<T, C>(oy, ih, hw[0], scale_h, align_corners);
                    for ox in 0..hw[1] {
                        let tx = linear_tap::<T, C>(ox, iw, hw[1], scale_w, align_corners);
                        let top = read(n, c, ty.i0, tx.i0)? * tx.w0 + read(n, c, ty.i0, tx.i1)? * tx.w1;
                        let bottom = read(n, c, ty.i1, tx.i0)? * tx.w0 + read(n, c, ty.i1, tx.i1)? * tx.w1;
                        *o.get_mut(od.at(n, c, 0, oy, ox)).ok_or(short(4))? = T::cast_from(top * ty.w0 + bottom * ty.w1);
                    }
                }
            }
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// The input range and normalisation of one output index of antialiased linear resampling
/// (PyTorch's `_compute_indices_min_size_weights_aa` with the triangle filter): input `i` in
/// `start .. start + len` has weight `filter((i - center + 0.5) * invscale) / total`.
struct AaTap<C> {
    start: usize,
    len: usize,
    center: C,
    invscale: C,
    total: C,
}

impl<C: Acc> AaTap<C> {
    fn new(o: usize, input: usize, scale: C) -> AaTap<C> {
        let half = C::from_f64(0.5);
        let support = if scale >= C::ONE { scale } else { C::ONE };
        let invscale = if scale >= C::ONE { C::ONE / scale } else { C::ONE };
        let center = scale * (C::from_usize(o) + half);
        // Truncation toward zero, as C++'s static_cast<int64_t>.
        let lo = ((center - support + half).to_f64() as i64).max(0);
        let hi = ((center + support + half).to_f64() as i64).min(input as i64);
        // PyTorch clips the window to its largest possible size, ceil(support) * 2 + 1.
        let max_len = (support.to_f64().ceil() as i64).saturating_mul(2).saturating_add(1);
        let len = (hi - lo).clamp(0, max_len) as usize;
        let mut tap = AaTap { start: lo as usize, len, center, invscale, total: C::ZERO };
        tap.total = (0..len).fold(C::ZERO, |acc, j| acc + tap.filter(j));
        tap
    }

    /// Unnormalised weight of the `j`-th input of the window.
    fn filter(&self, j: usize) -> C {
        let t = (C::from_usize(j + self.start) - self.center + C::from_f64(0.5)) * self.invscale;
        let t = t.abs();
        if t < C::ONE { C::ONE - t } else { C::ZERO }
    }

    fn weight(&self, j: usize) -> C {
        if self.total == C::ZERO { self.filter(j) } else { self.filter(j) / self.total }
    }
}

/// `aten::_upsample_bilinear2d_aa.out(Tensor self, SymInt[2] output_size, bool align_corners,
/// float? scales_h=None, float? scales_w=None, *, Tensor(a!) out) -> Tensor(a!)`
///
/// Antialiased (triangle filter widened by the downscale factor) bilinear resampling, as
/// `F.interpolate(..., mode="bilinear", antialias=True)`. PyTorch resamples W then H through a
/// temporary; this computes the same separable sum per output element without one.
pub fn upsample_bilinear2d_aa_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let [h, w] = args.int_list(1)?.to_array::<2>()?;
    let align_corners = args.bool(2)?;
    let scales = [args.opt_double(3)?, args.opt_double(4)?];
    let mut out = args.tensor_mut(5)?;
    check_image(&x, &out)?;
    let hw = [to_size(h, 1, "negative output size")?, to_size(w, 1, "negative output size")?];
    if hw.contains(&0) {
        return Err(KernelError::InvalidArgument { arg: 1, reason: "output sizes must be greater than 0" });
    }
    out.resize(&image_shape(&x, hw))?;
    let xd = Dims5::new(x.sizes(), x.strides(), 2, true);
    let od = Dims5::new(out.sizes(), &out.strides(), 2, true);
    let dtype = x.dtype();
    dispatch_float!(dtype, T, C => {
        let (xs, o) = (x.data::<T>()?, out.data_mut::<T>()?);
        let (ih, iw) = (xd.size[3], xd.size[4]);
        let scale_h: C = pixel_scale(ih, hw[0], align_corners, scales[0]);
        let scale_w: C = pixel_scale(iw, hw[1], align_corners, scales[1]);
        for oy in 0..hw[0] {
            let ty = AaTap::new(oy, ih, scale_h);
            for ox in 0..hw[1] {
                let tx = AaTap::new(ox, iw, scale_w);
                for n in 0..od.size[0] {
                    for c in 0..od.size[1] {
                        let mut sum = C::ZERO;
                        for j in 0..ty.len {
                            let mut row = C::ZERO;
                            for k in 0..tx.len {
                                let v = *xs.get(xd.at(n, c, 0, ty.start + j, tx.start + k)).ok_or(short(0))?;
                                row += C::cast_from(v) * tx.weight(k);
                            }
                            sum += row * ty.weight(j);
                        }
                        *o.get_mut(od.at(n, c, 0, oy, ox)).ok_or(short(5))? = T::cast_from(sum);
                    }
                }
            }
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// How `grid_sampler_2d` treats grid points outside the input.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Padding {
    Zeros,
    Border,
    Reflection,
}

/// Arithmetic in the storage type `T`, carried out in `C` and rounded back to `T` after every
/// operation: PyTorch's grid sampler computes in the input's own dtype, so 16-bit inputs round
/// at each step (for f32 and f64 the rounding is the identity).
#[derive(Clone, Copy)]
struct InDtype<T, C>(core::marker::PhantomData<(T, C)>);

impl<T: Element, C: Acc> InDtype<T, C> {
    #[inline(always)]
    fn r(v: C) -> C {
        C::cast_from(T::cast_from(v))
    }
    #[inline(always)]
    fn c(v: f64) -> C {
        Self::r(C::from_f64(v))
    }
    #[inline(always)]
    fn add(a: C, b: C) -> C {
        Self::r(a + b)
    }
    #[inline(always)]
    fn sub(a: C, b: C) -> C {
        Self::r(a - b)
    }
    #[inline(always)]
    fn mul(a: C, b: C) -> C {
        Self::r(a * b)
    }
    #[inline(always)]
    fn div(a: C, b: C) -> C {
        Self::r(a / b)
    }

    /// PyTorch's `grid_sampler_unnormalize`: grid coordinate in `[-1, 1]` to pixel coordinate.
    fn unnormalize(coord: C, size: usize, align_corners: bool) -> C {
        let (one, two) = (Self::c(1.0), Self::c(2.0));
        if align_corners {
            Self::mul(Self::div(Self::add(coord, one), two), Self::c(size as f64 - 1.0))
        } else {
            Self::div(Self::sub(Self::mul(Self::add(coord, one), Self::c(size as f64)), one), two)
        }
    }

    /// PyTorch's `reflect_coordinates` over `[twice_low / 2, twice_high / 2]`.
    fn reflect(coord: C, twice_low: i64, twice_high: i64) -> C {
        if twice_low == twice_high {
            return C::ZERO;
        }
        let min = Self::div(Self::c(twice_low as f64), Self::c(2.0));
        let span = Self::div(Self::c((twice_high - twice_low) as f64), Self::c(2.0));
        let c = Self::sub(coord, min).abs();
        // fmod is exact, so computing it in f64 gives the value C would.
        let extra = Self::r(C::from_f64(c.to_f64() % span.to_f64()));
        let flips = Self::div(c, span).floor().to_f64();
        if flips.rem_euclid(2.0) == 0.0 { Self::add(extra, min) } else { Self::add(Self::sub(span, extra), min) }
    }

    /// Applies the padding mode to a pixel coordinate (PyTorch's `compute_coordinates`), then
    /// sends NaN and huge values far outside, as `safe_downgrade_to_int_range` does.
    fn pad_coordinate(coord: C, size: usize, padding: Padding, align_corners: bool) -> C {
        let clip = |c: C| {
            let hi = Self::c(size as f64 - 1.0);
            if c.is_nan() {
                c
            } else if c < C::ZERO {
                C::ZERO
            } else if c > hi {
                hi
            } else {
                c
            }
        };
        let c = match padding {
            Padding::Zeros => coord,
            Padding::Border => clip(coord),
            Padding::Reflection => {
                let size = size as i64;
                let r = if align_corners {
                    Self::reflect(coord, 0, 2 * (size - 1))
                } else {
                    Self::reflect(coord, -1, 2 * size - 1)
                };
                clip(r)
            }
        };
        let limit = i32::MAX as f64 - 1.0;
        if c.is_nan() || c.to_f64().abs() > limit { C::from_f64(-100.0) } else { c }
    }

    /// PyTorch's cubic convolution weights (`get_cubic_upsample_coefficients`, A = -0.75).
    fn cubic_coefficients(t: C) -> [C; 4] {
        let a = Self::c(-0.75);
        let k = Self::c;
        // ((A + 2) * x - (A + 3)) * x * x + 1
        let near = |x: C| {
            let p = Self::sub(Self::mul(Self::add(a, k(2.0)), x), Self::add(a, k(3.0)));
            Self::add(Self::mul(Self::mul(p, x), x), k(1.0))
        };
        // ((A * x - 5A) * x + 8A) * x - 4A
        let far = |x: C| {
            let p = Self::sub(Self::mul(a, x), Self::mul(k(5.0), a));
            let p = Self::add(Self::mul(p, x), Self::mul(k(8.0), a));
            Self::sub(Self::mul(p, x), Self::mul(k(4.0), a))
        };
        let u = Self::sub(k(1.0), t);
        [far(Self::add(t, k(1.0))), near(t), near(u), far(Self::add(u, k(1.0)))]
    }
}

/// `aten::grid_sampler_2d.out(Tensor input, Tensor grid, int interpolation_mode, int padding_mode,
/// bool align_corners, *, Tensor(a!) out) -> Tensor(a!)`
///
/// `input` `[N, C, H, W]` sampled at `grid` `[N, H_out, W_out, 2]` (x, y in `[-1, 1]`);
/// interpolation 0 bilinear, 1 nearest, 2 bicubic; padding 0 zeros, 1 border, 2 reflection.
/// Computed in the input's dtype, operation by operation, as PyTorch does.
pub fn grid_sampler_2d_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let grid = args.tensor(1)?;
    let mode = args.int(2)?;
    let padding = match args.int(3)? {
        0 => Padding::Zeros,
        1 => Padding::Border,
        2 => Padding::Reflection,
        v => return Err(KernelError::ValueOutOfRange { arg: 3, value: v, min: 0, max: 2 }),
    };
    if !(0..=2).contains(&mode) {
        return Err(KernelError::ValueOutOfRange { arg: 2, value: mode, min: 0, max: 2 });
    }
    let align_corners = args.bool(4)?;
    let mut out = args.tensor_mut(5)?;
    check_image(&x, &out)?;
    if grid.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 1, expected: x.dtype(), found: grid.dtype() });
    }
    if grid.dim() != 4 || grid.sizes()[3] != 2 || grid.sizes()[0] != x.sizes()[0] {
        return Err(KernelError::ShapeMismatch {
            arg: 1,
            reason: "grid must be [N, H_out, W_out, 2] with the input's N",
        });
    }
    let (ho, wo) = (grid.sizes()[1], grid.sizes()[2]);
    out.resize(&[x.sizes()[0], x.sizes()[1], ho, wo])?;
    let dtype = x.dtype();
    dispatch_float!(dtype, T, C => grid_sample::<T, C>(&x, &grid, &mut out, mode, padding, align_corners),
        _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

fn grid_sample<T: Element, C: Acc>(
    x: &Tensor<'_>,
    grid: &Tensor<'_>,
    out: &mut TensorMut<'_>,
    mode: i64,
    padding: Padding,
    align_corners: bool,
) -> Result<(), KernelError> {
    type A<T, C> = InDtype<T, C>;
    let xd = Dims5::new(x.sizes(), x.strides(), 2, true);
    let od = Dims5::new(out.sizes(), &out.strides(), 2, true);
    let gs = grid.strides();
    let (xs, g) = (x.data::<T>()?, grid.data::<T>()?);
    let o = out.data_mut::<T>()?;
    let (ih, iw) = (xd.size[3], xd.size[4]);
    // Input value at integer (x, y), or zero outside.
    let value = |n: usize, c: usize, px: i64, py: i64| -> Result<C, KernelError> {
        if px < 0 || py < 0 || px as usize >= iw || py as usize >= ih {
            return Ok(C::ZERO);
        }
        xs.get(xd.at(n, c, 0, py as usize, px as usize)).map(|&v| C::cast_from(v)).ok_or(short(0))
    };
    let floor_i = |v: C| v.floor().to_f64() as i64;
    let int = |v: i64| A::<T, C>::c(v as f64);
    for n in 0..od.size[0] {
        for oy in 0..od.size[3] {
            for ox in 0..od.size[4] {
                let at = n * gs[0] + oy * gs[1] + ox * gs[2];
                let gx = C::cast_from(*g.get(at).ok_or(short(1))?);
                let gy = C::cast_from(*g.get(at + gs[3]).ok_or(short(1))?);
                let (ux, uy) =
                    (A::<T, C>::unnormalize(gx, iw, align_corners), A::<T, C>::unnormalize(gy, ih, align_corners));
                let (px, py) = (
                    A::<T, C>::pad_coordinate(ux, iw, padding, align_corners),
                    A::<T, C>::pad_coordinate(uy, ih, padding, align_corners),
                );
                for c in 0..od.size[1] {
                    let v = match mode {
                        // A NaN or infinite coordinate makes NaN corner weights in PyTorch
                        // (inf - floor(inf)), and so a NaN sample even though every corner
                        // counts as outside.
                        0 if !(ux.to_f64().is_finite() && uy.to_f64().is_finite()) => C::from_f64(f64::NAN),
                        0 => {
                            let (x0, y0) = (floor_i(px), floor_i(py));
                            // Areas to the opposite corners, as PyTorch forms them.
                            let (dx0, dx1) = (A::<T, C>::sub(px, int(x0)), A::<T, C>::sub(int(x0 + 1), px));
                            let (dy0, dy1) = (A::<T, C>::sub(py, int(y0)), A::<T, C>::sub(int(y0 + 1), py));
                            let corners = [
                                (x0, y0, A::<T, C>::mul(dx1, dy1)),
                                (x0 + 1, y0, A::<T, C>::mul(dx0, dy1)),
                                (x0, y0 + 1, A::<T, C>::mul(dx1, dy0)),
                                (x0 + 1, y0 + 1, A::<T, C>::mul(dx0, dy0)),
                            ];
                            let mut sum = C::ZERO;
                            for (cx, cy, w) in corners {
                                if cx >= 0 && cy >= 0 && (cx as usize) < iw && (cy as usize) < ih {
                                    sum = A::<T, C>::add(sum, A::<T, C>::mul(value(n, c, cx, cy)?, w));
                                }
                            }
                            sum
                        }
                        1 => {
                            // nearbyint: round half to even.
                            let rx = px.to_f64().round_ties_even() as i64;
                            let ry = py.to_f64().round_ties_even() as i64;
                            value(n, c, rx, ry)?
                        }
                        _ => {
                            // Bicubic taps are padded one by one.
                            let (x0, y0) = (ux.floor(), uy.floor());
                            let wx = A::<T, C>::cubic_coefficients(A::<T, C>::sub(ux, x0));
                            let wy = A::<T, C>::cubic_coefficients(A::<T, C>::sub(uy, y0));
                            let tap = |base: C, k: usize, size: usize| {
                                let p = A::<T, C>::add(base, A::<T, C>::c(k as f64 - 1.0));
                                floor_i(A::<T, C>::pad_coordinate(p, size, padding, align_corners))
                            };
                            let mut sum = C::ZERO;
                            for (j, &wyj) in wy.iter().enumerate() {
                                let mut row = C::ZERO;
                                for (i, &wxi) in wx.iter().enumerate() {
                                    let v = value(n, c, tap(x0, i, iw), tap(y0, j, ih))?;
                                    row = A::<T, C>::add(row, A::<T, C>::mul(v, wxi));
                                }
                                sum = A::<T, C>::add(sum, A::<T, C>::mul(row, wyj));
                            }
                            sum
                        }
                    };
                    *o.get_mut(od.at(n, c, 0, oy, ox)).ok_or(short(5))? = T::cast_from(v);
                }
            }
        }
    }
    Ok(())
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::upsample_nearest2d.vec_out(Tensor input, SymInt[]? output_size, float[]? scale_factors, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            upsample_nearest2d_vec_out,
        ),
        (
            "aten::upsample_bilinear2d.vec_out(Tensor input, SymInt[]? output_size, bool align_corners, float[]? scale_factors, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            upsample_bilinear2d_vec_out,
        ),
        (
            "aten::_upsample_bilinear2d_aa.out(Tensor self, SymInt[2] output_size, bool align_corners, float? scales_h=None, float? scales_w=None, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            upsample_bilinear2d_aa_out,
        ),
        (
            "aten::grid_sampler_2d.out(Tensor input, Tensor grid, int interpolation_mode, int padding_mode, bool align_corners, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            grid_sampler_2d_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::portable::test_support::Call;

    fn nearest(x: &[usize], size: Option<&[i64]>, scales: Option<&[f64]>) -> Result<(), KernelError> {
        let c = Call::new().ramp(DType::Float, x, 0.5);
        let c = match size {
            Some(s) => c.ints(s),
            None => c.none(),
        };
        let c = match scales {
            Some(s) => c.doubles(s),
            None => c.none(),
        };
        c.out(DType::Float, &vec![1; x.len()], 512).run(upsample_nearest2d_vec_out).0
    }

    fn bilinear(size: Option<&[i64]>, scales: Option<&[f64]>) -> Result<(), KernelError> {
        let c = Call::new().ramp(DType::Float, &[1, 2, 4, 5], 0.5);
        let c = match size {
            Some(s) => c.ints(s),
            None => c.none(),
        };
        let c = c.bool(false);
        let c = match scales {
            Some(s) => c.doubles(s),
            None => c.none(),
        };
        c.out(DType::Float, &[1; 4], 512).run(upsample_bilinear2d_vec_out).0
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = [1, 2, 4, 5];
        assert!(nearest(&x, Some(&[7, 9]), None).is_ok());
        assert!(nearest(&x, None, Some(&[1.5, 2.0])).is_ok());
        assert!(nearest(&x, Some(&[7, 9]), Some(&[1.5, 2.0])).is_err(), "both");
        assert!(nearest(&x, None, None).is_err(), "neither");
        assert!(nearest(&x, Some(&[7]), None).is_err(), "one size");
        assert!(nearest(&x, Some(&[0, 9]), None).is_err(), "empty output");
        assert!(nearest(&x, Some(&[-7, 9]), None).is_err(), "negative size");
        assert!(nearest(&x, None, Some(&[f64::NAN, 2.0])).is_err(), "NaN scale");
        assert!(nearest(&x, None, Some(&[-1.0, 2.0])).is_err(), "negative scale");
        assert!(nearest(&x, None, Some(&[f64::INFINITY, 2.0])).is_err(), "infinite scale");
        assert!(nearest(&x, None, Some(&[1e300, 1e300])).is_err(), "huge scale");
        assert!(nearest(&[2, 4, 5], Some(&[7, 9]), None).is_err(), "rank 3");
        assert!(nearest(&[1, 2, 0, 5], Some(&[7, 9]), None).is_err(), "empty input plane");
        assert!(bilinear(Some(&[i64::MAX, i64::MAX]), None).is_err());
        assert!(bilinear(None, Some(&[0.5, 0.5])).is_ok());
        let aa = |size: &[i64], scales: [Option<f64>; 2]| {
            let c = Call::new().ramp(DType::Float, &[1, 2, 9, 9], 0.5).ints(size).bool(false);
            let c = match scales[0] {
                Some(s) => c.double(s),
                None => c.none(),
            };
            let c = match scales[1] {
                Some(s) => c.double(s),
                None => c.none(),
            };
            c.out(DType::Float, &[1; 4], 512).run(upsample_bilinear2d_aa_out).0
        };
        assert!(aa(&[3, 4], [None, None]).is_ok());
        assert!(aa(&[3, 4], [Some(1e-300), Some(f64::NAN)]).is_ok(), "odd scales only change weights");
        assert!(aa(&[3], [None, None]).is_err());
        assert!(aa(&[0, 4], [None, None]).is_err());
    }

    #[test]
    fn grid_sampler_checks_modes_and_shapes() {
        let grid = |sizes: &[usize], mode: i64, padding: i64| {
            Call::new()
                .ramp(DType::Float, &[2, 3, 4, 5], 0.5)
                .ramp(DType::Float, sizes, 0.37)
                .int(mode)
                .int(padding)
                .bool(false)
                .out(DType::Float, &[1; 4], 512)
                .run(grid_sampler_2d_out)
                .0
        };
        for mode in 0..3 {
            for padding in 0..3 {
                assert!(grid(&[2, 3, 4, 2], mode, padding).is_ok(), "{mode} {padding}");
            }
        }
        assert!(grid(&[2, 3, 4, 2], 3, 0).is_err());
        assert!(grid(&[2, 3, 4, 2], 0, -1).is_err());
        assert!(grid(&[2, 3, 4, 3], 0, 0).is_err(), "last dim not 2");
        assert!(grid(&[1, 3, 4, 2], 0, 0).is_err(), "batch differs");
        assert!(grid(&[2, 3, 2], 0, 0).is_err(), "rank");
        // Non-finite and huge grid values sample nothing rather than indexing out of bounds.
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30] {
            for mode in 0..3 {
                for padding in 0..3 {
                    let (r, mut done) = Call::new()
                        .ramp(DType::Float, &[1, 1, 3, 3], 1.0)
                        .tensor(&[1, 1, 1, 2], &[v, v])
                        .int(mode)
                        .int(padding)
                        .bool(true)
                        .out(DType::Float, &[1; 4], 4)
                        .run(grid_sampler_2d_out);
                    r.unwrap();
                    let out = done.tensor::<f32>(5).1;
                    assert_eq!(out.len(), 1);
                }
            }
        }
    }
}
