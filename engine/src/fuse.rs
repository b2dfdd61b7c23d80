//! Load-time fusion: rewrites of a method's instructions that compute the same function with less
//! memory traffic, at the price of rounding differently from the program as written. Only runtimes
//! with fusion on use them ([`crate::Runtime::optimized`]); the portable runtime runs programs
//! exactly as exported.
//!
//! Two rewrites. First, a convolution whose only reader is an inference batch norm
//! (`_native_batch_norm_legit_no_training`) becomes one convolution with the normalisation folded
//! into its weights and bias — what XNNPACK and ONNX Runtime do to the same models:
//! `W'[o] = W[o] · s[o]`, `b'[o] = (b[o] - mean[o]) · s[o] + beta[o]`, `s = gamma / sqrt(var + eps)`.
//! Convolutions that pack their weights (all but depthwise ones) keep the file's `W` and take `s`
//! as an extra argument ([`etch_kernels::optimized::fused::convolution_scaled`]), applied as the
//! weights are packed at init: `W'` is never written out, which saved a copy of mobilenet_v2's
//! 14 MB of weights (and the pass writing it) at load. Depthwise convolutions read their weights
//! directly, so they get the scaled copy `W'`.
//!
//! Then a float32 convolution whose only reader is a ReLU or hardtanh (ReLU6) becomes one call that
//! clamps its results as it stores them ([`etch_kernels::optimized::fused`]): the activation's
//! pass over memory disappears. This one rounds exactly as the program does.
//!
//! Then a 1x1 expansion and the depthwise convolution that alone reads its product (MobileNet's
//! inverted residual blocks, both with their batch norm and ReLU6 fused as above) become one call
//! when the product is large ([`expansion_depthwise`]), and so do a depthwise convolution and the
//! 1x1 projection that alone reads its result ([`depthwise_projection`]): the product, written out
//! whole, left the caches between the two calls. Bit-identical to the two calls.
//!
//! Then an `add` that alone reads a 1x1 projection's output (alone or fused with its depthwise
//! convolution) folds into that call ([`residual_add`]): the residual connections of inverted
//! residual blocks. Bit-identical to the two calls.
//!
//! A batch-1 linear layer, which the exporter writes as `addmm(b, x, permute_copy(W))`,
//! reads `W` where the file holds it ([`etch_kernels::optimized::fused::linear`]): the transpose,
//! otherwise evaluated once at load into a copy of the weight (mobilenet_v2's classifier: 5 MB), is
//! not run, and the product is one dot product per output over `W`'s contiguous rows. Sums are
//! ordered differently from the GEMM's, so this one rounds differently too.
//!
//! The chains `nn.Hardswish`, `nn.Hardsigmoid` and `nn.SiLU` export as (`add`, `clamp`s, `mul`,
//! `div`; `sigmoid` then `mul`) become one elementwise call each, bit-identical to the chain.
//!
//! The ten calls `nn.LSTM` exports per time step after its gate pre-activations (a split into four
//! gates, three sigmoids and a tanh, the new cell state `f·c + i·g`, its tanh, the product with the
//! output gate) become one call ([`etch_kernels::optimized::fused::lstm_cell`]), bit-identical.
//!
//! Last, a `max_pool2d_with_indices` whose indices nobody reads (`nn.MaxPool2d` exports as one)
//! runs a kernel that does not compute them ([`etch_kernels::optimized::pool::max_pool2d_values_out`]):
//! the values are the same, bit for bit; the indices were half its work. A kernel choice rather
//! than a fusion: no tensor changes writer, so it applies under the exporter's plan too.

use etch_kernels::{DType, EValue, ListPool, NONE_INDEX, TensorId};
use etch_schema::{ShapeDynamism, TensorData, TensorDef, ValueDef};

use crate::alias::PointsTo;
use crate::exec::{Step, pool_slice};
use crate::load::{Builder, Instructions};
use crate::memory::AlignedBuf;

const CONVOLUTION: &str = "aten::convolution.out";
const BATCH_NORM: &str = "aten::_native_batch_norm_legit_no_training.out";
const RELU: &str = "aten::relu.out";
const HARDTANH: &str = "aten::hardtanh.out";
const PERMUTE: &str = "aten::permute_copy.out";
const ADDMM: &str = "aten::addmm.out";
const MAX_POOL: &str = "aten::max_pool2d_with_indices.out";
const ADD: &str = "aten::add.out";
const CLAMP: &str = "aten::clamp.out";
const MUL: &str = "aten::mul.out";
const DIV: &str = "aten::div.out";
const SIGMOID: &str = "aten::sigmoid.out";
const TANH: &str = "aten::tanh.out";
const SPLIT_WITH_SIZES: &str = "aten::split_with_sizes_copy.out";
const CAT: &str = "aten::cat.out";
const MEAN: &str = "aten::mean.out";

/// A constant the fusion computed: a tensor of its own, appended after the program's values; its
/// bytes are `range` of the [`FusedConstants`] arena.
pub(crate) struct FusedConstant {
    pub dtype: DType,
    pub sizes: Vec<usize>,
    pub range: std::ops::Range<usize>,
}

/// Every constant one method's fusion computed, in one buffer: one allocation (with huge pages
/// where the OS offers them) instead of one per constant, whose page faults dominated load time.
#[derive(Default)]
pub(crate) struct FusedConstants {
    pub arena: Option<AlignedBuf>,
    pub items: Vec<FusedConstant>,
}

/// A batch-norm fold to write once the arena exists: the convolution's weight rows scaled per
/// output channel (or, for a scaled convolution, the scale itself), and the new bias.
struct Fold<'p> {
    weight: &'p [u8],
    weight_sizes: Vec<usize>,
    scale: Vec<f64>,
    bias: Vec<f32>,
    /// The convolution keeps the file's weights and scales them as it packs them
    /// ([`etch_kernels::optimized::fused::convolution_scaled`]): no scaled copy is written.
    scaled: bool,
}

/// How many places name each value: instruction arguments, list items, moves, jumps, frees, and
/// the method's inputs and outputs.
fn value_uses(b: &Builder<'_>, ins: &Instructions, values: &[EValue], pool: &ListPool) -> Vec<u32> {
    let mut uses = vec![0u32; values.len()];
    let mut bump = |v: u32| {
        if let Some(u) = uses.get_mut(v as usize) {
            *u += 1;
        }
    };
    for step in &ins.steps {
        match *step {
            Step::Kernel { args, .. } | Step::Delegate { args, .. } => {
                pool_slice(&ins.arg_pool, args).iter().for_each(|&v| bump(v))
            }
            Step::Move { from, to } => {
                bump(from);
                bump(to);
            }
            Step::JumpFalse { cond, .. } => bump(cond),
            Step::Free { value } => bump(value),
            Step::Nop => {}
        }
    }
    b.def.inputs.iter().chain(&b.def.outputs).for_each(|&v| bump(v));
    // Items of lists something names (a packed return list the engine dropped names nothing).
    let named: Vec<usize> = uses.iter().enumerate().filter(|&(_, &u)| u > 0).map(|(v, _)| v).collect();
    for v in named {
        if let Some(EValue::TensorList(s) | EValue::OptionalTensorList(s)) = values.get(v) {
            for &i in pool.indices(*s).iter().filter(|&&i| i != NONE_INDEX) {
                if let Some(u) = uses.get_mut(i as usize) {
                    *u += 1;
                }
            }
        }
    }
    uses
}

/// A constant float32 tensor's bytes (little-endian elements), checked against its shape.
fn constant_bytes<'p>(b: &Builder<'p>, t: &TensorDef) -> Option<&'p [u8]> {
    let TensorData::Constant(range) = &t.data else { return None };
    if t.scalar_type != DType::Float {
        return None;
    }
    let bytes = range.slice(b.program.bytes())?;
    let n: usize = t.sizes.iter().try_fold(1usize, |a, &s| a.checked_mul(s))?;
    (bytes.len() == n.checked_mul(4)?).then_some(bytes)
}

/// Reads a constant float32 tensor's elements.
fn constant_f32(b: &Builder<'_>, t: &TensorDef) -> Option<Vec<f32>> {
    Some(constant_bytes(b, t)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn tensor_def<'d>(b: &Builder<'d>, v: u32) -> Option<&'d TensorDef> {
    match b.def.values.get(v as usize)? {
        ValueDef::Tensor(t) => Some(t),
        _ => None,
    }
}

/// A per-channel constant of `channels` float32 elements, or `default` when the value is None.
fn channel_vector(b: &Builder<'_>, values: &[EValue], v: u32, channels: usize, default: f32) -> Option<Vec<f32>> {
    match values.get(v as usize)? {
        EValue::None => Some(vec![default; channels]),
        EValue::Tensor(_) => {
            let t = tensor_def(b, v)?;
            let data = constant_f32(b, t)?;
            (t.sizes == [channels]).then_some(data)
        }
        _ => None,
    }
}

/// Each value read at argument `position` of a call to one of `operators`, with that call's index.
fn argument_readers(ins: &Instructions, operators: &[&str], position: usize) -> std::collections::BTreeMap<u32, usize> {
    let mut readers = std::collections::BTreeMap::new();
    for (j, step) in ins.steps.iter().enumerate() {
        if let (Step::Kernel { args, .. }, Some((name, _))) = (step, ins.sites.get(j))
            && operators.contains(&&**name)
            && let Some(&input) = pool_slice(&ins.arg_pool, *args).get(position)
        {
            readers.insert(input, j);
        }
    }
    readers
}

/// Whether a fusion may write `out` where the program wrote the intermediate `mid`: both float32
/// tensors of one shape, dim order and dynamism, and `mid` shares its storage with no view.
fn can_replace_intermediate(b: &Builder<'_>, values: &[EValue], class_size: &[u32], mid: u32, out: u32) -> bool {
    let (Some(EValue::Tensor(mid_id)), Some(EValue::Tensor(_))) = (values.get(mid as usize), values.get(out as usize))
    else {
        return false;
    };
    if class_size.get(mid_id.0 as usize) != Some(&1) {
        return false;
    }
    let (Some(mid_def), Some(out_def)) = (tensor_def(b, mid), tensor_def(b, out)) else { return false };
    mid_def.scalar_type == DType::Float
        && out_def.scalar_type == DType::Float
        && mid_def.sizes == out_def.sizes
        && mid_def.dim_order == out_def.dim_order
        && mid_def.dynamism == out_def.dynamism
}

/// What the elementwise fusions check before they rewrite: how many places name each value
/// ([`value_uses`]) and which tensors share storage with a view, as the method stands before the
/// pass.
struct Readers<'v> {
    uses: Vec<u32>,
    class_size: Vec<u32>,
    values: &'v [EValue],
}

impl<'v> Readers<'v> {
    fn new(
        b: &Builder<'_>,
        ins: &Instructions,
        values: &'v [EValue],
        ids: &[Option<TensorId>],
        pool: &ListPool,
        pt: &PointsTo,
    ) -> Self {
        let uses = value_uses(b, ins, values, pool);
        Readers { uses, class_size: pt.class_sizes(ids.iter().flatten().count()), values }
    }

    /// How many places name `v`.
    fn uses(&self, v: u32) -> Option<u32> {
        self.uses.get(v as usize).copied()
    }

    /// A tensor no view shares and no other call writes through.
    fn unshared(&self, v: u32) -> bool {
        is_unshared(self.values, &self.class_size, v)
    }

    /// Named by its writer and one reader only, and unshared.
    fn read_once(&self, v: u32) -> bool {
        self.uses(v) == Some(2) && self.unshared(v)
    }
}

/// Whether value `v` is a tensor no view shares (its storage class has one member).
fn is_unshared(values: &[EValue], class_size: &[u32], v: u32) -> bool {
    match values.get(v as usize) {
        Some(EValue::Tensor(id)) => class_size.get(id.0 as usize) == Some(&1),
        _ => false,
    }
}

/// The int value `v` holds, if it holds one.
fn int_value(values: &[EValue], v: u32) -> Option<i64> {
    match values.get(v as usize) {
        Some(EValue::Int(n)) => Some(*n),
        _ => None,
    }
}

/// Whether value `v` is the scalar 1 (an `add`'s alpha that leaves the sum as it is).
fn is_one(values: &[EValue], v: u32) -> bool {
    matches!(values.get(v as usize), Some(EValue::Int(1)))
        || matches!(values.get(v as usize), Some(EValue::Double(d)) if *d == 1.0)
}

/// The arguments of instruction `j` if it is a kernel call to `op`.
fn call_args(ins: &Instructions, j: usize, op: &str) -> Option<Vec<u32>> {
    let Step::Kernel { args, .. } = ins.steps.get(j)? else { return None };
    (ins.sites.get(j).is_some_and(|(name, _)| &**name == op)).then(|| pool_slice(&ins.arg_pool, *args).to_vec())
}

/// Whether `t`'s elements lie in memory as a contiguous tensor's would: its dims of more than one
/// element appear in its dim order in increasing order (a channels-last depthwise weight,
/// `[C, 1, kh, kw]`, is one).
fn same_memory_as_contiguous(t: &TensorDef) -> bool {
    let wide = t.dim_order.iter().map(|&d| d as usize).filter(|&d| t.sizes.get(d).is_some_and(|&n| n > 1));
    wide.clone().zip(wide.skip(1)).all(|(a, b)| a < b)
}

fn is_contiguous(t: &TensorDef) -> bool {
    t.dim_order.iter().enumerate().all(|(i, &d)| d as usize == i)
}

/// Appends a fused call's arguments to the pool: their span, or `None` (nothing appended) when
/// the pool would outgrow 32-bit indices.
fn append_args(ins: &mut Instructions, args: &[u32]) -> Option<etch_kernels::Span> {
    let start = u32::try_from(ins.arg_pool.len()).ok()?;
    let len = u32::try_from(args.len()).ok()?;
    ins.arg_pool.extend(args);
    Some(etch_kernels::Span { start, len })
}

/// Step `j`, whose work a fused call now does, becomes a no-op (and is not folded at load).
fn remove_step(ins: &mut Instructions, j: usize) {
    if let Some(step) = ins.steps.get_mut(j) {
        *step = Step::Nop;
    }
    if let Some(p) = ins.pure.get_mut(j) {
        *p = false;
    }
}

/// Folds inference batch norms into the convolutions that feed them. Rewrites `ins` in place
/// (the batch norm becomes a no-op, the convolution reads new constants and writes the batch
/// norm's output), appends a value and a tensor id per new constant, and returns the constants in
/// the order of their tensor ids. `pt` must describe `ins` before the rewrite.
pub(crate) fn conv_batch_norm(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &mut Vec<EValue>,
    ids: &mut Vec<Option<TensorId>>,
    pool: &ListPool,
    pt: &PointsTo,
) -> Option<FusedConstants> {
    let mut folds = Vec::new();
    let uses = value_uses(b, ins, values, pool);
    let class_size = pt.class_sizes(ids.iter().flatten().count());
    let batch_norm_of_input = argument_readers(ins, &[BATCH_NORM], 0);
    for i in 0..ins.steps.len() {
        let Step::Kernel { args: conv_span, writable, prepared, .. } = ins.steps[i] else { continue };
        if ins.sites.get(i).is_none_or(|(name, _)| &**name != CONVOLUTION) {
            continue;
        }
        let conv: Vec<u32> = pool_slice(&ins.arg_pool, conv_span).to_vec();
        let Some(&mid) = conv.get(9) else { continue };
        let Some(&j) = batch_norm_of_input.get(&mid) else { continue };
        let Step::Kernel { args: bn_span, .. } = ins.steps[j] else { continue };
        let bn: Vec<u32> = pool_slice(&ins.arg_pool, bn_span).to_vec();
        if let Some(fused) = fuse_pair(b, values, ids, &uses, &class_size, &conv, &bn, j > i) {
            let (weight_or_scale, bias, fold) = fused;
            let base = conv_span.start as usize;
            ins.arg_pool[base + 2] = bias;
            ins.arg_pool[base + 9] = bn[7];
            if fold.scaled {
                // The weight scale goes after the convolution's arguments (`fused::SCALE`).
                let mut args = pool_slice(&ins.arg_pool, conv_span).to_vec();
                args.push(weight_or_scale);
                let args = append_args(ins, &args)?;
                let run = etch_kernels::optimized::fused::convolution_scaled as etch_kernels::KernelFn;
                ins.steps[i] = Step::Kernel { run, args, writable, prepared };
            } else {
                ins.arg_pool[base + 1] = weight_or_scale;
            }
            remove_step(ins, j);
            folds.push(fold);
        }
    }
    write_folds(&folds)
}

/// Allocates the arena and writes every fold's weight and bias into it (f64 arithmetic, one
/// rounding at the end). `None` if the arena cannot be allocated.
fn write_folds(folds: &[Fold<'_>]) -> Option<FusedConstants> {
    if folds.is_empty() {
        return Some(FusedConstants::default());
    }
    let aligned = |n: usize| n.checked_next_multiple_of(crate::memory::BUFFER_ALIGN);
    let mut items = Vec::with_capacity(2 * folds.len());
    let mut at = 0usize;
    for f in folds {
        let (dtype, sizes, len) = match f.scaled {
            true => (DType::Double, vec![f.scale.len()], f.scale.len().checked_mul(8)?),
            false => (DType::Float, f.weight_sizes.clone(), f.weight.len()),
        };
        let end = at.checked_add(len)?;
        items.push(FusedConstant { dtype, sizes, range: at..end });
        at = aligned(end)?;
        let bias_end = at.checked_add(f.bias.len().checked_mul(4)?)?;
        items.push(FusedConstant { dtype: DType::Float, sizes: vec![f.bias.len()], range: at..bias_end });
        at = aligned(bias_end)?;
    }
    let mut arena = AlignedBuf::for_writing(at)?;
    let bytes = arena.as_mut_slice();
    for (f, pair) in folds.iter().zip(items.chunks_exact(2)) {
        if f.scaled {
            let dst = bytes.get_mut(pair[0].range.clone())?;
            for (d, s) in dst.chunks_exact_mut(8).zip(&f.scale) {
                d.copy_from_slice(&s.to_le_bytes());
            }
            let dst = bytes.get_mut(pair[1].range.clone())?;
            for (d, b) in dst.chunks_exact_mut(4).zip(&f.bias) {
                d.copy_from_slice(&b.to_le_bytes());
            }
            continue;
        }
        let per_channel = (f.weight.len() / 4).checked_div(f.scale.len())?.max(1);
        let dst = bytes.get_mut(pair[0].range.clone())?;
        let rows = dst.chunks_exact_mut(per_channel * 4).zip(f.weight.chunks_exact(per_channel * 4));
        for ((dst, src), &s) in rows.zip(&f.scale) {
            // Element views where the bytes are aligned (always, for the arena; for the file's
            // constants when their segment is) on a little-endian target: a loop that vectorizes.
            match (bytemuck::try_cast_slice_mut::<u8, f32>(dst), bytemuck::try_cast_slice::<u8, f32>(src)) {
                (Ok(dst), Ok(src)) if cfg!(target_endian = "little") => {
                    for (d, &w) in dst.iter_mut().zip(src) {
                        *d = (f64::from(w) * s) as f32;
                    }
                }
                _ => {
                    for (d, w) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                        let w = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                        d.copy_from_slice(&((f64::from(w) * s) as f32).to_le_bytes());
                    }
                }
            }
        }
        let dst = bytes.get_mut(pair[1].range.clone())?;
        for (d, b) in dst.chunks_exact_mut(4).zip(&f.bias) {
            d.copy_from_slice(&b.to_le_bytes());
        }
    }
    Some(FusedConstants { arena: Some(arena), items })
}

/// Checks one convolution → batch norm pair and computes the fused weight and bias; returns their
/// new value indices and the constants.
#[allow(clippy::too_many_arguments)]
fn fuse_pair<'p>(
    b: &Builder<'p>,
    values: &mut Vec<EValue>,
    ids: &mut Vec<Option<TensorId>>,
    uses: &[u32],
    class_size: &[u32],
    conv: &[u32],
    bn: &[u32],
    in_order: bool,
) -> Option<(u32, u32, Fold<'p>)> {
    if conv.len() != 10 || bn.len() != 10 || !in_order {
        return None;
    }
    let (mid, out, save_mean, save_invstd) = (conv[9], bn[7], bn[8], bn[9]);
    let used = |v: u32, n: u32| uses.get(v as usize) == Some(&n);
    // The intermediate is written by the convolution and read by the batch norm only; the batch
    // norm's statistics outputs are read by nobody.
    if !used(mid, 2) || !used(save_mean, 1) || !used(save_invstd, 1) || out == mid {
        return None;
    }
    if !can_replace_intermediate(b, values, class_size, mid, out) {
        return None;
    }
    if !matches!(values.get(conv[6] as usize), Some(EValue::Bool(false))) {
        return None;
    }
    let weight_def = tensor_def(b, conv[1])?;
    // Convolutions with one input channel per group (depthwise) read their weights directly
    // instead of packing them: they get a scaled copy (small: one k×k filter per channel), laid
    // out contiguous, so the weight's memory must be in that order. The others take the scale
    // per output channel, which only needs that dim outermost (a channels-last export's weights).
    let scaled = weight_def.sizes.get(1) != Some(&1);
    let layout_ok = match scaled {
        true => weight_def.dim_order.first().is_none_or(|&d| d == 0),
        false => same_memory_as_contiguous(weight_def),
    };
    if !layout_ok || weight_def.sizes.len() < 3 {
        return None;
    }
    let weight = constant_bytes(b, weight_def)?;
    let channels = *weight_def.sizes.first()?;
    let per_channel = (weight.len() / 4).checked_div(channels)?;
    let bias = channel_vector(b, values, conv[2], channels, 0.0)?;
    let gamma = channel_vector(b, values, bn[1], channels, 1.0)?;
    let beta = channel_vector(b, values, bn[2], channels, 0.0)?;
    let mean = channel_vector(b, values, bn[3], channels, f32::NAN)?;
    let var = channel_vector(b, values, bn[4], channels, f32::NAN)?;
    let EValue::Double(eps) = *values.get(bn[6] as usize)? else { return None };
    if mean.iter().chain(&var).any(|x| x.is_nan()) || per_channel * channels * 4 != weight.len() {
        return None;
    }
    // f64 arithmetic, one rounding at the end (written by `write_folds`).
    let scale: Vec<f64> = (0..channels).map(|c| f64::from(gamma[c]) / (f64::from(var[c]) + eps).sqrt()).collect();
    let new_bias: Vec<f32> = (0..channels)
        .map(|c| ((f64::from(bias[c]) - f64::from(mean[c])) * scale[c] + f64::from(beta[c])) as f32)
        .collect();
    let fold = Fold { weight, weight_sizes: weight_def.sizes.clone(), scale, bias: new_bias, scaled };
    // Both indices first, so a failure leaves `values` and `ids` untouched.
    let tensor = u32::try_from(ids.iter().flatten().count()).ok()?;
    let value = u32::try_from(values.len()).ok()?;
    let (tensor2, value2) = (tensor.checked_add(1)?, value.checked_add(1)?);
    for t in [tensor, tensor2] {
        values.push(EValue::Tensor(TensorId(t)));
        ids.push(Some(TensorId(t)));
    }
    let (w, bias_value) = (value, value2);
    Some((w, bias_value, fold))
}

/// Fuses float32 convolutions with the ReLU or hardtanh that is their output's only reader: the
/// convolution writes the activation's output through a clamping kernel, the activation becomes a
/// no-op. Run after [`conv_batch_norm`] (a folded convolution feeds the activation directly).
pub(crate) fn conv_activation(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &[EValue],
    ids: &[Option<TensorId>],
    pool: &ListPool,
    pt: &PointsTo,
) {
    use etch_kernels::optimized::fused;
    let uses = value_uses(b, ins, values, pool);
    let class_size = pt.class_sizes(ids.iter().flatten().count());
    let activation_of_input = argument_readers(ins, &[RELU, HARDTANH], 0);
    for i in 0..ins.steps.len() {
        let Step::Kernel { args: conv_span, writable, prepared, .. } = ins.steps[i] else { continue };
        if ins.sites.get(i).is_none_or(|(name, _)| &**name != CONVOLUTION) {
            continue;
        }
        let conv: Vec<u32> = pool_slice(&ins.arg_pool, conv_span).to_vec();
        let Some(&mid) = conv.get(9) else { continue };
        let Some(&j) = activation_of_input.get(&mid) else { continue };
        let is_relu = ins.sites.get(j).is_some_and(|(name, _)| &**name == RELU);
        let Step::Kernel { args: act_span, .. } = ins.steps[j] else { continue };
        let act: Vec<u32> = pool_slice(&ins.arg_pool, act_span).to_vec();
        let Some(&out) = act.last() else { continue };
        if !(10..=11).contains(&conv.len()) || j <= i || uses.get(mid as usize) != Some(&2) || out == mid {
            continue;
        }
        if !can_replace_intermediate(b, values, &class_size, mid, out) {
            continue;
        }
        let bound = |v: u32| match values.get(v as usize) {
            Some(EValue::Double(d)) => !d.is_nan(),
            Some(EValue::Int(_)) => true,
            _ => false,
        };
        // A convolution with a folded batch norm carries its weight scale as an 11th argument.
        let scaled = conv.len() == 11;
        let (run, mut fused_args): (etch_kernels::KernelFn, _) = if is_relu {
            (if scaled { fused::convolution_scaled_relu } else { fused::convolution_relu }, conv.clone())
        } else {
            if act.len() != 4 || !bound(act[1]) || !bound(act[2]) {
                continue;
            }
            let mut a = conv.clone();
            a.extend([act[1], act[2]]);
            (if scaled { fused::convolution_scaled_hardtanh } else { fused::convolution_hardtanh }, a)
        };
        fused_args[9] = out;
        let Some(args) = append_args(ins, &fused_args) else { continue };
        ins.steps[i] = Step::Kernel { run, args, writable, prepared };
        remove_step(ins, j);
    }
}

/// Fuses a 1x1 expansion (a convolution with a folded batch norm and a ReLU6, as
/// [`conv_batch_norm`] and [`conv_activation`] left it) with the depthwise convolution (also with
/// its ReLU6) that is the only reader of its product, when the product is large
/// ([`conv::MIN_FUSED_PRODUCT`](etch_kernels::optimized::conv::MIN_FUSED_PRODUCT) elements or
/// more): the expansion's call becomes [`conv::pointwise_depthwise`], which never writes the
/// product out, and the depthwise call a no-op. Bit-identical to the two calls. Checks at load
/// everything the fused kernel needs of the shapes and parameters, so that it never refuses a
/// call the two calls would have run.
pub(crate) fn expansion_depthwise(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &[EValue],
    ids: &[Option<TensorId>],
    pool: &ListPool,
    pt: &PointsTo,
    (constants, first_constant): (&FusedConstants, usize),
) {
    use etch_kernels::optimized::conv;
    let uses = value_uses(b, ins, values, pool);
    let class_size = pt.class_sizes(ids.iter().flatten().count());
    let conv_of_input = argument_readers(ins, &[CONVOLUTION], 0);
    let shapes = ConvShapes { b, values, pool, constants, first_constant };
    for i in 0..ins.steps.len() {
        let Step::Kernel { args: pw_span, prepared, .. } = ins.steps[i] else { continue };
        // A scaled convolution with a fused hardtanh: the convolution's ten arguments, the
        // scale, the two bounds (the other fused convolutions have 10, 11 or 12).
        if ins.sites.get(i).is_none_or(|(name, _)| &**name != CONVOLUTION) || pw_span.len != 13 {
            continue;
        }
        let pw: Vec<u32> = pool_slice(&ins.arg_pool, pw_span).to_vec();
        let Some(&mid) = pw.get(9).filter(|_| pw.len() == 13) else { continue };
        let Some(&j) = conv_of_input.get(&mid) else { continue };
        let Some(&Step::Kernel { args: dw_span, .. }) = ins.steps.get(j) else { continue };
        let dw: Vec<u32> = pool_slice(&ins.arg_pool, dw_span).to_vec();
        if dw.len() != 12 || j <= i || uses.get(mid as usize) != Some(&2) || !is_unshared(values, &class_size, mid) {
            continue;
        }
        let (Some(x), Some(product), Some(out)) =
            (shapes.static_f32(pw[0]), shapes.static_f32(mid), shapes.static_f32(dw[9]))
        else {
            continue;
        };
        let (Some(pw_w), Some(dw_w)) = (shapes.weight(pw[1]), shapes.weight(dw[1])) else { continue };
        let channels = product[1];
        let numel: usize = product.iter().product();
        let expansion = pw_w == [channels, x[1], 1, 1]
            && shapes.ints_in(pw[3], 1..=1)
            && shapes.ints_in(pw[4], 0..=0)
            && shapes.int(pw[8]) == Some(1)
            && product[0] == x[0]
            && product[2..] == x[2..]
            && matches!(values.get(pw[10] as usize), Some(EValue::Tensor(_)))
            && shapes.bound(pw[11])
            && shapes.bound(pw[12]);
        let depthwise = shapes.depthwise_call(&dw, &dw_w, channels) && out[..2] == product[..2];
        if !expansion || !depthwise || numel < conv::MIN_FUSED_PRODUCT {
            continue;
        }
        let mut args = pw[..9].to_vec();
        args.extend([dw[9], pw[10], pw[11], pw[12]]);
        args.extend(&dw[1..=8]);
        args.extend([dw[10], dw[11]]);
        debug_assert_eq!(args.len(), conv::pointwise_depthwise::ARGS);
        let Some(args) = append_args(ins, &args) else { continue };
        let run = conv::pointwise_depthwise as etch_kernels::KernelFn;
        ins.steps[i] = Step::Kernel { run, args, writable: 1 << 9, prepared };
        remove_step(ins, j);
    }
}

/// Fuses a depthwise convolution (batch norm folded, ReLU6 fused) with the 1x1 projection (batch
/// norm folded, no activation) that is the only reader of its result, when the result is large
/// ([`conv::depthwise_pointwise::MIN_FUSED_DEPTHWISE`] elements or more) and the projection's
/// weights small ([`conv::depthwise_pointwise::MAX_FUSED_PROJECTION`]): the projection's call becomes
/// [`conv::depthwise_pointwise`], the depthwise call a no-op. Bit-identical to the two calls.
/// Run after [`expansion_depthwise`] (a depthwise convolution fused with its expansion is not
/// fused again).
pub(crate) fn depthwise_projection(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &[EValue],
    ids: &[Option<TensorId>],
    pool: &ListPool,
    pt: &PointsTo,
    (constants, first_constant): (&FusedConstants, usize),
) {
    use etch_kernels::optimized::conv::{self, depthwise_pointwise as dp};
    let uses = value_uses(b, ins, values, pool);
    let class_size = pt.class_sizes(ids.iter().flatten().count());
    let conv_of_input = argument_readers(ins, &[CONVOLUTION], 0);
    let shapes = ConvShapes { b, values, pool, constants, first_constant };
    for i in 0..ins.steps.len() {
        let Step::Kernel { args: dw_span, .. } = ins.steps[i] else { continue };
        // A convolution with a fused hardtanh and no scale (depthwise weights are folded into a
        // copy): its ten arguments and the two bounds.
        if ins.sites.get(i).is_none_or(|(name, _)| &**name != CONVOLUTION) || dw_span.len != 12 {
            continue;
        }
        let dw: Vec<u32> = pool_slice(&ins.arg_pool, dw_span).to_vec();
        let Some(&mid) = dw.get(9).filter(|_| dw.len() == 12) else { continue };
        let Some(&j) = conv_of_input.get(&mid) else { continue };
        let Some(&Step::Kernel { run: pw_run, args: pw_span, prepared, .. }) = ins.steps.get(j) else { continue };
        // A scaled convolution without activation (`convolution_scaled_relu` has as many
        // arguments: the kernel tells them apart; a false negative only leaves the pair unfused).
        let scaled = etch_kernels::optimized::fused::convolution_scaled as etch_kernels::KernelFn;
        if pw_span.len != 11 || pw_run as usize != scaled as usize {
            continue;
        }
        let pw: Vec<u32> = pool_slice(&ins.arg_pool, pw_span).to_vec();
        if pw.len() != 11 || j <= i || uses.get(mid as usize) != Some(&2) || !is_unshared(values, &class_size, mid) {
            continue;
        }
        let (Some(x), Some(result), Some(out)) =
            (shapes.static_f32(dw[0]), shapes.static_f32(mid), shapes.static_f32(pw[9]))
        else {
            continue;
        };
        let (Some(dw_w), Some(pw_w)) = (shapes.weight(dw[1]), shapes.weight(pw[1])) else { continue };
        let channels = x[1];
        let depthwise = shapes.depthwise_call(&dw, &dw_w, channels) && result[..2] == [x[0], channels];
        let projection = pw_w.len() == 4
            && pw_w[1..] == [channels, 1, 1]
            && shapes.ints_in(pw[3], 1..=1)
            && shapes.ints_in(pw[4], 0..=0)
            && shapes.ints_in(pw[5], 1..=1)
            && shapes.is_false(pw[6])
            && shapes.int(pw[8]) == Some(1)
            && out[..2] == [x[0], pw_w[0]]
            && out[2..] == result[2..]
            && matches!(values.get(pw[10] as usize), Some(EValue::Tensor(_)));
        let result_numel: usize = result.iter().product();
        let weights: usize = pw_w.iter().product();
        if !depthwise || !projection || result_numel < dp::MIN_FUSED_DEPTHWISE || weights > dp::MAX_FUSED_PROJECTION {
            continue;
        }
        let mut args = dw[..9].to_vec();
        args.extend([pw[9], dw[10], dw[11]]);
        args.extend(&pw[1..=8]);
        args.push(pw[10]);
        debug_assert_eq!(args.len(), dp::ARGS);
        let Some(args) = append_args(ins, &args) else { continue };
        let run = conv::depthwise_pointwise as etch_kernels::KernelFn;
        ins.steps[j] = Step::Kernel { run, args, writable: 1 << 9, prepared };
        remove_step(ins, i);
    }
}

/// Folds an `add` into the convolution whose output it alone reads: a convolution with its batch
/// norm folded and no activation ([`fused::convolution_scaled`](etch_kernels::optimized::fused::convolution_scaled);
/// MobileNet's 1x1 projections, ResNet's last 3x3 of a block), or a projection fused with the
/// depthwise convolution before it ([`conv::depthwise_pointwise`](etch_kernels::optimized::conv::depthwise_pointwise)),
/// added to the block's input. The convolution writes the add's output, adding the other operand
/// as it stores its results, and the add becomes a no-op: its pass over three tensors disappears,
/// and with it, on a pool, a read of outputs the other core wrote. Bit-identical:
/// `(product + bias) + residual` is the add's sum with alpha 1 (float addition commutes). Run
/// after [`depthwise_projection`].
pub(crate) fn residual_add(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &[EValue],
    ids: &[Option<TensorId>],
    pool: &ListPool,
    pt: &PointsTo,
    (constants, first_constant): (&FusedConstants, usize),
) {
    use etch_kernels::optimized::{conv, fused};
    let readers = Readers::new(b, ins, values, ids, pool, pt);
    let shapes = ConvShapes { b, values, pool, constants, first_constant };
    let (add_of_left, add_of_right) = (argument_readers(ins, &[ADD], 0), argument_readers(ins, &[ADD], 1));
    let scaled = fused::convolution_scaled as etch_kernels::KernelFn;
    let depthwise_projection = conv::depthwise_pointwise as etch_kernels::KernelFn;
    for i in 0..ins.steps.len() {
        let Step::Kernel { run, args: span, writable, prepared } = ins.steps[i] else { continue };
        if ins.sites.get(i).is_none_or(|(name, _)| &**name != CONVOLUTION) {
            continue;
        }
        let fused_run: etch_kernels::KernelFn = if run as usize == scaled as usize && span.len == 11 {
            conv::convolution_scaled_residual
        } else if run as usize == depthwise_projection as usize && span.len as usize == conv::depthwise_pointwise::ARGS
        {
            conv::depthwise_pointwise::depthwise_pointwise_residual
        } else {
            continue;
        };
        let conv_args: Vec<u32> = pool_slice(&ins.arg_pool, span).to_vec();
        let Some(&mid) = conv_args.get(9) else { continue };
        let Some(&j) = add_of_left.get(&mid).or_else(|| add_of_right.get(&mid)) else { continue };
        let Some(&[l, r, alpha, out]) = call_args(ins, j, ADD).as_deref() else { continue };
        let residual = if l == mid { r } else { l };
        // One float32 shape for all three (no broadcast), static and contiguous as the kernels
        // take them; the add the only reader of the product, the residual and the output
        // tensors of their own.
        let sizes = shapes.static_f32(mid);
        if j <= i
            || !is_one(values, alpha)
            || !readers.read_once(mid)
            || residual == mid
            || [mid, residual].contains(&out)
            || conv_args.contains(&residual)
            || conv_args.contains(&out)
            || sizes.is_none()
            || shapes.static_f32(residual) != sizes
            || shapes.static_f32(out) != sizes
            || !readers.unshared(residual)
            || !readers.unshared(out)
        {
            continue;
        }
        // The add moves up to the convolution: nothing between them may write the residual (an
        // argument past the 64 the write mask covers counts as written), or touch the add's
        // output; only plain calls in between (no moves, jumps or delegates).
        let between_ok = (i + 1..j).all(|k| match ins.steps.get(k) {
            Some(Step::Nop) => true,
            Some(Step::Kernel { args, writable, .. }) => pool_slice(&ins.arg_pool, *args)
                .iter()
                .enumerate()
                .all(|(p, &v)| v != out && !(v == residual && (p >= 64 || writable & (1 << p) != 0))),
            _ => false,
        });
        if !between_ok {
            continue;
        }
        let mut args = conv_args;
        args[9] = out;
        args.push(residual);
        let Some(args) = append_args(ins, &args) else { continue };
        ins.steps[i] = Step::Kernel { run: fused_run, args, writable, prepared };
        remove_step(ins, j);
    }
}

/// What [`sole_relu`] checks a value's readers against.
#[derive(Clone, Copy)]
struct ReluReaders<'a> {
    uses: &'a [u32],
    class_size: &'a [u32],
    relu_of_input: &'a std::collections::BTreeMap<u32, usize>,
}

/// The ReLU after step `i` that is the only reader of `value` (which only `i` writes) and whose
/// output can take `value`'s place among `i`'s `args`: its step and its output.
fn sole_relu(
    b: &Builder<'_>,
    ins: &Instructions,
    values: &[EValue],
    r: ReluReaders<'_>,
    i: usize,
    value: u32,
    args: &[u32],
) -> Option<(usize, u32)> {
    let &j = r.relu_of_input.get(&value)?;
    let Step::Kernel { args: relu_span, .. } = ins.steps[j] else { return None };
    // `relu.out`'s input and output (the output named twice: argument and result).
    let relu = pool_slice(&ins.arg_pool, relu_span);
    let (&input, &out) = (relu.first()?, relu.last()?);
    let fits = input == value
        && j > i
        && r.uses.get(value as usize) == Some(&2)
        && out != value
        && !args.contains(&out)
        && can_replace_intermediate(b, values, r.class_size, value, out);
    fits.then_some((j, out))
}

/// Folds a ReLU into the convolution with a residual ([`residual_add`]'s result) whose output
/// it alone reads: ResNet's block ending, `relu(conv(x) + identity)`. The convolution writes
/// the ReLU's output, clamping the sum, and the ReLU becomes a no-op. Bit-identical: the ReLU
/// is the same clamp of the same sums. Run after [`residual_add`].
pub(crate) fn residual_activation(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &[EValue],
    ids: &[Option<TensorId>],
    pool: &ListPool,
    pt: &PointsTo,
) {
    use etch_kernels::optimized::conv;
    let uses = value_uses(b, ins, values, pool);
    let class_size = pt.class_sizes(ids.iter().flatten().count());
    let relu_of_input = argument_readers(ins, &[RELU], 0);
    let residual = conv::convolution_scaled_residual as etch_kernels::KernelFn;
    let readers = ReluReaders { uses: &uses, class_size: &class_size, relu_of_input: &relu_of_input };
    for i in 0..ins.steps.len() {
        let Step::Kernel { run, args: span, writable, prepared } = ins.steps[i] else { continue };
        if ins.sites.get(i).is_none_or(|(name, _)| &**name != CONVOLUTION) || run as usize != residual as usize {
            continue;
        }
        let mut args: Vec<u32> = pool_slice(&ins.arg_pool, span).to_vec();
        let Some(&sum) = args.get(9).filter(|_| args.len() == 12) else { continue };
        let Some((j, out)) = sole_relu(b, ins, values, readers, i, sum, &args) else { continue };
        args[9] = out;
        let Some(args) = append_args(ins, &args) else { continue };
        let run = conv::convolution_scaled_residual_relu as etch_kernels::KernelFn;
        ins.steps[i] = Step::Kernel { run, args, writable, prepared };
        remove_step(ins, j);
    }
}

/// What the convolution fusions read of values: constant shapes and scalar parameters.
struct ConvShapes<'a, 'p> {
    b: &'a Builder<'p>,
    values: &'a [EValue],
    pool: &'a ListPool,
    constants: &'a FusedConstants,
    first_constant: usize,
}

impl ConvShapes<'_, '_> {
    /// Whether `dw`, the 12 arguments of a convolution with a fused hardtanh and weights of
    /// `weight` sizes, is a depthwise convolution of `channels` channels the fused kernels cover:
    /// stride 1 or 2, padding up to 4, no dilation, kernels of at most 8x8 taps (64 taps at most,
    /// `depthwise_fits`), so that they never refuse a call the unfused ones would run.
    fn depthwise_call(&self, dw: &[u32], weight: &[usize], channels: usize) -> bool {
        let &[_, _, _, stride, padding, dilation, transposed, output_padding, groups, _, lo, hi] = dw else {
            return false;
        };
        weight.len() == 4
            && weight[..2] == [channels, 1]
            && weight[2..].iter().all(|&k| (1..=8).contains(&k))
            && self.int(groups).and_then(|g| usize::try_from(g).ok()) == Some(channels)
            && self.ints_in(stride, 1..=2)
            && self.ints_in(padding, 0..=4)
            && self.ints_in(dilation, 1..=1)
            && self.is_false(transposed)
            && self.ints_in(output_padding, 0..=0)
            && self.bound(lo)
            && self.bound(hi)
    }

    fn int(&self, v: u32) -> Option<i64> {
        int_value(self.values, v)
    }

    /// An int list of one or two items, each in `range`.
    fn ints_in(&self, v: u32, range: std::ops::RangeInclusive<i64>) -> bool {
        let Some(EValue::IntList(items)) = self.values.get(v as usize) else { return false };
        let items = self.pool.indices(*items);
        (1..=2).contains(&items.len()) && items.iter().all(|&i| self.int(i).is_some_and(|n| range.contains(&n)))
    }

    fn is_false(&self, v: u32) -> bool {
        matches!(self.values.get(v as usize), Some(EValue::Bool(false)))
    }

    /// A hardtanh bound: a number, not NaN.
    fn bound(&self, v: u32) -> bool {
        match self.values.get(v as usize) {
            Some(EValue::Double(d)) => !d.is_nan(),
            Some(EValue::Int(_)) => true,
            _ => false,
        }
    }

    /// A static, contiguous 4-D float32 tensor's sizes.
    fn static_f32(&self, v: u32) -> Option<Vec<usize>> {
        let t = tensor_def(self.b, v)?;
        let ok = t.scalar_type == DType::Float
            && t.sizes.len() == 4
            && is_contiguous(t)
            && t.dynamism == etch_schema::ShapeDynamism::Static;
        ok.then(|| t.sizes.clone())
    }

    /// A contiguous float32 weight's sizes: the program's, or a constant the fusion computed (the
    /// depthwise weights with their batch norm folded in; tensor ids from `first_constant`).
    fn weight(&self, v: u32) -> Option<Vec<usize>> {
        if let Some(t) = tensor_def(self.b, v) {
            return (t.scalar_type == DType::Float && is_contiguous(t)).then(|| t.sizes.clone());
        }
        let Some(EValue::Tensor(id)) = self.values.get(v as usize) else { return None };
        let item = self.constants.items.get((id.0 as usize).checked_sub(self.first_constant)?)?;
        (item.dtype == DType::Float).then(|| item.sizes.clone())
    }
}

/// Fuses `permute_copy(W, [1, 0])` into the `addmm` that is its only reader when `W` is a float32
/// constant and the product has one row (a batch-1 linear layer): the `addmm` reads `W` through
/// [`etch_kernels::optimized::fused::linear`], the transpose becomes a no-op. Products of more
/// rows keep the transpose (folded at load): their GEMM reads the transposed rows in place.
pub(crate) fn linear_weight(b: &Builder<'_>, ins: &mut Instructions, values: &[EValue], pool: &ListPool) {
    let uses = value_uses(b, ins, values, pool);
    // The `addmm` reading each value as its `mat2`, with its index.
    let mat2_readers = argument_readers(ins, &[ADDMM], 2);
    let int = |v: u32| int_value(values, v);
    for i in 0..ins.steps.len() {
        let Step::Kernel { args: span, .. } = ins.steps[i] else { continue };
        if ins.sites.get(i).is_none_or(|(name, _)| &**name != PERMUTE) {
            continue;
        }
        let &[weight, dims, transposed] = pool_slice(&ins.arg_pool, span) else { continue };
        let Some(&j) = mat2_readers.get(&transposed) else { continue };
        if j <= i || uses.get(transposed as usize) != Some(&2) {
            continue;
        }
        // dims [1, 0] of a 2-D tensor (negative dims count from the end).
        let Some(EValue::IntList(items)) = values.get(dims as usize) else { continue };
        let dims: Option<Vec<i64>> = pool.indices(*items).iter().map(|&v| int(v).map(|d| d.rem_euclid(2))).collect();
        if dims.as_deref() != Some(&[1, 0]) {
            continue;
        }
        let Some(w) = tensor_def(b, weight) else { continue };
        if w.sizes.len() != 2 || !is_contiguous(w) || constant_bytes(b, w).is_none() {
            continue;
        }
        let Step::Kernel { args: mm_span, writable, prepared, .. } = ins.steps[j] else { continue };
        let mm = pool_slice(&ins.arg_pool, mm_span);
        let x = mm.get(1).and_then(|&x| tensor_def(b, x));
        if mm.len() != 6 || x.is_none_or(|x| x.scalar_type != DType::Float || x.sizes.first() != Some(&1)) {
            continue;
        }
        ins.arg_pool[mm_span.start as usize + 2] = weight;
        let run = etch_kernels::optimized::fused::linear as etch_kernels::KernelFn;
        ins.steps[j] = Step::Kernel { run, args: mm_span, writable, prepared };
        remove_step(ins, i);
    }
}

/// Fuses float32 linear layers (`addmm`, or the [`linear_weight`] form of it) with the ReLU that
/// is their output's only reader: the product is written through a clamping epilogue
/// ([`etch_kernels::optimized::fused::addmm_relu`]), the ReLU becomes a no-op. Run after
/// [`linear_weight`]. mlp_towers' twelve ReLUs each cost a dispatch and a pass over the product
/// (about 1 µs with the gap before the next call, on a chain of 13 µs products).
pub(crate) fn linear_activation(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &[EValue],
    ids: &[Option<TensorId>],
    pool: &ListPool,
    pt: &PointsTo,
) {
    use etch_kernels::optimized::{fused, linalg};
    let uses = value_uses(b, ins, values, pool);
    let class_size = pt.class_sizes(ids.iter().flatten().count());
    let relu_of_input = argument_readers(ins, &[RELU], 0);
    let (plain, transposed) = (linalg::addmm_out as etch_kernels::KernelFn, fused::linear as etch_kernels::KernelFn);
    let readers = ReluReaders { uses: &uses, class_size: &class_size, relu_of_input: &relu_of_input };
    for i in 0..ins.steps.len() {
        let Step::Kernel { run, args: span, writable, prepared } = ins.steps[i] else { continue };
        let fused_run: etch_kernels::KernelFn = if run as usize == plain as usize {
            fused::addmm_relu
        } else if run as usize == transposed as usize {
            fused::linear_relu
        } else {
            continue;
        };
        if ins.sites.get(i).is_none_or(|(name, _)| &**name != ADDMM) {
            continue;
        }
        let mut args: Vec<u32> = pool_slice(&ins.arg_pool, span).to_vec();
        let Some(&product) = args.get(5).filter(|_| args.len() == 6) else { continue };
        if tensor_def(b, product).is_none_or(|t| t.scalar_type != DType::Float) {
            continue;
        }
        let Some((j, out)) = sole_relu(b, ins, values, readers, i, product, &args) else { continue };
        args[5] = out;
        let Some(args) = append_args(ins, &args) else { continue };
        ins.steps[i] = Step::Kernel { run: fused_run, args, writable, prepared };
        remove_step(ins, j);
    }
}

/// Fuses a concatenation with the mean that is its only reader when the mean reduces trailing
/// dimensions after the concatenated one (an Inception block's branches, concatenated, then
/// globally average-pooled): the `cat` call becomes
/// [`etch_kernels::optimized::fused::mean_of_cat`], which reduces each input where it lies, and
/// the `mean` a no-op; the concatenated tensor is never written. Checks at load what the fused
/// kernel needs (static contiguous float32 tensors of one rank, the dims), so that it never
/// refuses a call the two calls would have run.
pub(crate) fn cat_mean(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &[EValue],
    ids: &[Option<TensorId>],
    pool: &ListPool,
    pt: &PointsTo,
) {
    let uses = value_uses(b, ins, values, pool);
    let class_size = pt.class_sizes(ids.iter().flatten().count());
    let mean_of_input = argument_readers(ins, &[MEAN], 0);
    let int = |v: u32| int_value(values, v);
    // A static, contiguous float32 tensor: its sizes.
    let plain = |v: u32| -> Option<&[usize]> {
        let t = tensor_def(b, v)?;
        let ok = t.scalar_type == DType::Float && is_contiguous(t) && t.dynamism == ShapeDynamism::Static;
        ok.then_some(&t.sizes[..])
    };
    for i in 0..ins.steps.len() {
        let Step::Kernel { args: span, .. } = ins.steps[i] else { continue };
        if ins.sites.get(i).is_none_or(|(name, _)| &**name != CAT) {
            continue;
        }
        let &[list, dim, concatenated] = pool_slice(&ins.arg_pool, span) else { continue };
        let Some(&j) = mean_of_input.get(&concatenated) else { continue };
        let Step::Kernel { args: mean_span, writable, .. } = ins.steps[j] else { continue };
        let &[input, dims, keepdim, dtype, out] = pool_slice(&ins.arg_pool, mean_span) else { continue };
        let Some(EValue::TensorList(items)) = values.get(list as usize) else { continue };
        let items = pool.indices(*items);
        let Some(cat_sizes) = plain(concatenated) else { continue };
        let rank = cat_sizes.len();
        let Some(cat_dim) = int(dim).and_then(|d| etch_kernels::shape::wrap_dim(d, rank)) else { continue };
        // The dims: a non-empty list of distinct dims forming one trailing run after `cat_dim`.
        let Some(EValue::IntList(dim_list)) = values.get(dims as usize) else { continue };
        let wrapped: Option<Vec<usize>> = pool
            .indices(*dim_list)
            .iter()
            .map(|&v| int(v).and_then(|d| etch_kernels::shape::wrap_dim(d, rank)))
            .collect();
        let Some(mut wrapped) = wrapped else { continue };
        wrapped.sort_unstable();
        let trailing = !wrapped.is_empty()
            && wrapped.windows(2).all(|w| w[1] == w[0] + 1)
            && wrapped.last() == Some(&(rank - 1))
            && wrapped[0] > cat_dim;
        let items_ok = !items.is_empty()
            && items.len() <= etch_kernels::optimized::reduce::MEAN_OF_CAT_PARTS
            && items.iter().all(|&v| {
                plain(v).is_some_and(|s| s.len() == rank && (0..rank).all(|d| d == cat_dim || s[d] == cat_sizes[d]))
            });
        let out_ok = plain(out).is_some();
        if input != concatenated
            || j <= i
            || !trailing
            || !items_ok
            || !out_ok
            || !matches!(values.get(keepdim as usize), Some(EValue::Bool(_)))
            || !matches!(values.get(dtype as usize), Some(EValue::None))
            || uses.get(concatenated as usize) != Some(&2)
            || out == concatenated
            || items.contains(&out)
            || !matches!(values.get(concatenated as usize), Some(EValue::Tensor(t)) if class_size.get(t.0 as usize) == Some(&1))
        {
            continue;
        }
        let Some(args) = append_args(ins, &[list, dim, dims, keepdim, dtype, out]) else { continue };
        let run = etch_kernels::optimized::fused::mean_of_cat as etch_kernels::KernelFn;
        // The mean's output moves from position 4 to 5.
        let writable = writable << 1;
        let prepared = crate::exec::NOT_PREPARED;
        ins.steps[i] = Step::Kernel { run, args, writable, prepared };
        remove_step(ins, j);
    }
}

/// Switches each `max_pool2d_with_indices` whose `indices` output no instruction, list or method
/// output names, and no view shares, to the kernel that leaves `indices` unwritten.
pub(crate) fn max_pool_unread_indices(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &[EValue],
    ids: &[Option<TensorId>],
    pool: &ListPool,
    pt: &PointsTo,
) {
    let uses = value_uses(b, ins, values, pool);
    let class_size = pt.class_sizes(ids.iter().flatten().count());
    for i in 0..ins.steps.len() {
        let Step::Kernel { args, writable, prepared, .. } = ins.steps[i] else { continue };
        if ins.sites.get(i).is_none_or(|(name, _)| &**name != MAX_POOL) {
            continue;
        }
        let &[.., out, indices] = pool_slice(&ins.arg_pool, args) else { continue };
        let Some(EValue::Tensor(id)) = values.get(indices as usize) else { continue };
        // Named once (by this call), sharing its storage with no other tensor.
        if args.len != 8
            || out == indices
            || uses.get(indices as usize) != Some(&1)
            || class_size.get(id.0 as usize) != Some(&1)
        {
            continue;
        }
        let run = etch_kernels::optimized::pool::max_pool2d_values_out as etch_kernels::KernelFn;
        ins.steps[i] = Step::Kernel { run, args, writable, prepared };
    }
}

/// Fuses the chains `nn.Hardswish` and `nn.Hardsigmoid` export as:
/// `t1 = add(x, a)`, `t2 = clamp(t1, lo1, hi1)`, optionally `t3 = clamp(t2, lo2, hi2)`, for
/// hardswish `t4 = mul(x, t3)` (either operand order), then `out = div(t, d)`, with `a` and `d`
/// one-element float32 tensors, every intermediate read once and shared with no view, and `x`
/// and `out` float32 tensors of one shape and layout. The fused call takes the `div`'s place
/// (where `d` exists: the exporter computes it between the `mul` and the `div`); the rest become
/// no-ops. The re-plan (which fused methods run on) keeps `x` alive to the fused call.
pub(crate) fn hard_activations(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &[EValue],
    ids: &[Option<TensorId>],
    pool: &ListPool,
    pt: &PointsTo,
) {
    use etch_kernels::optimized::fused;
    let readers = Readers::new(b, ins, values, ids, pool, pt);
    let clamp_of = argument_readers(ins, &[CLAMP], 0);
    let (mul_of_left, mul_of_right) = (argument_readers(ins, &[MUL], 0), argument_readers(ins, &[MUL], 1));
    let div_of = argument_readers(ins, &[DIV], 0);
    let float_def = |v: u32| tensor_def(b, v).filter(|t| t.scalar_type == DType::Float);
    let (unshared, read_once) = (|v| readers.unshared(v), |v| readers.read_once(v));
    let one_element = |v: u32| float_def(v).is_some_and(|t| t.sizes.iter().product::<usize>() == 1) && unshared(v);
    let bound = |v: u32| match values.get(v as usize) {
        Some(EValue::Double(d)) => !d.is_nan(),
        Some(EValue::Int(_) | EValue::None) => true,
        _ => false,
    };
    for i in 0..ins.steps.len() {
        let Some(&[x, a, alpha, t1]) = call_args(ins, i, ADD).as_deref() else { continue };
        let Some(x_def) = float_def(x) else { continue };
        if !unshared(x) || !one_element(a) || !is_one(values, alpha) || !read_once(t1) {
            continue;
        }
        // The clamps: one or two (a single clamp is passed twice: clamping again is exact).
        let Some(&c1) = clamp_of.get(&t1) else { continue };
        let Some(&[_, lo1, hi1, t2]) = call_args(ins, c1, CLAMP).as_deref() else { continue };
        let mut chain = vec![i, c1];
        let (mut lo2, mut hi2, mut t) = (lo1, hi1, t2);
        if read_once(t2)
            && let Some(&c2) = clamp_of.get(&t2)
            && let Some(&[_, l, h, t3]) = call_args(ins, c2, CLAMP).as_deref()
        {
            (lo2, hi2, t) = (l, h, t3);
            chain.push(c2);
        }
        if ![lo1, hi1, lo2, hi2].into_iter().all(bound) {
            continue;
        }
        // Hardswish multiplies by x; hardsigmoid divides the clamp directly.
        // The `mul` reading `t` with `x` as its other operand, and its output.
        let mul = [mul_of_left.get(&t), mul_of_right.get(&t)].into_iter().flatten().find_map(|&m| {
            match call_args(ins, m, MUL).as_deref() {
                Some(&[l, r, product]) if (l == x) != (r == x) => Some((m, product)),
                _ => None,
            }
        });
        let swish = match mul {
            Some((m, product)) if read_once(t) => {
                chain.push(m);
                t = product;
                true
            }
            _ => false,
        };
        let Some(&dv) = div_of.get(&t) else { continue };
        let Some(&[_, d, out]) = call_args(ins, dv, DIV).as_deref() else { continue };
        let out_def = float_def(out);
        let same_layout = out_def
            .is_some_and(|o| o.sizes == x_def.sizes && o.dim_order == x_def.dim_order && o.dynamism == x_def.dynamism);
        // Steps in program order, each intermediate read once, `out` a fresh tensor.
        if !read_once(t)
            || !one_element(d)
            || !same_layout
            || !unshared(out)
            || chain.windows(2).any(|w| w[0] >= w[1])
            || chain.last().is_some_and(|&l| l >= dv)
            || [x, a, d].contains(&out)
        {
            continue;
        }
        let Some(args) = append_args(ins, &[x, a, lo1, hi1, lo2, hi2, d, out]) else { continue };
        let run: etch_kernels::KernelFn = if swish { fused::hardswish } else { fused::hardsigmoid };
        ins.steps[dv] = Step::Kernel { run, args, writable: 1 << 7, prepared: crate::exec::NOT_PREPARED };
        for &j in &chain {
            remove_step(ins, j);
        }
        if let Some(p) = ins.pure.get_mut(dv) {
            *p = false;
        }
    }
}

/// Fuses `s = sigmoid(x)`, `out = mul(x, s)` (either operand order: `nn.SiLU` exports this way)
/// into one call ([`etch_kernels::optimized::fused::silu`], bit-identical to the pair) in the
/// `mul`'s place, when `s` is read once and shared with no view, and `x` and `out` are float32
/// tensors of one shape and layout with `out` shared with no view. The `sigmoid` becomes a no-op:
/// its output is neither written nor read. efficientnet_b0_w050 spent 165 of 526 µs in these
/// two kernels (`etch bench --trace`, one thread).
pub(crate) fn silu(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &[EValue],
    ids: &[Option<TensorId>],
    pool: &ListPool,
    pt: &PointsTo,
) {
    use etch_kernels::optimized::fused;
    let readers = Readers::new(b, ins, values, ids, pool, pt);
    let (mul_of_left, mul_of_right) = (argument_readers(ins, &[MUL], 0), argument_readers(ins, &[MUL], 1));
    let unshared = |v| readers.unshared(v);
    for i in 0..ins.steps.len() {
        let Some(&[x, s]) = call_args(ins, i, SIGMOID).as_deref() else { continue };
        let Some(x_def) = tensor_def(b, x).filter(|t| t.scalar_type == DType::Float) else { continue };
        // `s` read by the sigmoid that writes it and the one `mul`.
        if !readers.read_once(s) || s == x {
            continue;
        }
        let mul = [mul_of_left.get(&s), mul_of_right.get(&s)].into_iter().flatten().find_map(|&m| {
            match call_args(ins, m, MUL).as_deref() {
                Some(&[l, r, out]) if (l == x && r == s) || (l == s && r == x) => Some((m, out)),
                _ => None,
            }
        });
        let Some((m, out)) = mul else { continue };
        let same_layout = tensor_def(b, out).is_some_and(|o| {
            o.scalar_type == DType::Float
                && o.sizes == x_def.sizes
                && o.dim_order == x_def.dim_order
                && o.dynamism == x_def.dynamism
        });
        if m <= i || !same_layout || !unshared(out) || out == x || out == s {
            continue;
        }
        let Some(args) = append_args(ins, &[x, out]) else { continue };
        let run = fused::silu as etch_kernels::KernelFn;
        ins.steps[m] = Step::Kernel { run, args, writable: 1 << 1, prepared: crate::exec::NOT_PREPARED };
        remove_step(ins, i);
        if let Some(p) = ins.pure.get_mut(m) {
            *p = false;
        }
    }
}

/// Fuses an LSTM time step after its gate pre-activations ([`etch_kernels::optimized::fused::lstm_cell`],
/// bit-identical to the ten calls) into one call in the last call's place:
///
/// ```text
/// [i, f, g, o] = split_with_sizes_copy(gates, [H, H, H, H], -1)
/// c_out = add(mul(sigmoid(f), c), mul(sigmoid(i), tanh(g)))      (either operand order, alpha 1)
/// h_out = mul(sigmoid(o), tanh(c_out))
/// ```
///
/// when every tensor but `gates` is a static float32 `[.., H]` tensor, `gates` a static float32
/// `[.., 4H]` one, all contiguous; every intermediate (the four gates, their activations, the two
/// products, `tanh(c_out)`) is read once and shared with no view, as is the split's list; and
/// nothing outside the pattern reads `c_out`, which no view shares, before the last call.
/// (`h_out` keeps its writer's place; `gates` and `c`, read later than before, have no other
/// writer: views may share them.) The other nine calls become
/// no-ops. The zoo's LSTM (hidden size 32) spent about half of its time in these calls, ten
/// dispatches on 32-element tensors per step.
pub(crate) fn lstm_cells(
    b: &Builder<'_>,
    ins: &mut Instructions,
    values: &[EValue],
    ids: &[Option<TensorId>],
    pool: &ListPool,
    pt: &PointsTo,
) {
    use etch_kernels::optimized::fused;
    let readers = Readers::new(b, ins, values, ids, pool, pt);
    let (unshared, read_once) = (|v| readers.unshared(v), |v| readers.read_once(v));
    let static_f32 = |v: u32| {
        tensor_def(b, v).filter(|t| {
            t.scalar_type == DType::Float && t.dynamism == etch_schema::ShapeDynamism::Static && is_contiguous(t)
        })
    };
    let unary_of = argument_readers(ins, &[SIGMOID, TANH], 0);
    let (mul_of_left, mul_of_right) = (argument_readers(ins, &[MUL], 0), argument_readers(ins, &[MUL], 1));
    let (add_of_left, add_of_right) = (argument_readers(ins, &[ADD], 0), argument_readers(ins, &[ADD], 1));
    // The one reader of `v` among calls to `op` (a unary call reading it at position 0), with
    // that call's output.
    let unary = |ins: &Instructions, v: u32, op: &str| -> Option<(usize, u32)> {
        let &j = unary_of.get(&v)?;
        match call_args(ins, j, op).as_deref() {
            Some(&[x, out]) if x == v => Some((j, out)),
            _ => None,
        }
    };
    // The binary call (`mul`, or `add` with alpha 1) reading `a` and `b` in either order, with its
    // output.
    let binary = |ins: &Instructions, a: u32, b: u32, op: &str| -> Option<(usize, u32)> {
        let (left, right) = if op == MUL { (&mul_of_left, &mul_of_right) } else { (&add_of_left, &add_of_right) };
        [left.get(&a), right.get(&a)].into_iter().flatten().find_map(|&j| {
            match (op, call_args(ins, j, op).as_deref()) {
                (MUL, Some(&[l, r, out])) if (l, r) == (a, b) || (l, r) == (b, a) => Some((j, out)),
                (ADD, Some(&[l, r, alpha, out]))
                    if ((l, r) == (a, b) || (l, r) == (b, a))
                        && matches!(values.get(alpha as usize), Some(EValue::Int(1))) =>
                {
                    Some((j, out))
                }
                _ => None,
            }
        })
    };
    for s in 0..ins.steps.len() {
        let Some(&[gates, split_sizes, dim, list]) = call_args(ins, s, SPLIT_WITH_SIZES).as_deref() else { continue };
        let Some(EValue::TensorList(items)) = values.get(list as usize) else { continue };
        let &[gi, gf, gg, go] = pool.indices(*items) else { continue };
        let Some(EValue::IntList(sizes)) = values.get(split_sizes as usize) else { continue };
        let Some(g_def) = static_f32(gates) else { continue };
        let rank = g_def.rank() as i64;
        let hidden = g_def.sizes.last().copied().unwrap_or(0) / 4;
        let last_dim = matches!(values.get(dim as usize), Some(EValue::Int(d)) if *d == -1 || *d == rank - 1);
        if rank == 0 || hidden == 0 || g_def.sizes.last() != Some(&(4 * hidden)) || !last_dim {
            continue;
        }
        // Four pieces of `H` each.
        let pieces = pool.indices(*sizes);
        let hidden_int = i64::try_from(hidden).ok();
        if pieces.len() != 4
            || !pieces.iter().all(|&v| matches!(values.get(v as usize), Some(EValue::Int(n)) if Some(*n) == hidden_int))
        {
            continue;
        }
        // The list is named by the split alone; each gate is read once, by its activation.
        if readers.uses(list) != Some(1) || ![gi, gf, gg, go].into_iter().all(read_once) {
            continue;
        }
        let Some((ai, si)) = unary(ins, gi, SIGMOID) else { continue };
        let Some((af, sf)) = unary(ins, gf, SIGMOID) else { continue };
        let Some((ag, tg)) = unary(ins, gg, TANH) else { continue };
        let Some((ao, so)) = unary(ins, go, SIGMOID) else { continue };
        if ![si, sf, tg, so].into_iter().all(read_once) {
            continue;
        }
        let Some((mig, ig)) = binary(ins, si, tg, MUL) else { continue };
        // `sigmoid(f)`'s one reader: the product with the cell state.
        let Some(&mf) = [mul_of_left.get(&sf), mul_of_right.get(&sf)].into_iter().flatten().next() else { continue };
        let Some(&[l, r, fc]) = call_args(ins, mf, MUL).as_deref() else { continue };
        let c = if l == sf { r } else { l };
        let Some((add, c_out)) = binary(ins, fc, ig, ADD) else { continue };
        let Some((tanh_c, tc)) = unary(ins, c_out, TANH) else { continue };
        let Some((mh, h_out)) = binary(ins, so, tc, MUL) else { continue };
        // Every `[.., H]` tensor: the gates' split shape, contiguous static float32.
        let mut piece = g_def.sizes.clone();
        if let Some(last) = piece.last_mut() {
            *last = hidden;
        }
        let all = [gi, gf, gg, go, si, sf, tg, so, ig, fc, c, c_out, tc, h_out];
        if !all.into_iter().all(|v| static_f32(v).is_some_and(|t| t.sizes == piece)) {
            continue;
        }
        // `c_out` is now written later than before: no view of it may be read in between.
        if ![ig, fc, tc].into_iter().all(read_once)
            || !unshared(c_out)
            || [gates, c].contains(&c_out)
            || [gates, c, c_out].contains(&h_out)
        {
            continue;
        }
        let chain = [s, ai, af, ag, ao, mig, mf, add, tanh_c, mh];
        let last = mh;
        // In program order (each call after the ones it reads), and no reader of `c_out` outside
        // the pattern before the fused call writes it.
        let ordered = s < ai.min(af).min(ag).min(ao)
            && mig > ai.max(ag)
            && mf > af
            && add > mig.max(mf)
            && tanh_c > add
            && mh > tanh_c.max(ao)
            && chain.iter().all(|&j| j <= last);
        let early_reader = (0..=last).any(|j| {
            !chain.contains(&j)
                && matches!(ins.steps.get(j), Some(Step::Kernel { args, .. } | Step::Delegate { args, .. })
                    if pool_slice(&ins.arg_pool, *args).contains(&c_out))
        });
        if !ordered || early_reader {
            continue;
        }
        let Some(args) = append_args(ins, &[gates, c, c_out, h_out]) else { continue };
        let run = fused::lstm_cell as etch_kernels::KernelFn;
        ins.steps[last] =
            Step::Kernel { run, args, writable: (1 << 2) | (1 << 3), prepared: crate::exec::NOT_PREPARED };
        for &j in chain.iter().filter(|&&j| j != last) {
            remove_step(ins, j);
        }
        if let Some(p) = ins.pure.get_mut(last) {
            *p = false;
        }
    }
}
