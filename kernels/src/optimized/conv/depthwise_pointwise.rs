//! A depthwise convolution and the 1x1 projection that reads it, as one call: the first block of
//! mobilenet_v2 filters 32 channels at 112x112 (3x3 depthwise, batch norm, ReLU6) and projects
//! them to 16 (1x1, batch norm). Two calls write the 1.6 MB depthwise result out and read it back
//! from beyond L2; in a whole inference those two layers took about twice their time in a loop
//! over each alone (the same cache effect as [`super::pointwise_depthwise`]'s).
//!
//! Here the output rows go through in bands whose depthwise result, all channels of it, fits L2:
//! the depthwise kernel writes one band's rows of every channel (reading the input rows they need,
//! halo included, where they lie), the projection multiplies the band into the output rows. Tasks
//! take bands, each with its own memory. The projection's weights are packed once at method init
//! when constant (`prepare_projection`), else per call (the engine fuses only small ones).
//!
//! The arithmetic is the two calls': the depthwise rows go through the unfused call's kernel choice
//! for their band (each output's taps in the same order), the projection is [`sgemm`](crate::optimized::sgemm::sgemm) with the
//! same packing, scale, bias and clamp (each product's sum runs in the same order whatever columns
//! a call covers), so the results are those of the two calls bit for bit.
//!
//! Argument positions ([`ARGS`] in all): the depthwise `aten::convolution.out` arguments 0..=8, the
//! fused call's output at 9 (`OUT`), the depthwise hardtanh bounds at 10 and 11, the projection's
//! arguments `WEIGHT..=GROUPS` at [`PW_BASE`] plus their schema position, its weight scale (a batch
//! norm folded into it) at 20.

use std::sync::Mutex;

use super::{
    BIAS, Conv, INPUT, OUT, Output, PackedConvWeights, WEIGHT, Weights, depthwise_contiguous, depthwise_fits,
    pack_conv_weights, packed_conv_len, plan, plan_with, short,
};
use crate::args::KernelArgs;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::optimized::fused::hardtanh_bound;
use crate::optimized::sgemm::{Bias, Epilogue, Kernel, MatMut, MatRef, PackedLhs, sgemm_with};
use crate::registry::{KernelContext, PreparedState};

/// The depthwise convolution's hardtanh bounds.
pub const DW_MIN: usize = 10;
pub const DW_MAX: usize = 11;
/// The projection's argument of schema position `p` is at `PW_BASE + p`.
pub const PW_BASE: usize = 11;
/// The projection's weight scale.
pub const PW_SCALE: usize = 20;
/// Arguments of a call.
pub const ARGS: usize = 21;
/// [`depthwise_pointwise_residual`]'s residual, after the other arguments.
pub const RESIDUAL: usize = 21;

/// Depthwise results one band holds (all channels): a quarter of a core's L2 (1 MiB on the
/// machines measured), leaving room for the input rows and the projection's output rows.
const BAND_BYTES: usize = 256 << 10;

/// Depthwise results (elements) from which the engine fuses a pair: 1 MiB of f32. A depthwise
/// convolution whose expansion fused with it ([`super::MIN_FUSED_PRODUCT`], checked first) is
/// not fused again.
pub const MIN_FUSED_DEPTHWISE: usize = 1 << 18;
/// Most projection weights (elements) the engine fuses. Fusing larger ones (mobilenet_v2's 14x14
/// and 7x7 layers, weights packed at init) was slower at two threads in a quiet phase of the host:
/// 78 µs fused against 75 for the two calls at 14x14, 131 against 120 at 7x7 (`etch bench --trace`).
pub const MAX_FUSED_PROJECTION: usize = 1 << 14;
/// Output rows per band for `channels` depthwise channels of `width` columns.
fn band_rows(channels: usize, width: usize) -> usize {
    (BAND_BYTES / 4 / channels.saturating_mul(width).max(1)).max(1)
}

/// The two convolutions' geometry, checked: a depthwise convolution (one input and one output
/// channel per group) of a contiguous input, and a stride-1 1x1 projection without padding (one
/// group) of its result.
fn geometry(args: &KernelArgs<'_>, len: usize) -> Result<(Conv, Conv), KernelError> {
    if args.len() != len {
        return Err(KernelError::MissingArg { arg: len - 1, len: args.len() });
    }
    let mut dw =
        plan(args).ok_or(KernelError::NotImplemented("fused depthwise convolution: not one the fast paths cover"))?;
    (dw.min, dw.max) = (hardtanh_bound(args, DW_MIN)?, hardtanh_bound(args, DW_MAX)?);
    if dw.in_per_group != 1 || dw.out_per_group != 1 || dw.x_channels_last || !depthwise_fits(&dw) {
        return Err(KernelError::NotImplemented(
            "fused depthwise convolution: not one channel per group of a contiguous input",
        ));
    }
    let result = [dw.batch, dw.out_channels, dw.out_height, dw.out_width];
    let pw = plan_with(args, PW_BASE, result, false)
        .ok_or(KernelError::NotImplemented("fused projection: not a float32 convolution the fast paths cover"))?;
    if !pw.is_pointwise() || pw.stride != [1, 1] || pw.groups != 1 {
        return Err(KernelError::NotImplemented("fused projection: not a stride-1 1x1 convolution of one group"));
    }
    Ok((dw, pw))
}

/// Load-time preparation of a fused call (it runs at the projection's site, so
/// [`prepare_convolution`](super::prepare_convolution) hands it here): the projection's constant
/// weights packed, scaled, once, as for the projection alone. `None` for other calls.
pub(super) fn prepare_projection(args: &KernelArgs<'_>) -> Result<Option<PreparedState>, KernelError> {
    if ![ARGS, ARGS + 1].contains(&args.len()) {
        return Ok(None);
    }
    let Ok((_, pw)) = geometry(args, args.len()) else { return Ok(None) };
    let w = args.tensor(PW_BASE + WEIGHT)?;
    let scale = args.tensor(PW_SCALE)?;
    if !w.is_constant() || scale.dtype() != DType::Double {
        return Ok(None);
    }
    let scale = scale.data::<f64>()?;
    if scale.len() < pw.out_channels {
        return Err(short(PW_SCALE));
    }
    super::pack_prepared(&pw, Weights { data: w.data::<f32>()?, scale: Some(scale) }, false)
}

/// `out = conv1x1(hardtanh(depthwise(x)))` with the projection's weights scaled, the depthwise
/// result never written out (module docs).
pub fn depthwise_pointwise(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    fused(ctx, args, None)
}

/// [`depthwise_pointwise`] plus a float32 tensor of the output's shape at [`RESIDUAL`] (a residual
/// connection): `out = conv1x1(...) + residual`, as `add.out(residual, ...)` after the two calls
/// computes it, bit for bit; each band adds it as it copies its projection out.
pub fn depthwise_pointwise_residual(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    fused(ctx, args, Some(RESIDUAL))
}

fn fused(ctx: &mut KernelContext, args: &KernelArgs<'_>, residual: Option<usize>) -> Result<(), KernelError> {
    let (dw, pw) = geometry(args, if residual.is_some() { ARGS + 1 } else { ARGS })?;
    let scale_tensor = args.tensor(PW_SCALE)?;
    if scale_tensor.dtype() != DType::Double || scale_tensor.dim() != 1 {
        return Err(KernelError::InvalidArgument {
            arg: PW_SCALE,
            reason: "the weight scale must be a 1-D f64 tensor",
        });
    }
    let scale = scale_tensor.data::<f64>()?;
    if scale.len() < pw.out_channels {
        return Err(short(PW_SCALE));
    }
    let x = args.tensor(INPUT)?;
    let dw_weight = args.tensor(WEIGHT)?;
    let dw_bias = args.opt_tensor(BIAS)?;
    let pw_weight = args.tensor(PW_BASE + WEIGHT)?;
    let pw_bias = args.opt_tensor(PW_BASE + BIAS)?;
    let mut out = args.tensor_mut(OUT)?;
    out.resize(&[pw.batch, pw.out_channels, pw.out_height, pw.out_width])?;
    if !out.dim_order().is_contiguous() {
        return Err(KernelError::NotImplemented(
            "fused depthwise convolution and projection into a tensor that is not contiguous",
        ));
    }
    let xd = x.data::<f32>()?;
    let taps = dw_weight.data::<f32>()?;
    let dw_bias = dw_bias.as_ref().map(|b| b.data::<f32>()).transpose()?;
    let pw_bias = pw_bias.as_ref().map(|b| b.data::<f32>()).transpose()?;
    if dw_bias.is_some_and(|b| b.len() < dw.out_channels) {
        return Err(short(BIAS));
    }
    if pw_bias.is_some_and(|b| b.len() < pw.out_channels) {
        return Err(short(PW_BASE + BIAS));
    }
    let weights = Weights { data: pw_weight.data::<f32>()?, scale: Some(scale) };
    let numel = out.numel();
    let residual = match residual {
        Some(arg) => {
            let r = args.tensor(arg)?;
            if r.dtype() != DType::Float || r.sizes() != out.sizes() || !r.dim_order().is_contiguous() {
                return Err(KernelError::ShapeMismatch {
                    arg,
                    reason: "the residual must be a contiguous float32 tensor of the output's shape",
                });
            }
            Some(r.data::<f32>()?.get(..numel).ok_or(short(arg))?)
        }
        None => None,
    };
    let od = out.data_mut::<f32>()?.get_mut(..numel).ok_or(short(OUT))?;

    let (channels, width) = (dw.out_channels, dw.out_width);
    let plane_out = dw.out_pixels();
    // Bands of at most `band_rows`, as many as a whole number of rounds over the threads needs
    // (so that the tasks get as many bands each): 112 rows on two threads are 8 bands of 14, not
    // 7 of 16 (4 against 3).
    let most = band_rows(channels, width).min(dw.out_height);
    let threads = ctx.threads().clamp(1, dw.out_height);
    let rounds = dw.out_height.div_ceil(most * threads);
    let rows = dw.out_height.div_ceil(rounds * threads);
    let bands = dw.out_height.div_ceil(rows);
    let tasks = threads.min(bands);
    // Per task: the depthwise band, the projection's band.
    let band_len = rows * width;
    let per_task = (channels + pw.out_channels).checked_mul(band_len).ok_or(short(OUT))?;
    // The projection's weights as packed at method init (its prepared state travels with the fused
    // call), else packed here.
    let prepared = args.prepared::<PackedConvWeights>().filter(|p| p.fits(&pw, weights.data, true) && !p.by_pixels);
    let packed_len = if prepared.is_some() { 0 } else { packed_conv_len(&pw).ok_or(short(PW_BASE + WEIGHT))? };
    let scratch_len = per_task.checked_mul(tasks).and_then(|n| n.checked_add(packed_len)).ok_or(short(OUT))?;
    let block = Block { dw, pw, x: xd, taps, dw_bias, pw_bias, rows, residual };
    let run = |scratch: &mut [f32], ctx: &KernelContext| -> Result<(), KernelError> {
        let (packed_scratch, rest) = scratch.split_at_mut(packed_len);
        let packed = match prepared {
            Some(p) => p.data.as_slice(),
            None => {
                pack_conv_weights(&pw, weights, packed_scratch)?;
                &*packed_scratch
            }
        };
        let image_len = (pw.out_channels * plane_out).max(1);
        for (n, image) in od.chunks_exact_mut(image_len).enumerate().take(pw.batch) {
            // Each band's rows of every output plane, and a scratch per task.
            let mut by_band: Vec<Vec<&mut [f32]>> = (0..bands).map(|_| Vec::with_capacity(pw.out_channels)).collect();
            for plane in image.chunks_exact_mut(plane_out.max(1)) {
                let mut rest = plane;
                for band in by_band.iter_mut() {
                    let (head, tail) = rest.split_at_mut((rows * width).min(rest.len()));
                    band.push(head);
                    rest = tail;
                }
            }
            let work = Mutex::new(by_band.into_iter().enumerate().collect::<Vec<_>>());
            let scratches = Mutex::new(rest.chunks_exact_mut(per_task.max(1)).collect::<Vec<_>>());
            crate::spread::for_each_task(ctx, tasks, |_| {
                let scratch = scratches.lock().unwrap_or_else(|p| p.into_inner()).pop().ok_or(short(OUT))?;
                loop {
                    let next = work.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some((b, mut planes)) = next else { return Ok(()) };
                    block.band(ctx, packed, n, b, &mut planes, scratch)?;
                }
            })?;
        }
        Ok(())
    };
    ctx.with_scratch_f32(scratch_len, run).unwrap_or(Err(super::NO_SCRATCH))
}

/// One call's operands.
struct Block<'a> {
    dw: Conv,
    pw: Conv,
    x: &'a [f32],
    taps: &'a [f32],
    dw_bias: Option<&'a [f32]>,
    pw_bias: Option<&'a [f32]>,
    /// Output rows per band.
    rows: usize,
    /// Added to the output (same shape), if any.
    residual: Option<&'a [f32]>,
}

impl Block<'_> {
    /// Band `b` of image `n`: its rows of every output plane (`planes`), through `scratch`.
    fn band(
        &self,
        ctx: &KernelContext,
        packed: &[f32],
        n: usize,
        b: usize,
        planes: &mut [&mut [f32]],
        scratch: &mut [f32],
    ) -> Result<(), KernelError> {
        let (dw, pw) = (&self.dw, &self.pw);
        let oy0 = b * self.rows;
        let oy1 = (oy0 + self.rows).min(dw.out_height);
        let cols = (oy1 - oy0) * dw.out_width;
        let (result, projected) = scratch.split_at_mut_checked(dw.out_channels * cols).ok_or(short(OUT))?;
        // The depthwise rows: a depthwise convolution of the input rows they read, the rows above
        // them cut off (what remains of the top padding at oy0 pads instead).
        let reach = (dw.kernel[0] - 1) * dw.dilation[0];
        let lo = (oy0 * dw.stride[0]).saturating_sub(dw.padding[0]);
        let hi = ((oy1 - 1) * dw.stride[0] + reach + 1).saturating_sub(dw.padding[0]).min(dw.height);
        if hi <= lo {
            return Err(short(INPUT));
        }
        let mut band = *dw;
        band.height = hi - lo;
        band.padding[0] = (dw.padding[0] + lo).saturating_sub(oy0 * dw.stride[0]);
        band.out_height = oy1 - oy0;
        let [xn, xc, xr, _] = dw.x_strides;
        let x = self.x.get(n * xn + lo * xr..).ok_or(short(INPUT))?;
        band.batch = 1;
        band.x_strides = [0, xc, xr, 1];
        let out = Output { data: result, strides: [dw.out_channels * cols, cols, dw.out_width, 1] };
        depthwise_contiguous(ctx, &band, x, self.taps, self.dw_bias, out, 1)?;
        // The projection of those rows.
        let lhs = PackedLhs { data: packed, m: pw.out_channels, k: pw.in_per_group };
        let rhs = MatRef { data: result, row: cols, col: 1 };
        let dst = MatMut { data: projected.get_mut(..pw.out_channels * cols).ok_or(short(OUT))?, row: cols, col: 1 };
        let bias = self.pw_bias.map_or(Bias::None, Bias::Row);
        let epilogue = Epilogue::store().with_bias(bias).clamped(pw.min, pw.max);
        sgemm_with(Kernel::best(), 1, ctx, cols, lhs, rhs, dst, &epilogue, OUT)?;
        let Some(residual) = self.residual else {
            for (plane, rows) in planes.iter_mut().zip(projected.chunks_exact(cols.max(1))) {
                plane.get_mut(..cols).ok_or(short(OUT))?.copy_from_slice(rows);
            }
            return Ok(());
        };
        // The residual's rows of this band: plane `o` of image `n`, from row `oy0`.
        let plane_len = pw.out_height * pw.out_width;
        for (o, (plane, rows)) in planes.iter_mut().zip(projected.chunks_exact(cols.max(1))).enumerate() {
            let at = (n * pw.out_channels + o) * plane_len + oy0 * pw.out_width;
            let add = residual.get(at..at + cols).ok_or(short(RESIDUAL))?;
            for ((d, &p), &r) in plane.get_mut(..cols).ok_or(short(OUT))?.iter_mut().zip(rows).zip(add) {
                *d = p + r;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{DepthwiseKernel, FORCED_DEPTHWISE_KERNEL, prepare_convolution};
    use super::*;
    use crate::optimized::fused;
    use crate::optimized::sgemm::tests::noise;
    use crate::portable::test_support::Call;

    /// A 3x3 depthwise convolution of `channels` channels on `h x w` maps at `stride` (padding 1),
    /// then a 1x1 projection to `cout` channels.
    struct Case {
        batch: usize,
        channels: usize,
        cout: usize,
        h: usize,
        w: usize,
        stride: i64,
    }

    impl Case {
        fn out_size(&self, size: usize) -> usize {
            (size + 2 - 3) / self.stride as usize + 1
        }

        fn scale(&self) -> Vec<f64> {
            noise(self.cout, 4).iter().map(|&v| 0.5 + f64::from(v)).collect()
        }

        /// The depthwise convolution's arguments 0..=8.
        fn depthwise(&self) -> Call {
            let x = [self.batch, self.channels, self.h, self.w];
            Call::new()
                .tensor(&x, &noise(x.iter().product(), 1))
                .constant(&[self.channels, 1, 3, 3], &noise(self.channels * 9, 5))
                .tensor(&[self.channels], &noise(self.channels, 6))
                .ints(&[self.stride, self.stride])
                .ints(&[1, 1])
                .ints(&[1, 1])
                .bool(false)
                .ints(&[0, 0])
                .int(self.channels as i64)
        }

        /// The projection's arguments 1..=8 appended to `c`.
        fn projection(&self, c: Call) -> Call {
            c.constant(&[self.cout, self.channels, 1, 1], &noise(self.cout * self.channels, 2))
                .tensor(&[self.cout], &noise(self.cout, 3))
                .ints(&[1, 1])
                .ints(&[0, 0])
                .ints(&[1, 1])
                .bool(false)
                .ints(&[0, 0])
                .int(1)
        }

        fn unfused(&self, ctx: &mut KernelContext) -> Vec<f32> {
            let (oh, ow) = (self.out_size(self.h), self.out_size(self.w));
            let mut first = self
                .depthwise()
                .out(DType::Float, &[1, 1, 1, 1], self.batch * self.channels * oh * ow)
                .double(0.0)
                .double(6.0)
                .prepare();
            first.run_prepared(prepare_convolution, fused::convolution_hardtanh, ctx).expect("depthwise");
            let (sizes, result) = first.tensor::<f32>(9);
            let c = self.projection(Call::new().tensor(&sizes, &result));
            let mut second = c
                .out(DType::Float, &[1, 1, 1, 1], self.batch * self.cout * oh * ow)
                .constant(&[self.cout], &self.scale())
                .prepare();
            second.run_prepared(prepare_convolution, fused::convolution_scaled, ctx).expect("projection");
            let (sizes, out) = second.tensor::<f32>(9);
            assert_eq!(sizes, [self.batch, self.cout, oh, ow]);
            out
        }

        fn fused(&self, ctx: &mut KernelContext) -> Vec<f32> {
            self.fused_with(ctx, None, false)
        }

        /// [`Case::fused`], through [`depthwise_pointwise_residual`] when given a residual, with
        /// the projection's weights packed at init (`prepared`: checked to happen) or per call.
        fn fused_with(&self, ctx: &mut KernelContext, residual: Option<&[f32]>, prepared: bool) -> Vec<f32> {
            let (oh, ow) = (self.out_size(self.h), self.out_size(self.w));
            let c = self
                .depthwise()
                .out(DType::Float, &[1, 1, 1, 1], self.batch * self.cout * oh * ow)
                .double(0.0)
                .double(6.0);
            let mut call = self.projection(c).constant(&[self.cout], &self.scale());
            let kernel: crate::registry::KernelFn = match residual {
                Some(r) => {
                    call = call.tensor(&[self.batch, self.cout, oh, ow], r);
                    depthwise_pointwise_residual
                }
                None => depthwise_pointwise,
            };
            let mut call = call.prepare();
            if prepared {
                let packed = call.run_prepared(prepare_convolution, kernel, ctx).expect("fused");
                assert!(packed, "the projection's weights were not packed at init");
            } else {
                call.run(kernel, ctx).expect("fused");
            }
            let (sizes, out) = call.tensor::<f32>(9);
            assert_eq!(sizes, [self.batch, self.cout, oh, ow]);
            out
        }
    }

    const CASES: &[Case] = &[
        // One band.
        Case { batch: 1, channels: 6, cout: 5, h: 9, w: 11, stride: 1 },
        // mobilenet_v2's first block, smaller: bands of 18 rows (14 on two threads), the last
        // one shorter.
        Case { batch: 1, channels: 32, cout: 16, h: 100, w: 112, stride: 1 },
        // Stride 2, bands whose input rows overlap by one; 13 output channels (a partial panel).
        Case { batch: 1, channels: 40, cout: 13, h: 75, w: 90, stride: 2 },
        // Bands of one row (600 channels of 120 columns fill a band).
        Case { batch: 1, channels: 600, cout: 7, h: 5, w: 120, stride: 1 },
        // Two images.
        Case { batch: 2, channels: 40, cout: 13, h: 75, w: 90, stride: 2 },
    ];

    /// The fused call computes what the two calls compute, bit for bit, on one thread and on a
    /// pool of two (bands split between tasks), with the projection's weights packed per call and
    /// at init.
    #[test]
    fn fused_call_equals_the_two_calls() {
        let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool"));
        for case in CASES {
            let want = case.unfused(&mut KernelContext::new());
            assert!(want.iter().any(|&v| v != 0.0));
            for prepared in [false, true] {
                let label = format!("{} channels {}x{}, packed at init: {prepared}", case.channels, case.h, case.w);
                let one = case.fused_with(&mut KernelContext::new(), None, prepared);
                assert!(want == one, "one thread: {label}");
                let two = case.fused_with(&mut KernelContext::with_pool(Some(pool.clone())), None, prepared);
                assert!(want == two, "two threads: {label}");
            }
        }
    }

    /// With a residual, the fused call computes what the two calls and an `add` of the residual
    /// compute, bit for bit, on one thread and on a pool of two; a residual of another shape is an
    /// error.
    #[test]
    fn fused_residual_equals_the_calls_and_the_add() {
        let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool"));
        for case in CASES {
            let product = case.unfused(&mut KernelContext::new());
            let residual = noise(product.len(), 7);
            let want: Vec<u32> = residual.iter().zip(&product).map(|(&r, &p)| (r + p).to_bits()).collect();
            let label = format!("{} channels {}x{}", case.channels, case.h, case.w);
            let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let one = case.fused_with(&mut KernelContext::new(), Some(&residual), false);
            assert!(want == bits(one), "one thread: {label}");
            let two = case.fused_with(&mut KernelContext::with_pool(Some(pool.clone())), Some(&residual), true);
            assert!(want == bits(two), "two threads, packed at init: {label}");
        }
        let case = &CASES[0];
        let (oh, ow) = (case.out_size(case.h), case.out_size(case.w));
        let c = case.depthwise().out(DType::Float, &[1, 1, 1, 1], 1 << 12).double(0.0).double(6.0);
        let call = case.projection(c).constant(&[case.cout], &case.scale());
        let mut wrong = call.tensor(&[1, case.cout, oh, ow + 1], &noise(case.cout * oh * (ow + 1), 7)).prepare();
        assert!(wrong.run(depthwise_pointwise_residual, &mut KernelContext::new()).is_err());
    }

    /// With the band kernel (CPUs without AVX-512) for both.
    #[test]
    fn fused_call_equals_the_two_calls_on_the_band_kernel() {
        FORCED_DEPTHWISE_KERNEL.with(|f| f.set(DepthwiseKernel::Band));
        for case in CASES {
            let want = case.unfused(&mut KernelContext::new());
            assert!(want == case.fused(&mut KernelContext::new()), "{} channels", case.channels);
        }
        FORCED_DEPTHWISE_KERNEL.with(|f| f.set(DepthwiseKernel::Any));
    }

    /// A missing scale and a projection of the wrong input channels are errors, not panics.
    #[test]
    fn bad_calls_are_errors() {
        let case = &CASES[0];
        let c = case.depthwise().out(DType::Float, &[1, 1, 1, 1], 1 << 12).double(0.0).double(6.0);
        let mut no_scale = case.projection(c).none().prepare();
        assert!(no_scale.run(depthwise_pointwise, &mut KernelContext::new()).is_err());
        let c = case.depthwise().out(DType::Float, &[1, 1, 1, 1], 1 << 12).double(0.0).double(6.0);
        let wrong = Case { batch: 1, channels: case.channels + 1, ..*case };
        let mut call = wrong.projection(c).constant(&[case.cout], &case.scale()).prepare();
        assert!(call.run(depthwise_pointwise, &mut KernelContext::new()).is_err());
    }
}
