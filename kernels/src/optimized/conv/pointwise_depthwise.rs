//! A 1x1 expansion and the depthwise convolution that reads it, as one call: MobileNet's inverted
//! residual blocks widen a few channels six times (1x1, batch norm, ReLU6), then filter each wide
//! channel alone (3x3 depthwise, batch norm, ReLU6). Run as two calls, the wide product is written
//! out whole and read back: 4.8 MB for mobilenet_v2's second block at 112x112, more than the L2
//! caches, and by the time an inference comes back to those bytes the weights of the layers after
//! them (14 MB) have pushed them out of L3 too. Those layers took twice as long in a whole
//! inference as in a loop over the layer alone (`etch bench --trace`, `cargo bench --bench conv`).
//!
//! Here the wide channels go through in groups whose product fits L2: the expansion computes
//! one group's planes (a whole number of GEMM panels, over every pixel), the depthwise kernel
//! filters them from there into the output, and the next group reuses the same memory. Tasks take
//! groups of channels, each task its own product memory.
//!
//! The arithmetic is the two calls': the expansion is [`sgemm`](crate::optimized::sgemm::sgemm) with the same packed weights,
//! bias and clamp (each product's sum runs in the same order whatever rows a call covers), the
//! depthwise planes go through the same kernel choice as the unfused call's, so the results are
//! those of the two calls bit for bit.
//!
//! Argument positions ([`ARGS`] in all): the expansion's `aten::convolution.out` arguments 0..=8,
//! the fused call's output at 9 (`OUT`, so the expansion's prepared weights apply unchanged), the
//! expansion's weight scale at 10 (`SCALE`: a batch norm folded into it), its hardtanh bounds at
//! 11 and 12, the depthwise convolution's arguments `WEIGHT..=GROUPS` at [`DW_BASE`] plus their
//! schema position, its hardtanh bounds at 21 and 22.

use std::sync::Mutex;

use super::{
    BIAS, Conv, INPUT, MR, OUT, Output, PackedConvWeights, WEIGHT, depthwise_contiguous, depthwise_fits,
    pack_conv_weights, packed_conv_len, plan, plan_with, short, weight_scale,
};
use crate::args::KernelArgs;
use crate::error::KernelError;
use crate::optimized::fused::hardtanh_bound;
use crate::optimized::sgemm::{Bias, Epilogue, Kernel, MatMut, MatRef, PackedLhs, sgemm_with};
use crate::registry::KernelContext;

/// The expansion's hardtanh bounds.
pub const PW_MIN: usize = 11;
pub const PW_MAX: usize = 12;
/// The depthwise convolution's argument of schema position `p` is at `DW_BASE + p`.
pub const DW_BASE: usize = 12;
/// The depthwise convolution's hardtanh bounds.
pub const DW_MIN: usize = 21;
pub const DW_MAX: usize = 22;
/// Arguments of a call.
pub const ARGS: usize = 23;

/// Products one task keeps at a time (at least one GEMM panel's): half a core's L2 (1 MiB on the
/// machines measured), leaving room for the input the expansion streams through.
const GROUP_BYTES: usize = 512 << 10;

/// Products (elements) from which the engine fuses a pair (256 KiB of f32). Smaller products
/// stay in cache between the two calls anyway, and the fused call then only adds work (each
/// group of channels reads the expansion's input again): mobilenet_v2_w050 on its 64x64 input,
/// one thread, 0.290 ms with its 49K-element (32x32) and smaller products unfused, 0.391 with
/// them fused (a 2x2 map's pair 8.3 -> 30.8 µs). From this size up it pays, mostly at two
/// threads, where the fused call keeps each core's depthwise input in its own cache (the unfused
/// expansion splits the pixels between the cores, the depthwise convolution the channels):
/// mobilenet_v2 at 224x224 with its 56x56 to 14x14 products fused too (they were 2 MiB and up
/// before), per-instruction medians at two threads summed 4.211 -> 4.043 ms (the 56x56 block
/// 394 -> 301 µs, the 14x14 ones 7-11 µs less each), `etch bench` median 4.29 -> 4.20 ms at two
/// threads, 7.59-7.71 -> 7.42-7.57 at one.
pub const MIN_FUSED_PRODUCT: usize = 1 << 16;

/// The two convolutions' geometry, checked: a stride-1 1x1 expansion without padding of a
/// contiguous input (one group), and a depthwise convolution (one input and one output channel
/// per group) of its product, whose weights are contiguous.
fn geometry(args: &KernelArgs<'_>) -> Result<(Conv, Conv), KernelError> {
    if args.len() != ARGS {
        return Err(KernelError::MissingArg { arg: ARGS - 1, len: args.len() });
    }
    let mut pw = plan(args)
        .ok_or(KernelError::NotImplemented("fused expansion: not a float32 convolution the fast paths cover"))?;
    (pw.min, pw.max) = (hardtanh_bound(args, PW_MIN)?, hardtanh_bound(args, PW_MAX)?);
    if !pw.is_pointwise() || pw.stride != [1, 1] || pw.groups != 1 || pw.x_channels_last {
        return Err(KernelError::NotImplemented("fused expansion: not a stride-1 1x1 convolution of one group"));
    }
    let product = [pw.batch, pw.out_channels, pw.out_height, pw.out_width];
    let mut dw = plan_with(args, DW_BASE, product, false).ok_or(KernelError::NotImplemented(
        "fused depthwise convolution: not a float32 convolution the fast paths cover",
    ))?;
    (dw.min, dw.max) = (hardtanh_bound(args, DW_MIN)?, hardtanh_bound(args, DW_MAX)?);
    let [kh, kw] = dw.kernel;
    if dw.in_per_group != 1 || dw.out_per_group != 1 || dw.w_strides[1..] != [kh * kw, kw, 1] || !depthwise_fits(&dw) {
        return Err(KernelError::NotImplemented(
            "fused depthwise convolution: not one channel per group with contiguous taps",
        ));
    }
    Ok((pw, dw))
}

/// `out = hardtanh(depthwise(hardtanh(conv1x1(x))))`, the product between never written out
/// (module docs).
pub fn pointwise_depthwise(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (pw, dw) = geometry(args)?;
    let scale = weight_scale(args)?;
    if scale.is_some_and(|s| s.len() < pw.out_channels) {
        return Err(short(super::SCALE));
    }
    let x = args.tensor(INPUT)?;
    let w = args.tensor(WEIGHT)?;
    let pw_bias = args.opt_tensor(BIAS)?;
    let dw_weight = args.tensor(DW_BASE + WEIGHT)?;
    let dw_bias = args.opt_tensor(DW_BASE + BIAS)?;
    let mut out = args.tensor_mut(OUT)?;
    out.resize(&[dw.batch, dw.out_channels, dw.out_height, dw.out_width])?;
    if !out.dim_order().is_contiguous() {
        return Err(KernelError::NotImplemented(
            "fused expansion and depthwise convolution into a tensor that is not contiguous",
        ));
    }
    let (xd, wd) = (x.data::<f32>()?, w.data::<f32>()?);
    let taps = dw_weight.data::<f32>()?;
    let channels = pw.out_channels;
    let pw_bias = pw_bias.as_ref().map(|b| b.data::<f32>()).transpose()?;
    let dw_bias = dw_bias.as_ref().map(|b| b.data::<f32>()).transpose()?;
    if pw_bias.is_some_and(|b| b.len() < channels) {
        return Err(short(BIAS));
    }
    if dw_bias.is_some_and(|b| b.len() < channels) {
        return Err(short(DW_BASE + BIAS));
    }
    if taps.len() < channels.saturating_mul(dw.kernel[0] * dw.kernel[1]) {
        return Err(short(DW_BASE + WEIGHT));
    }
    let numel = out.numel();
    let od = out.data_mut::<f32>()?.get_mut(..numel).ok_or(short(OUT))?;
    let prepared = args.prepared::<PackedConvWeights>().filter(|p| p.fits(&pw, wd, scale.is_some()) && !p.by_pixels);
    let panels = channels.div_ceil(MR);
    let tasks = ctx.threads().min(panels).max(1);
    let pixels = pw.out_pixels();
    // Channels per group: whole panels, at most the panels of the largest task.
    let most = panels.div_ceil(tasks);
    let group = (GROUP_BYTES / 4 / pixels.max(1) / MR).clamp(1, most) * MR;
    let block = Block { pw, dw, x: xd, pw_bias, taps, dw_bias, group };
    let per_task = group.checked_mul(pixels).ok_or(short(OUT))?;
    let packed_len = if prepared.is_some() { 0 } else { packed_conv_len(&pw).ok_or(short(WEIGHT))? };
    let scratch_len = per_task.checked_mul(tasks).and_then(|n| n.checked_add(packed_len)).ok_or(short(OUT))?;
    let run = |scratch: &mut [f32], ctx: &KernelContext| -> Result<(), KernelError> {
        let (packed_scratch, products) = scratch.split_at_mut(packed_len);
        let packed = match prepared {
            Some(p) => p.data.as_slice(),
            None => {
                pack_conv_weights(&pw, super::Weights { data: wd, scale }, packed_scratch)?;
                packed_scratch
            }
        };
        let plane_out = dw.out_pixels();
        for (n, image) in od.chunks_exact_mut((channels * plane_out).max(1)).enumerate().take(dw.batch) {
            let slots = Mutex::new(products.chunks_exact_mut(per_task.max(1)).collect::<Vec<_>>());
            crate::spread::for_each_chunk_run(ctx, image, MR * plane_out, tasks, |first_panel, run| {
                let product = slots.lock().unwrap_or_else(|p| p.into_inner()).pop().ok_or(short(OUT))?;
                block.run(ctx, packed, n, first_panel * MR, run, product)
            })?;
        }
        Ok(())
    };
    ctx.with_scratch_f32(scratch_len, run).unwrap_or(Err(super::NO_SCRATCH))
}

/// One call's operands.
struct Block<'a> {
    pw: Conv,
    dw: Conv,
    x: &'a [f32],
    pw_bias: Option<&'a [f32]>,
    taps: &'a [f32],
    dw_bias: Option<&'a [f32]>,
    /// Channels per group (a multiple of [`MR`]).
    group: usize,
}

impl Block<'_> {
    /// Image `n`'s output planes of channels `first..first + run.len() / plane` (`first` a
    /// multiple of [`MR`]), a group at a time through `product`.
    fn run(
        &self,
        ctx: &KernelContext,
        packed: &[f32],
        n: usize,
        first: usize,
        run: &mut [f32],
        product: &mut [f32],
    ) -> Result<(), KernelError> {
        let (pw, dw) = (&self.pw, &self.dw);
        let (pixels, plane_out) = (pw.out_pixels(), dw.out_pixels());
        let k = pw.in_per_group;
        let [xn, xc, _, _] = pw.x_strides;
        let rhs = MatRef { data: self.x.get(n * xn..).ok_or(short(INPUT))?, row: xc, col: 1 };
        let taps_per = dw.kernel[0] * dw.kernel[1];
        for (g, planes) in run.chunks_mut((self.group * plane_out).max(1)).enumerate() {
            let start = first + g * self.group;
            let channels = planes.len() / plane_out.max(1);
            let lhs = PackedLhs { data: packed.get(start * k..).ok_or(short(WEIGHT))?, m: channels, k };
            let bias = match self.pw_bias {
                Some(b) => Bias::Row(b.get(start..start + channels).ok_or(short(BIAS))?),
                None => Bias::None,
            };
            let epilogue = Epilogue::store().with_bias(bias).clamped(pw.min, pw.max);
            let rhs = MatRef { data: rhs.data, ..rhs };
            let dst = MatMut { data: product.get_mut(..channels * pixels).ok_or(short(OUT))?, row: pixels, col: 1 };
            sgemm_with(Kernel::best(), 1, ctx, pixels, lhs, rhs, dst, &epilogue, OUT)?;
            // The group's depthwise planes, as a depthwise convolution of `channels` channels.
            let mut group = *dw;
            (group.batch, group.out_channels, group.groups) = (1, channels, channels);
            group.x_strides = [channels * pixels, pixels, dw.width, 1];
            let taps = self.taps.get(start * taps_per..(start + channels) * taps_per).ok_or(short(DW_BASE + WEIGHT))?;
            let bias = self.dw_bias.map(|b| b.get(start..start + channels).ok_or(short(DW_BASE + BIAS))).transpose()?;
            let out = Output { data: planes, strides: [channels * plane_out, plane_out, dw.out_width, 1] };
            depthwise_contiguous(ctx, &group, product, taps, bias, out, 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{DepthwiseKernel, FORCED_DEPTHWISE_KERNEL, prepare_convolution};
    use super::*;
    use crate::dtype::DType;
    use crate::optimized::fused;
    use crate::optimized::sgemm::tests::noise;
    use crate::portable::test_support::Call;

    /// An expansion of `cin` to `mid` channels on `h x w` maps, then a 3x3 depthwise convolution
    /// at `stride` with padding 1.
    struct Case {
        batch: usize,
        cin: usize,
        mid: usize,
        h: usize,
        w: usize,
        stride: i64,
    }

    impl Case {
        fn out_size(&self, size: usize) -> usize {
            (size + 2 - 3) / self.stride as usize + 1
        }

        fn pw_weight(&self) -> Vec<f32> {
            noise(self.mid * self.cin, 2)
        }

        fn scale(&self) -> Vec<f64> {
            noise(self.mid, 4).iter().map(|&v| 0.5 + f64::from(v)).collect()
        }

        /// The expansion's arguments 0..=8 (ReLU6 bounds are added by the callers).
        fn expansion(&self) -> Call {
            let x = [self.batch, self.cin, self.h, self.w];
            Call::new()
                .tensor(&x, &noise(x.iter().product(), 1))
                .constant(&[self.mid, self.cin, 1, 1], &self.pw_weight())
                .tensor(&[self.mid], &noise(self.mid, 3))
                .ints(&[1, 1])
                .ints(&[0, 0])
                .ints(&[1, 1])
                .bool(false)
                .ints(&[0, 0])
                .int(1)
        }

        /// The depthwise convolution's arguments 1..=8 appended to `c`.
        fn depthwise(&self, c: Call) -> Call {
            c.constant(&[self.mid, 1, 3, 3], &noise(self.mid * 9, 5))
                .tensor(&[self.mid], &noise(self.mid, 6))
                .ints(&[self.stride, self.stride])
                .ints(&[1, 1])
                .ints(&[1, 1])
                .bool(false)
                .ints(&[0, 0])
                .int(self.mid as i64)
        }

        /// The two calls the engine fuses, one after the other (the product written out).
        fn unfused(&self, ctx: &mut KernelContext) -> Vec<f32> {
            let mut first = self
                .expansion()
                .out(DType::Float, &[1, 1, 1, 1], self.batch * self.mid * self.h * self.w)
                .constant(&[self.mid], &self.scale())
                .double(0.0)
                .double(6.0)
                .prepare();
            first.run_prepared(prepare_convolution, fused::convolution_scaled_hardtanh, ctx).expect("expansion");
            let (sizes, product) = first.tensor::<f32>(9);
            let c = Call::new().tensor(&sizes, &product);
            let (oh, ow) = (self.out_size(self.h), self.out_size(self.w));
            let mut second = self
                .depthwise(c)
                .out(DType::Float, &[1, 1, 1, 1], self.batch * self.mid * oh * ow)
                .double(0.0)
                .double(6.0)
                .prepare();
            second.run(fused::convolution_hardtanh, ctx).expect("depthwise");
            let (sizes, out) = second.tensor::<f32>(9);
            assert_eq!(sizes, [self.batch, self.mid, oh, ow]);
            out
        }

        fn fused(&self, ctx: &mut KernelContext) -> Vec<f32> {
            let (oh, ow) = (self.out_size(self.h), self.out_size(self.w));
            let c = self
                .expansion()
                .out(DType::Float, &[1, 1, 1, 1], self.batch * self.mid * oh * ow)
                .constant(&[self.mid], &self.scale())
                .double(0.0)
                .double(6.0);
            let mut call = self.depthwise(c).double(0.0).double(6.0).prepare();
            let packed = call.run_prepared(prepare_convolution, pointwise_depthwise, ctx).expect("fused");
            assert!(packed, "the expansion's weights are packed at init");
            let (sizes, out) = call.tensor::<f32>(9);
            assert_eq!(sizes, [self.batch, self.mid, oh, ow]);
            out
        }
    }

    const CASES: &[Case] = &[
        // One group, one task: the first block of mobilenet_v2 scaled down.
        Case { batch: 1, cin: 5, mid: 30, h: 9, w: 11, stride: 1 },
        // Two groups (84 channels of 1480 pixels per group), the last one not a whole number of
        // GEMM panels.
        Case { batch: 1, cin: 16, mid: 150, h: 40, w: 37, stride: 1 },
        Case { batch: 1, cin: 16, mid: 150, h: 41, w: 37, stride: 2 },
        // Four groups of 36 channels.
        Case { batch: 1, cin: 24, mid: 144, h: 56, w: 56, stride: 2 },
        // Groups of one panel (planes of 11200 pixels), the last one of 6 channels.
        Case { batch: 1, cin: 4, mid: 30, h: 112, w: 100, stride: 2 },
        // A 17-column map: the GEMM's last columns take its narrow kernel.
        Case { batch: 1, cin: 8, mid: 200, h: 30, w: 17, stride: 1 },
        // Two images.
        Case { batch: 2, cin: 16, mid: 150, h: 21, w: 37, stride: 2 },
    ];

    /// The fused call computes what the two calls compute, bit for bit, on one thread and on a
    /// pool of two (channels split between tasks).
    #[test]
    fn fused_call_equals_the_two_calls() {
        let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool"));
        for case in CASES {
            let want = case.unfused(&mut KernelContext::new());
            assert!(want.iter().any(|&v| v > 0.0 && v < 6.0), "the case exercises more than the clamp");
            assert!(want == case.fused(&mut KernelContext::new()), "one thread: cin {} mid {}", case.cin, case.mid);
            let mut ctx = KernelContext::with_pool(Some(pool.clone()));
            assert!(want == case.fused(&mut ctx), "two threads: cin {} mid {}", case.cin, case.mid);
        }
    }

    /// With the band kernel (CPUs without AVX-512) for both.
    #[test]
    fn fused_call_equals_the_two_calls_on_the_band_kernel() {
        FORCED_DEPTHWISE_KERNEL.with(|f| f.set(DepthwiseKernel::Band));
        for case in CASES {
            let want = case.unfused(&mut KernelContext::new());
            assert!(want == case.fused(&mut KernelContext::new()), "cin {} mid {}", case.cin, case.mid);
        }
        FORCED_DEPTHWISE_KERNEL.with(|f| f.set(DepthwiseKernel::Any));
    }

    /// Bad calls are errors, not panics: a missing argument, a depthwise weight of the wrong shape.
    #[test]
    fn bad_calls_are_errors() {
        let case = &CASES[0];
        let mut short_call = case
            .expansion()
            .out(DType::Float, &[1, 1, 1, 1], 1 << 12)
            .constant(&[case.mid], &case.scale())
            .double(0.0)
            .double(6.0)
            .prepare();
        assert!(short_call.run(pointwise_depthwise, &mut KernelContext::new()).is_err());
        let c = case.expansion().out(DType::Float, &[1, 1, 1, 1], 1 << 12).none().double(0.0).double(6.0);
        let mut wrong = c
            .constant(&[case.mid, 2, 3, 3], &noise(case.mid * 18, 5))
            .none()
            .ints(&[1, 1])
            .ints(&[1, 1])
            .ints(&[1, 1])
            .bool(false)
            .ints(&[0, 0])
            .int(case.mid as i64)
            .double(0.0)
            .double(6.0)
            .prepare();
        assert!(wrong.run(pointwise_depthwise, &mut KernelContext::new()).is_err());
    }
}
