//! Fast f32 2-D convolution, contiguous (NCHW) and channels-last (NHWC) alike:
//!
//! - pointwise (1x1, unit stride, no padding): one GEMM per image and group, straight on the
//!   tensors (`out[co, p] = W[co, ci] · X[ci, p]`); channels-last ones with constant weights as
//!   `out[p, co] = X[p, ci] · Wᵀ[ci, co]`, the weights transposed at init
//!   (`pointwise_channels_last`), else the first product with other strides;
//! - depthwise (one input channel per group): a direct kernel. Contiguous planes are copied a band
//!   at a time into a zero-padded stack buffer, so the inner loop (a fixed-width chunk of output
//!   positions per kernel tap) has no borders to test; channels-last pixels are computed as whole
//!   runs of channels, with weights repacked per tap into scratch memory;
//! - anything else: im2col into scratch memory, a tile of output positions at a time, then GEMM.
//!
//! GEMMs go through etch's [`sgemm`](super::sgemm), which adds the bias and applies the clamp of a
//! fused activation ([`convolution_clamped`]) while the results are in registers; the weights are
//! packed for it once at method init when they are constants ([`prepare_convolution`]), else per
//! call into scratch memory. The direct kernels are compiled twice, plain and with AVX2+FMA, and
//! choose at run time; they clamp as they store. Work is spread
//! over etch's pool above a size threshold. Other dtypes, ranks, transposed convolutions, other dim
//! orders and invalid arguments go to the portable kernel, which stays the reference (and reports
//! the errors).

use rayon::prelude::*;

use super::pixel_gemm;
use super::sgemm::{
    self, Bias, Epilogue, MR, MatMut, MatRef, PackedLhs, SharedColumns, TapRows, packed_lhs_len, sgemm, sgemm_taps,
    sgemm_taps_columns_one_thread,
};
use super::{depthwise_avx512, depthwise_phased};
use crate::args::KernelArgs;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::portable;
use crate::portable::elementwise::REAL_DTYPES;
use crate::portable::spatial::{spatial_param, valid_range, window_output_size};
use crate::registry::{KernelContext, KernelFn, KernelRegistry, PreparedState};
use crate::tensor::{Tensor, TensorMut};

pub mod depthwise_pointwise;
pub mod pointwise_depthwise;
pub use depthwise_pointwise::depthwise_pointwise;
pub use pointwise_depthwise::{MIN_FUSED_PRODUCT, pointwise_depthwise};

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
/// Where a scaled convolution ([`convolution_scaled`]) finds its per-output-channel weight scale.
pub const SCALE: usize = 10;
/// Where [`convolution_scaled_residual`] takes its residual.
pub const RESIDUAL: usize = 11;

/// Output positions a depthwise (contiguous) step computes at once: one AVX-512 register, two
/// AVX2 ones.
const CHUNK: usize = 16;
/// Elements of the zero-padded input band a depthwise (contiguous) plane is copied into (64 KiB of
/// stack; fits L2 with room to spare).
const BAND: usize = 16 * 1024;
/// Output rows a depthwise (contiguous) step computes at once.
const ROWS: usize = 4;
/// Most kernel taps (`kh * kw`) the contiguous depthwise kernel keeps on the stack.
const MAX_TAPS: usize = 64;
/// Most padding positions [`PaddingLists`] keeps for one tap of a tile (a 3x3 kernel
/// on a 16-wide map: one per row of the tile); more are found row by row.
const PADDING_LIST: usize = 64;
/// Up to this many (tap, output position) pairs per tile, im2col reads through a table of
/// offsets ([`gather_indexed`]).
/// Measured on resnet18_narrow (`etch bench --threads 1`): 0.345 ms without the table, 0.270
/// with it up to 144 or 600 entries (its 2x2, 4x4 and 8x8 maps), 0.340 at 2400 (its 16x16 maps,
/// where the shifted copies of `gather_contiguous` are faster).
const INDEXED_ENTRIES: usize = 1024;
/// Where one shifted copy per tap does the gather (stride 1, "same" width), the table wins only
/// on the smallest maps: trace minimums of resnet18_narrow's 3x3 convolutions on 8x8 maps went
/// from 11.9 to 14.4 µs with it, on 2x2 maps from 24 to 12 µs.
const INDEXED_SHIFTED_PIXELS: usize = 16;
/// Most im2col scratch elements one tile uses (8 MiB); tiles cover fewer output positions when
/// the reduction is long.
const MAX_COLUMNS: usize = 1 << 21;
/// Output elements (and im2col elements) a GEMM tile keeps in L2: 256 KiB.
const L2_TILE: usize = 1 << 16;
/// im2col elements from which a tile's gather splits over the pool.
const PARALLEL_GATHER: usize = 1 << 16;
/// Up to this many multiply-adds, a stride-1 convolution on a pool splits by output rows
/// ([`padded_row_tasks`]).
const ROW_TASKS_MAX_MACS: usize = 1 << 22;
/// ... one GEMM per output row from this width on (it fills most of a 16-lane register:
/// squeezenet1_1's 15-wide rows gained); narrower rows, one GEMM per band of rows into scratch,
/// copied out (8-wide rows, resnet18_narrow's 8x8 maps, ran no faster one GEMM per row).
const ROW_TASKS_MIN_WIDTH: usize = 12;
/// Rows at least this wide split by rows at all.
const ROW_TASKS_MIN_BAND_WIDTH: usize = 8;
/// im2col tile elements on a pool (2 MiB: the threads' L2 caches together).
const PARALLEL_TILE_ELEMENTS: usize = 1 << 19;
/// Below this many multiply-adds a direct kernel runs on one thread (as for sgemm's threshold,
/// measured with it).
const PARALLEL_MIN_MACS: usize = 1 << 16;

/// The checked geometry of a 2-D f32 convolution the fast paths cover.
#[derive(Debug, Clone, Copy)]
struct Conv {
    batch: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    out_height: usize,
    out_width: usize,
    groups: usize,
    /// Input and output channels per group.
    in_per_group: usize,
    out_per_group: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    /// Input and weight strides (`[N, C, H, W]` order) and whether the input is channels-last.
    x_strides: [usize; 4],
    w_strides: [usize; 4],
    x_channels_last: bool,
    /// Every output is clamped to `[min, max]` (a fused activation; infinite for none).
    min: f32,
    max: f32,
}

impl Conv {
    fn out_pixels(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Multiply-adds of the whole call (saturating: only compared with thresholds).
    fn macs(&self) -> usize {
        [self.batch, self.out_channels, self.out_pixels(), self.in_per_group, self.kernel[0], self.kernel[1]]
            .iter()
            .fold(1usize, |a, &b| a.saturating_mul(b))
    }

    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.padding == [0, 0]
    }

    /// Reduction length of one output element: `in_per_group * kh * kw`.
    fn reduction(&self) -> usize {
        self.in_per_group * self.kernel[0] * self.kernel[1]
    }

    /// Input position (row or column `axis`) read by output position `o` through tap `k`.
    #[inline(always)]
    fn input_pos(&self, axis: usize, o: usize, k: usize) -> i64 {
        (o * self.stride[axis] + k * self.dilation[axis]) as i64 - self.padding[axis] as i64
    }

    /// Offset within an input plane that output position `(oy, ox)` reads through tap
    /// `(ky, kx)`, or `None` where it reads padding.
    fn input_offset(&self, [oy, ox]: [usize; 2], [ky, kx]: [usize; 2]) -> Option<usize> {
        let (iy, ix) = (self.input_pos(0, oy, ky), self.input_pos(1, ox, kx));
        let inside = (0..self.height as i64).contains(&iy) && (0..self.width as i64).contains(&ix);
        inside.then(|| iy as usize * self.width + ix as usize)
    }

    /// Image, output channel and input channel of output plane `index` (`n * out_channels + oc`)
    /// of a depthwise convolution. Without divisions in the usual case (one image, one output
    /// channel per group): a 64-bit division per plane was most of the 18 ns each of
    /// mobilenet_v2_w050's 2x2 depthwise planes took (`perf annotate`).
    #[inline]
    fn plane_channels(&self, index: usize) -> (usize, usize, usize) {
        let (n, oc) = if self.batch == 1 { (0, index) } else { (index / self.out_channels, index % self.out_channels) };
        let ic = if self.out_per_group == 1 { oc } else { oc / self.out_per_group };
        (n, oc, ic)
    }

    /// Input plane `channel` (absolute, not within a group) of image `n` of a contiguous input.
    fn input_plane<'x>(&self, x: &'x [f32], n: usize, channel: usize) -> Result<&'x [f32], KernelError> {
        let [xn, xc, _, _] = self.x_strides;
        let base = n * xn + channel * xc;
        x.get(base..base + self.height * self.width).ok_or(short(INPUT))
    }
}

/// `[N, C, H, W]` strides of a contiguous or channels-last 4-D tensor of `sizes`.
fn strides_of(sizes: [usize; 4], channels_last: bool) -> [usize; 4] {
    let [_, c, h, w] = sizes;
    if channels_last { [h * w * c, 1, w * c, c] } else { [c * h * w, h * w, w, 1] }
}

/// The geometry of a call the fast paths cover, or `None` (then the portable kernel runs, and
/// reports any invalid argument). Checks everything the portable kernel checks for 2-D inputs.
fn plan(args: &KernelArgs<'_>) -> Option<Conv> {
    let x = args.tensor(INPUT).ok()?;
    if x.dtype() != DType::Float || args.tensor_dtype(OUT).ok()? != DType::Float || x.dim() != 4 {
        return None;
    }
    let x_channels_last = x.dim_order().is_channels_last();
    if !x_channels_last && !x.dim_order().is_contiguous() {
        return None;
    }
    // Empty tensors are the portable kernel's business (`plan_with` refuses them too).
    if x.numel() != x.data::<f32>().ok()?.len() {
        return None;
    }
    let xs = x.sizes();
    plan_with(args, 0, [xs[0], xs[1], xs[2], xs[3]], x_channels_last)
}

/// [`plan`] for an input of `sizes` (`[N, C, H, W]`, contiguous or channels-last), its other
/// arguments at `base` plus their schema position ([`WEIGHT`] .. [`GROUPS`]): the second
/// convolution of [`pointwise_depthwise`] and [`depthwise_pointwise`], whose input is a product
/// they never write out.
fn plan_with(args: &KernelArgs<'_>, base: usize, xs: [usize; 4], x_channels_last: bool) -> Option<Conv> {
    let w = args.tensor(base + WEIGHT).ok()?;
    let bias = args.opt_tensor(base + BIAS).ok()?;
    let f32_only = w.dtype() == DType::Float && bias.as_ref().is_none_or(|b| b.dtype() == DType::Float);
    if !f32_only || w.dim() != 4 || args.bool(base + TRANSPOSED).ok()? {
        return None;
    }
    let param = |arg, min| spatial_param(args, base + arg, 2, min, None).ok().map(|p| [p[1], p[2]]);
    let (stride, padding, dilation) = (param(STRIDE, 1)?, param(PADDING, 0)?, param(DILATION, 1)?);
    spatial_param(args, base + OUTPUT_PADDING, 2, 0, Some([0; 3])).ok()?;
    let groups = usize::try_from(args.int(base + GROUPS).ok()?).ok().filter(|&g| g >= 1)?;
    let ws = w.sizes();
    let (batch, in_channels, height, width) = (xs[0], xs[1], xs[2], xs[3]);
    let out_channels = ws[0];
    if out_channels % groups != 0 || ws[1].checked_mul(groups)? != in_channels {
        return None;
    }
    if let Some(b) = &bias
        && (b.dim() != 1 || b.sizes()[0] != out_channels)
    {
        return None;
    }
    let kernel = [ws[2], ws[3]];
    let mut out = [0usize; 2];
    for axis in 0..2 {
        let size = window_output_size(
            i64::try_from(xs[2 + axis]).ok()?,
            i64::try_from(kernel[axis]).ok()?,
            padding[axis],
            stride[axis],
            dilation[axis],
            false,
        )?;
        out[axis] = usize::try_from(size).ok().filter(|&s| s >= 1)?;
    }
    let u = |v: [i64; 2]| Some([usize::try_from(v[0]).ok()?, usize::try_from(v[1]).ok()?]);
    let conv = Conv {
        batch,
        height,
        width,
        out_channels,
        out_height: out[0],
        out_width: out[1],
        groups,
        in_per_group: ws[1],
        out_per_group: out_channels / groups,
        kernel,
        stride: u(stride)?,
        padding: u(padding)?,
        dilation: u(dilation)?,
        x_strides: strides_of([batch, in_channels, height, width], x_channels_last),
        w_strides: {
            let s = w.strides();
            [s[0], s[1], s[2], s[3]]
        },
        x_channels_last,
        min: f32::NEG_INFINITY,
        max: f32::INFINITY,
    };
    // Empty tensors, and sizes whose products overflow, are the portable kernel's business.
    let dims = [batch, in_channels, height, width, out_channels, out[0], out[1], kernel[0], kernel[1]];
    let total = dims.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
    if dims.contains(&0) || total.is_none() {
        return None;
    }
    Some(conv)
}

/// `aten::convolution.out(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride,
/// SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups, *,
/// Tensor(a!) out) -> Tensor(a!)`
///
/// f32 2-D convolutions over contiguous or channels-last tensors run on the fast paths (module
/// docs); everything else on the portable kernel. May allocate scratch memory (im2col, packed
/// weights when they were not packed at init) on its first calls on a thread; see
/// [`KernelContext::with_scratch_f32`].
pub fn convolution_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    convolution_clamped(ctx, args, f32::NEG_INFINITY, f32::INFINITY)
}

/// [`convolution_out`] followed by a clamp of every output to `[min, max]` (relu: `[0, inf]`,
/// relu6 / hardtanh: `[lo, hi]`), applied as results are stored; NaN stays NaN. For an engine
/// that fuses a convolution with the activation after it. Outputs of dtypes other than f32 are
/// only supported without a clamp (`NotImplemented` otherwise).
pub fn convolution_clamped(
    ctx: &mut KernelContext,
    args: &KernelArgs<'_>,
    min: f32,
    max: f32,
) -> Result<(), KernelError> {
    convolve(ctx, args, min, max, None, None)
}

/// [`convolution_clamped`] with the weights of output channel `o` multiplied by `scale[o]`, an f64
/// tensor at argument [`SCALE`]: a batch norm folded into the convolution by the engine (its
/// shift is already in the bias) without a scaled copy of the weights. The scale is applied as
/// the weights are packed, `(w as f64 * scale) as f32`, which is what folding it into a copy
/// would store, so packed paths give the same results either way. Calls the GEMM paths do not
/// cover run the portable kernel on the unscaled weights and scale its output instead.
pub fn convolution_scaled(
    ctx: &mut KernelContext,
    args: &KernelArgs<'_>,
    min: f32,
    max: f32,
) -> Result<(), KernelError> {
    // Position SCALE must hold a tensor here: `tensor` reports what it holds instead.
    let scale = match weight_scale(args)? {
        Some(scale) => scale,
        None => args.tensor(SCALE)?.data::<f64>()?,
    };
    convolve(ctx, args, min, max, Some(scale), None)
}

/// [`convolution_scaled`] without a clamp, plus a float32 tensor of the output's shape and dim
/// order at [`RESIDUAL`]: `out = conv(x) + residual`, what `add.out(residual, conv(x))` after
/// the convolution computes (alpha 1), bit for bit, without writing `conv(x)` out and reading it
/// back. On the pointwise GEMM path the GEMM adds it as it stores its results (see
/// [`Epilogue::residual`](crate::optimized::sgemm::Epilogue)); the other paths add it after the
/// convolution.
pub fn convolution_scaled_residual(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    scaled_residual(ctx, args, f32::NEG_INFINITY, f32::INFINITY)
}

/// [`convolution_scaled_residual`] then ReLU, on the sum: a ResNet block's last convolution,
/// its batch norm, the add of the block's input and the ReLU after it, in one pass (the ReLU
/// read back the whole output, on a pool half of it from the other core's cache).
pub fn convolution_scaled_residual_relu(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    scaled_residual(ctx, args, 0.0, f32::INFINITY)
}

fn scaled_residual(ctx: &mut KernelContext, args: &KernelArgs<'_>, min: f32, max: f32) -> Result<(), KernelError> {
    let scale = match weight_scale(args)? {
        Some(scale) => scale,
        None => args.tensor(SCALE)?.data::<f64>()?,
    };
    let residual = args.tensor(RESIDUAL)?;
    if residual.dtype() != DType::Float {
        return Err(KernelError::InvalidArgument { arg: RESIDUAL, reason: "the residual must be float32" });
    }
    let residual = Residual { data: residual.data::<f32>()?, sizes: residual.sizes(), dim_order: residual.dim_order() };
    convolve(ctx, args, min, max, Some(scale), Some(&residual))
}

/// A residual added to a convolution's output ([`convolution_scaled_residual`]).
struct Residual<'a> {
    data: &'a [f32],
    sizes: &'a [usize],
    dim_order: &'a crate::shape::DimOrder,
}
/// The weight scale of a call prepared or run as [`convolution_scaled`]: a tensor at [`SCALE`]
/// (the unscaled fused calls have scalars or nothing there).
fn weight_scale<'a>(args: &'a KernelArgs<'_>) -> Result<Option<&'a [f64]>, KernelError> {
    if args.len() <= SCALE || !matches!(args.value(SCALE)?, crate::value::EValue::Tensor(_)) {
        return Ok(None);
    }
    let scale = args.tensor(SCALE)?;
    if scale.dtype() != DType::Double || scale.dim() != 1 {
        return Err(KernelError::InvalidArgument { arg: SCALE, reason: "the weight scale must be a 1-D f64 tensor" });
    }
    Ok(Some(scale.data::<f64>()?))
}

/// The convolution, plus the residual if any: the pointwise GEMM path adds it as it stores its
/// results, the other paths after them.
fn convolve(
    ctx: &mut KernelContext,
    args: &KernelArgs<'_>,
    min: f32,
    max: f32,
    scale: Option<&[f64]>,
    residual: Option<&Residual<'_>>,
) -> Result<(), KernelError> {
    // Planned before `out` is borrowed: the plan reads the output's dtype.
    let conv = plan(args);
    let mut out = args.tensor_mut(OUT)?;
    let Some(residual) = residual else {
        return convolve_into(ctx, args, conv, &mut out, min, max, scale, None).map(|_| ());
    };
    // With a residual the clamp applies to the sum, which not every path forms as it stores:
    // the convolution runs unclamped, and the pass below adds the residual (where the path did
    // not) and clamps.
    let added = convolve_into(ctx, args, conv, &mut out, f32::NEG_INFINITY, f32::INFINITY, scale, Some(residual))?;
    let clamped = min > f32::NEG_INFINITY || max < f32::INFINITY;
    if added && !clamped {
        return Ok(());
    }
    let numel = out.numel();
    let od = out.data_mut::<f32>()?.get_mut(..numel).ok_or(short(OUT))?;
    if added {
        od.iter_mut().for_each(|o| *o = sgemm::clamp(*o, min, max));
    } else {
        // `convolve_into` checked the residual against the output.
        for (o, &r) in od.iter_mut().zip(residual.data) {
            *o = sgemm::clamp(*o + r, min, max);
        }
    }
    Ok(())
}

/// [`convolve`] into `out` with `conv` its [`plan`]; with a residual, whether it added it.
#[allow(clippy::too_many_arguments)]
fn convolve_into(
    ctx: &mut KernelContext,
    args: &KernelArgs<'_>,
    conv: Option<Conv>,
    out: &mut TensorMut<'_>,
    min: f32,
    max: f32,
    scale: Option<&[f64]>,
    residual: Option<&Residual<'_>>,
) -> Result<bool, KernelError> {
    let Some(mut conv) = conv else {
        let (x, w, bias) = (args.tensor(INPUT)?, args.tensor(WEIGHT)?, args.opt_tensor(BIAS)?);
        portable_convolution(args, &x, &w, bias, out, min, max, scale)?;
        check_residual(residual, out)?;
        return Ok(false);
    };
    conv.min = min;
    conv.max = max;
    let x = args.tensor(INPUT)?;
    let w = args.tensor(WEIGHT)?;
    let bias = args.opt_tensor(BIAS)?;
    out.resize(&[conv.batch, conv.out_channels, conv.out_height, conv.out_width])?;
    check_residual(residual, out)?;
    let out_channels_last = out.dim_order().is_channels_last();
    if scale.is_some_and(|s| s.len() < conv.out_channels) {
        return Err(short(SCALE));
    }
    // Only the GEMM paths pack weights, so only they can take a scale.
    if (!out_channels_last && !out.dim_order().is_contiguous()) || (scale.is_some() && conv.in_per_group == 1) {
        return portable_convolution(args, &x, &w, bias, out, min, max, scale).map(|()| false);
    }
    let out_strides = strides_of([conv.batch, conv.out_channels, conv.out_height, conv.out_width], out_channels_last);
    let (xd, wd) = (x.data::<f32>()?, w.data::<f32>()?);
    let bd = bias.as_ref().map(|b| b.data::<f32>()).transpose()?;
    let numel = out.numel();
    let od = out.data_mut::<f32>()?.get_mut(..numel).ok_or(short(OUT))?;
    if bd.is_some_and(|b| b.len() < conv.out_channels) {
        return Err(short(BIAS));
    }
    let out = Output { data: od, strides: out_strides };
    let same_layout = conv.x_channels_last == out_channels_last;
    if conv.in_per_group == 1 && same_layout && !out_channels_last {
        if let Some(taps) = args.prepared::<DepthwiseTaps>().filter(|t| t.fits(&conv, wd)) {
            return depthwise_in_lanes(ctx, &conv, xd, taps, bd, out).map(|()| false);
        }
        if depthwise_fits(&conv) {
            return depthwise_contiguous(ctx, &conv, xd, wd, bd, out, ctx.threads()).map(|()| false);
        }
    }
    if conv.in_per_group == 1 && conv.out_per_group == 1 && same_layout && out_channels_last {
        let len = conv.kernel[0] * conv.kernel[1] * conv.out_channels + conv.out_channels;
        let run = |scratch: &mut [f32], ctx: &KernelContext| {
            depthwise_channels_last(ctx, &conv, xd, wd, bd, out.data, scratch)
        };
        return ctx.with_scratch_f32(len, run).unwrap_or(Err(NO_SCRATCH)).map(|()| false);
    }
    let prepared = args.prepared::<PackedConvWeights>().filter(|p| p.fits(&conv, wd, scale.is_some()));
    // Weights packed for pixel_gemm go there when the output planes are contiguous; otherwise
    // sgemm packs its own per call (see `by_pixels`).
    let weights = Weights { data: wd, scale };
    if conv.is_pointwise() {
        return pointwise(ctx, &conv, xd, weights, bd, out, prepared, residual.map(|r| r.data));
    }
    if let Some(padded) = PaddedInput::new(&conv) {
        return padded_gemm(ctx, &conv, padded, xd, weights, bd, out, prepared.filter(|p| !p.by_pixels))
            .map(|()| false);
    }
    im2col_gemm(ctx, &conv, xd, weights, bd, out, prepared).map(|()| false)
}

/// A residual must have the output's shape and dim order (so that both are indexed alike) and
/// hold all of its elements.
fn check_residual(residual: Option<&Residual<'_>>, out: &TensorMut<'_>) -> Result<(), KernelError> {
    match residual {
        Some(r) if r.sizes != out.sizes() || r.dim_order != out.dim_order() => Err(KernelError::ShapeMismatch {
            arg: RESIDUAL,
            reason: "the residual must have the output's shape and dim order",
        }),
        Some(r) if r.data.len() < out.numel() => Err(short(RESIDUAL)),
        _ => Ok(()),
    }
}

/// A convolution's weights as the GEMM paths read them: each output channel's row times its
/// scale, if any.
#[derive(Clone, Copy)]
struct Weights<'a> {
    data: &'a [f32],
    scale: Option<&'a [f64]>,
}

/// The portable kernel, then the clamp; with a weight scale, the portable kernel without the
/// bias, then `out * scale + bias` per channel before the clamp.
#[allow(clippy::too_many_arguments)]
fn portable_convolution(
    args: &KernelArgs<'_>,
    x: &Tensor<'_>,
    w: &Tensor<'_>,
    bias: Option<Tensor<'_>>,
    out: &mut TensorMut<'_>,
    min: f32,
    max: f32,
    scale: Option<&[f64]>,
) -> Result<(), KernelError> {
    let Some(scale) = scale else {
        portable::conv::convolution_into(args, x, w, bias, out)?;
        return clamp_output(out, min, max);
    };
    portable::conv::convolution_into(args, x, w, None, out)?;
    if out.dtype() != DType::Float || out.dim() != 4 {
        return Err(KernelError::NotImplemented("scaled convolution of a dtype other than f32"));
    }
    let bias = bias.map(|b| b.data::<f32>()).transpose()?;
    let (sizes, strides) = (out.sizes().to_vec(), out.strides());
    let channels = sizes[1];
    if scale.len() < channels || bias.is_some_and(|b| b.len() < channels) {
        return Err(short(if scale.len() < channels { SCALE } else { BIAS }));
    }
    let data = out.data_mut::<f32>()?;
    for n in 0..sizes[0] {
        for c in 0..channels {
            let b = bias.map_or(0.0, |b| f64::from(b[c]));
            for h in 0..sizes[2] {
                for x in 0..sizes[3] {
                    let at = n * strides[0] + c * strides[1] + h * strides[2] + x * strides[3];
                    let v = data.get_mut(at).ok_or(short(OUT))?;
                    *v = sgemm::clamp((f64::from(*v) * scale[c] + b) as f32, min, max);
                }
            }
        }
    }
    Ok(())
}

/// Clamps a finished f32 output in place (the portable kernel's results, for
/// [`convolution_clamped`]).
fn clamp_output(out: &mut TensorMut<'_>, min: f32, max: f32) -> Result<(), KernelError> {
    if min == f32::NEG_INFINITY && max == f32::INFINITY {
        return Ok(());
    }
    if out.dtype() != DType::Float {
        return Err(KernelError::NotImplemented("clamped convolution of a dtype other than f32"));
    }
    let numel = out.numel();
    for v in out.data_mut::<f32>()?.get_mut(..numel).ok_or(short(OUT))? {
        *v = sgemm::clamp(*v, min, max);
    }
    Ok(())
}

/// A convolution's weights packed for [`sgemm`]: per group, the `out_per_group × reduction`
/// matrix in the reduction order of the im2col path (`reduction_index`), made once at method
/// init by [`prepare_convolution`] when the weight is a constant.
#[derive(Debug)]
pub struct PackedConvWeights {
    /// The weight tensor (its data address and sizes) and the input layout the packing is for.
    weight_at: usize,
    weight_sizes: [usize; 4],
    channels_last_order: bool,
    /// Whether the rows were multiplied by a weight scale ([`convolution_scaled`]).
    scaled: bool,
    /// Packed for [`pixel_gemm`] ([`by_pixels`]) instead of for [`sgemm`].
    by_pixels: bool,
    /// The transposed weights of a channels-last 1x1 convolution (`[in, out]`, scaled), the
    /// right operand of [`pointwise_channels_last`], instead of packed panels.
    transposed: bool,
    data: PackedData,
}

/// Where packed weights live: large packings in an anonymous mapping whose pages are mapped in
/// one call when it is made (one fault per 4 KiB page otherwise, about 1.5 µs each in a VM:
/// most of the time packing mobilenet_v2's 14 MB of weights took), small ones on the heap.
#[derive(Debug)]
enum PackedData {
    Heap(Vec<f32>),
    Mapped(memmap2::MmapMut),
}

/// Packings from this many bytes up are mapped (see [`PackedData`]).
const MAP_MIN_BYTES: usize = 256 << 10;

impl PackedData {
    /// `len` zeros; `None` if the memory cannot be had.
    fn zeroed(len: usize) -> Option<PackedData> {
        let bytes = len.checked_mul(size_of::<f32>())?;
        if bytes >= MAP_MIN_BYTES
            && let Ok(map) = memmap2::MmapOptions::new().len(bytes).populate().map_anon()
        {
            return Some(PackedData::Mapped(map));
        }
        let mut v = Vec::new();
        v.try_reserve_exact(len).ok()?;
        v.resize(len, 0.0);
        Some(PackedData::Heap(v))
    }

    fn as_slice(&self) -> &[f32] {
        match self {
            PackedData::Heap(v) => v,
            // A mapping is page-aligned and its length a multiple of 4: the cast cannot fail.
            PackedData::Mapped(m) => bytemuck::try_cast_slice(m).unwrap_or(&[]),
        }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        match self {
            PackedData::Heap(v) => v,
            PackedData::Mapped(m) => bytemuck::try_cast_slice_mut(m).unwrap_or(&mut []),
        }
    }
}

impl PackedConvWeights {
    /// Whether this packing is the one `c` needs for the weight data `w`.
    fn fits(&self, c: &Conv, w: &[f32], scaled: bool) -> bool {
        let sizes = [c.out_channels, c.in_per_group, c.kernel[0], c.kernel[1]];
        self.weight_at == w.as_ptr() as usize
            && self.scaled == scaled
            && self.weight_sizes == sizes
            && (self.channels_last_order == c.x_channels_last || c.kernel == [1, 1])
            && self.by_pixels == by_pixels(c)
            && self.transposed == transposed_weights(c)
            && packed_len(c, self.by_pixels).is_some_and(|len| self.data.as_slice().len() == len)
    }
}

/// Whether a convolution's GEMM runs through [`pixel_gemm`] (when its planes turn out
/// contiguous at run time): one group over contiguous NCHW input, a small output map
/// ([`pixel_gemm::preferred`]), on the pointwise or im2col path.
fn by_pixels(c: &Conv) -> bool {
    c.groups == 1
        && c.in_per_group > 1
        && !c.x_channels_last
        && (c.is_pointwise() || PaddedInput::new(c).is_none())
        && pixel_gemm::preferred(c.out_pixels(), c.out_channels)
}

/// Whether a convolution's constant weights are kept transposed for [`pointwise_channels_last`]:
/// a 1x1 convolution of one group at unit stride, without padding, of a channels-last input, on a
/// CPU that runs [`sgemm::sgemm_rows`].
fn transposed_weights(c: &Conv) -> bool {
    c.is_pointwise() && c.stride == [1, 1] && c.groups == 1 && c.x_channels_last && sgemm::rows_lhs_available()
}

/// Elements of a convolution's packed weights, for `sgemm` or for [`pixel_gemm`].
fn packed_len(c: &Conv, by_pixels: bool) -> Option<usize> {
    if by_pixels {
        pixel_gemm::packed_len(c.out_channels, c.reduction())
    } else if transposed_weights(c) {
        c.in_per_group.checked_mul(c.out_channels)
    } else {
        packed_conv_len(c)
    }
}

/// Load-time preparation of `aten::convolution.out`: packs a constant weight for the GEMM paths
/// (pointwise and im2col); nothing for depthwise convolutions, other dtypes or non-constant
/// weights.
pub fn prepare_convolution(args: &KernelArgs<'_>) -> Result<Option<PreparedState>, KernelError> {
    if let Some(state) = depthwise_pointwise::prepare_projection(args)? {
        return Ok(Some(state));
    }
    let w = args.tensor(WEIGHT)?;
    if !w.is_constant() {
        return Ok(None);
    }
    let Some(conv) = plan(args) else { return Ok(None) };
    if conv.in_per_group == 1 {
        // Only the GEMM paths take a weight scale (see `convolve`).
        if channels_in_lanes(&conv) && weight_scale(args)?.is_none() {
            return Ok(DepthwiseTaps::new(&conv, w.data::<f32>()?)?.map(|t| Box::new(t) as PreparedState));
        }
        return Ok(None);
    }
    let wd = w.data::<f32>()?;
    let scale = weight_scale(args)?;
    if scale.is_some_and(|s| s.len() < conv.out_channels) {
        return Err(short(SCALE));
    }
    pack_prepared(&conv, Weights { data: wd, scale }, by_pixels(&conv))
}

/// `conv`'s weights packed for [`sgemm`], or `by_pixels` for [`pixel_gemm`], or transposed for
/// [`pointwise_channels_last`] ([`transposed_weights`]); `None` when the memory cannot be had.
fn pack_prepared(conv: &Conv, weights: Weights<'_>, by_pixels: bool) -> Result<Option<PreparedState>, KernelError> {
    let (wd, scale) = (weights.data, weights.scale);
    let Some(len) = packed_len(conv, by_pixels) else { return Ok(None) };
    let Some(mut data) = PackedData::zeroed(len) else { return Ok(None) };
    let transposed = !by_pixels && transposed_weights(conv);
    if by_pixels {
        pack_pixel_weights(conv, weights, data.as_mut_slice())?;
    } else if transposed {
        transpose_weights(conv, weights, data.as_mut_slice())?;
    } else {
        pack_conv_weights(conv, weights, data.as_mut_slice())?;
    }
    Ok(Some(Box::new(PackedConvWeights {
        weight_at: wd.as_ptr() as usize,
        weight_sizes: [conv.out_channels, conv.in_per_group, conv.kernel[0], conv.kernel[1]],
        channels_last_order: conv.x_channels_last,
        scaled: scale.is_some(),
        by_pixels,
        transposed,
        data,
    })))
}

/// A 1x1 convolution's weights as the `[in, out]` matrix `dst` (each scaled as
/// [`pack_conv_weights`] scales it), for [`pointwise_channels_last`].
fn transpose_weights(c: &Conv, weights: Weights<'_>, dst: &mut [f32]) -> Result<(), KernelError> {
    let [w0, w1, _, _] = c.w_strides;
    let (cin, cout) = (c.in_per_group, c.out_channels);
    let dst = dst.get_mut(..cin * cout).ok_or(short(WEIGHT))?;
    for co in 0..cout {
        let scale = weights.scale.map(|s| s.get(co).copied().ok_or(short(SCALE))).transpose()?;
        for ci in 0..cin {
            let v = *weights.data.get(co * w0 + ci * w1).ok_or(short(WEIGHT))?;
            dst[ci * cout + co] = scale.map_or(v, |s| scale_weight(v, s));
        }
    }
    Ok(())
}

/// Packed length of one group's weights, and of all groups.
fn packed_group_len(c: &Conv) -> Option<usize> {
    packed_lhs_len(c.out_per_group, c.reduction())
}

fn packed_conv_len(c: &Conv) -> Option<usize> {
    packed_group_len(c)?.checked_mul(c.groups)
}

/// `(ci, ky, kx)` of reduction index `r` in the im2col order: `(ci, ky, kx)` for contiguous inputs,
/// `(ky, kx, ci)` for channels-last ones.
fn reduction_index(c: &Conv, r: usize) -> (usize, usize, usize) {
    let [kh, kw] = c.kernel;
    if c.x_channels_last {
        (r % c.in_per_group, r / c.in_per_group / kw, r / c.in_per_group % kw)
    } else {
        (r / (kh * kw), r / kw % kh, r % kw)
    }
}

/// A weight times its output channel's scale, rounded as a batch norm folded into a copy of the
/// weights would store it.
fn scale_weight(v: f32, scale: f64) -> f32 {
    (f64::from(v) * scale) as f32
}

/// Packs every group's `out_per_group × reduction` weight matrix into `dst` in [`sgemm`]'s panel
/// layout (see [`sgemm::pack_lhs`]): panel by panel, each of its rows read in one pass (reading
/// column by column across all rows instead touched a new cache line per element, which made
/// packing mobilenet_v2's weights several times slower than copying them).
fn pack_conv_weights(c: &Conv, weights: Weights<'_>, dst: &mut [f32]) -> Result<(), KernelError> {
    let w = weights.data;
    let [w0, w1, w2, w3] = c.w_strides;
    let k_len = c.reduction();
    let group_len = packed_group_len(c).ok_or(short(WEIGHT))?;
    let dst = dst.get_mut(..group_len * c.groups).ok_or(short(WEIGHT))?;
    // Whether reduction index r is element r of a weight row (the usual contiguous layouts).
    let row_is_contiguous = (0..k_len).all(|r| {
        let (ci, ky, kx) = reduction_index(c, r);
        ci * w1 + ky * w2 + kx * w3 == r
    });
    for (g, dst) in dst.chunks_exact_mut(group_len.max(1)).enumerate().take(c.groups) {
        for (p, panel) in dst.chunks_exact_mut((MR * k_len).max(1)).enumerate() {
            for lane in 0..MR {
                let i = p * MR + lane;
                let column = panel.iter_mut().skip(lane).step_by(MR);
                if i >= c.out_per_group {
                    column.for_each(|v| *v = 0.0);
                    continue;
                }
                let channel = g * c.out_per_group + i;
                let base = channel * w0;
                // The same rounding as a batch norm folded into a copy of the weights.
                let scale = weights.scale.map(|s| s.get(channel).copied().ok_or(short(SCALE))).transpose()?;
                let scaled = |v: f32| scale.map_or(v, |s| scale_weight(v, s));
                if row_is_contiguous {
                    let row = w.get(base..base + k_len).ok_or(short(WEIGHT))?;
                    match scale {
                        None => column.zip(row).for_each(|(d, &v)| *d = v),
                        Some(_) => column.zip(row).for_each(|(d, &v)| *d = scaled(v)),
                    }
                } else {
                    for (r, d) in column.enumerate().take(k_len) {
                        let (ci, ky, kx) = reduction_index(c, r);
                        *d = scaled(*w.get(base + ci * w1 + ky * w2 + kx * w3).ok_or(short(WEIGHT))?);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Packs a one-group convolution's weights for [`pixel_gemm`], in the im2col reduction order
/// ([`reduction_index`]) and scaled as [`pack_conv_weights`] scales them.
fn pack_pixel_weights(c: &Conv, weights: Weights<'_>, dst: &mut [f32]) -> Result<(), KernelError> {
    let [w0, w1, w2, w3] = c.w_strides;
    pixel_gemm::pack(c.out_channels, c.reduction(), dst, WEIGHT, |co, r| {
        let (ci, ky, kx) = reduction_index(c, r);
        let v = *weights.data.get(co * w0 + ci * w1 + ky * w2 + kx * w3).ok_or(short(WEIGHT))?;
        Ok(match weights.scale {
            None => v,
            Some(s) => scale_weight(v, s.get(co).copied().ok_or(short(SCALE))?),
        })
    })
}

/// The packed weights: prepared at init, or packed now into `scratch` (which must then hold
/// [`packed_conv_len`] elements).
fn packed_weights<'s>(
    c: &Conv,
    w: Weights<'_>,
    prepared: Option<&'s PackedConvWeights>,
    scratch: &'s mut [f32],
) -> Result<&'s [f32], KernelError> {
    match prepared {
        Some(p) => Ok(p.data.as_slice()),
        None => {
            pack_conv_weights(c, w, scratch)?;
            Ok(scratch)
        }
    }
}

/// Scratch memory could not be allocated (the output is taken by then, so the portable kernel
/// cannot take over).
const NO_SCRATCH: KernelError = KernelError::NotImplemented("convolution scratch memory could not be allocated");

fn short(arg: usize) -> KernelError {
    KernelError::ShapeMismatch { arg, reason: "tensor data shorter than its shape" }
}

/// The output's elements and `[N, C, H, W]` strides.
struct Output<'a> {
    data: &'a mut [f32],
    strides: [usize; 4],
}

/// 1x1, no padding: per image and group, one GEMM with the bias and the clamp in its epilogue, on
/// the input itself at unit stride. With a stride (a ResNet or RegNet downsampling shortcut) the
/// inputs it reads are first copied into one `[channels, out_pixels]` matrix: through the
/// padded-input path it copied all four stride-2 phases of the input (a 1x1 kernel reads one) and
/// its products out again, 11 µs for regnet_y_narrow's 16→16 one on 32x32 (4 µs this way).
/// With a residual (indexed like the output), the GEMM adds it as it stores; `Ok(false)` when it
/// was not added (the pixel_gemm path).
#[allow(clippy::too_many_arguments)]
fn pointwise(
    ctx: &mut KernelContext,
    c: &Conv,
    x: &[f32],
    w: Weights<'_>,
    bias: Option<&[f32]>,
    mut out: Output<'_>,
    prepared: Option<&PackedConvWeights>,
    residual: Option<&[f32]>,
) -> Result<bool, KernelError> {
    let pixels = c.out_pixels();
    let [xn, xc, xr, xp] = c.x_strides;
    if let Some(p) = prepared.filter(|p| p.transposed)
        && let Some(done) = pointwise_channels_last(ctx, c, x, p, bias, &mut out, residual)
    {
        return done.map(|()| residual.is_some());
    }
    // Transposed weights are no panels: other layouts pack theirs per call.
    let prepared = prepared.filter(|p| !p.transposed);
    let (prepared, by_pixels) = split_prepared(c, prepared, &out);
    let by_pixels = by_pixels.filter(|_| c.stride != [1, 1] || (xp == 1 && xr == c.width));
    let [on, oc, _, op] = out.strides;
    let [sy, sx] = c.stride;
    let strided = c.stride != [1, 1];
    let picked_len = if strided { (c.groups * c.in_per_group).checked_mul(pixels).ok_or(short(INPUT))? } else { 0 };
    let group_len = packed_group_len(c).ok_or(short(WEIGHT))?;
    let packed_len =
        if prepared.is_some() || by_pixels.is_some() { 0 } else { packed_conv_len(c).ok_or(short(WEIGHT))? };
    let scratch_len = picked_len.checked_add(packed_len).ok_or(short(WEIGHT))?;
    let run = |scratch: &mut [f32], ctx: &KernelContext| -> Result<(), KernelError> {
        let (picked, rest) = scratch.split_at_mut(picked_len);
        let packed = if by_pixels.is_some() { &[][..] } else { packed_weights(c, w, prepared, rest)? };
        for n in 0..c.batch {
            if strided {
                // Output (oy, ox) reads input (oy * sy, ox * sx): every `sx`-th element of every
                // `sy`-th row, one checked range per row.
                for (ci, plane) in picked.chunks_exact_mut(pixels.max(1)).enumerate() {
                    for (oy, row) in plane.chunks_exact_mut(c.out_width.max(1)).enumerate() {
                        let first = n * xn + ci * xc + oy * sy * xr;
                        let span = (c.out_width - 1) * sx * xp + 1;
                        let src = x.get(first..first + span).ok_or(short(INPUT))?;
                        for (o, &v) in row.iter_mut().zip(src.iter().step_by(sx * xp)) {
                            *o = v;
                        }
                    }
                }
            }
            if let Some(by_pixels) = by_pixels {
                let (x, x_row) =
                    if strided { (&picked[..], pixels) } else { (x.get(n * xn..).ok_or(short(INPUT))?, xc) };
                let out = out.data.get_mut(n * on..).ok_or(short(OUT))?;
                pixel_product(ctx, c, by_pixels, (x, x_row), pixels, bias, (out, oc))?;
                continue;
            }
            for g in 0..c.groups {
                let lhs = PackedLhs {
                    data: packed.get(g * group_len..).ok_or(short(WEIGHT))?,
                    m: c.out_per_group,
                    k: c.in_per_group,
                };
                let rhs = if strided {
                    MatRef { data: picked.get(g * c.in_per_group * pixels..).ok_or(short(INPUT))?, row: pixels, col: 1 }
                } else {
                    let at = n * xn + g * c.in_per_group * xc;
                    MatRef { data: x.get(at..).ok_or(short(INPUT))?, row: xc, col: xp }
                };
                let at = n * on + g * c.out_per_group * oc;
                let dst = MatMut { data: out.data.get_mut(at..).ok_or(short(OUT))?, row: oc, col: op };
                let mut epilogue = epilogue(c, bias, g)?;
                if let Some(r) = residual {
                    epilogue =
                        epilogue.with_residual(MatRef { data: r.get(at..).ok_or(short(RESIDUAL))?, row: oc, col: op });
                }
                sgemm(ctx, pixels, lhs, rhs, dst, &epilogue, OUT)?;
            }
        }
        Ok(())
    };
    ctx.with_scratch_f32(scratch_len, run).unwrap_or(Err(NO_SCRATCH))?;
    Ok(residual.is_some() && by_pixels.is_none())
}

/// A channels-last 1x1 convolution (input and output) as one product per image with the pixels
/// as rows: `out[p, co] = Σ_ci x[p, ci] · Wᵀ[ci, co]`, `x`'s pixel rows read in place
/// ([`sgemm::sgemm_rows`]) and the weights transposed at init, so the channels are the vector
/// lanes and results are stored as they lie. The other way round (the weights as packed panels,
/// the pixels gathered from a stride of `C` into each strip of `B`, the results stored a channel
/// stride apart) the strip packing and the scattered stores were most of the time. The same
/// multiply-adds in the same order as that path, then the bias and the clamp: the same results.
/// `None` when the layouts are not dense channels-last (the caller takes the general path).
fn pointwise_channels_last(
    ctx: &KernelContext,
    c: &Conv,
    x: &[f32],
    weights: &PackedConvWeights,
    bias: Option<&[f32]>,
    out: &mut Output<'_>,
    residual: Option<&[f32]>,
) -> Option<Result<(), KernelError>> {
    let (cin, cout, pixels) = (c.in_per_group, c.out_channels, c.out_pixels());
    let [xn, xc, xr, xp] = c.x_strides;
    let [on, oc, or, op] = out.strides;
    let dense = xc == 1 && xp == cin && xr == c.width * cin && oc == 1 && op == cout && or == c.out_width * cout;
    if !dense || !weights.transposed {
        return None;
    }
    let result = (|| {
        let wt = MatRef { data: weights.data.as_slice(), row: cout, col: 1 };
        let bias = match bias {
            Some(b) => Bias::Col(b.get(..cout).ok_or(short(BIAS))?),
            None => Bias::None,
        };
        for n in 0..c.batch {
            let a = sgemm::RowsLhs { data: x.get(n * xn..).ok_or(short(INPUT))?, row: cin, m: pixels, k: cin };
            let mut epilogue = Epilogue::store().with_bias(bias).clamped(c.min, c.max);
            if let Some(r) = residual {
                let r = r.get(n * on..).ok_or(short(RESIDUAL))?;
                epilogue = epilogue.with_residual(MatRef { data: r, row: cout, col: 1 });
            }
            let dst = MatMut { data: out.data.get_mut(n * on..).ok_or(short(OUT))?, row: cout, col: 1 };
            sgemm::sgemm_rows(ctx, cout, a, wt, dst, &epilogue, OUT)?;
        }
        Ok(())
    })();
    Some(result)
}

/// Prepared weights as `(for sgemm, for pixel_gemm)`: those packed for [`pixel_gemm`] go there
/// when the output planes are contiguous; otherwise sgemm packs its own per call (the layout is
/// only known at run time).
fn split_prepared<'p>(
    c: &Conv,
    prepared: Option<&'p PackedConvWeights>,
    out: &Output<'_>,
) -> (Option<&'p PackedConvWeights>, Option<&'p PackedConvWeights>) {
    match prepared {
        Some(p) if p.by_pixels => {
            let [_, _, row, pixel] = out.strides;
            (None, Some(p).filter(|_| pixel == 1 && row == c.out_width))
        }
        p => (p, None),
    }
}

/// One image's product through [`pixel_gemm`] (one group): `pixels` output positions from the
/// reduction rows of `x` (`x_row` apart) into the output channel planes (`out_row` apart).
fn pixel_product(
    ctx: &KernelContext,
    c: &Conv,
    packed: &PackedConvWeights,
    (x, x_row): (&[f32], usize),
    pixels: usize,
    bias: Option<&[f32]>,
    (out, out_row): (&mut [f32], usize),
) -> Result<(), KernelError> {
    let product = pixel_gemm::Product {
        packed: packed.data.as_slice(),
        channels: c.out_channels,
        reduction: c.reduction(),
        pixels,
        x,
        x_row,
        bias,
        min: c.min,
        max: c.max,
        out,
        out_row,
    };
    pixel_gemm::run(ctx, product, OUT)
}

/// The GEMM epilogue of group `g`: its bias per output channel (row), the clamp.
fn epilogue<'b>(c: &Conv, bias: Option<&'b [f32]>, g: usize) -> Result<Epilogue<'b>, KernelError> {
    let bias = match bias {
        Some(b) => Bias::Row(b.get(g * c.out_per_group..(g + 1) * c.out_per_group).ok_or(short(BIAS))?),
        None => Bias::None,
    };
    Ok(Epilogue::store().with_bias(bias).clamped(c.min, c.max))
}

/// Output positions per im2col tile: enough that the tile's gathered inputs and its outputs stay
/// in L2, at least a few hundred so the GEMM stays efficient.
fn cache_tile(rows: usize, pixels: usize) -> usize {
    (L2_TILE / rows.max(1)).max(256).min(pixels)
}

/// General convolution: for each image, group and tile of output positions, gathers the inputs
/// each output reads (im2col) into scratch memory, then multiplies by the packed weights. The
/// gathered reduction index is `(ci, ky, kx)` for contiguous inputs (each row a run of output
/// positions) and `(ky, kx, ci)` for channels-last ones (each pixel a run of channels).
fn im2col_gemm(
    ctx: &mut KernelContext,
    c: &Conv,
    x: &[f32],
    w: Weights<'_>,
    bias: Option<&[f32]>,
    out: Output<'_>,
    prepared: Option<&PackedConvWeights>,
) -> Result<(), KernelError> {
    let (prepared, by_pixels) = split_prepared(c, prepared, &out);
    let k_len = c.reduction();
    if k_len > MAX_COLUMNS {
        return Err(KernelError::NotImplemented("convolution reduction longer than the im2col scratch"));
    }
    let pixels = c.out_pixels();
    let most = (MAX_COLUMNS / k_len).max(1);
    let mut tile = most.min(cache_tile(k_len + c.out_per_group, pixels));
    let packed_len =
        if prepared.is_some() || by_pixels.is_some() { 0 } else { packed_conv_len(c).ok_or(short(WEIGHT))? };
    let phases_len = if phase_split(c) { c.in_per_group * c.height * c.width } else { 0 };
    let spread_tasks = spread_tasks(ctx, c, by_pixels.is_some(), &out);
    if spread_tasks > 1 {
        let per_task = tile.min(pixels.div_ceil(spread_tasks));
        let len = (per_task * k_len)
            .checked_mul(spread_tasks)
            .and_then(|l| l.checked_add(packed_len)?.checked_add(phases_len))
            .ok_or(short(WEIGHT))?;
        let run = |scratch: &mut [f32], ctx: &KernelContext| -> Result<(), KernelError> {
            let (cols, rest) = scratch.split_at_mut(per_task * k_len * spread_tasks);
            let (phases, packed) = rest.split_at_mut(phases_len);
            let packed = packed_weights(c, w, prepared, packed)?;
            let phases = if phases_len > 0 { Some(phases) } else { None };
            im2col_spread(ctx, c, x, packed, bias, out, (cols, per_task, spread_tasks), phases)
        };
        return ctx.with_scratch_f32(len, run).unwrap_or(Err(NO_SCRATCH));
    }
    if ctx.threads() > 1 {
        // On a pool, a tile's gather and GEMM each split over the threads only from their own
        // thresholds up: tiles that small would leave the convolution on one thread (the
        // stride-2 stem of mobilenet_v2 did). L2 holds the larger tile on current cores.
        let gemm = sgemm::PARALLEL_MIN_MACS.div_ceil((c.out_per_group * k_len).max(1));
        let gather = PARALLEL_GATHER.div_ceil(k_len);
        tile = tile.max(gemm.max(gather).min(pixels).min(most));
        // Each tile forks and joins twice (gather, GEMM): on a pool, tiles up to what the cores'
        // L2 caches hold together, so that a small-reduction convolution (the 3-channel stem)
        // is one or two tiles instead of six.
        tile = tile.max((PARALLEL_TILE_ELEMENTS / k_len).min(pixels).min(most));
    }
    let len = tile
        .checked_mul(k_len)
        .and_then(|l| l.checked_add(packed_len)?.checked_add(phases_len))
        .ok_or(short(WEIGHT))?;
    let run = |scratch: &mut [f32], ctx: &KernelContext| -> Result<(), KernelError> {
        let (cols, rest) = scratch.split_at_mut(tile * k_len);
        let (phases, packed) = rest.split_at_mut(phases_len);
        let packed = match by_pixels {
            Some(p) => Packed::Pixels(p),
            None => Packed::Panels(packed_weights(c, w, prepared, packed)?),
        };
        let phases = if phases_len > 0 { Some(phases) } else { None };
        im2col_tiles(ctx, c, x, packed, bias, out, cols, tile, phases)
    };
    ctx.with_scratch_f32(len, run).unwrap_or(Err(NO_SCRATCH))
}

/// A convolution's input planes copied with their zero padding so that its im2col matrix is the
/// copy itself, read at tap-dependent offsets ([`TapRows`]); with stride `s`, each plane is first
/// split into `s × s` phase planes (rows `s·r + py`, columns `s·q + px`), which a tap then reads
/// at stride 1. Per axis, tap `k` reads input `s·o + k·d - p` for output `o`: phase
/// `(k·d - p) mod s`, phase position `o + shift` with `shift = floor((k·d - p) / s)`.
/// - Padded phase rows are `row` elements apart and start with `lead_x` zeros; output `(oy, ox)`
///   reads element `(oy + lead_y + shift_y) · row + ox + lead_x + shift_x` of its tap's phase.
/// - `row` is at least the output width, at least `lead_x` plus the phase width, and more than
///   the last output column plus the largest shift, so a read past a row's end lands in the next row's leading zeros, which
///   stand for the padding it would have read.
/// - The GEMM computes output rows `row` columns apart, of which the last `row - out_width` are
///   not outputs (dropped when the tile is copied out).
///
/// Instead of im2col's `kh × kw` copies of the input, one copy; the AVX-512 GEMM reads the
/// padded planes in place. A 3x3 convolution on a 16x16 map spent 40% of its time in the im2col
/// gather.
#[derive(Debug, Clone, Copy)]
struct PaddedInput {
    stride: [usize; 2],
    /// Zero rows and columns before the data in each phase plane.
    lead: [usize; 2],
    row: usize,
    /// Elements per phase plane, and per input channel (`stride² · plane`).
    plane: usize,
    channel: usize,
}

/// Most elements of one group's padded planes (8 MiB); larger inputs take the im2col path.
const MAX_PADDED: usize = 1 << 21;

impl PaddedInput {
    fn new(c: &Conv) -> Option<PaddedInput> {
        // Narrow maps keep im2col: its GEMM runs the narrow kernel on their few columns. So do
        // short reductions: this path copies the products out (output channels × positions),
        // im2col copies the inputs in (reduction × positions); mobilenet_v2's stem (27 against
        // 32) took 146 µs through im2col, 225 through this.
        let strides_ok = c.stride[0] == c.stride[1] && (1..=2).contains(&c.stride[0]);
        let taps = c.kernel[0] * c.kernel[1];
        if !strides_ok || c.x_channels_last || taps > MAX_TAPS || c.out_width < 8 || c.reduction() < c.out_per_group {
            return None;
        }
        // Per axis: the leading zeros (to cover the most negative shift) and the largest shift.
        let axis = |a: usize| -> Option<(usize, i64)> {
            let (s, d, p) = (c.stride[a] as i64, c.dilation[a] as i64, c.padding[a] as i64);
            let shift = |k: usize| (k as i64 * d - p).div_euclid(s);
            let (lo, hi) = (shift(0), shift(c.kernel[a] - 1));
            Some((usize::try_from(-lo.min(0)).ok()?, hi))
        };
        let ((lead_y, max_y), (lead_x, max_x)) = (axis(0)?, axis(1)?);
        let s = c.stride[0];
        let (phase_h, phase_w) = (c.height.div_ceil(s), c.width.div_ceil(s));
        let reach = |outputs: usize, lead: usize, max: i64| usize::try_from(outputs as i64 + lead as i64 + max).ok();
        let row = (lead_x + phase_w).max(reach(c.out_width, 0, max_x)?).max(c.out_width);
        let rows = (lead_y + phase_h).max(reach(c.out_height, lead_y, max_y)?).checked_add(1)?;
        let plane = rows.checked_mul(row)?;
        let channel = plane.checked_mul(s * s)?;
        (channel.checked_mul(c.in_per_group)? <= MAX_PADDED).then_some(PaddedInput {
            stride: c.stride,
            lead: [lead_y, lead_x],
            row,
            plane,
            channel,
        })
    }

    /// Tap `(ky, kx)`'s offset from output position `(oy, ox)`'s element `oy · row + ox`, within
    /// an input channel's phase planes.
    fn tap_offset(&self, c: &Conv, ky: usize, kx: usize) -> Option<usize> {
        let s = self.stride[0] as i64;
        let e = |a: usize, k: usize| k as i64 * c.dilation[a] as i64 - c.padding[a] as i64;
        let (ey, ex) = (e(0, ky), e(1, kx));
        let phase = (ey.rem_euclid(s) * s + ex.rem_euclid(s)) as usize;
        let y = usize::try_from(self.lead[0] as i64 + ey.div_euclid(s)).ok()?;
        let x = usize::try_from(self.lead[1] as i64 + ex.div_euclid(s)).ok()?;
        phase.checked_mul(self.plane)?.checked_add(y.checked_mul(self.row)?)?.checked_add(x)
    }

    /// Copies group `g` of image `n` into `dst` (`in_per_group · channel` elements), over the
    /// pool when large.
    fn fill(
        &self,
        ctx: &KernelContext,
        c: &Conv,
        x: &[f32],
        n: usize,
        g: usize,
        dst: &mut [f32],
    ) -> Result<(), KernelError> {
        let dst = dst.get_mut(..c.in_per_group * self.channel).ok_or(short(INPUT))?;
        let fill_channel = |(ci, planes): (usize, &mut [f32])| {
            self.fill_channel(c, c.input_plane(x, n, g * c.in_per_group + ci)?, planes)
        };
        if ctx.threads() > 1 && dst.len() >= PARALLEL_GATHER {
            ctx.install(|| dst.par_chunks_exact_mut(self.channel).enumerate().try_for_each(fill_channel))
        } else {
            dst.chunks_exact_mut(self.channel).enumerate().try_for_each(fill_channel)
        }
    }

    /// At stride 1: padded rows `first..` of input plane `src`'s padded plane, as many as `dst`
    /// holds whole (`row` apart): zeroed whole, then the input rows among them copied in. One
    /// pass of zeros costs less than zeroing each row's few padding columns apart (a call per
    /// row: on a 16x16 map, the zeros and copies were a quarter of a 3x3 convolution's time).
    fn fill_rows(&self, c: &Conv, src: &[f32], first: usize, dst: &mut [f32]) -> Result<(), KernelError> {
        let [lead_y, lead_x] = self.lead;
        dst.fill(0.0);
        for r in 0..dst.len() / self.row.max(1) {
            // Padded row `first + r` holds input row `first + r - lead_y`, if any.
            let Some(iy) = (first + r).checked_sub(lead_y).filter(|&iy| iy < c.height) else { continue };
            let line = src.get(iy * c.width..(iy + 1) * c.width).ok_or(short(INPUT))?;
            let at = r * self.row + lead_x;
            dst.get_mut(at..at + c.width).ok_or(short(INPUT))?.copy_from_slice(line);
        }
        Ok(())
    }

    /// Copies input plane `src` into its phase planes `planes` (`channel` elements).
    fn fill_channel(&self, c: &Conv, src: &[f32], planes: &mut [f32]) -> Result<(), KernelError> {
        let s = self.stride[0];
        let [lead_y, lead_x] = self.lead;
        if s == 1 {
            return self.fill_rows(c, src, 0, planes);
        }
        planes.fill(0.0);
        for (iy, line) in src.chunks_exact(c.width).enumerate() {
            let (py, r) = (iy % s, iy / s + lead_y);
            for px in 0..s {
                let at = (py * s + px) * self.plane + r * self.row + lead_x;
                let dst = planes.get_mut(at..at + (c.width - px).div_ceil(s)).ok_or(short(INPUT))?;
                // Every s-th element from px: the vectorized strided copy (an element-by-element
                // loop was most of regnet_y_narrow's stride-2 fills).
                copy_strided(dst, line.get(px..).ok_or(short(INPUT))?, s).ok_or(short(INPUT))?;
            }
        }
        Ok(())
    }
}

/// A convolution as GEMMs over its padded input ([`PaddedInput`]): per image and group, the
/// planes are copied with their padding (and split into phases), then each tile of output rows
/// is one product into scratch, copied out without the columns between rows.
#[allow(clippy::too_many_arguments)]
fn padded_gemm(
    ctx: &mut KernelContext,
    c: &Conv,
    padded: PaddedInput,
    x: &[f32],
    w: Weights<'_>,
    bias: Option<&[f32]>,
    out: Output<'_>,
    prepared: Option<&PackedConvWeights>,
) -> Result<(), KernelError> {
    let [kh, kw] = c.kernel;
    let mut taps = [0usize; MAX_TAPS];
    for (t, tap) in taps.iter_mut().enumerate().take(kh * kw) {
        *tap = padded.tap_offset(c, t / kw, t % kw).ok_or(short(INPUT))?;
    }
    let taps = &taps[..kh * kw];
    if takes_row_tasks(c, out.strides, ctx.threads()) {
        return padded_row_tasks(ctx, c, &padded, taps, (x, w, bias), out, prepared);
    }
    let m = c.out_per_group;
    // Output rows per tile: the tile's products stay in L2 until copied out.
    let tile_rows = (L2_TILE / (m * padded.row).max(1)).clamp(1, c.out_height.max(1));
    let tile_len = |rows: usize| (rows - 1) * padded.row + c.out_width;
    let planes_len = c.in_per_group * padded.channel;
    let packed_len = if prepared.is_some() { 0 } else { packed_conv_len(c).ok_or(short(WEIGHT))? };
    let len = m
        .checked_mul(tile_len(tile_rows))
        .and_then(|l| l.checked_add(planes_len)?.checked_add(packed_len))
        .ok_or(short(WEIGHT))?;
    let group_len = packed_group_len(c).ok_or(short(WEIGHT))?;
    let [on, oc, oy_stride, ox_stride] = out.strides;
    let run = |scratch: &mut [f32], ctx: &KernelContext| -> Result<(), KernelError> {
        let (planes, rest) = scratch.split_at_mut(planes_len);
        let (tile, packed) = rest.split_at_mut(m * tile_len(tile_rows));
        let packed = packed_weights(c, w, prepared, packed)?;
        for n in 0..c.batch {
            for g in 0..c.groups {
                padded.fill(ctx, c, x, n, g, planes)?;
                let lhs = PackedLhs { data: packed.get(g * group_len..).ok_or(short(WEIGHT))?, m, k: c.reduction() };
                for y0 in (0..c.out_height).step_by(tile_rows) {
                    let rows = (c.out_height - y0).min(tile_rows);
                    let cols = tile_len(rows);
                    let rhs = TapRows { data: &planes[y0 * padded.row..], group: padded.channel, taps };
                    let dst = MatMut { data: &mut tile[..m * cols], row: cols, col: 1 };
                    sgemm_taps(ctx, cols, lhs, rhs, dst, &epilogue(c, bias, g)?, OUT)?;
                    // Copy the tile's outputs out, without the columns between rows.
                    let products = &tile[..m * cols];
                    let first = n * on + g * m * oc + y0 * oy_stride;
                    if ox_stride == 1 && oc >= c.out_pixels() {
                        // Contiguous output: each channel's rows in its own plane, over the pool
                        // when large (a stem's output is megabytes).
                        let planes = out.data.get_mut(first..).ok_or(short(OUT))?;
                        let copy = |(plane, products): (&mut [f32], &[f32])| {
                            copy_rows(products, padded.row, rows, plane, oy_stride, c.out_width)
                        };
                        if ctx.threads() > 1 && products.len() >= PARALLEL_GATHER {
                            let pairs = planes.par_chunks_mut(oc).zip(products.par_chunks_exact(cols));
                            ctx.install(|| pairs.take(m).try_for_each(copy))?;
                        } else {
                            planes.chunks_mut(oc).zip(products.chunks_exact(cols)).take(m).try_for_each(copy)?;
                        }
                    } else {
                        for (co, products) in products.chunks_exact(cols).enumerate() {
                            let base = first + co * oc;
                            for (r, line) in products.chunks(padded.row).take(rows).enumerate() {
                                let line = line.get(..c.out_width).ok_or(short(OUT))?;
                                for (ox, &v) in line.iter().enumerate() {
                                    *out.data.get_mut(base + r * oy_stride + ox * ox_stride).ok_or(short(OUT))? = v;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    };
    ctx.with_scratch_f32(len, run).unwrap_or(Err(NO_SCRATCH))
}

/// Whether [`padded_gemm`] runs a convolution through [`padded_row_tasks`]: stride 1, on a
/// pool, small, rows wide enough, output planes contiguous (each row of a channel one run).
fn takes_row_tasks(c: &Conv, [_, oc, oy, ox]: [usize; 4], threads: usize) -> bool {
    c.stride == [1, 1]
        && threads > 1
        && ox == 1
        && oy == c.out_width
        && oc >= c.out_pixels()
        && c.out_height >= 2
        && c.out_width >= ROW_TASKS_MIN_BAND_WIDTH
        && c.macs() <= ROW_TASKS_MAX_MACS
}

/// [`padded_gemm`] of a small stride-1 convolution on a pool, split by output rows: each task
/// pads the input rows its output rows read (its own and the kernel's reach beyond them) into
/// planes of its own, then writes its rows of every output channel straight into the output,
/// one GEMM per output row, or for rows narrower than [`ROW_TASKS_MIN_WIDTH`] one GEMM over its
/// band into scratch, copied out (four 32-channel 3x3 convolutions on an 8x8 map at two
/// threads: 0.0607 -> 0.0486 ms, `etch bench`, median of 8 alternating runs; one GEMM per
/// 8-wide row had been no faster than the shared planes).
///
/// Why: split the other way (the padded planes filled by the calling thread, the product's
/// columns spread, the products copied out by the calling thread), a 3x3 convolution on a
/// 16x16 map with 16 channels took as long on two threads as on one (12.8 µs): its fill alone
/// went from 0.9 to 3.4 µs, reading the input rows the other core had written. Split by rows
/// like the convolution before it, each core reads the rows it wrote, the halo aside.
fn padded_row_tasks(
    ctx: &mut KernelContext,
    c: &Conv,
    padded: &PaddedInput,
    taps: &[usize],
    (x, w, bias): (&[f32], Weights<'_>, Option<&[f32]>),
    out: Output<'_>,
    prepared: Option<&PackedConvWeights>,
) -> Result<(), KernelError> {
    let (m, row, height, width) = (c.out_per_group, padded.row, c.out_height, c.out_width);
    // Narrow rows: one product per task over its band of rows (padded rows, so the columns
    // between output rows are computed too), into scratch, then copied out.
    let banded = width < ROW_TASKS_MIN_WIDTH;
    let tasks = if banded { ctx.threads() } else { ctx.threads() * 2 }.min(height);
    let band_rows = height.div_ceil(tasks);
    // Padded rows past a run of output rows that its taps reach, as in the shared planes.
    let extra = (padded.plane / row.max(1)).checked_sub(height).ok_or(short(INPUT))?;
    let plane = band_rows.checked_add(extra).and_then(|r| r.checked_mul(row)).ok_or(short(INPUT))?;
    let band_cols = |rows: usize| (rows - 1) * row + width;
    let products_len = if banded { m.checked_mul(band_cols(band_rows)).ok_or(short(OUT))? } else { 0 };
    let task_len = c.in_per_group.checked_mul(plane).and_then(|l| l.checked_add(products_len)).ok_or(short(INPUT))?;
    let packed_len = if prepared.is_some() { 0 } else { packed_conv_len(c).ok_or(short(WEIGHT))? };
    let len = tasks.checked_mul(task_len).and_then(|l| l.checked_add(packed_len)).ok_or(short(WEIGHT))?;
    let group_len = packed_group_len(c).ok_or(short(WEIGHT))?;
    let [on, oc, _, _] = out.strides;
    let run = |scratch: &mut [f32], ctx: &KernelContext| -> Result<(), KernelError> {
        let (privates, packed) = scratch.split_at_mut(tasks * task_len);
        let packed = packed_weights(c, w, prepared, packed)?;
        for n in 0..c.batch {
            for g in 0..c.groups {
                let lhs = PackedLhs { data: packed.get(g * group_len..).ok_or(short(WEIGHT))?, m, k: c.reduction() };
                let first = n * on + g * m * oc;
                let output =
                    SharedColumns::new(MatMut { data: out.data.get_mut(first..).ok_or(short(OUT))?, row: oc, col: 1 });
                let epilogue = epilogue(c, bias, g)?;
                let (output, epilogue) = (&output, &epilogue);
                crate::spread::for_each_chunk_run(ctx, &mut *privates, task_len, tasks, |t, private| {
                    let (y0, y1) = (height * t / tasks, height * (t + 1) / tasks);
                    let (planes, products) = private.split_at_mut(c.in_per_group * plane);
                    // The padded rows from `y0` that output rows `y0..y1` read.
                    let rows_len = (y1 - y0 + extra) * row;
                    for (ci, dst) in planes.chunks_exact_mut(plane).enumerate() {
                        let src = c.input_plane(x, n, g * c.in_per_group + ci)?;
                        padded.fill_rows(c, src, y0, dst.get_mut(..rows_len).ok_or(short(INPUT))?)?;
                    }
                    let one = KernelContext::one_thread();
                    if banded {
                        let cols = band_cols(y1 - y0);
                        let rhs = TapRows { data: planes, group: plane, taps };
                        let dst = MatMut { data: products.get_mut(..m * cols).ok_or(short(OUT))?, row: cols, col: 1 };
                        sgemm_taps(&one, cols, lhs, rhs, dst, epilogue, OUT)?;
                        for y in y0..y1 {
                            let src = products.get((y - y0) * row..).ok_or(short(OUT))?;
                            // SAFETY: tasks write disjoint runs of output rows (consecutive bounds
                            // of `height * t / tasks`): no two calls write the same columns.
                            unsafe { output.write_columns(m, y * width..(y + 1) * width, src, cols, OUT)? };
                        }
                        return Ok(());
                    }
                    for y in y0..y1 {
                        let rhs =
                            TapRows { data: planes.get((y - y0) * row..).ok_or(short(INPUT))?, group: plane, taps };
                        // SAFETY: tasks write disjoint runs of output rows (consecutive bounds of
                        // `height * t / tasks`): no two calls write the same columns (pixels).
                        unsafe {
                            sgemm_taps_columns_one_thread(
                                &one,
                                lhs,
                                rhs,
                                output,
                                y * width..(y + 1) * width,
                                epilogue,
                                OUT,
                            )?
                        };
                    }
                    Ok(())
                })?;
            }
        }
        Ok(())
    };
    ctx.with_scratch_f32(len, run).unwrap_or(Err(NO_SCRATCH))
}

/// Copies `rows` rows of `width` elements, `from_row` apart in `from`, to rows `to_row` apart
/// in `to`.
fn copy_rows(
    from: &[f32],
    from_row: usize,
    rows: usize,
    to: &mut [f32],
    to_row: usize,
    width: usize,
) -> Result<(), KernelError> {
    for r in 0..rows {
        let src = from.get(r * from_row..r * from_row + width).ok_or(short(OUT))?;
        to.get_mut(r * to_row..r * to_row + width).ok_or(short(OUT))?.copy_from_slice(src);
    }
    Ok(())
}

/// Weights as the im2col path multiplies them.
#[derive(Clone, Copy)]
enum Packed<'a> {
    /// For `sgemm`, every group.
    Panels(&'a [f32]),
    /// For [`pixel_gemm`] (one group, contiguous planes).
    Pixels(&'a PackedConvWeights),
}

#[allow(clippy::too_many_arguments)]
fn im2col_tiles(
    ctx: &KernelContext,
    c: &Conv,
    x: &[f32],
    packed: Packed<'_>,
    bias: Option<&[f32]>,
    out: Output<'_>,
    cols: &mut [f32],
    tile: usize,
    mut phases: Option<&mut [f32]>,
) -> Result<(), KernelError> {
    let k_len = c.reduction();
    let pixels = c.out_pixels();
    let [on, oc, _, op] = out.strides;
    let group_len = packed_group_len(c).ok_or(short(WEIGHT))?;
    for n in 0..c.batch {
        for g in 0..c.groups {
            if let Some(phases) = phases.as_deref_mut() {
                // On the calling thread, as this path always did (`im2col_spread`, which large
                // convolutions on a pool take, splits them over the pool).
                split_phases(&KernelContext::one_thread(), c, x, n, g, phases)?;
            }
            for p0 in (0..pixels).step_by(tile) {
                let p1 = (p0 + tile).min(pixels);
                let width = p1 - p0;
                let cols = cols.get_mut(..width * k_len).ok_or(short(INPUT))?;
                let rhs = if c.x_channels_last {
                    gather_channels_last(c, x, n, g, (p0, p1), cols)?;
                    MatRef { data: cols, row: 1, col: k_len }
                } else {
                    match phases.as_deref() {
                        Some(phases) => gather_phases(ctx, c, phases, (p0, p1), cols)?,
                        None => gather_contiguous(ctx, c, x, n, g, (p0, p1), cols)?,
                    }
                    MatRef { data: cols, row: width, col: 1 }
                };
                let packed = match packed {
                    Packed::Panels(p) => p,
                    Packed::Pixels(p) if !c.x_channels_last && op == 1 => {
                        let at = n * on + g * c.out_per_group * oc + p0;
                        let out = out.data.get_mut(at..).ok_or(short(OUT))?;
                        pixel_product(ctx, c, p, (cols, width), width, bias, (out, oc))?;
                        continue;
                    }
                    Packed::Pixels(_) => return Err(KernelError::NotImplemented("pixel-rows weights for this layout")),
                };
                let lhs =
                    PackedLhs { data: packed.get(g * group_len..).ok_or(short(WEIGHT))?, m: c.out_per_group, k: k_len };
                let at = n * on + g * c.out_per_group * oc + p0 * op;
                let dst = MatMut { data: out.data.get_mut(at..).ok_or(short(OUT))?, row: oc, col: op };
                sgemm(ctx, width, lhs, rhs, dst, &epilogue(c, bias, g)?, OUT)?;
            }
        }
    }
    Ok(())
}

/// Tasks [`im2col_spread`] would split a convolution into on `ctx`'s pool (1: take the tiled
/// path): contiguous input and output, weights packed for `sgemm`, and enough multiply-adds for
/// every thread.
fn spread_tasks(ctx: &KernelContext, c: &Conv, by_pixels: bool, out: &Output<'_>) -> usize {
    let threads = ctx.threads();
    let [_, oc, _, op] = out.strides;
    let fits = threads > 1 && !by_pixels && !c.x_channels_last && op == 1 && oc >= c.out_pixels();
    if !fits || c.macs() < PARALLEL_MIN_MACS.saturating_mul(threads) {
        return 1;
    }
    // Two runs per thread (the pool balances them), each at least a GEMM strip of positions.
    (threads * 2).min(c.out_pixels() / sgemm::NR).max(1)
}

/// im2col on a pool as one parallel region per image and group: each task takes a run of output
/// positions and, on its own thread, gathers them tile by tile into its own scratch and multiplies
/// each tile straight into the output. The tiled path forks and joins twice per tile (gather,
/// product), each product reading columns the other thread gathered; on mobilenet_v2's stem that
/// scaled 1.3x on two threads.
#[allow(clippy::too_many_arguments)]
fn im2col_spread(
    ctx: &KernelContext,
    c: &Conv,
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    out: Output<'_>,
    (cols, tile, tasks): (&mut [f32], usize, usize),
    mut phases: Option<&mut [f32]>,
) -> Result<(), KernelError> {
    let k_len = c.reduction();
    let pixels = c.out_pixels();
    let [on, oc, _, _] = out.strides;
    let group_len = packed_group_len(c).ok_or(short(WEIGHT))?;
    for n in 0..c.batch {
        for g in 0..c.groups {
            if let Some(phases) = phases.as_deref_mut() {
                split_phases(ctx, c, x, n, g, phases)?;
            }
            let phases = phases.as_deref();
            let lhs =
                PackedLhs { data: packed.get(g * group_len..).ok_or(short(WEIGHT))?, m: c.out_per_group, k: k_len };
            let at = n * on + g * c.out_per_group * oc;
            let dst =
                sgemm::SharedColumns::new(MatMut { data: out.data.get_mut(at..).ok_or(short(OUT))?, row: oc, col: 1 });
            let epilogue = epilogue(c, bias, g)?;
            let cols = cols.get_mut(..tile * k_len * tasks).ok_or(short(INPUT))?;
            crate::spread::for_each_chunk_run(ctx, cols, tile * k_len, tasks, |t, scratch| {
                let one = KernelContext::one_thread();
                let (first, last) = (pixels * t / tasks, pixels * (t + 1) / tasks);
                for p0 in (first..last).step_by(tile) {
                    let p1 = (p0 + tile).min(last);
                    let width = p1 - p0;
                    let cols = scratch.get_mut(..width * k_len).ok_or(short(INPUT))?;
                    match phases {
                        Some(phases) => gather_phases(&one, c, phases, (p0, p1), cols)?,
                        None => gather_contiguous(&one, c, x, n, g, (p0, p1), cols)?,
                    }
                    let rhs = MatRef { data: cols, row: width, col: 1 };
                    // SAFETY: task `t` writes output positions `first..last` only, and the tasks'
                    // runs are disjoint (consecutive bounds of `pixels * t / tasks`).
                    unsafe { sgemm::sgemm_columns_one_thread(&one, lhs, rhs, &dst, p0..p1, &epilogue, OUT)? };
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Rows `2r + py` of input plane `src` into `dst`: their even columns, then their odd ones
/// (half a channel's phase planes, see [`split_phases`]).
fn split_phase_rows(c: &Conv, src: &[f32], py: usize, dst: &mut [f32]) -> Result<(), KernelError> {
    let (h, w) = (c.height / 2, c.width / 2);
    let (even_cols, odd_cols) = dst.split_at_mut_checked(h * w).ok_or(short(INPUT))?;
    for (r, (e, o)) in even_cols.chunks_mut(w).zip(odd_cols.chunks_mut(w)).enumerate() {
        let row = src.get((2 * r + py) * c.width..(2 * r + py + 1) * c.width).ok_or(short(INPUT))?;
        for ((e, o), pair) in e.iter_mut().zip(o.iter_mut()).zip(row.as_chunks::<2>().0) {
            (*e, *o) = (pair[0], pair[1]);
        }
    }
    Ok(())
}

/// im2col for a contiguous input: row `(ci, ky, kx)` of `cols` holds, for output positions
/// `p0..p1`, the input each reads through that tap (zero in the padding). What depends on the
/// tap only (its column range, its shifted copy) is worked out once per tap ([`TapPlan`]), not
/// once per row: those divisions cost more than copying a small plane's row (res_block's 12x12).
fn gather_contiguous(
    ctx: &KernelContext,
    c: &Conv,
    x: &[f32],
    n: usize,
    g: usize,
    (p0, p1): (usize, usize),
    cols: &mut [f32],
) -> Result<(), KernelError> {
    let width = p1 - p0;
    let [kh, kw] = c.kernel;
    let taps = kh * kw;
    let plane = c.height * c.width;
    let shifted = c.stride == [1, 1] && c.out_width == c.width;
    if (!shifted || width <= INDEXED_SHIFTED_PIXELS) && taps * width <= INDEXED_ENTRIES && plane < u32::MAX as usize {
        return gather_indexed(c, x, n, g, (p0, p1), cols);
    }
    let plan_of = |t: usize| TapPlan::new(c, t / kw, t % kw, (p0, p1), shifted);
    let mut table = [TapPlan::default(); MAX_TAPS];
    let mut padding = PaddingLists::new();
    let tabled = taps <= MAX_TAPS;
    if tabled {
        for (t, slot) in table.iter_mut().enumerate().take(taps) {
            *slot = plan_of(t)?;
            if let Some(shift) = &slot.shift {
                padding.record(t, shift);
            }
        }
    }
    let fill_row = |(row, dst): (usize, &mut [f32])| -> Result<(), KernelError> {
        let (ci, t) = (row / taps, row % taps);
        let tap = if tabled { table[t] } else { plan_of(t)? };
        let src = c.input_plane(x, n, g * c.in_per_group + ci)?;
        if let Some(shift) = &tap.shift {
            return shift.gather(src, dst, padding.get(t));
        }
        let (row_lo, row_hi, offset) = (tap.row_lo, tap.row_hi, tap.offset);
        let (mut p, mut oy, mut ox0) = (p0, p0 / c.out_width, p0 % c.out_width);
        while p < p1 {
            let ox1 = (ox0 + p1 - p).min(c.out_width);
            let seg = dst.get_mut(p - p0..p - p0 + (ox1 - ox0)).ok_or(short(INPUT))?;
            let iy = c.input_pos(0, oy, tap.ky);
            if iy < 0 || iy >= c.height as i64 {
                seg.fill(0.0);
            } else {
                let row_in = &src[iy as usize * c.width..(iy as usize + 1) * c.width];
                let (lo, hi) = (row_lo.max(ox0 as i64), row_hi.min(ox1 as i64));
                // Outputs [lo, hi) read inside the row; the rest of the segment reads padding.
                let lo = lo.clamp(ox0 as i64, ox1 as i64) as usize;
                let hi = hi.clamp(lo as i64, ox1 as i64) as usize;
                seg[..lo - ox0].fill(0.0);
                seg[hi - ox0..].fill(0.0);
                if hi > lo {
                    let start = (lo * c.stride[1]) as i64 + offset;
                    let start = usize::try_from(start).map_err(|_| short(INPUT))?;
                    let dst = &mut seg[lo - ox0..hi - ox0];
                    if c.stride[1] == 1 {
                        dst.copy_from_slice(row_in.get(start..start + dst.len()).ok_or(short(INPUT))?);
                    } else {
                        copy_strided(dst, row_in.get(start..).ok_or(short(INPUT))?, c.stride[1]).ok_or(short(INPUT))?;
                    }
                }
            }
            // The next segment starts a new output row (or the tile ends).
            p += ox1 - ox0;
            (oy, ox0) = (oy + 1, 0);
        }
        Ok(())
    };
    gather_rows(ctx, cols, width, fill_row)
}

/// Runs `fill_row` on each `width`-long row of an im2col tile (with its index), over the pool
/// when the tile is large enough.
fn gather_rows(
    ctx: &KernelContext,
    cols: &mut [f32],
    width: usize,
    fill_row: impl Fn((usize, &mut [f32])) -> Result<(), KernelError> + Sync + Send,
) -> Result<(), KernelError> {
    if ctx.threads() > 1 && cols.len() >= PARALLEL_GATHER {
        ctx.install(|| cols.par_chunks_mut(width).enumerate().try_for_each(fill_row))
    } else {
        cols.chunks_mut(width).enumerate().try_for_each(fill_row)
    }
}

/// im2col for a tile of few output positions (a 2x2 or 4x4 map): each row is a handful of
/// elements, so per-row copies and fills cost more than the data. The plane offset each
/// position reads through each tap is worked out once, then every row is a table lookup.
fn gather_indexed(
    c: &Conv,
    x: &[f32],
    n: usize,
    g: usize,
    (p0, p1): (usize, usize),
    cols: &mut [f32],
) -> Result<(), KernelError> {
    let width = p1 - p0;
    let taps = c.kernel[0] * c.kernel[1];
    // Offsets into the plane; `u32::MAX` (never inside a plane, checked by the caller) marks
    // padding.
    let mut table = [u32::MAX; INDEXED_ENTRIES];
    let table = table.get_mut(..taps * width).ok_or(short(INPUT))?;
    for (t, offsets) in table.chunks_mut(width).enumerate() {
        let tap = [t / c.kernel[1], t % c.kernel[1]];
        for (p, slot) in (p0..p1).zip(offsets.iter_mut()) {
            if let Some(at) = c.input_offset([p / c.out_width, p % c.out_width], tap) {
                *slot = at as u32;
            }
        }
    }
    let block = taps * width;
    for (ci, dst) in cols.chunks_mut(block).enumerate() {
        let src = c.input_plane(x, n, g * c.in_per_group + ci)?;
        for (d, &at) in dst.iter_mut().zip(table.iter()) {
            *d = src.get(at as usize).copied().unwrap_or(0.0);
        }
    }
    Ok(())
}

/// Whether a convolution's im2col reads split phase planes ([`gather_phases`]): stride 2 on a
/// contiguous input of even height and width whose output is half as large (the stems of
/// image networks), with more taps × positions than [`gather_indexed`] takes.
fn phase_split(c: &Conv) -> bool {
    c.stride == [2, 2]
        && c.dilation == [1, 1]
        && !c.x_channels_last
        && c.height.is_multiple_of(2)
        && c.width.is_multiple_of(2)
        && c.out_height == c.height / 2
        && c.out_width == c.width / 2
        && c.kernel[0] * c.kernel[1] <= MAX_TAPS
        && c.kernel[0] * c.kernel[1] * c.out_pixels() > INDEXED_ENTRIES
}

/// Splits image `n`, group `g` of the input into phase planes: plane `(ci, py, px)` (at
/// `(ci * 4 + py * 2 + px) * h * w`, with `h`, `w` half the input's) holds input rows `2r + py`,
/// columns `2q + px`. A stride-2 tap then reads one phase plane at stride 1.
///
/// Each input channel's two row phases are a task over `ctx`'s pool.
fn split_phases(
    ctx: &KernelContext,
    c: &Conv,
    x: &[f32],
    n: usize,
    g: usize,
    phases: &mut [f32],
) -> Result<(), KernelError> {
    let half = c.height / 2 * c.width;
    let phases = phases.get_mut(..c.in_per_group * 2 * half).ok_or(short(INPUT))?;
    crate::spread::for_each_chunk_run(ctx, phases, half, c.in_per_group * 2, |unit, dst| {
        let (ci, py) = (unit / 2, unit % 2);
        split_phase_rows(c, c.input_plane(x, n, g * c.in_per_group + ci)?, py, dst)
    })
}

/// im2col of a [`phase_split`] convolution from its phase planes: tap `(ky, kx)` reads phase
/// `((ky - pad) mod 2, (kx - pad) mod 2)` shifted by `floor((k - pad) / 2)` rows and columns, so
/// each row of the tile is one shifted copy (as stride 1 with "same" padding) instead of one
/// strided copy per output row (the 7x7 stem of resnet18_narrow spent most of its time there).
fn gather_phases(
    ctx: &KernelContext,
    c: &Conv,
    phases: &[f32],
    (p0, p1): (usize, usize),
    cols: &mut [f32],
) -> Result<(), KernelError> {
    let width = p1 - p0;
    let [kh, kw] = c.kernel;
    let taps = kh * kw;
    let (h, w) = (c.height / 2, c.width / 2);
    // The geometry a tap sees: stride 1 over a plane as large as the output.
    let half = Conv { height: h, width: w, stride: [1, 1], ..*c };
    let mut table = [(ShiftedTap::default(), 0usize); MAX_TAPS];
    for (t, slot) in table.iter_mut().enumerate().take(taps) {
        let ey = (t / kw) as i64 - c.padding[0] as i64;
        let ex = (t % kw) as i64 - c.padding[1] as i64;
        let (dy, dx) = (ey.div_euclid(2), ex.div_euclid(2));
        let phase = (ey.rem_euclid(2) * 2 + ex.rem_euclid(2)) as usize;
        let cols = valid_range(0, w as i64, 1, dx, w as i64);
        *slot = (ShiftedTap::new(&half, (p0, p1), dy, dx, cols)?, phase);
    }
    let mut padding = PaddingLists::new();
    for (t, (tap, _)) in table.iter().enumerate().take(taps) {
        padding.record(t, tap);
    }
    let plane = h * w;
    let fill_row = |(row, dst): (usize, &mut [f32])| -> Result<(), KernelError> {
        let (ci, t) = (row / taps, row % taps);
        let (tap, phase) = &table[t];
        let at = (ci * 4 + phase) * plane;
        tap.gather(phases.get(at..at + plane).ok_or(short(INPUT))?, dst, padding.get(t))
    };
    gather_rows(ctx, cols, width, fill_row)
}

/// What one tap `(ky, kx)` of an im2col tile reads, whatever the input channel.
#[derive(Clone, Copy, Default)]
struct TapPlan {
    ky: usize,
    /// Input column of output column 0 through this tap (may be negative).
    offset: i64,
    /// Output columns `[row_lo, row_hi)` read inside an input row.
    row_lo: i64,
    row_hi: i64,
    /// The tile as one shifted copy (stride 1, output as wide as the input).
    shift: Option<ShiftedTap>,
}

impl TapPlan {
    fn new(c: &Conv, ky: usize, kx: usize, (p0, p1): (usize, usize), shifted: bool) -> Result<TapPlan, KernelError> {
        // Which output columns read inside an input row depends on the tap only.
        let offset = (kx * c.dilation[1]) as i64 - c.padding[1] as i64;
        let (row_lo, row_hi) = valid_range(0, c.out_width as i64, c.stride[1] as i64, offset, c.width as i64);
        let shift = if shifted {
            let dy = (ky * c.dilation[0]) as i64 - c.padding[0] as i64;
            Some(ShiftedTap::new(c, (p0, p1), dy, offset, (row_lo, row_hi))?)
        } else {
            None
        };
        Ok(TapPlan { ky, offset, row_lo, row_hi, shift })
    }
}

/// One im2col row of a stride-1 convolution whose output is as wide as its input (e.g. "same"
/// padding): output position `p` reads plane element `p + dy * width + dx` for the tap's shifts
/// `dy`, `dx`, so the tile `p0..p1` is one copy, after which the positions whose row or column
/// falls outside the input are zeroed. Row by row (segments of a few elements: the copy and fill
/// calls cost more than the bytes) this was most of a small 3x3 convolution's time.
#[derive(Clone, Copy, Default)]
struct ShiftedTap {
    /// Tile positions `[c0, c1)` are copied from plane elements `from..from + (c1 - c0)`; the
    /// rest is zero.
    c0: usize,
    c1: usize,
    from: usize,
    /// Positions `q0..q1` (plane positions of the copied rows, `z0..z1` in the tile) whose
    /// columns outside `[col_lo, col_hi)` read padding.
    q0: i64,
    q1: i64,
    z0: usize,
    z1: usize,
    col_lo: i64,
    col_hi: i64,
    width: i64,
}

impl ShiftedTap {
    fn new(
        c: &Conv,
        (p0, p1): (usize, usize),
        dy: i64,
        dx: i64,
        (col_lo, col_hi): (i64, i64),
    ) -> Result<ShiftedTap, KernelError> {
        let to_usize = |v: i64| usize::try_from(v).map_err(|_| short(INPUT));
        let width = c.width as i64;
        let (p0i, p1i) = (p0 as i64, p1 as i64);
        // Positions whose input row exists: output rows `oy` with `0 <= oy + dy < height`.
        let (row_lo, row_hi) = (0.max(-dy), (c.out_height as i64).min(c.height as i64 - dy));
        let q0 = (row_lo * width).clamp(p0i, p1i);
        let q1 = (row_hi * width).clamp(q0, p1i);
        // ... of which these read inside the plane (the rest are invalid columns, zeroed below).
        // Positions `a..b` of those (possibly none: a tap whose every row is padding).
        let shift = dy * width + dx;
        let plane = (c.height * c.width) as i64;
        let a = q0.max(-shift).min(q1);
        let b = q1.min(plane - shift).max(a);
        let (c0, c1) = (to_usize(a - p0i)?, to_usize(b - p0i)?);
        let from = if c1 > c0 { to_usize(a + shift)? } else { 0 };
        let (z0, z1) = (to_usize(q0 - p0i)?, to_usize(q1 - p0i)?);
        let (col_lo, col_hi) = (col_lo.clamp(0, width), col_hi.clamp(0, width));
        Ok(ShiftedTap { c0, c1, from, q0, q1, z0, z1, col_lo, col_hi, width })
    }

    /// Calls `zero` with each position of the tile (an index into the tap's row) whose column
    /// reads padding although its row was copied.
    fn padding_positions(&self, mut zero: impl FnMut(usize)) {
        let ShiftedTap { q0, q1, z0, z1, col_lo, col_hi, width, .. } = *self;
        if (col_lo > 0 || col_hi < width) && z1 > z0 {
            for oy in q0 / width..=(q1 - 1) / width {
                let start = oy * width;
                for ox in (0..col_lo).chain(col_hi.max(col_lo)..width) {
                    let q = start + ox;
                    if (q0..q1).contains(&q) {
                        zero(z0 + (q - q0) as usize);
                    }
                }
            }
        }
    }

    /// The tap's row of the tile from input plane `src` into `dst`; `padding`, when given, lists
    /// [`ShiftedTap::padding_positions`] (the same for every input channel).
    fn gather(&self, src: &[f32], dst: &mut [f32], padding: Option<&[u32]>) -> Result<(), KernelError> {
        let ShiftedTap { c0, c1, from, .. } = *self;
        dst.get_mut(..c0).ok_or(short(INPUT))?.fill(0.0);
        dst.get_mut(c1..).ok_or(short(INPUT))?.fill(0.0);
        if c1 > c0 {
            let from = src.get(from..from + (c1 - c0)).ok_or(short(INPUT))?;
            dst.get_mut(c0..c1).ok_or(short(INPUT))?.copy_from_slice(from);
        }
        // Columns outside `[col_lo, col_hi)` of the copied rows read padding (the copy took them
        // from a neighbouring row): a few elements per row, plain stores.
        match padding {
            Some(list) => {
                for &at in list {
                    *dst.get_mut(at as usize).ok_or(short(INPUT))? = 0.0;
                }
            }
            None => {
                let mut outside = false;
                self.padding_positions(|at| match dst.get_mut(at) {
                    Some(v) => *v = 0.0,
                    None => outside = true,
                });
                if outside {
                    return Err(short(INPUT));
                }
            }
        }
        Ok(())
    }
}

/// Each shifted tap's padding positions ([`ShiftedTap::padding_positions`]) in a tile, listed once
/// for all input channels: worked out per row, they were a fifth of a 3x3 convolution on a 16x16
/// map. A tap with more than [`PADDING_LIST`] has none listed (its rows find them themselves).
struct PaddingLists {
    lists: [[u32; PADDING_LIST]; MAX_TAPS],
    lens: [Option<usize>; MAX_TAPS],
}

impl PaddingLists {
    fn new() -> PaddingLists {
        PaddingLists { lists: [[0; PADDING_LIST]; MAX_TAPS], lens: [None; MAX_TAPS] }
    }

    /// Lists tap `t`'s padding positions (nothing for `t >= MAX_TAPS` or too many positions).
    fn record(&mut self, t: usize, tap: &ShiftedTap) {
        let (Some(list), Some(slot)) = (self.lists.get_mut(t), self.lens.get_mut(t)) else { return };
        let mut len = 0;
        let mut overflow = false;
        tap.padding_positions(|at| match (list.get_mut(len), u32::try_from(at)) {
            (Some(entry), Ok(at)) => {
                *entry = at;
                len += 1;
            }
            _ => overflow = true,
        });
        *slot = (!overflow).then_some(len);
    }

    /// Tap `t`'s list, if it has one.
    fn get(&self, t: usize) -> Option<&[u32]> {
        self.lists.get(t)?.get(..(*self.lens.get(t)?)?)
    }
}

/// `dst[i] = src[i * stride]`; `None` if `src` is too short. Stride 2 (stride-2 convolutions) has
/// its own loop, which the compiler turns into shuffles; the generic one copies element by element.
fn copy_strided(dst: &mut [f32], src: &[f32], stride: usize) -> Option<()> {
    let Some(last) = dst.len().checked_sub(1) else { return Some(()) };
    let src = src.get(..last.checked_mul(stride)?.checked_add(1)?)?;
    if stride == 2 {
        let (pairs, _) = src.as_chunks::<2>();
        let (body, tail) = dst.split_at_mut(pairs.len());
        for (d, pair) in body.iter_mut().zip(pairs) {
            *d = pair[0];
        }
        if let (Some(d), Some(&s)) = (tail.first_mut(), src.last()) {
            *d = s;
        }
    } else {
        for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
            *d = *s;
        }
    }
    Some(())
}

/// im2col for a channels-last input: pixel `p` of `cols` holds, for each tap `(ky, kx)`, the run
/// of the group's input channels it reads (zero in the padding).
fn gather_channels_last(
    c: &Conv,
    x: &[f32],
    n: usize,
    g: usize,
    (p0, p1): (usize, usize),
    cols: &mut [f32],
) -> Result<(), KernelError> {
    let [kh, kw] = c.kernel;
    let [xn, _, xh, xw] = c.x_strides;
    let cg = c.in_per_group;
    for (p, dst) in (p0..p1).zip(cols.chunks_exact_mut(c.reduction())) {
        let (oy, ox) = (p / c.out_width, p % c.out_width);
        for ky in 0..kh {
            let iy = c.input_pos(0, oy, ky);
            for kx in 0..kw {
                let ix = c.input_pos(1, ox, kx);
                let seg = dst.get_mut((ky * kw + kx) * cg..(ky * kw + kx + 1) * cg).ok_or(short(INPUT))?;
                if iy < 0 || iy >= c.height as i64 || ix < 0 || ix >= c.width as i64 {
                    seg.fill(0.0);
                } else {
                    let at = n * xn + iy as usize * xh + ix as usize * xw + g * cg;
                    seg.copy_from_slice(x.get(at..at + cg).ok_or(short(INPUT))?);
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Depthwise, contiguous planes.

/// The tiling of one contiguous depthwise plane: output tiles of `tile_rows` x `tile_cols`
/// positions whose zero-padded input band (`band_rows` x `band_cols`) fits in [`BAND`].
#[derive(Debug, Clone, Copy)]
struct PlaneTiling {
    tile_rows: usize,
    tile_cols: usize,
    band_cols: usize,
}

/// Input extent read by `outputs` consecutive outputs along `axis` (`None` on overflow).
fn span(c: &Conv, axis: usize, outputs: usize) -> Option<usize> {
    (outputs.checked_sub(1)?.checked_mul(c.stride[axis])?)
        .checked_add((c.kernel[axis] - 1).checked_mul(c.dilation[axis])?)?
        .checked_add(1)
}

fn plane_tiling(c: &Conv) -> Option<PlaneTiling> {
    let cols_needed = c.out_width.div_ceil(CHUNK) * CHUNK;
    // Widest tile (whole chunks) whose one-row band fits.
    let rows_for_one = span(c, 0, 1)?;
    // One column more than the tile reads: stride-2 chunks load a pair of registers.
    let band_cols = |cols: usize| span(c, 1, cols)?.checked_add(1);
    let fits = |cols: usize| Some(band_cols(cols)?.checked_mul(rows_for_one)? <= BAND);
    let mut tile_cols = cols_needed;
    while !fits(tile_cols).unwrap_or(false) {
        if tile_cols == CHUNK {
            return None;
        }
        tile_cols = (tile_cols / 2).div_ceil(CHUNK) * CHUNK;
    }
    let band_cols = band_cols(tile_cols)?;
    let mut tile_rows = c.out_height;
    while span(c, 0, tile_rows)?.checked_mul(band_cols)? > BAND {
        tile_rows = tile_rows.div_ceil(2);
        if tile_rows == 1 {
            break;
        }
    }
    Some(PlaneTiling { tile_rows, tile_cols, band_cols })
}

fn depthwise_fits(c: &Conv) -> bool {
    c.kernel[0] * c.kernel[1] <= MAX_TAPS && plane_tiling(c).is_some()
}

/// Depthwise convolution of contiguous tensors: every output plane `(n, oc)` from input plane
/// `(n, oc / multiplier)`, planes spread over the pool when `threads` (at most the pool's) is more
/// than one. On AVX-512 straight from the input ([`depthwise_avx512`]), else through a zero-padded
/// band copy.
fn depthwise_contiguous(
    ctx: &KernelContext,
    c: &Conv,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: Output<'_>,
    threads: usize,
) -> Result<(), KernelError> {
    let direct = depthwise_avx512::PlaneGeometry {
        height: c.height,
        width: c.width,
        out_height: c.out_height,
        out_width: c.out_width,
        kernel: c.kernel,
        stride: c.stride,
        padding: c.padding,
        dilation: c.dilation,
        min: c.min,
        max: c.max,
    };
    let choice = forced_depthwise_kernel();
    if choice == DepthwiseKernel::Any && c.out_pixels() <= TINY_PLANE {
        return depthwise_tiny(ctx, c, x, w, bias, out);
    }
    let flat = depthwise_avx512::FlatPlane::new(&direct).filter(|_| choice == DepthwiseKernel::Any);
    let phased = depthwise_phased::PhasedPlane::new(&direct).filter(|_| choice == DepthwiseKernel::Any);
    let direct = direct.direct().filter(|_| choice != DepthwiseKernel::Band);
    let tiling = plane_tiling(c).ok_or(KernelError::NotImplemented("depthwise tiling"))?;
    let plane_out = c.out_pixels();
    let plane_in = c.height * c.width;
    let [xn, xc, _, _] = c.x_strides;
    let [w0, _, w2, w3] = c.w_strides;
    let [kh, kw] = c.kernel;
    let taps = kh * kw;
    // The weights of a depthwise convolution are usually contiguous: each plane's taps are then a
    // slice of them, else a copy.
    let taps_contiguous = w2 == kw && w3 == 1;
    // Plane `index` (`n * out_channels + oc`): its input plane, taps (in `copy` unless
    // contiguous) and bias.
    let plane = |index: usize, copy: &mut [f32; MAX_TAPS]| -> Result<(&[f32], Option<usize>, f32), KernelError> {
        let (n, oc, ic) = c.plane_channels(index);
        let src = x.get(n * xn + ic * xc..n * xn + ic * xc + plane_in).ok_or(short(INPUT))?;
        let at = if taps_contiguous {
            w.get(oc * w0..oc * w0 + taps).ok_or(short(WEIGHT))?;
            Some(oc * w0)
        } else {
            for ky in 0..kh {
                for kx in 0..kw {
                    copy[ky * kw + kx] = *w.get(oc * w0 + ky * w2 + kx * w3).ok_or(short(WEIGHT))?;
                }
            }
            None
        };
        let b = bias.map_or(Some(0.0), |b| b.get(oc).copied()).ok_or(short(BIAS))?;
        Ok((src, at, b))
    };
    // The taps `plane` found; an empty slice (a typed error in the kernels) cannot happen, since
    // `plane` checked the weight range and `depthwise_fits` bounds the taps by MAX_TAPS.
    fn taps_of<'a>(w: &'a [f32], at: Option<usize>, copy: &'a [f32; MAX_TAPS], taps: usize) -> &'a [f32] {
        match at {
            Some(at) => w.get(at..at + taps),
            None => copy.get(..taps),
        }
        .unwrap_or_default()
    }
    // The flat and phased kernels take planes in groups (one mask serves all); the others one at
    // a time.
    const GROUP: usize = depthwise_avx512::FLAT_PLANES;
    const _: () = assert!(GROUP == depthwise_phased::PHASED_PLANES);
    let group = match (&phased, &flat) {
        (Some(p), _) => p.planes_together(),
        (None, Some(_)) => GROUP,
        (None, None) => 1,
    };
    // Per task: the band buffer and the phase buffers (made, zeroed, on first use) and the taps
    // copied when not contiguous (zeroed once per task, not per group).
    struct TaskState {
        band: Option<Box<[f32; BAND]>>,
        phases: Vec<f32>,
        copies: [[f32; MAX_TAPS]; GROUP],
    }
    let new_state = || TaskState { band: None, phases: Vec::new(), copies: [[0f32; MAX_TAPS]; GROUP] };
    // The GROUP planes from `first`, for the kernels that take them together.
    let group_planes = |first: usize, copies: &mut [[f32; MAX_TAPS]; GROUP]| {
        let [c0, c1, c2, c3] = copies;
        Ok::<_, KernelError>([plane(first, c0)?, plane(first + 1, c1)?, plane(first + 2, c2)?, plane(first + 3, c3)?])
    };
    let one_group = |state: &mut TaskState, (gi, dst): (usize, &mut [f32])| -> Result<(), KernelError> {
        let first = gi * group;
        let TaskState { band, phases, copies } = state;
        if let Some(f) = &phased {
            let len = f.buffer_len();
            if phases.is_empty() {
                phases.resize(len * group, 0.0);
            }
            let mut outs = dst.chunks_exact_mut(plane_out);
            if outs.len() == GROUP {
                let p = group_planes(first, copies)?;
                let t = std::array::from_fn(|k| taps_of(w, p[k].1, &copies[k], taps));
                let o = std::array::from_fn(|_| outs.next().unwrap_or_default());
                let mut bufs = phases.chunks_exact_mut(len);
                let b = std::array::from_fn(|_| bufs.next().unwrap_or_default());
                return f.run(p.map(|p| p.0), t, p.map(|p| p.2), b, o).ok_or(short(INPUT));
            }
            let buffer = phases.get_mut(..len).ok_or(short(INPUT))?;
            for (k, dst) in outs.enumerate() {
                let (src, at, b) = plane(first + k, &mut copies[0])?;
                f.run([src], [taps_of(w, at, &copies[0], taps)], [b], [&mut *buffer], [dst]).ok_or(short(INPUT))?;
            }
            return Ok(());
        }
        if let Some(f) = &flat {
            let mut outs = dst.chunks_exact_mut(plane_out);
            if outs.len() == GROUP {
                let p = group_planes(first, copies)?;
                let t = std::array::from_fn(|k| taps_of(w, p[k].1, &copies[k], taps));
                let o = std::array::from_fn(|_| outs.next().unwrap_or_default());
                return f.run(p.map(|p| p.0), t, p.map(|p| p.2), o).ok_or(short(INPUT));
            }
            for (k, dst) in outs.enumerate() {
                let (src, at, b) = plane(first + k, &mut copies[0])?;
                f.run([src], [taps_of(w, at, &copies[0], taps)], [b], [dst]).ok_or(short(INPUT))?;
            }
            return Ok(());
        }
        let (src, at, b) = plane(first, &mut copies[0])?;
        let t = taps_of(w, at, &copies[0], taps);
        if let Some(g) = &direct {
            return g.run(src, t, b, dst).ok_or(short(INPUT));
        }
        let band = band.get_or_insert_with(|| Box::new([0f32; BAND]));
        depthwise_plane(c, tiling, src, t, b, dst, band).ok_or(short(INPUT))
    };
    let macs = c.macs();
    let group_len = plane_out * group;
    if threads > 1 && macs >= PARALLEL_MIN_MACS {
        // Enough planes per task that each is worth a steal; one band buffer per task.
        let per_group = (macs / (c.batch * c.out_channels)).max(1) * group;
        let min_len = (PARALLEL_MIN_MACS / 4 / per_group).max(1);
        let tasks = out.data.len().div_ceil(group_len.max(1)).div_ceil(min_len).min(ctx.threads() * 4);
        crate::spread::for_each_chunk_run(ctx, out.data, group_len, tasks, |first, run| {
            let mut state = new_state();
            run.chunks_mut(group_len).enumerate().try_for_each(|(k, dst)| one_group(&mut state, (first + k, dst)))
        })
    } else {
        let mut state = new_state();
        out.data.chunks_mut(group_len).enumerate().try_for_each(|item| one_group(&mut state, item))
    }
}

/// Depthwise convolutions onto maps of at most this many output pixels take
/// [`depthwise_in_lanes`] when their weights are constant.
const LANES_PLANE_OUT: usize = 16;
/// ... and from inputs of at most this many pixels (the transposed copy's size).
const LANES_PLANE_IN: usize = 64;

/// Whether a depthwise convolution computes its channels in the vector lanes
/// ([`depthwise_in_lanes`]): one input and one output channel per group, contiguous NCHW input,
/// small planes where the per-plane kernels spend most of their time on setup: at most
/// [`TINY_PLANE`] outputs (efficientnet's 5x5 layers on 2x2 maps: 9.7 -> 4.3 µs for 576 planes),
/// or strided onto at most 16 (its 3x3 stride-2 layer onto 4x4: 8.1 -> 6.4 µs). At stride 1 onto
/// 4x4 maps the flat kernel stays faster (5x5, 336 planes: 8.9 against 11.0 µs).
fn channels_in_lanes(c: &Conv) -> bool {
    c.in_per_group == 1
        && c.out_per_group == 1
        && !c.x_channels_last
        && (c.out_pixels() <= TINY_PLANE || c.stride != [1, 1])
        && c.out_pixels() <= LANES_PLANE_OUT
        && c.height * c.width <= LANES_PLANE_IN
        && c.kernel[0] * c.kernel[1] <= MAX_TAPS
}

/// A depthwise convolution's constant weights, tap-major (`taps[t · padded + channel]`, channels
/// padded with zeros to a multiple of 16), made at method init for [`depthwise_in_lanes`].
#[derive(Debug)]
pub struct DepthwiseTaps {
    weight_at: usize,
    weight_sizes: [usize; 4],
    /// The geometry the pairs below are for: input and output height and width, stride,
    /// padding, dilation.
    geometry: [usize; 10],
    padded: usize,
    taps: Vec<f32>,
    /// (tap, input pixel) pairs inside the input for each output pixel, in tap order:
    /// `pairs[starts[o]..starts[o + 1]]`.
    pairs: Vec<(usize, usize)>,
    starts: Vec<usize>,
}

/// What [`DepthwiseTaps`]' pairs depend on.
fn lanes_geometry(c: &Conv) -> [usize; 10] {
    let [[sy, sx], [py, px], [dy, dx]] = [c.stride, c.padding, c.dilation];
    [c.height, c.width, c.out_height, c.out_width, sy, sx, py, px, dy, dx]
}

impl DepthwiseTaps {
    fn new(c: &Conv, w: &[f32]) -> Result<Option<DepthwiseTaps>, KernelError> {
        let [w0, _, w2, w3] = c.w_strides;
        let [kh, kw] = c.kernel;
        let padded = c.out_channels.div_ceil(16) * 16;
        let Some(len) = padded.checked_mul(kh * kw) else { return Ok(None) };
        let mut taps = Vec::new();
        if taps.try_reserve_exact(len).is_err() {
            return Ok(None);
        }
        taps.resize(len, 0.0);
        for (t, row) in taps.chunks_exact_mut(padded).enumerate() {
            let (ky, kx) = (t / kw, t % kw);
            for (ch, v) in row.iter_mut().enumerate().take(c.out_channels) {
                *v = *w.get(ch * w0 + ky * w2 + kx * w3).ok_or(short(WEIGHT))?;
            }
        }
        let (mut pairs, mut starts) = (Vec::new(), vec![0]);
        for o in 0..c.out_pixels() {
            let out = [o / c.out_width, o % c.out_width];
            pairs.extend((0..kh * kw).filter_map(|t| Some((t, c.input_offset(out, [t / kw, t % kw])?))));
            starts.push(pairs.len());
        }
        Ok(Some(DepthwiseTaps {
            weight_at: w.as_ptr() as usize,
            weight_sizes: [c.out_channels, 1, kh, kw],
            geometry: lanes_geometry(c),
            padded,
            taps,
            pairs,
            starts,
        }))
    }

    /// Whether these are `c`'s weights `w`, packed for the geometry `c` has.
    fn fits(&self, c: &Conv, w: &[f32]) -> bool {
        self.weight_at == w.as_ptr() as usize
            && self.weight_sizes == [c.out_channels, c.in_per_group, c.kernel[0], c.kernel[1]]
            && channels_in_lanes(c)
            && self.geometry == lanes_geometry(c)
            && self.padded == c.out_channels.div_ceil(16) * 16
    }
}

/// Depthwise convolution of small planes with the channels in the lanes: per image, the input is
/// transposed to `[pixel][channel]`, each output pixel is its bias plus, for each (tap, input
/// pixel) pair inside the input in the portable kernel's tap order, a fused multiply-add over all
/// channels at once, and the results are transposed back (and clamped). The per-plane kernels
/// spent their time on per-plane setup here: 17 ns a plane on efficientnet's 2x2 maps, 576
/// planes a layer.
fn depthwise_in_lanes(
    ctx: &mut KernelContext,
    c: &Conv,
    x: &[f32],
    taps: &DepthwiseTaps,
    bias: Option<&[f32]>,
    out: Output<'_>,
) -> Result<(), KernelError> {
    let padded = taps.padded;
    let (plane_in, plane_out) = (c.height * c.width, c.out_pixels());
    let [xn, xc, _, _] = c.x_strides;
    let [on, oc, _, _] = out.strides;
    let channels = c.out_channels;
    let run = |scratch: &mut [f32], _: &KernelContext| -> Result<(), KernelError> {
        let (xt, acc) = scratch.split_at_mut(plane_in * padded);
        for n in 0..c.batch {
            for ch in 0..channels {
                let plane = x.get(n * xn + ch * xc..n * xn + ch * xc + plane_in).ok_or(short(INPUT))?;
                for (p, &v) in plane.iter().enumerate() {
                    xt[p * padded + ch] = v;
                }
            }
            for p in 0..plane_in {
                xt[p * padded + channels..(p + 1) * padded].fill(0.0);
            }
            for (o, acc) in acc.chunks_exact_mut(padded).enumerate().take(plane_out) {
                match bias {
                    Some(b) => acc[..channels].copy_from_slice(b.get(..channels).ok_or(short(BIAS))?),
                    None => acc[..channels].fill(0.0),
                }
                acc[channels..].fill(0.0);
                let (Some(&from), Some(&to)) = (taps.starts.get(o), taps.starts.get(o + 1)) else {
                    return Err(short(WEIGHT));
                };
                for &(t, i) in taps.pairs.get(from..to).ok_or(short(WEIGHT))? {
                    let w = taps.taps.get(t * padded..(t + 1) * padded).ok_or(short(WEIGHT))?;
                    let xi = xt.get(i * padded..(i + 1) * padded).ok_or(short(INPUT))?;
                    lanes_multiply_add(acc, w, xi);
                }
            }
            for ch in 0..channels {
                let dst = out.data.get_mut(n * on + ch * oc..n * on + ch * oc + plane_out).ok_or(short(OUT))?;
                for (o, d) in dst.iter_mut().enumerate() {
                    *d = sgemm::clamp(acc[o * padded + ch], c.min, c.max);
                }
            }
        }
        Ok(())
    };
    let len = (plane_in + plane_out).checked_mul(padded).ok_or(short(INPUT))?;
    ctx.with_scratch_f32(len, run).unwrap_or(Err(NO_SCRATCH))
}

/// `acc[i] = w[i] · x[i] + acc[i]` in one rounding each, in the widest vectors the CPU has.
fn lanes_multiply_add(acc: &mut [f32], w: &[f32], x: &[f32]) {
    #[inline(always)]
    fn body(acc: &mut [f32], w: &[f32], x: &[f32]) {
        for ((a, &w), &x) in acc.iter_mut().zip(w).zip(x) {
            *a = w.mul_add(x, *a);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512(acc: &mut [f32], w: &[f32], x: &[f32]) {
            body(acc, w, x);
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(acc: &mut [f32], w: &[f32], x: &[f32]) {
            body(acc, w, x);
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (detected just above).
            return unsafe { avx512(acc, w, x) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (detected just above).
            return unsafe { avx2(acc, w, x) };
        }
    }
    body(acc, w, x);
}

/// Output planes up to this many positions (mobilenet_v3's 2x2 maps) take [`depthwise_tiny`]:
/// the plane kernels' setup (masks, bands, row loops) cost 30-80 ns per plane there, most of a
/// 5x5 depthwise layer on a 2x2 map. On 4x4 maps the flat kernel is faster (trace minimums on
/// mobilenet_v3_small_w050: 4.3 µs against 18.7 for 120 planes, 5x5).
const TINY_PLANE: usize = 4;

/// Depthwise convolution of planes of at most [`TINY_PLANE`] outputs: which (tap, input
/// position) pairs each output reads is listed once (only those inside the input: a 5x5 kernel
/// on a 2x2 map reads 4 of its 25 taps), then every plane is a short dot product per output.
fn depthwise_tiny(
    ctx: &KernelContext,
    c: &Conv,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: Output<'_>,
) -> Result<(), KernelError> {
    let [kh, kw] = c.kernel;
    let taps = kh * kw;
    let plane_out = c.out_pixels();
    let [w0, _, w2, w3] = c.w_strides;
    // Pairs (tap, input offset) of output p: pairs[start[p]..start[p + 1]], taps ascending.
    let mut pairs = [(0usize, 0usize); MAX_TAPS * TINY_PLANE];
    debug_assert!(plane_out <= TINY_PLANE);
    let mut start = [0usize; TINY_PLANE + 1];
    let mut len = 0;
    for p in 0..plane_out {
        let out = [p / c.out_width, p % c.out_width];
        for (t, at) in (0..taps).filter_map(|t| Some((t, c.input_offset(out, [t / kw, t % kw])?))) {
            *pairs.get_mut(len).ok_or(short(WEIGHT))? = (t, at);
            len += 1;
        }
        start[p + 1] = len;
    }
    let pairs = &pairs[..len];
    let mut w_at = [0usize; MAX_TAPS];
    for (t, at) in w_at.iter_mut().enumerate().take(taps) {
        *at = (t / kw) * w2 + (t % kw) * w3;
    }
    // The weights of a depthwise convolution are usually contiguous: each plane's taps are then a
    // slice of them (copying them one checked element at a time was most of a plane's 18 ns).
    let taps_contiguous = w2 == kw && w3 == 1;
    let plane = |(index, dst): (usize, &mut [f32])| -> Result<(), KernelError> {
        let (n, oc, ic) = c.plane_channels(index);
        let src = c.input_plane(x, n, ic)?;
        // Initialised only when used: zeroing it per plane cost as much as the plane's sums.
        let mut copy;
        let wt: &[f32] = if taps_contiguous {
            w.get(oc * w0..oc * w0 + taps).ok_or(short(WEIGHT))?
        } else {
            copy = [0f32; MAX_TAPS];
            for (v, &at) in copy.iter_mut().zip(&w_at[..taps]) {
                *v = *w.get(oc * w0 + at).ok_or(short(WEIGHT))?;
            }
            &copy[..taps]
        };
        let b = bias.map_or(Some(0.0), |b| b.get(oc).copied()).ok_or(short(BIAS))?;
        for (p, o) in dst.iter_mut().enumerate() {
            let mut acc = 0f32;
            for &(t, at) in pairs.get(start[p]..start[p + 1]).unwrap_or_default() {
                acc += *wt.get(t).ok_or(short(WEIGHT))? * *src.get(at).ok_or(short(INPUT))?;
            }
            *o = sgemm::clamp(acc + b, c.min, c.max);
        }
        Ok(())
    };
    if ctx.threads() > 1 && c.macs() >= PARALLEL_MIN_MACS {
        let min_len = (PARALLEL_MIN_MACS / 4 / (plane_out * taps).max(1)).max(1);
        ctx.install(|| out.data.par_chunks_mut(plane_out).with_min_len(min_len).enumerate().try_for_each(plane))
    } else {
        out.data.chunks_mut(plane_out).enumerate().try_for_each(plane)
    }
}

/// The depthwise plane kernels, fastest first; tests force the slower ones on shapes the faster
/// ones would take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DepthwiseKernel {
    /// The first that covers the plane: flat, then rows, then band.
    Any,
    /// Rows (where covered), else band.
    #[cfg_attr(not(test), allow(dead_code))]
    Rows,
    Band,
}

#[cfg(test)]
thread_local! {
    static FORCED_DEPTHWISE_KERNEL: std::cell::Cell<DepthwiseKernel> = const { std::cell::Cell::new(DepthwiseKernel::Any) };
}

fn forced_depthwise_kernel() -> DepthwiseKernel {
    #[cfg(test)]
    {
        FORCED_DEPTHWISE_KERNEL.with(|f| f.get())
    }
    #[cfg(not(test))]
    {
        DepthwiseKernel::Any
    }
}

/// One depthwise plane, on the best SIMD level this CPU has.
fn depthwise_plane(
    c: &Conv,
    t: PlaneTiling,
    x: &[f32],
    taps: &[f32],
    bias: f32,
    out: &mut [f32],
    band: &mut [f32; BAND],
) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F, which implies AVX2 and FMA (checked just above).
        return unsafe { depthwise_plane_avx512(c, t, x, taps, bias, out, band) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above), all this function requires.
        return unsafe { depthwise_plane_avx2(c, t, x, taps, bias, out, band) };
    }
    depthwise_plane_with::<{ cfg!(target_arch = "aarch64") }>(c, t, x, taps, bias, out, band)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn depthwise_plane_avx512(
    c: &Conv,
    t: PlaneTiling,
    x: &[f32],
    taps: &[f32],
    bias: f32,
    out: &mut [f32],
    band: &mut [f32; BAND],
) -> Option<()> {
    depthwise_plane_with::<true>(c, t, x, taps, bias, out, band)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn depthwise_plane_avx2(
    c: &Conv,
    t: PlaneTiling,
    x: &[f32],
    taps: &[f32],
    bias: f32,
    out: &mut [f32],
    band: &mut [f32; BAND],
) -> Option<()> {
    depthwise_plane_with::<true>(c, t, x, taps, bias, out, band)
}

/// `a * b + c`, fused when `FMA` (only where fused multiply-add is an instruction: otherwise
/// `mul_add` is a slow library call).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

#[inline(always)]
fn depthwise_plane_with<const FMA: bool>(
    c: &Conv,
    t: PlaneTiling,
    x: &[f32],
    taps: &[f32],
    bias: f32,
    out: &mut [f32],
    band: &mut [f32; BAND],
) -> Option<()> {
    // Each tap's weight and its offset in the band from the top-left input of the window.
    let mut offsets = [(0f32, 0usize); MAX_TAPS];
    let [kh, kw] = c.kernel;
    for ky in 0..kh {
        for kx in 0..kw {
            let at = ky * kw + kx;
            *offsets.get_mut(at)? = (*taps.get(at)?, ky * c.dilation[0] * t.band_cols + kx * c.dilation[1]);
        }
    }
    let taps = offsets.get(..kh * kw)?;
    for oy0 in (0..c.out_height).step_by(t.tile_rows) {
        let oy1 = (oy0 + t.tile_rows).min(c.out_height);
        for ox0 in (0..c.out_width).step_by(t.tile_cols) {
            let ox1 = (ox0 + t.tile_cols).min(c.out_width);
            let band_rows = span(c, 0, oy1 - oy0)?;
            fill_band(c, x, band, (oy0, ox0), band_rows, t.band_cols)?;
            let row_step = c.stride[0] * t.band_cols;
            let mut oy = oy0;
            while oy < oy1 {
                let mut rows =
                    out.get_mut(oy * c.out_width..)?.chunks_mut(c.out_width).map(|row| row.get_mut(ox0..ox1));
                let start = (oy - oy0) * row_step;
                if oy + ROWS <= oy1 {
                    let [a, b, c2, d]: [Option<&mut [f32]>; ROWS] = std::array::from_fn(|_| rows.next().flatten());
                    band_rows_any::<FMA, ROWS>(c, band, (start, row_step), taps, bias, [a?, b?, c2?, d?])?;
                    oy += ROWS;
                } else {
                    band_rows_any::<FMA, 1>(c, band, (start, row_step), taps, bias, [rows.next().flatten()?])?;
                    oy += 1;
                }
            }
        }
    }
    Some(())
}

/// Copies the input under output tile `(oy0, ox0)` into `band` (`rows` x `cols`, row-major),
/// zeros where the tile reads padding.
fn fill_band(
    c: &Conv,
    x: &[f32],
    band: &mut [f32],
    (oy0, ox0): (usize, usize),
    rows: usize,
    cols: usize,
) -> Option<()> {
    let iy0 = (oy0 * c.stride[0]) as i64 - c.padding[0] as i64;
    let ix0 = (ox0 * c.stride[1]) as i64 - c.padding[1] as i64;
    // Band columns that fall inside the input: [lo, hi).
    let lo = (-ix0).clamp(0, cols as i64) as usize;
    let hi = (c.width as i64 - ix0).clamp(lo as i64, cols as i64) as usize;
    for (r, dst) in band.get_mut(..rows * cols)?.chunks_exact_mut(cols).enumerate() {
        let iy = iy0 + r as i64;
        if iy < 0 || iy >= c.height as i64 {
            dst.fill(0.0);
            continue;
        }
        dst[..lo].fill(0.0);
        dst[hi..].fill(0.0);
        let start = iy as usize * c.width + (ix0 + lo as i64) as usize;
        dst[lo..hi].copy_from_slice(x.get(start..start + (hi - lo))?);
    }
    Some(())
}

/// `CHUNK` band values from `at`, `SW` apart (`SW` 1 or 2 constant for the compiler, 0 for the
/// run-time stride `sw`); reads at most `2 * CHUNK` values when `SW` is 2 (one past the last used).
#[inline(always)]
fn load_chunk<const SW: usize>(band: &[f32], at: usize, sw: usize) -> Option<[f32; CHUNK]> {
    match SW {
        1 => band.get(at..at + CHUNK)?.try_into().ok(),
        2 => {
            let pair: &[f32; 2 * CHUNK] = band.get(at..at + 2 * CHUNK)?.try_into().ok()?;
            Some(std::array::from_fn(|j| pair[2 * j]))
        }
        _ => {
            let run = band.get(at..at + (CHUNK - 1) * sw + 1)?;
            let mut v = [0f32; CHUNK];
            for (d, s) in v.iter_mut().zip(run.iter().step_by(sw)) {
                *d = *s;
            }
            Some(v)
        }
    }
}

/// [`band_rows`] with the column stride as a constant where it is 1 or 2.
#[inline(always)]
fn band_rows_any<const FMA: bool, const R: usize>(
    c: &Conv,
    band: &[f32],
    rows_at: (usize, usize),
    taps: &[(f32, usize)],
    bias: f32,
    out: [&mut [f32]; R],
) -> Option<()> {
    match c.stride[1] {
        1 => band_rows::<FMA, 1, R>(c, band, rows_at, taps, bias, out),
        2 => band_rows::<FMA, 2, R>(c, band, rows_at, taps, bias, out),
        _ => band_rows::<FMA, 0, R>(c, band, rows_at, taps, bias, out),
    }
}

/// `R` output row segments (equal length) from the padded band, the first starting at band
/// offset `rows_at.0`, each next one `rows_at.1` further: `CHUNK` columns at a time, each tap a
/// fixed-width read at a precomputed offset, so a step is `R` independent vector multiply-adds
/// per tap (several rows at once hide the multiply-add latency, which one chain would expose).
/// `SW` as in [`load_chunk`].
#[inline(always)]
fn band_rows<const FMA: bool, const SW: usize, const R: usize>(
    c: &Conv,
    band: &[f32],
    (row_start, row_step): (usize, usize),
    taps: &[(f32, usize)],
    bias: f32,
    mut out: [&mut [f32]; R],
) -> Option<()> {
    let sw = if SW == 0 { c.stride[1] } else { SW };
    let width = out[0].len();
    for chunk in 0..width.div_ceil(CHUNK) {
        let base = row_start + chunk * CHUNK * sw;
        let mut acc = [[bias; CHUNK]; R];
        for &(tap, offset) in taps {
            for (r, acc) in acc.iter_mut().enumerate() {
                let v = load_chunk::<SW>(band, base + r * row_step + offset, sw)?;
                for j in 0..CHUNK {
                    acc[j] = madd::<FMA>(tap, v[j], acc[j]);
                }
            }
        }
        let (lo, hi) = (chunk * CHUNK, (chunk * CHUNK + CHUNK).min(width));
        if c.min > f32::NEG_INFINITY || c.max < f32::INFINITY {
            for row in acc.iter_mut() {
                for v in row.iter_mut() {
                    *v = sgemm::clamp(*v, c.min, c.max);
                }
            }
        }
        for (row, acc) in out.iter_mut().zip(&acc) {
            let dst = row.get_mut(lo..hi)?;
            match <&mut [f32; CHUNK]>::try_from(&mut *dst) {
                Ok(whole) => *whole = *acc,
                Err(_) => dst.copy_from_slice(acc.get(..dst.len())?),
            }
        }
    }
    Some(())
}

// ---------------------------------------------------------------------------------------------
// Depthwise, channels-last.

/// Depthwise convolution (one output channel per input channel) of channels-last tensors: each
/// output pixel is a run of channels, computed whole ([`depthwise_row_channels_last`]) from weights
/// repacked per tap (`scratch`: `kh * kw * C` tap weights, then `C` biases). Output rows spread over the
/// pool.
fn depthwise_channels_last(
    ctx: &KernelContext,
    c: &Conv,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let channels = c.out_channels;
    let [kh, kw] = c.kernel;
    let [w0, _, w2, w3] = c.w_strides;
    let (taps, biases) = scratch.split_at_mut(kh * kw * channels);
    for ky in 0..kh {
        for kx in 0..kw {
            let dst = taps.get_mut((ky * kw + kx) * channels..(ky * kw + kx + 1) * channels).ok_or(short(WEIGHT))?;
            for (ch, d) in dst.iter_mut().enumerate() {
                *d = *w.get(ch * w0 + ky * w2 + kx * w3).ok_or(short(WEIGHT))?;
            }
        }
    }
    match bias {
        Some(b) => biases.copy_from_slice(b.get(..channels).ok_or(short(BIAS))?),
        None => biases.fill(0.0),
    }
    let (taps, biases) = (&*taps, &*biases);
    let row_len = c.out_width * channels;
    let one_row = |(index, dst): (usize, &mut [f32])| -> Result<(), KernelError> {
        let (n, oy) = (index / c.out_height, index % c.out_height);
        depthwise_row_channels_last(c, x, n, oy, taps, biases, dst).ok_or(short(INPUT))
    };
    if ctx.threads() > 1 && c.macs() >= PARALLEL_MIN_MACS {
        ctx.install(|| out.par_chunks_mut(row_len).enumerate().try_for_each(one_row))
    } else {
        out.chunks_mut(row_len).enumerate().try_for_each(one_row)
    }
}

/// Output row `oy` of image `n`, channels-last: each output pixel's run of channels starts as the
/// biases and takes each tap inside the input, in the portable kernel's order (row-major over the
/// kernel), as one fused multiply-add over the whole run ([`lanes_multiply_add`]), then the clamp.
/// Before, a run went 16 channels at a time with the taps' bounds found per chunk: mobilenet_v2
/// exported channels-last spent 423 µs on a 14x14 depthwise layer that takes 49 in NCHW.
fn depthwise_row_channels_last(
    c: &Conv,
    x: &[f32],
    n: usize,
    oy: usize,
    taps: &[f32],
    biases: &[f32],
    out: &mut [f32],
) -> Option<()> {
    let channels = c.out_channels;
    let [kh, kw] = c.kernel;
    let [xn, _, xh, xw] = c.x_strides;
    let biases = biases.get(..channels)?;
    // Kernel rows whose input row is inside the input.
    let rows = (0..kh).filter(|&ky| (0..c.height as i64).contains(&c.input_pos(0, oy, ky)));
    for (ox, dst) in out.chunks_exact_mut(channels).enumerate() {
        dst.copy_from_slice(biases);
        for ky in rows.clone() {
            let iy = c.input_pos(0, oy, ky) as usize;
            for kx in 0..kw {
                let ix = c.input_pos(1, ox, kx);
                if !(0..c.width as i64).contains(&ix) {
                    continue;
                }
                let at = n * xn + iy * xh + ix as usize * xw;
                let t = (ky * kw + kx) * channels;
                lanes_multiply_add(dst, taps.get(t..t + channels)?, x.get(at..at + channels)?);
            }
        }
        for v in dst.iter_mut() {
            *v = sgemm::clamp(*v, c.min, c.max);
        }
    }
    Some(())
}

/// Registers the optimized convolution.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [DType], KernelFn)] = &[(
        "aten::convolution.out(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups, *, Tensor(a!) out) -> Tensor(a!)",
        REAL_DTYPES,
        convolution_out,
    )];
    super::replace_table(r, table);
    let prepared = r.set_prepare("aten::convolution.out", prepare_convolution);
    debug_assert!(prepared, "aten::convolution.out is registered");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::test_support::{Call, assert_close};

    const CHANNELS_LAST: &[u8] = &[0, 2, 3, 1];

    /// One convolution call: `x` and `w` sizes, parameters, layouts.
    #[derive(Clone, Copy)]
    struct Case {
        x: [usize; 4],
        w: [usize; 4],
        bias: bool,
        stride: [i64; 2],
        padding: [i64; 2],
        dilation: [i64; 2],
        groups: i64,
        x_channels_last: bool,
        out_channels_last: bool,
        /// The weight is a program constant (packed at init by `prepare_convolution`).
        constant_weight: bool,
    }

    const fn case(x: [usize; 4], w: [usize; 4], stride: i64, padding: i64, groups: i64) -> Case {
        Case {
            x,
            w,
            bias: true,
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [1; 2],
            groups,
            x_channels_last: false,
            out_channels_last: false,
            constant_weight: false,
        }
    }

    use crate::optimized::sgemm::tests::noise;

    impl Case {
        fn call(&self) -> Call {
            self.call_with(&self.weights(), None)
        }

        fn weights(&self) -> Vec<f32> {
            noise(self.w.iter().product(), 2)
        }

        /// The call with weights `w`, and a weight scale at [`SCALE`] when given.
        fn call_with(&self, w: &[f32], scale: Option<&[f64]>) -> Call {
            let numel = |s: &[usize]| s.iter().product::<usize>();
            let order = |cl: bool| cl.then_some(CHANNELS_LAST);
            let c = Call::new().tensor_ordered(&self.x, order(self.x_channels_last), &noise(numel(&self.x), 1));
            let mut c = if self.constant_weight { c.constant(&self.w, w) } else { c.tensor(&self.w, w) };
            c = if self.bias { c.tensor(&[self.w[0]], &noise(self.w[0], 3)) } else { c.none() };
            c = c
                .ints(&self.stride)
                .ints(&self.padding)
                .ints(&self.dilation)
                .bool(false)
                .ints(&[0, 0])
                .int(self.groups);
            let capacity = 1 << 20;
            let c = if self.out_channels_last {
                c.out_ordered(DType::Float, &[1, 1, 1, 1], CHANNELS_LAST, capacity)
            } else {
                c.out(DType::Float, &[1, 1, 1, 1], capacity)
            };
            match scale {
                Some(scale) => c.constant(&[scale.len()], scale),
                None => c,
            }
        }

        /// A scaled convolution (a folded batch norm) agrees with the portable kernel on weights
        /// scaled beforehand, as the fold would store them: packed at init, packed per call, and on
        /// the paths that scale the portable kernel's output (depthwise, other layouts).
        fn check_scaled(&self) {
            let scale: Vec<f64> = noise(self.w[0], 4).iter().map(|&v| 0.5 + f64::from(v)).collect();
            let scaled_weights: Vec<f32> = self
                .weights()
                .chunks_exact(self.w[1..].iter().product())
                .zip(&scale)
                .flat_map(|(row, &s)| row.iter().map(move |&v| (f64::from(v) * s) as f32))
                .collect();
            let (r, mut done) = self.call_with(&scaled_weights, None).run(portable::conv::convolution_out);
            r.expect("portable");
            let want: Vec<f32> = done.tensor::<f32>(OUT).1.iter().map(|&v| v.clamp(-0.25, 0.5)).collect();
            let scaled: KernelFn = |ctx, args| convolution_scaled(ctx, args, -0.25, 0.5);
            let (r, mut done) = self.call_with(&self.weights(), Some(&scale)).run(scaled);
            r.expect("scaled");
            assert_close(&done.tensor::<f32>(OUT).1, &want, 1e-4);
            let constant = Case { constant_weight: true, ..*self };
            let mut done = constant.call_with(&self.weights(), Some(&scale)).prepare();
            let packed = done.run_prepared(prepare_convolution, scaled, &mut KernelContext::new()).expect("run");
            assert_eq!(packed, self.w[1] > 1);
            assert_close(&done.tensor::<f32>(OUT).1, &want, 1e-4);
        }

        /// Output sizes and elements (storage order) from `kernel`.
        fn run(&self, kernel: KernelFn) -> (Vec<usize>, Vec<f32>) {
            let (r, mut done) = self.call().run(kernel);
            r.unwrap_or_else(|e| {
                panic!(
                    "{e}: x {:?}, w {:?}, layouts {:?}",
                    self.x,
                    self.w,
                    (self.x_channels_last, self.out_channels_last)
                )
            });
            done.tensor::<f32>(OUT)
        }

        /// The optimized kernel agrees with the portable one, on one thread and on a pool, plain,
        /// clamped, and with its weights packed at init (when they are a constant).
        fn check(&self) {
            let (want_sizes, want) = self.run(portable::conv::convolution_out);
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
            for got in [self.run(convolution_out), pool.install(|| self.run(convolution_out))] {
                assert_eq!(got.0, want_sizes);
                assert_close(&got.1, &want, 1e-4);
            }
            let clamped: Vec<f32> = want.iter().map(|&v| v.clamp(-0.25, 0.5)).collect();
            let got = self.run(|ctx, args| convolution_clamped(ctx, args, -0.25, 0.5));
            assert_close(&got.1, &clamped, 1e-4);
            let relu: Vec<f32> = want.iter().map(|&v| v.max(0.0)).collect();
            let got = self.run(|ctx, args| convolution_clamped(ctx, args, 0.0, f32::INFINITY));
            assert_close(&got.1, &relu, 1e-4);
            let constant = Case { constant_weight: true, ..*self };
            let mut done = constant.call().prepare();
            let packed =
                done.run_prepared(prepare_convolution, convolution_out, &mut KernelContext::new()).expect("run");
            // One input channel per group (depthwise): the direct kernels read the weights as they
            // are, except onto small maps, whose weights are laid out tap-major for
            // `depthwise_in_lanes`.
            let out_pixels = want_sizes[2] * want_sizes[3];
            let in_lanes = self.w[1] == 1
                && self.w[0] as i64 == self.groups
                && !self.x_channels_last
                && (out_pixels <= TINY_PLANE || self.stride != [1, 1])
                && out_pixels <= LANES_PLANE_OUT
                && self.x[2] * self.x[3] <= LANES_PLANE_IN;
            assert_eq!(packed, self.w[1] > 1 || in_lanes, "prepared");
            assert_close(&done.tensor::<f32>(OUT).1, &want, 1e-4);
            self.check_scaled();
        }

        /// [`check`](Self::check), then again with the row and the band kernels where a faster
        /// depthwise kernel would run.
        fn check_all_depthwise_kernels(&self) {
            for kernel in [DepthwiseKernel::Rows, DepthwiseKernel::Band, DepthwiseKernel::Any] {
                FORCED_DEPTHWISE_KERNEL.with(|f| f.set(kernel));
                self.check();
            }
            FORCED_DEPTHWISE_KERNEL.with(|f| f.set(DepthwiseKernel::Any));
        }

        fn all_layouts(self) {
            for (x_channels_last, out_channels_last) in [(false, false), (true, true), (true, false), (false, true)] {
                Case { x_channels_last, out_channels_last, ..self }.check_all_depthwise_kernels();
            }
        }
    }

    /// Strided copies (im2col of stride-2 and stride-3 convolutions) against a plain loop, for
    /// every length around the vector widths, with a source just long enough.
    #[test]
    fn strided_copies_match_a_plain_loop() {
        for stride in 1..=3 {
            for n in 0..70 {
                let src: Vec<f32> = (0..(n.max(1) - 1) * stride + 1).map(|i| i as f32 * 0.5 - 3.0).collect();
                let mut dst = vec![f32::NAN; n];
                copy_strided(&mut dst, &src, stride).expect("source long enough");
                let want: Vec<f32> = (0..n).map(|i| src[i * stride]).collect();
                assert_eq!(dst, want, "stride {stride} n {n}");
                // One element short: refused.
                if n > 0 {
                    assert!(copy_strided(&mut dst, &src[..src.len() - 1], stride).is_none());
                }
            }
        }
    }

    /// Small output maps with enough channels, whose constant weights are packed for
    /// `pixel_gemm` (a 1x1 and a 3x3 kernel on 3x3 and 4x4 maps, a strided 1x1, a 1x1 map,
    /// channels not a multiple of its strips, batches); the layouts it does not take fall back to
    /// `sgemm` with weights packed per call.
    #[test]
    fn small_maps_match_portable() {
        case([2, 20, 3, 3], [100, 20, 1, 1], 1, 0, 1).all_layouts();
        case([1, 16, 3, 3], [64, 16, 3, 3], 1, 1, 1).all_layouts();
        case([1, 12, 4, 4], [50, 12, 3, 3], 1, 1, 1).all_layouts();
        case([1, 24, 7, 7], [48, 24, 1, 1], 2, 0, 1).all_layouts();
        case([2, 8, 1, 1], [33, 8, 1, 1], 1, 0, 1).all_layouts();
        case([1, 8, 5, 5], [40, 8, 3, 3], 2, 1, 1).all_layouts();
    }

    /// `convolution_scaled_residual` is, bit for bit, the scaled convolution's output plus the
    /// residual (what `add.out` after it computes): on the pointwise GEMM path (one thread, and a
    /// pool of two splitting by columns and by panels; weights packed per call and at init), and
    /// on the paths that add it afterwards (pixel_gemm's small maps, a strided 1x1, a 3x3, batches
    /// and channels-last layouts). A task that skipped its residual, or added another task's,
    /// fails it. The same with a ReLU on the sum (`convolution_scaled_residual_relu`): a clamp
    /// before the residual's addition fails it.
    #[test]
    fn a_fused_residual_adds_as_the_add_after_the_convolution() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        let scaled: KernelFn = |ctx, args| convolution_scaled(ctx, args, f32::NEG_INFINITY, f32::INFINITY);
        for base in [
            case([1, 64, 14, 14], [384, 64, 1, 1], 1, 0, 1),
            case([1, 320, 7, 7], [160, 320, 1, 1], 1, 0, 1),
            case([2, 24, 30, 30], [24, 24, 1, 1], 1, 0, 1),
            case([1, 40, 3, 3], [48, 40, 1, 1], 1, 0, 1),
            case([1, 16, 10, 10], [16, 16, 1, 1], 2, 0, 1),
            case([1, 8, 9, 9], [16, 8, 3, 3], 1, 1, 1),
            case([1, 16, 16, 16], [16, 16, 3, 3], 1, 1, 1),
        ] {
            let layouts = [(false, false), (true, true), (false, true)];
            for (x_channels_last, out_channels_last) in layouts {
                for constant_weight in [false, true] {
                    let c = Case { x_channels_last, out_channels_last, constant_weight, ..base };
                    let scale: Vec<f64> = noise(c.w[0], 4).iter().map(|&v| 0.5 + f64::from(v)).collect();
                    let run = |kernel: KernelFn, residual: Option<(&[usize], &[f32])>| {
                        let mut call = c.call_with(&c.weights(), Some(&scale));
                        if let Some((sizes, data)) = residual {
                            call = call.tensor_ordered(sizes, out_channels_last.then_some(CHANNELS_LAST), data);
                        }
                        let mut done = call.prepare();
                        done.run_prepared(prepare_convolution, kernel, &mut KernelContext::new()).expect("run");
                        done.tensor::<f32>(OUT)
                    };
                    let (sizes, product) = run(scaled, None);
                    let residual = noise(product.len(), 5);
                    let sums: Vec<f32> = product.iter().zip(&residual).map(|(&p, &r)| r + p).collect();
                    // The ReLU after the sum, as `aten::relu` computes it (NaN stays NaN).
                    let relu = |v: f32| if v < 0.0 { 0.0 } else { v };
                    // Each kernel with the activation it applies to the sum.
                    type WithActivation = (KernelFn, fn(f32) -> f32);
                    let kernels: [WithActivation; 2] =
                        [(convolution_scaled_residual, |v| v), (convolution_scaled_residual_relu, relu)];
                    for (kernel, activation) in kernels {
                        let want: Vec<u32> = sums.iter().map(|&v| activation(v).to_bits()).collect();
                        assert!(want.iter().any(|&v| f32::from_bits(v) == 0.0) || activation(-1.0) == -1.0);
                        for on_pool in [false, true] {
                            let got = if on_pool {
                                pool.install(|| run(kernel, Some((&sizes, &residual))))
                            } else {
                                run(kernel, Some((&sizes, &residual)))
                            };
                            let got: Vec<u32> = got.1.iter().map(|v| v.to_bits()).collect();
                            assert!(
                                got == want,
                                "x {:?} w {:?} layouts {:?} pool {on_pool} relu {}",
                                c.x,
                                c.w,
                                (x_channels_last, out_channels_last),
                                activation(-1.0) == 0.0
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pointwise_matches_portable() {
        case([1, 32, 17, 13], [16, 32, 1, 1], 1, 0, 1).all_layouts();
        case([3, 8, 5, 7], [12, 8, 1, 1], 1, 0, 1).all_layouts();
        case([2, 12, 9, 11], [9, 4, 1, 1], 1, 0, 3).all_layouts();
        Case { bias: false, ..case([1, 5, 3, 3], [7, 5, 1, 1], 1, 0, 1) }.all_layouts();
        // Strided and padded 1x1 go through im2col.
        case([1, 6, 9, 8], [4, 6, 1, 1], 2, 1, 1).all_layouts();
        // Large enough for the threaded GEMM.
        case([1, 64, 28, 28], [96, 64, 1, 1], 1, 0, 1).all_layouts();
    }

    #[test]
    fn depthwise_matches_portable() {
        for stride in 1..=3 {
            for padding in 0..=2 {
                case([1, 6, 11, 9], [6, 1, 3, 3], stride, padding, 6).all_layouts();
            }
        }
        // Odd kernels, dilation, a channel multiplier, no bias, batches, long rows, big planes.
        Case { dilation: [2, 3], ..case([2, 5, 13, 17], [5, 1, 3, 5], 1, 2, 5) }.all_layouts();
        Case { stride: [2, 1], padding: [0, 3], ..case([1, 3, 10, 12], [6, 1, 5, 4], 1, 0, 3) }.all_layouts();
        Case { bias: false, ..case([3, 19, 7, 7], [19, 1, 3, 3], 1, 1, 19) }.all_layouts();
        case([1, 4, 3, 300], [4, 1, 3, 3], 1, 1, 4).all_layouts();
        case([1, 2, 150, 150], [2, 1, 3, 3], 2, 1, 2).all_layouts();
        case([1, 144, 56, 56], [144, 1, 3, 3], 2, 1, 144).all_layouts();
        case([1, 33, 28, 28], [33, 1, 3, 3], 1, 1, 33).all_layouts();
        // Small planes at stride 1 with output rows as wide as the input's, at most 8 (the flat
        // kernel): dilation, rows without padding, a kernel larger than the plane, 1x1, a
        // multiplier, blocks of vectors and a rest (four planes at a time and one), 7x7 in bulk.
        Case { dilation: [2, 2], ..case([1, 4, 10, 8], [4, 1, 3, 3], 1, 2, 4) }.all_layouts();
        Case { padding: [0, 1], ..case([1, 3, 6, 5], [3, 1, 3, 3], 1, 0, 3) }.all_layouts();
        case([1, 2, 3, 3], [2, 1, 5, 5], 1, 2, 2).all_layouts();
        case([1, 5, 4, 4], [5, 1, 1, 1], 1, 0, 5).all_layouts();
        case([1, 3, 7, 7], [6, 1, 3, 3], 1, 1, 3).all_layouts();
        case([1, 8, 12, 8], [8, 1, 3, 3], 1, 1, 8).all_layouts();
        case([1, 3, 20, 8], [3, 1, 3, 3], 1, 1, 3).all_layouts();
        case([1, 160, 7, 7], [160, 1, 3, 3], 1, 1, 160).all_layouts();
        // A 3x3 kernel over a single row, then 14x14 planes (the row kernel).
        case([1, 3, 1, 17], [3, 1, 3, 3], 1, 1, 3).all_layouts();
        case([1, 20, 14, 14], [20, 1, 3, 3], 1, 1, 20).all_layouts();
        // Planes of at most 4 outputs (the tiny kernel): mobilenet_v3's 5x5 layers onto 2x2
        // maps; a multiplier, batches, dilation and no bias; an output plane of one.
        case([1, 144, 4, 4], [144, 1, 5, 5], 2, 2, 144).all_layouts();
        case([1, 288, 2, 2], [288, 1, 5, 5], 1, 2, 288).all_layouts();
        Case { dilation: [2, 1], padding: [2, 1], bias: false, ..case([2, 6, 2, 2], [12, 1, 3, 3], 1, 1, 6) }
            .all_layouts();
        // Channels in the lanes (constant weights): more channels than a register, a stride-2
        // 3x3 onto 4x4, dilation and no bias, batches.
        case([1, 37, 8, 8], [37, 1, 3, 3], 2, 1, 37).all_layouts();
        Case { dilation: [2, 2], bias: false, ..case([2, 20, 7, 7], [20, 1, 3, 3], 3, 2, 20) }.all_layouts();
        case([1, 7, 3, 3], [7, 1, 3, 3], 1, 0, 7).all_layouts();
        // Stride 2 onto rows of at most 8 through phase planes: mobilenet_v2's 14x14 -> 7x7 (four
        // planes at a time and a rest), efficientnet's 5x5 onto 8x8, odd and rectangular planes,
        // dilation, no padding, a multiplier and batches without bias, input rows longer than 32.
        case([1, 42, 14, 14], [42, 1, 3, 3], 2, 1, 42).all_layouts();
        case([1, 9, 16, 16], [9, 1, 5, 5], 2, 2, 9).all_layouts();
        case([1, 5, 15, 13], [5, 1, 3, 3], 2, 1, 5).all_layouts();
        Case { dilation: [2, 2], ..case([1, 4, 13, 11], [4, 1, 3, 3], 2, 2, 4) }.all_layouts();
        Case { padding: [0, 1], ..case([1, 3, 9, 12], [3, 1, 2, 3], 2, 0, 3) }.all_layouts();
        Case { bias: false, ..case([2, 3, 12, 10], [6, 1, 3, 3], 2, 1, 3) }.all_layouts();
        Case { dilation: [1, 5], ..case([1, 2, 5, 55], [2, 1, 1, 9], 2, 0, 2) }.all_layouts();
        // A wide kernel: more taps than the stack buffer holds goes through im2col.
        case([1, 2, 12, 12], [2, 1, 9, 9], 1, 4, 2).all_layouts();
    }

    #[test]
    fn general_matches_portable() {
        // The mobilenet stem, a grouped (not depthwise) conv, dilation, asymmetric everything.
        case([1, 3, 31, 29], [8, 3, 3, 3], 2, 1, 1).all_layouts();
        case([2, 8, 10, 9], [12, 2, 3, 3], 1, 1, 4).all_layouts();
        // Two im2col tiles on one thread (256 of 289 positions, then 33): the second starts in
        // the middle of an output row.
        case([1, 32, 17, 17], [8, 32, 3, 3], 1, 1, 1).all_layouts();
        Case { dilation: [2, 1], stride: [1, 3], padding: [2, 0], ..case([1, 4, 12, 15], [6, 4, 3, 2], 1, 0, 1) }
            .all_layouts();
        Case { bias: false, ..case([1, 5, 7, 7], [3, 5, 7, 7], 1, 3, 1) }.all_layouts();
        // Stride 1, output as wide as the input (one shifted copy per tap): dilated, rectangular,
        // and a kernel larger than the input (taps whose every row or column is padding).
        Case { dilation: [2, 1], padding: [2, 2], ..case([1, 3, 12, 15], [4, 3, 3, 5], 1, 0, 1) }.all_layouts();
        case([2, 3, 3, 3], [5, 3, 5, 5], 1, 2, 1).all_layouts();
        case([1, 16, 12, 12], [16, 16, 3, 3], 1, 1, 1).all_layouts();
        case([1, 3, 64, 64], [32, 3, 3, 3], 2, 1, 1).all_layouts();
        // Stride 2 through phase planes: resnet's 7x7 stem, grouped and batched, a 2x2 kernel
        // without padding, a 4x4 kernel with padding 1, rectangular.
        case([1, 3, 32, 32], [16, 3, 7, 7], 2, 3, 1).all_layouts();
        case([2, 4, 24, 24], [6, 2, 3, 3], 2, 1, 2).all_layouts();
        case([1, 5, 40, 30], [7, 5, 2, 2], 2, 0, 1).all_layouts();
        Case { padding: [1, 2], ..case([1, 3, 36, 32], [9, 3, 4, 5], 2, 1, 1) }.all_layouts();
        // Small maps, gathered through a table of offsets, and products of at most 8 columns
        // (the narrow GEMM kernel): 2x2, 1x1, 4x4 at stride 1; stride 2 onto 4x4 and 3x3.
        case([1, 64, 2, 2], [40, 64, 3, 3], 1, 1, 1).all_layouts();
        case([1, 30, 1, 1], [27, 30, 3, 3], 1, 1, 1).all_layouts();
        case([1, 30, 1, 1], [27, 30, 1, 1], 1, 0, 1).all_layouts();
        case([2, 16, 4, 4], [24, 8, 3, 3], 1, 1, 2).all_layouts();
        case([1, 8, 8, 8], [16, 8, 3, 3], 2, 1, 1).all_layouts();
        Case { dilation: [1, 2], ..case([1, 6, 7, 6], [13, 6, 3, 3], 2, 1, 1) }.all_layouts();
        // The padded-input GEMM: stride 2 with dilation, padding wider than the kernel reaches
        // (stride 1), a 1x1 kernel at stride 2 (one phase of four read).
        Case { dilation: [2, 2], ..case([1, 4, 30, 26], [5, 4, 3, 3], 2, 2, 1) }.all_layouts();
        case([1, 3, 9, 10], [4, 3, 3, 3], 1, 3, 1).all_layouts();
        case([1, 12, 20, 18], [6, 12, 1, 1], 2, 0, 1).all_layouts();
        // A reduction long enough to tile the output positions.
        case([1, 256, 20, 20], [8, 256, 3, 3], 1, 1, 1).check();
        // Packed weights large enough (331 KiB) to live in a mapping rather than on the heap.
        case([1, 128, 6, 6], [64, 128, 3, 3], 1, 1, 1).check();
    }

    /// On a pool, im2col convolutions large enough to split run as one region of pixel runs
    /// ([`im2col_spread`]): the same products, column for column, as on one thread, bit for bit.
    /// Cases: the mobilenet stem and a two-channel one (phase planes), a short reduction onto
    /// many channels and a stride-3 kernel (gathered from the input), a bias-free one, and runs
    /// that end in the middle of an output row.
    #[test]
    fn pixel_runs_on_a_pool_match_one_thread_bit_for_bit() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        for c in [
            case([1, 3, 64, 64], [32, 3, 3, 3], 2, 1, 1),
            case([1, 2, 48, 48], [32, 2, 3, 3], 2, 1, 1),
            case([1, 2, 40, 38], [32, 2, 3, 3], 1, 1, 1),
            case([1, 3, 95, 97], [16, 3, 3, 3], 3, 1, 1),
            Case { bias: false, ..case([1, 3, 66, 50], [40, 3, 3, 3], 2, 1, 1) },
        ] {
            let takes_im2col_split: KernelFn = |_, args| match plan(args) {
                Some(conv) if conv.macs() >= 2 * PARALLEL_MIN_MACS && PaddedInput::new(&conv).is_none() => Ok(()),
                _ => Err(KernelError::NotImplemented("not an im2col convolution that splits on two threads")),
            };
            c.call().run(takes_im2col_split).0.unwrap_or_else(|e| panic!("{:?}: {e}", c.x));
            let one = c.run(convolution_out);
            let pooled = pool.install(|| c.run(convolution_out));
            assert_eq!(one.0, pooled.0);
            let differ = one.1.iter().zip(&pooled.1).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differ, 0, "{:?} {:?}: {differ} elements differ", c.x, c.w);
        }
    }

    /// Small stride-1 convolutions split by output rows on a pool ([`padded_row_tasks`]): bit for
    /// bit the one-thread results, and the portable kernel's in every layout (those the split
    /// does not take run the other paths). Odd heights, batches and groups, a 5x5 kernel, no
    /// padding, dilation; rows narrower than [`ROW_TASKS_MIN_WIDTH`] (one product per band).
    #[test]
    fn row_tasks_on_a_pool_match_one_thread_and_portable() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        for c in [
            case([1, 16, 16, 16], [16, 16, 3, 3], 1, 1, 1),
            case([2, 8, 13, 20], [12, 4, 3, 3], 1, 1, 2),
            case([1, 4, 12, 14], [24, 4, 5, 5], 1, 2, 1),
            case([1, 16, 16, 16], [16, 16, 3, 3], 1, 0, 1),
            Case { dilation: [2, 1], padding: [2, 1], bias: false, ..case([1, 6, 15, 15], [8, 6, 3, 3], 1, 0, 1) },
            // Rows narrower than ROW_TASKS_MIN_WIDTH: one product per band of rows.
            case([1, 32, 8, 8], [32, 32, 3, 3], 1, 1, 1),
            case([2, 6, 9, 11], [10, 3, 3, 3], 1, 1, 2),
            Case { dilation: [1, 2], padding: [0, 2], ..case([1, 4, 7, 9], [5, 4, 3, 3], 1, 0, 1) },
        ] {
            let takes_row_tasks: KernelFn = |_, args| match plan(args) {
                Some(conv) if PaddedInput::new(&conv).is_some() && takes_row_tasks(&conv, out_strides(&conv), 2) => {
                    Ok(())
                }
                _ => Err(KernelError::NotImplemented("not a convolution split by output rows")),
            };
            c.call().run(takes_row_tasks).0.unwrap_or_else(|e| panic!("{:?}: {e}", c.x));
            let one = c.run(convolution_out);
            let pooled = pool.install(|| c.run(convolution_out));
            assert_eq!(one.0, pooled.0);
            let differ = one.1.iter().zip(&pooled.1).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differ, 0, "{:?} {:?}: {differ} elements differ", c.x, c.w);
            pool.install(|| c.all_layouts());
        }
    }

    /// Contiguous NCHW strides of a convolution's output.
    fn out_strides(c: &Conv) -> [usize; 4] {
        let pixels = c.out_height * c.out_width;
        [c.out_channels * pixels, pixels, c.out_width, 1]
    }

    #[test]
    fn uncovered_calls_fall_back_to_portable() {
        // 1-D and transposed convolutions, other dtypes: the portable kernel's results.
        let conv1d = Call::new()
            .tensor(&[1, 2, 5], &noise(10, 1))
            .tensor(&[3, 2, 2], &noise(12, 2))
            .none()
            .ints(&[1])
            .ints(&[0])
            .ints(&[1])
            .bool(false)
            .ints(&[0])
            .int(1)
            .out(DType::Float, &[1, 1, 1], 64);
        let (r, mut done) = conv1d.run(convolution_out);
        r.expect("1-D convolution");
        assert_eq!(done.tensor::<f32>(OUT).0, vec![1, 3, 4]);
        let double = Call::new()
            .ramp(DType::Double, &[1, 1, 3, 3], 1.0)
            .ramp(DType::Double, &[1, 1, 2, 2], 1.0)
            .none()
            .ints(&[1, 1])
            .ints(&[0, 0])
            .ints(&[1, 1])
            .bool(false)
            .ints(&[0, 0])
            .int(1)
            .out(DType::Double, &[1, 1, 1, 1], 64);
        let (r, mut done) = double.run(convolution_out);
        r.expect("f64 convolution");
        // torch.ops.aten.convolution(arange(9.).view(1,1,3,3), arange(4.).view(1,1,2,2), None, ...)
        assert_eq!(done.tensor::<f64>(OUT).1, vec![19.0, 25.0, 37.0, 43.0]);
    }

    #[test]
    fn bad_arguments_are_typed_errors() {
        let run = |c: Case| c.call().run(convolution_out).0;
        let bad_groups = case([1, 6, 5, 5], [6, 2, 3, 3], 1, 1, 4);
        assert!(matches!(run(bad_groups), Err(KernelError::ShapeMismatch { arg: WEIGHT, .. })));
        let too_big_kernel = case([1, 2, 3, 3], [2, 2, 5, 5], 1, 0, 1);
        assert!(matches!(run(too_big_kernel), Err(KernelError::ShapeMismatch { arg: WEIGHT, .. })));
        assert!(matches!(
            run(case([1, 2, 5, 5], [2, 2, 3, 3], 0, 0, 1)),
            Err(KernelError::ValueOutOfRange { arg: STRIDE, .. })
        ));
        assert!(matches!(
            run(case([1, 2, 5, 5], [2, 2, 3, 3], 1, -1, 1)),
            Err(KernelError::ValueOutOfRange { arg: PADDING, .. })
        ));
        assert!(matches!(
            run(case([1, 4, 5, 5], [4, 1, 3, 3], 1, 1, 0)),
            Err(KernelError::ValueOutOfRange { arg: GROUPS, .. })
        ));
        let huge = Case {
            stride: [i64::MAX, i64::MAX],
            dilation: [i64::MAX / 2, 1],
            ..case([1, 2, 5, 5], [2, 1, 3, 3], 1, 0, 2)
        };
        assert!(run(huge).is_err());
        let bias_mismatch = Call::new()
            .tensor(&[1, 2, 4, 4], &noise(32, 1))
            .tensor(&[3, 2, 1, 1], &noise(6, 2))
            .tensor(&[2], &[0.5f32, 0.25])
            .ints(&[1, 1])
            .ints(&[0, 0])
            .ints(&[1, 1])
            .bool(false)
            .ints(&[0, 0])
            .int(1)
            .out(DType::Float, &[1, 1, 1, 1], 64);
        assert!(matches!(bias_mismatch.run(convolution_out).0, Err(KernelError::ShapeMismatch { arg: BIAS, .. })));
        // A fixed-size output of the wrong shape cannot be resized.
        let fixed = Call::new()
            .tensor(&[1, 2, 4, 4], &noise(32, 1))
            .tensor(&[3, 2, 1, 1], &noise(6, 2))
            .none()
            .ints(&[1, 1])
            .ints(&[0, 0])
            .ints(&[1, 1])
            .bool(false)
            .ints(&[0, 0])
            .int(1)
            .inout(&[1, 3, 4, 5], &[0f32; 60]);
        assert!(fixed.run(convolution_out).0.is_err());
    }

    #[test]
    fn scratch_is_reused_across_contexts() {
        let case = case([1, 3, 16, 16], [4, 3, 3, 3], 1, 1, 1);
        let first = case.run(convolution_out);
        let second = case.run(convolution_out);
        assert_eq!(first, second);
        let mut ctx = KernelContext::new();
        let seen = ctx.with_scratch_f32(10, |s, _| s.len());
        assert_eq!(seen, Some(10));
        drop(ctx);
        // The next context on this thread starts from the buffer the previous one gave back.
        let mut ctx = KernelContext::new();
        let reused = ctx.with_scratch_f32(5, |s, _| s.as_ptr() as usize);
        let mut again = KernelContext::new();
        // A second live context on the same thread gets its own memory.
        let other = again.with_scratch_f32(5, |s, _| s.as_ptr() as usize);
        assert_ne!(reused, other);
    }
}
