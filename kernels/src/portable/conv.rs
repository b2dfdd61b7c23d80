//! `aten::convolution.out`: 1-D, 2-D and 3-D convolution, grouped (depthwise included) and
//! transposed, over any dim order (contiguous and channels-last alike).
//!
//! Both directions are computed as a gather: each output element is the sum of the products that
//! reach it, accumulated in PyTorch's compute type and rounded once. Outputs are produced a row
//! segment at a time (`CHUNK` positions along the innermost spatial dim) so that the innermost
//! loop is an axpy over that segment, which the compiler vectorises when the input row is dense.

use crate::args::KernelArgs;
use crate::dtype::Element;
use crate::error::KernelError;
use crate::portable::elementwise::{REAL_DTYPES, Src};
use crate::portable::spatial::{
    Accumulator, Dims5, WrappingI64, dispatch_float, dispatch_int, short, spatial_param, strided_axpy, to_i64, to_size,
    valid_range, window_output_size,
};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::tensor::{Tensor, TensorMut};

/// Output positions computed together along the innermost spatial dim (a stack buffer).
const CHUNK: usize = 256;

/// Argument positions in the schema.
const INPUT: usize = 0;
const WEIGHT: usize = 1;
const BIAS: usize = 2;
const STRIDE: usize = 3;
const PADDING: usize = 4;
const DILATION: usize = 5;
const TRANSPOSED: usize = 6;
const OUTPUT_PADDING: usize = 7;
const GROUPS: usize = 8;
const OUT: usize = 9;

/// The checked geometry of one convolution call. Spatial parameters are in `[D, H, W]` order;
/// 1-D and 2-D convolutions have size-1 leading spatial dims with stride 1 and no padding.
#[derive(Debug, Clone, Copy)]
struct ConvGeometry {
    transposed: bool,
    groups: usize,
    /// Input and output channels per group.
    in_per_group: usize,
    out_per_group: usize,
    stride: [i64; 3],
    padding: [i64; 3],
    dilation: [i64; 3],
    kernel: [usize; 3],
    x: Dims5,
    w: Dims5,
    out: Dims5,
}

/// `aten::convolution.out(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride,
/// SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups, *,
/// Tensor(a!) out) -> Tensor(a!)`
///
/// `input` is `[N, C_in, *spatial]` with 1 to 3 spatial dims. `weight` is
/// `[C_out, C_in / groups, *kernel]`, or `[C_in, C_out / groups, *kernel]` when transposed.
pub fn convolution_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(INPUT)?;
    let w = args.tensor(WEIGHT)?;
    let bias = args.opt_tensor(BIAS)?;
    let mut out = args.tensor_mut(OUT)?;
    convolution_into(args, &x, &w, bias, &mut out)
}

/// [`convolution_out`] on arguments already taken from `args` (the optimized kernel hands over
/// the calls it does not cover after it took the output).
pub(crate) fn convolution_into(
    args: &KernelArgs<'_>,
    x: &Tensor<'_>,
    w: &Tensor<'_>,
    bias: Option<Tensor<'_>>,
    out: &mut TensorMut<'_>,
) -> Result<(), KernelError> {
    if !REAL_DTYPES.contains(&x.dtype()) {
        return Err(KernelError::UnsupportedDtype { arg: INPUT, dtype: x.dtype() });
    }
    if x.dtype() != w.dtype() {
        return Err(KernelError::DtypeMismatch { arg: WEIGHT, expected: x.dtype(), found: w.dtype() });
    }
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: OUT, expected: x.dtype(), found: out.dtype() });
    }
    // Integer convolutions take an integer bias, float ones a float bias (of any width).
    if let Some(b) = &bias
        && (b.dtype().is_floating_point() != x.dtype().is_floating_point() || b.dtype() == crate::DType::Bool)
    {
        return Err(KernelError::DtypeMismatch { arg: BIAS, expected: x.dtype(), found: b.dtype() });
    }
    let (sizes, mut geometry) = plan(args, x, w, bias.as_ref())?;
    out.resize(&sizes[..x.dim()])?;
    geometry.out = Dims5::new(out.sizes(), &out.strides(), x.dim() - 2, true);
    geometry.flatten_pointwise();
    if out.numel() == 0 {
        return Ok(());
    }
    let bias = bias.as_ref().map(Src::of).transpose()?;
    let dtype = x.dtype();
    let bias_at = |oc: usize| bias.map(|b| (b.get::<f64>(oc), b.get::<i64>(oc)));
    dispatch_float!(dtype, T, C => run::<T, C>(&geometry, x.data::<T>()?, w.data::<T>()?, |oc| {
            bias_at(oc).map_or(<C as Accumulator>::ZERO, |(f, _)| C::from_f64(f))
        }, out),
        _ => dispatch_int!(dtype, T => run::<T, WrappingI64>(&geometry, x.data::<T>()?, w.data::<T>()?, |oc| {
            WrappingI64(bias_at(oc).map_or(0, |(_, i)| i))
        }, out),
        _ => Err(KernelError::UnsupportedDtype { arg: INPUT, dtype })))
}

/// Checks the arguments and computes the output sizes (`[N, C_out, *spatial]`, padded to 5).
fn plan(
    args: &KernelArgs<'_>,
    x: &Tensor<'_>,
    w: &Tensor<'_>,
    bias: Option<&Tensor<'_>>,
) -> Result<([usize; 5], ConvGeometry), KernelError> {
    let rank = x.dim();
    if !(3..=5).contains(&rank) {
        return Err(KernelError::ShapeMismatch { arg: INPUT, reason: "convolution expects a 3-D, 4-D or 5-D input" });
    }
    if w.dim() != rank {
        return Err(KernelError::ShapeMismatch { arg: WEIGHT, reason: "weight rank differs from input rank" });
    }
    let spatial = rank - 2;
    let transposed = args.bool(TRANSPOSED)?;
    let stride = spatial_param(args, STRIDE, spatial, 1, None)?;
    let padding = spatial_param(args, PADDING, spatial, 0, None)?;
    let dilation = spatial_param(args, DILATION, spatial, 1, None)?;
    let output_padding = spatial_param(args, OUTPUT_PADDING, spatial, 0, Some([0; 3]))?;
    let groups = args.int(GROUPS)?;
    if groups < 1 {
        return Err(KernelError::ValueOutOfRange { arg: GROUPS, value: groups, min: 1, max: i64::MAX });
    }
    let groups = to_size(groups, GROUPS, "groups")?;
    let (xs, ws) = (x.sizes(), w.sizes());
    let in_channels = xs[1];
    if ws[0] % groups != 0 {
        return Err(KernelError::ShapeMismatch { arg: WEIGHT, reason: "weight.size(0) is not divisible by groups" });
    }
    let (in_per_group, out_per_group, out_channels) = if transposed {
        if ws[0] != in_channels {
            return Err(KernelError::ShapeMismatch {
                arg: WEIGHT,
                reason: "weight.size(0) differs from input channels",
            });
        }
        let out_channels = ws[1].checked_mul(groups).ok_or(KernelError::Overflow { arg: GROUPS, what: "channels" })?;
        (in_channels / groups, ws[1], out_channels)
    } else {
        if ws[1].checked_mul(groups) != Some(in_channels) {
            return Err(KernelError::ShapeMismatch {
                arg: WEIGHT,
                reason: "input channels differ from weight.size(1) * groups",
            });
        }
        (ws[1], ws[0] / groups, ws[0])
    };
    if let Some(b) = bias
        && (b.dim() != 1 || b.sizes()[0] != out_channels)
    {
        return Err(KernelError::ShapeMismatch {
            arg: BIAS,
            reason: "bias must be 1-D with one value per output channel",
        });
    }
    let mut sizes = [1usize; 5];
    sizes[0] = xs[0];
    sizes[1] = out_channels;
    let mut kernel = [1usize; 3];
    for k in 0..spatial {
        let d = 3 - spatial + k;
        let (input, kern) = (to_i64(xs[2 + k]), to_i64(ws[2 + k]));
        kernel[d] = ws[2 + k];
        let (s, p, dil, op) = (stride[d], padding[d], dilation[d], output_padding[d]);
        let size = if transposed {
            if op >= s && op >= dil {
                return Err(KernelError::InvalidArgument {
                    arg: OUTPUT_PADDING,
                    reason: "output padding must be smaller than either stride or dilation",
                });
            }
            // (in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
            (|| {
                (input - 1)
                    .checked_mul(s)?
                    .checked_sub(p.checked_mul(2)?)?
                    .checked_add(dil.checked_mul(kern - 1)?)?
                    .checked_add(op)?
                    .checked_add(1)
            })()
        } else {
            window_output_size(input, kern, p, s, dil, false)
        };
        let size = size.ok_or(KernelError::Overflow { arg: PADDING, what: "output size" })?;
        if size < 1 || kern < 1 {
            return Err(KernelError::ShapeMismatch {
                arg: WEIGHT,
                reason: "kernel (with dilation and padding) does not fit the input",
            });
        }
        // The gather reads input position (o + padding - k * dilation) / stride for outputs o:
        // that sum must not overflow (everything else is bounded by checked values above).
        if transposed && size.checked_add(p).is_none() {
            return Err(KernelError::Overflow { arg: PADDING, what: "output size" });
        }
        sizes[2 + k] = to_size(size, PADDING, "output size")?;
    }
    // 1-D and 2-D: leading spatial dims are unit and unpadded.
    let mut stride = stride;
    let mut dilation = dilation;
    for d in 0..3 - spatial {
        stride[d] = 1;
        dilation[d] = 1;
    }
    let geometry = ConvGeometry {
        transposed,
        groups,
        in_per_group,
        out_per_group,
        stride,
        padding,
        dilation,
        kernel,
        x: Dims5::new(xs, x.strides(), spatial, true),
        w: Dims5::new(ws, w.strides(), spatial, true),
        out: Dims5 { size: [0; 5], stride: [0; 5] },
    };
    Ok((sizes, geometry))
}

impl ConvGeometry {
    /// A pointwise convolution (1x1 kernel, unit stride, no padding) maps each input position to
    /// the same output position, so when input and output walk their spatial dims with one
    /// uniform step (contiguous or channels-last planes), the spatial dims are one long row: fewer,
    /// longer inner loops.
    fn flatten_pointwise(&mut self) {
        let pointwise = !self.transposed && self.kernel == [1; 3] && self.stride == [1; 3] && self.padding == [0; 3];
        if let (true, Some(x_step), Some(out_step)) = (pointwise, row_step(&self.x), row_step(&self.out)) {
            for (d, step) in [(&mut self.x, x_step), (&mut self.out, out_step)] {
                d.size[4] *= d.size[2] * d.size[3];
                d.size[2] = 1;
                d.size[3] = 1;
                d.stride[4] = step;
            }
        }
    }
}

/// The step between consecutive spatial positions of `d` when its spatial dims are laid out as
/// one row with a uniform step (contiguous and channels-last planes are), else `None`.
fn row_step(d: &Dims5) -> Option<usize> {
    let mut step = None;
    let mut next = 0;
    for k in (2..5).rev() {
        if d.size[k] == 1 {
            continue;
        }
        match step {
            None => step = Some(d.stride[k]),
            Some(_) if d.stride[k] != next => return None,
            Some(_) => {}
        }
        next = d.size[k] * d.stride[k];
    }
    Some(step.unwrap_or(1))
}

/// Runs the convolution with storage type `T`, computing in `C`.
fn run<T: Element, C: Accumulator>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: impl Fn(usize) -> C,
    out: &mut TensorMut<'_>,
) -> Result<(), KernelError> {
    let o = out.data_mut::<T>()?;
    let os = g.out.size;
    let mut acc = [C::ZERO; CHUNK];
    for n in 0..os[0] {
        for group in 0..g.groups {
            for oz in 0..os[2] {
                for oy in 0..os[3] {
                    for x0 in (0..os[4]).step_by(CHUNK) {
                        let len = CHUNK.min(os[4] - x0);
                        for j in 0..g.out_per_group {
                            let oc = group * g.out_per_group + j;
                            let b = bias(oc);
                            let acc = &mut acc[..len];
                            acc.fill(b);
                            let window = Window { n, group, j, oz, oy, x0: to_i64(x0), len };
                            if g.transposed {
                                accumulate_transposed(g, x, w, &window, acc)
                            } else {
                                accumulate(g, x, w, &window, acc)
                            }
                            .ok_or(short(INPUT))?;
                            let base = g.out.at(n, oc, oz, oy, x0);
                            for (k, &a) in acc.iter().enumerate() {
                                *o.get_mut(base + k * g.out.stride[4]).ok_or(short(OUT))? = a.store::<T>();
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The output row segment being computed: batch `n`, output channel `j` of `group`, position
/// `[oz, oy, x0 .. x0 + len]`.
struct Window {
    n: usize,
    group: usize,
    j: usize,
    oz: usize,
    oy: usize,
    x0: i64,
    len: usize,
}

/// Direct convolution: `out[oc, o] += w[oc, ic, k] * x[ic, o * stride + k * dilation - padding]`.
fn accumulate<T: Element, C: Accumulator>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    win: &Window,
    acc: &mut [C],
) -> Option<()> {
    let xs = g.x.size;
    let oc = win.group * g.out_per_group + win.j;
    let (x1, step) = (win.x0 + to_i64(win.len), g.stride[2]);
    for icg in 0..g.in_per_group {
        let ic = win.group * g.in_per_group + icg;
        for kz in 0..g.kernel[0] {
            let iz = to_i64(win.oz) * g.stride[0] + to_i64(kz) * g.dilation[0] - g.padding[0];
            let Ok(iz) = usize::try_from(iz) else { continue };
            if iz >= xs[2] {
                continue;
            }
            for ky in 0..g.kernel[1] {
                let iy = to_i64(win.oy) * g.stride[1] + to_i64(ky) * g.dilation[1] - g.padding[1];
                let Ok(iy) = usize::try_from(iy) else { continue };
                if iy >= xs[3] {
                    continue;
                }
                let x_row = g.x.at(win.n, ic, iz, iy, 0);
                let w_row = g.w.at(oc, icg, kz, ky, 0);
                for kx in 0..g.kernel[2] {
                    let weight = C::load(*w.get(w_row + kx * g.w.stride[4])?);
                    let offset = to_i64(kx) * g.dilation[2] - g.padding[2];
                    let (lo, hi) = valid_range(win.x0, x1, step, offset, to_i64(xs[4]));
                    if lo >= hi {
                        continue;
                    }
                    // Both ends are in range, so these conversions cannot fail.
                    let ix = usize::try_from(lo * step + offset).ok()?;
                    let first = usize::try_from(lo - win.x0).ok()?;
                    let count = usize::try_from(hi - lo).ok()?;
                    // Saturating: a step this large only occurs with a single position (count 1),
                    // where it is never applied.
                    let x_step = usize::try_from(step).ok()?.saturating_mul(g.x.stride[4]);
                    strided_axpy(
                        acc.get_mut(first..)?,
                        1,
                        weight,
                        x.get(x_row + ix * g.x.stride[4]..)?,
                        x_step,
                        count,
                    )?;
                }
            }
        }
    }
    Some(())
}

/// Transposed convolution as a gather: input position `i` reaches output
/// `i * stride + k * dilation - padding`, so output `o` sums the `(i, k)` pairs that land on it.
fn accumulate_transposed<T: Element, C: Accumulator>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    win: &Window,
    acc: &mut [C],
) -> Option<()> {
    let xs = g.x.size;
    let x1 = win.x0 + to_i64(win.len);
    // The input position that reaches output `o` through kernel tap `k`, if any.
    let source = |o: usize, k: usize, d: usize, size: usize| -> Option<usize> {
        let t = to_i64(o) + g.padding[d] - to_i64(k) * g.dilation[d];
        if t < 0 || t % g.stride[d] != 0 {
            return None;
        }
        usize::try_from(t / g.stride[d]).ok().filter(|&i| i < size)
    };
    for icg in 0..g.in_per_group {
        let ic = win.group * g.in_per_group + icg;
        for kz in 0..g.kernel[0] {
            let Some(iz) = source(win.oz, kz, 0, xs[2]) else { continue };
            for ky in 0..g.kernel[1] {
                let Some(iy) = source(win.oy, ky, 1, xs[3]) else { continue };
                let x_row = g.x.at(win.n, ic, iz, iy, 0);
                let w_row = g.w.at(ic, win.j, kz, ky, 0);
                for kx in 0..g.kernel[2] {
                    let weight = C::load(*w.get(w_row + kx * g.w.stride[4])?);
                    // Output o = i * stride + offset lies in [x0, x1) for i in [lo, hi).
                    let (step, offset) = (g.stride[2], to_i64(kx) * g.dilation[2] - g.padding[2]);
                    let lo = (win.x0 - offset).div_euclid(step) + i64::from((win.x0 - offset).rem_euclid(step) != 0);
                    let hi = (x1 - 1 - offset).div_euclid(step) + 1;
                    let (lo, hi) = (lo.max(0), hi.min(to_i64(xs[4])));
                    if lo >= hi {
                        continue;
                    }
                    let first = usize::try_from(lo * step + offset - win.x0).ok()?;
                    let count = usize::try_from(hi - lo).ok()?;
                    let ix = usize::try_from(lo).ok()?;
                    let acc_step = usize::try_from(step).ok()?;
                    strided_axpy(
                        acc.get_mut(first..)?,
                        acc_step,
                        weight,
                        x.get(x_row + ix * g.x.stride[4]..)?,
                        g.x.stride[4],
                        count,
                    )?;
                }
            }
        }
    }
    Some(())
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[(
        "aten::convolution.out(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups, *, Tensor(a!) out) -> Tensor(a!)",
        REAL_DTYPES,
        convolution_out,
    )];
    crate::portable::register_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::portable::test_support::{Call, assert_close};

    /// Parameters of one convolution call.
    struct Conv<'a> {
        x: &'a [usize],
        w: &'a [usize],
        bias: Option<usize>,
        stride: &'a [i64],
        padding: &'a [i64],
        dilation: &'a [i64],
        transposed: bool,
        output_padding: &'a [i64],
        groups: i64,
    }

    impl Conv<'_> {
        fn call(&self, dtype: DType) -> Call {
            let mut c = Call::new().ramp(dtype, self.x, 0.1).ramp(dtype, self.w, -0.05);
            c = match self.bias {
                Some(n) => c.ramp(dtype, &[n], 0.5),
                None => c.none(),
            };
            let rank = self.x.len();
            c.ints(self.stride)
                .ints(self.padding)
                .ints(self.dilation)
                .bool(self.transposed)
                .ints(self.output_padding)
                .int(self.groups)
                .out(dtype, &vec![1; rank], 4096)
        }

        fn run(&self) -> Result<(), KernelError> {
            self.call(DType::Float).run(convolution_out).0
        }
    }

    const BASE: Conv<'static> = Conv {
        x: &[1, 4, 5, 6],
        w: &[6, 2, 3, 3],
        bias: Some(6),
        stride: &[1, 1],
        padding: &[1, 1],
        dilation: &[1, 1],
        transposed: false,
        output_padding: &[0, 0],
        groups: 2,
    };

    #[test]
    fn grouped_transposed_matches_pytorch() {
        // torch.ops.aten.convolution(x, w, b, [2, 1], [0, 1], [1, 1], True, [1, 0], 2) with
        // x[i] = (i * 5 % 7) * 0.5 - 1.5, w[i] = (i * 3 % 5) * 0.25 - 0.5, b = [0.5, -0.5].
        let x: Vec<f32> = (0..36).map(|i| ((i * 5) % 7) as f32 * 0.5 - 1.5).collect();
        let w: Vec<f32> = (0..16).map(|i| ((i * 3) % 5) as f32 * 0.25 - 0.5).collect();
        let (r, mut done) = Call::new()
            .tensor(&[1, 4, 3, 3], &x)
            .tensor(&[4, 1, 2, 2], &w)
            .tensor(&[2], &[0.5f32, -0.5])
            .ints(&[2, 1])
            .ints(&[0, 1])
            .ints(&[1, 1])
            .bool(true)
            .ints(&[1, 0])
            .int(2)
            .out(DType::Float, &[1, 1, 1, 1], 64)
            .run(convolution_out);
        r.unwrap();
        let (sizes, got) = done.tensor::<f32>(9);
        assert_eq!(sizes, [1, 2, 7, 2]);
        let want = [
            -0.375, 1.25, -0.75, 1.625, -0.75, 0.875, -0.625, 0.875, 0.625, -0.375, 0.375, -0.75, 0.5, 0.5, -0.125,
            -1.75, -0.125, 0.625, 0.25, -1.375, -1.375, 0.25, 0.625, -0.125, -1.75, -0.125, -0.5, -0.5,
        ];
        assert_close(&got, &want, 1e-6);
    }

    #[test]
    fn integer_convolution_wraps_like_pytorch() {
        // torch.ops.aten.convolution on int8 [100, 100] * [2, 1] + (-3) gives 41 (297 mod 256).
        let (r, mut done) = Call::new()
            .tensor(&[1, 1, 1, 2], &[100i8, 100])
            .tensor(&[1, 1, 1, 2], &[2i8, 1])
            .tensor(&[1], &[-3i8])
            .ints(&[1, 1])
            .ints(&[0, 0])
            .ints(&[1, 1])
            .bool(false)
            .ints(&[0, 0])
            .int(1)
            .out(DType::Char, &[1, 1, 1, 1], 1)
            .run(convolution_out);
        r.unwrap();
        assert_eq!(done.tensor::<i8>(9).1, [41]);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(BASE.run().is_ok());
        let cases: [(&str, Conv<'_>); 17] = [
            ("input rank 2", Conv { x: &[4, 5], w: &[6, 2], ..BASE }),
            ("input rank 6", Conv { x: &[1, 4, 2, 2, 2, 2], w: &[6, 2, 1, 1, 1, 1], ..BASE }),
            ("weight rank", Conv { w: &[6, 2, 3], ..BASE }),
            ("channels", Conv { x: &[1, 3, 5, 6], ..BASE }),
            ("groups 0", Conv { groups: 0, ..BASE }),
            ("groups negative", Conv { groups: -2, ..BASE }),
            ("groups not dividing", Conv { groups: 4, w: &[6, 1, 3, 3], ..BASE }),
            ("stride 0", Conv { stride: &[0, 1], ..BASE }),
            ("stride list", Conv { stride: &[1, 1, 1], ..BASE }),
            ("negative padding", Conv { padding: &[-1, 0], ..BASE }),
            ("dilation 0", Conv { dilation: &[1, 0], ..BASE }),
            ("kernel too big", Conv { padding: &[0, 0], dilation: &[3, 1], ..BASE }),
            ("bias size", Conv { bias: Some(5), ..BASE }),
            ("output padding", Conv { transposed: true, w: &[4, 3, 3, 3], output_padding: &[1, 0], ..BASE }),
            ("transposed channels", Conv { transposed: true, w: &[6, 3, 3, 3], ..BASE }),
            ("output too small", Conv { x: &[4, 4, 20, 20], ..BASE }),
            ("empty stride", Conv { stride: &[], ..BASE }),
        ];
        for (what, c) in cases {
            assert!(c.run().is_err(), "{what}");
        }
        // Dtypes: weight differs from input, integer input.
        let c = Call::new().ramp(DType::Float, BASE.x, 1.0).ramp(DType::Double, BASE.w, 1.0);
        let c = c.none().ints(&[1]).ints(&[0]).ints(&[1]).bool(false).ints(&[0]).int(2).out(DType::Float, &[1; 4], 512);
        assert!(matches!(c.run(convolution_out).0, Err(KernelError::DtypeMismatch { arg: WEIGHT, .. })));
        assert!(matches!(BASE.call(DType::Bool).run(convolution_out).0, Err(KernelError::UnsupportedDtype { .. })));
        let float_bias = Call::new().ramp(DType::Long, BASE.x, 1.0).ramp(DType::Long, BASE.w, 1.0);
        let float_bias = float_bias.ramp(DType::Float, &[6], 1.0).ints(&[1]).ints(&[0]).ints(&[1]).bool(false);
        let float_bias = float_bias.ints(&[0]).int(2).out(DType::Long, &[1; 4], 512);
        assert!(matches!(float_bias.run(convolution_out).0, Err(KernelError::DtypeMismatch { arg: BIAS, .. })));
    }

    #[test]
    fn extreme_parameters_never_panic() {
        let values = [i64::MIN, -1, 0, 1, 2, 3, 7, i64::MAX / 2, i64::MAX];
        for transposed in [false, true] {
            for &s in &values {
                for &p in &values {
                    for &d in &values {
                        for &op in &[0, 1, i64::MAX] {
                            let w: &[usize] = if transposed { &[4, 3, 3, 3] } else { BASE.w };
                            let c = Conv {
                                w,
                                stride: &[s, 1],
                                padding: &[1, p],
                                dilation: &[d, 1],
                                transposed,
                                output_padding: &[op, 0],
                                ..BASE
                            };
                            let _ = c.run();
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn huge_stride_on_channels_last_input() {
        let data: Vec<f32> = (0..240).map(|i| i as f32).collect();
        for stride in [i64::MAX / 2, i64::MAX] {
            let (r, mut done) = Call::new()
                .tensor_ordered(&[1, 8, 5, 6], Some(&[0, 2, 3, 1]), &data)
                .ramp(DType::Float, &[2, 8, 1, 1], 1.0)
                .none()
                .ints(&[1, stride])
                .ints(&[0])
                .ints(&[1])
                .bool(false)
                .ints(&[0])
                .int(1)
                .out(DType::Float, &[1, 1, 1, 1], 64)
                .run(convolution_out);
            r.unwrap();
            assert_eq!(done.tensor::<f32>(9).0, [1, 2, 5, 1]);
        }
    }

    #[test]
    fn one_to_three_spatial_dims_and_channels_last() {
        for (x, w) in
            [(&[2, 4, 9][..], &[6, 2, 3][..]), (&[1, 4, 5, 6], &[6, 2, 3, 3]), (&[1, 4, 3, 4, 5], &[6, 2, 2, 3, 3])]
        {
            let spatial = x.len() - 2;
            let c = Conv {
                x,
                w,
                stride: &[1; 3][..spatial],
                padding: &[1; 3][..spatial],
                dilation: &[1; 3][..spatial],
                output_padding: &[0; 3][..spatial],
                ..BASE
            };
            assert!(c.run().is_ok(), "{x:?}");
        }
        // The same data read as channels-last gives the same result as contiguous when the
        // values are placed accordingly: a 1x1 input plane makes both layouts identical.
        let data: Vec<f32> = (0..4).map(|i| i as f32).collect();
        let ordered = Call::new()
            .tensor_ordered(&[1, 4, 1, 1], Some(&[0, 2, 3, 1]), &data)
            .ramp(DType::Float, &[2, 4, 1, 1], 1.0)
            .none()
            .ints(&[1])
            .ints(&[0])
            .ints(&[1])
            .bool(false)
            .ints(&[0])
            .int(1)
            .out(DType::Float, &[1, 1, 1, 1], 8);
        let (r, mut done) = ordered.run(convolution_out);
        r.unwrap();
        // out[o] = sum_i w[o, i] * x[i], w = 0..8
        assert_eq!(done.tensor::<f32>(9).1, [14.0, 38.0]);
    }
}
