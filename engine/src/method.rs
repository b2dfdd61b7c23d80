//! [`Method`]: a loaded method — its values, planned memory, resolved kernels and delegates — and
//! the instruction loop.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use etch_delegates::{CompileSpec, DelegateHandle, InitContext, NamedData};
use etch_kernels::{
    DType, DimOrder, EValue, KernelArgs, KernelContext, KernelError, KernelFn, ListPool, MAX_ARGS, NONE_INDEX, Shape,
    Span, Tensor, TensorId, TensorImpl, ValueTable,
};
use etch_scheduler::{DEFAULT_BUDGET, Flow, RunError, run_sequential};
use etch_schema::{InstructionDef, MethodDef, ShapeDynamism, TensorData, ValueDef};

use crate::alias::{Call, PointsTo, Region, check_call};
use crate::error::{Error, ErrorKind, InstructionSite, Result};
use crate::memory::{AlignedBuf, MemoryManager};
use crate::meta::MethodMeta;
use crate::program::{Program, Runtime};

/// One resolved instruction.
enum Step {
    Kernel { run: KernelFn, args: Span, writable: u64 },
    Delegate { delegate: u32, args: Span, writable: u64 },
    Move { from: u32, to: u32 },
    JumpFalse { cond: u32, destination: u32 },
    Free { value: u32 },
}

/// An input or output value as the caller sees it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    None,
    Int(i64),
    Double(f64),
    Bool(bool),
    Tensor(Tensor<'a>),
    /// Strings and lists are not returned by value; the tag says which.
    Other(&'static str),
}

/// A tensor given as an input: row-major (contiguous) bytes of `dtype` and `sizes`.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub dtype: DType,
    pub sizes: &'a [usize],
    pub data: &'a [u8],
}

/// A method ready to execute. Inputs are copied in with [`Method::set_input`]; outputs alias the
/// method's planned memory and stay valid until the next [`Method::execute`].
///
/// `execute` takes `&mut self`: one method runs one execution at a time. Load several methods from
/// one [`Program`] to run requests in parallel.
pub struct Method<'mem> {
    program: Program,
    name: Arc<str>,
    values: ValueTable,
    steps: Box<[Step]>,
    arg_pool: Box<[u32]>,
    /// Per instruction: operator name (or backend id / instruction kind) and byte offset, for errors.
    sites: Box<[(Arc<str>, usize)]>,
    delegates: Box<[Box<dyn DelegateHandle>]>,
    inputs: Box<[u32]>,
    input_set: Box<[bool]>,
    outputs: Box<[u32]>,
    /// Tensors a FreeCall may clear; their storage is restored before each execution.
    free_targets: Box<[TensorId]>,
    context: KernelContext,
    /// Keeps planned memory alive (tensors point into it).
    _memory: MemoryManager<'mem>,
    /// Input buffers of unplanned inputs and realigned constants (tensors point into them).
    _owned: Vec<AlignedBuf>,
}

impl std::fmt::Debug for Method<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Method").field("name", &self.name).field("instructions", &self.steps.len()).finish()
    }
}

/// Named data of a program, for backends.
struct ProgramNamedData<'a> {
    program: &'a Program,
}

impl NamedData for ProgramNamedData<'_> {
    fn get(&self, key: &str) -> Option<&[u8]> {
        let def = self.program.def();
        def.named_data.iter().find(|n| n.key == key).and_then(|n| n.data.slice(self.program.bytes()))
    }
}

fn align_of(dtype: DType) -> usize {
    dtype.element_size().unwrap_or(1).max(1)
}

/// Whether value kind `v` can be passed where the schema says `ty` (a light check at load; kernels
/// check again when they read).
fn kind_fits(ty: &str, v: &ValueDef) -> bool {
    let ty = ty.trim();
    if let Some(base) = ty.strip_suffix('?') {
        return matches!(v, ValueDef::None) || kind_fits(base, v);
    }
    let list = ty.ends_with(']');
    let base = ty.split('[').next().unwrap_or(ty);
    match (base, list) {
        ("Tensor", false) => matches!(v, ValueDef::Tensor(_)),
        ("Tensor", true) => matches!(v, ValueDef::TensorList(_)),
        ("Tensor?", true) => matches!(v, ValueDef::OptionalTensorList(_) | ValueDef::TensorList(_)),
        ("int" | "SymInt", true) => matches!(v, ValueDef::IntList(_)),
        ("int" | "SymInt" | "ScalarType" | "Layout" | "MemoryFormat", false) => matches!(v, ValueDef::Int(_)),
        ("float", false) => matches!(v, ValueDef::Double(_) | ValueDef::Int(_)),
        ("float", true) => matches!(v, ValueDef::DoubleList(_)),
        ("bool", false) => matches!(v, ValueDef::Bool(_)),
        ("bool", true) => matches!(v, ValueDef::BoolList(_)),
        ("Scalar", false) => matches!(v, ValueDef::Int(_) | ValueDef::Double(_) | ValueDef::Bool(_)),
        ("str", false) => matches!(v, ValueDef::String(_)),
        _ => true,
    }
}

struct Builder<'p> {
    program: &'p Program,
    def: &'p MethodDef,
    method: Arc<str>,
}

impl Builder<'_> {
    fn site(&self, instruction: usize, operator: &str) -> InstructionSite {
        InstructionSite {
            method: self.method.clone(),
            instruction,
            byte_offset: self.def.instruction_offsets.get(instruction).copied().unwrap_or(0),
            operator: operator.into(),
        }
    }

    fn invalid(&self, reason: String, kind: ErrorKind) -> Error {
        Error::InvalidMethod { method: self.method.to_string(), reason, kind }
    }
}

fn span(start: usize, len: usize) -> Option<Span> {
    Some(Span { start: u32::try_from(start).ok()?, len: u32::try_from(len).ok()? })
}

impl<'mem> Method<'mem> {
    pub(crate) fn load(
        program: Program,
        name: &str,
        runtime: &Runtime,
        mut memory: MemoryManager<'mem>,
    ) -> Result<Self> {
        let shared = program.clone();
        let def = shared.method_def(name)?;
        let b = Builder { program: &shared, def, method: name.into() };

        // Planned memory: one buffer per memory_id, large enough, zeroed.
        if memory.len() < def.planned_buffer_sizes.len() {
            return Err(Error::Memory {
                method: name.into(),
                buffer: memory.len(),
                reason: format!("missing: the plan needs {} buffers", def.planned_buffer_sizes.len()),
            });
        }
        for (i, &size) in def.planned_buffer_sizes.iter().enumerate() {
            let have = memory.buffer_len(i).unwrap_or(0);
            if (have as u64) < size {
                return Err(Error::Memory {
                    method: name.into(),
                    buffer: i,
                    reason: format!("{have} bytes, the plan needs {size}"),
                });
            }
        }
        memory.zero();

        let (tensors, regions, tensor_of_value, owned) = b.tensors(&mut memory)?;
        let (values, pool) = b.values(&tensor_of_value)?;
        let (steps, arg_pool, sites, delegates, moves) = b.instructions(runtime, &values)?;

        // The precondition of KernelArgs::new: no call can alias a written argument.
        let pt = PointsTo::new(&values, &moves);
        let writable_tensor = |t: TensorId| tensors.get(t.0 as usize).is_some_and(TensorImpl::is_writable);
        for (i, step) in steps.iter().enumerate() {
            let (args, writable) = match step {
                Step::Kernel { args, writable, .. } | Step::Delegate { args, writable, .. } => (*args, *writable),
                _ => continue,
            };
            let args = &arg_pool[args.start as usize..(args.start + args.len) as usize];
            check_call(&Call { args, writable }, &pt, &values, &pool, &regions, &writable_tensor)
                .map_err(|reason| Error::InvalidInstruction { at: b.site(i, &sites[i].0), reason })?;
        }
        let mut free_targets = BTreeSet::new();
        for step in steps.iter() {
            if let Step::Free { value } = step {
                free_targets.extend(pt.position_tensors(*value, &values, &pool));
            }
        }

        // Inputs: tensors must be backed by memory we can copy into.
        for (k, &v) in def.inputs.iter().enumerate() {
            if let Some(&Some(t)) = tensor_of_value.get(v as usize)
                && !tensors[t.0 as usize].has_data()
                && tensors[t.0 as usize].capacity() > 0
            {
                return Err(b.invalid(format!("input {k} has no storage"), ErrorKind::InvalidProgram));
            }
        }

        let method: Arc<str> = name.into();
        Ok(Method {
            program,
            name: method,
            values: ValueTable::new(values, tensors, pool),
            steps: steps.into(),
            arg_pool: arg_pool.into(),
            sites: sites.into(),
            delegates: delegates.into(),
            inputs: def.inputs.clone().into(),
            input_set: vec![false; def.inputs.len()].into(),
            outputs: def.outputs.clone().into(),
            free_targets: free_targets.into_iter().collect(),
            context: KernelContext::new(),
            _memory: memory,
            _owned: owned,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    pub fn method_meta(&self) -> MethodMeta<'_> {
        // The method was loaded from this program, so its definition exists.
        MethodMeta::new(self.program.def().method(&self.name).unwrap_or(&EMPTY_METHOD))
    }

    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    pub fn num_outputs(&self) -> usize {
        self.outputs.len()
    }

    pub fn num_instructions(&self) -> usize {
        self.steps.len()
    }

    fn input_error(&self, index: usize, reason: impl Into<String>) -> Error {
        Error::Input { method: self.name.to_string(), index, reason: reason.into() }
    }

    /// Copies a tensor into input `index`. The dtype must match; a dynamic input may take any
    /// shape of the same rank within its planned size, a static one only its own shape.
    pub fn set_input(&mut self, index: usize, input: TensorView<'_>) -> Result<()> {
        let value = *self.inputs.get(index).ok_or_else(|| {
            self.input_error(index, format!("out of range (the method has {} inputs)", self.inputs.len()))
        })?;
        let name = self.name.clone();
        let err = |reason: String| Error::Input { method: name.to_string(), index, reason };
        let t = self.values.value_tensor_mut(value).ok_or_else(|| err("is not a tensor input".into()))?;
        if input.dtype != t.dtype() {
            return Err(err(format!("dtype {} given, the method takes {}", input.dtype, t.dtype())));
        }
        if input.sizes.len() != t.sizes().len() {
            return Err(err(format!(
                "rank {} given ({:?}), the method takes rank {} ({:?})",
                input.sizes.len(),
                input.sizes,
                t.sizes().len(),
                t.sizes()
            )));
        }
        let numel = input.sizes.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let nbytes = numel.and_then(|n| n.checked_mul(align_of(input.dtype)));
        if nbytes != Some(input.data.len()) {
            return Err(err(format!("{} data bytes for shape {:?}", input.data.len(), input.sizes)));
        }
        t.resize(input.sizes).map_err(|_| {
            err(format!(
                "shape {:?} does not fit: the method takes {:?}{}",
                input.sizes,
                t.sizes(),
                if t.is_resizable() { " at most" } else { "" }
            ))
        })?;
        let (shape, order) = (t.shape(), *t.dim_order());
        let mut view = etch_kernels::TensorMut::new(t, index);
        let dst = view.bytes_mut().map_err(|e| err(e.to_string()))?;
        copy_into_layout(input.data, &shape, &order, dst, align_of(input.dtype));
        self.input_set[index] = true;
        Ok(())
    }

    /// Sets a non-tensor input. ExecuTorch programs bake such inputs in at export, so the value
    /// must equal the traced one.
    pub fn set_input_scalar(&mut self, index: usize, value: Value<'_>) -> Result<()> {
        let v = *self.inputs.get(index).ok_or_else(|| self.input_error(index, "out of range"))?;
        let current = self.values.get(v).ok_or_else(|| self.input_error(index, "out of range"))?;
        let same = match (current, value) {
            (EValue::Int(a), Value::Int(b)) => a == b,
            (EValue::Double(a), Value::Double(b)) => a == b,
            (EValue::Bool(a), Value::Bool(b)) => a == b,
            (EValue::None, Value::None) => true,
            _ => false,
        };
        if !same {
            return Err(self.input_error(index, format!("{value:?} differs from the exported value {current:?}")));
        }
        self.input_set[index] = true;
        Ok(())
    }

    /// Runs the method once.
    pub fn execute(&mut self) -> Result<()> {
        if let Some(k) = self.input_set.iter().position(|s| !s) {
            // Non-tensor inputs carry their exported value; only tensors must be set.
            let v = self.inputs[k];
            if matches!(self.values.get(v), Some(EValue::Tensor(_))) {
                return Err(self.input_error(k, "not set"));
            }
        }
        for &t in self.free_targets.iter() {
            if let Some(t) = self.values.tensor_mut(t) {
                t.restore_data();
            }
        }
        let Method { values, steps, arg_pool, delegates, context, .. } = self;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_sequential(steps.len(), DEFAULT_BUDGET, |pc| run_step(&steps[pc], values, arg_pool, delegates, context))
        }));
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(RunError::Task { index, error })) => Err(self.step_error(index, error)),
            Ok(Err(RunError::BudgetExceeded { budget })) => Err(Error::InstructionBudget { at: self.site(0), budget }),
            Ok(Err(RunError::BadJump { from, to, .. })) => {
                Err(Error::InvalidInstruction { at: self.site(from), reason: format!("jump to {to} past the end") })
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(Error::Internal(format!("method '{}' panicked: {what}", self.name)))
            }
        }
    }

    fn site(&self, instruction: usize) -> InstructionSite {
        let (operator, byte_offset) = self.sites.get(instruction).cloned().unwrap_or_else(|| ("?".into(), 0));
        InstructionSite { method: self.name.clone(), instruction, byte_offset, operator }
    }

    fn step_error(&self, index: usize, e: StepError) -> Error {
        let at = self.site(index);
        match e {
            StepError::Kernel(source) => Error::Kernel { at, source },
            StepError::Delegate(source) => Error::Delegate { at, source },
            StepError::Invalid(reason) => Error::InvalidInstruction { at, reason: reason.into() },
        }
    }

    /// Output `index`. Tensors alias planned memory: valid until the next `execute`.
    pub fn output(&self, index: usize) -> Result<Value<'_>> {
        let err = |reason: String| Error::Output { method: self.name.to_string(), index, reason };
        let v = *self
            .outputs
            .get(index)
            .ok_or_else(|| err(format!("out of range (the method has {} outputs)", self.outputs.len())))?;
        // SAFETY: `&self` excludes a running `execute` (it needs `&mut self`), so no kernel writes
        // the table while this read and the returned view live.
        let value = unsafe { self.values.read(v) }.ok_or_else(|| err("no such value".into()))?;
        Ok(match value {
            EValue::None => Value::None,
            EValue::Int(i) => Value::Int(i),
            EValue::Double(d) => Value::Double(d),
            EValue::Bool(b) => Value::Bool(b),
            EValue::Tensor(id) => {
                // SAFETY: as above; no `&mut` to any tensor exists outside `execute`/`set_input`,
                // which need `&mut self`.
                let t = unsafe { self.values.tensor_ref(id) }.ok_or_else(|| err("no such tensor".into()))?;
                Value::Tensor(Tensor::new(t, index))
            }
            other => Value::Other(other.kind_name()),
        })
    }

    /// Output `index` as a tensor.
    pub fn output_tensor(&self, index: usize) -> Result<Tensor<'_>> {
        match self.output(index)? {
            Value::Tensor(t) => Ok(t),
            other => Err(Error::Output {
                method: self.name.to_string(),
                index,
                reason: format!("is {other:?}, not a tensor"),
            }),
        }
    }
}

static EMPTY_METHOD: MethodDef = MethodDef {
    name: String::new(),
    byte_offset: 0,
    values: Vec::new(),
    inputs: Vec::new(),
    outputs: Vec::new(),
    instructions: Vec::new(),
    instruction_offsets: Vec::new(),
    operators: Vec::new(),
    delegates: Vec::new(),
    planned_buffer_sizes: Vec::new(),
};

enum StepError {
    Kernel(KernelError),
    Delegate(etch_delegates::DelegateError),
    Invalid(&'static str),
}

/// Runs one instruction with exclusive access to the method's values.
#[inline]
fn run_step(
    step: &Step,
    values: &mut ValueTable,
    arg_pool: &[u32],
    delegates: &[Box<dyn DelegateHandle>],
    context: &mut KernelContext,
) -> Result<Flow, StepError> {
    match *step {
        Step::Kernel { run, args, writable } => {
            let args = pool_slice(arg_pool, args);
            // SAFETY: (1) the load-time alias check (check_call) proved that no written position of
            // this call shares a tensor or bytes with any other position; (2) `values` is borrowed
            // mutably for this call, so nothing else accesses the table meanwhile; (3) writable
            // masks come from schemas with at most MAX_ARGS arguments, and calls with more than
            // MAX_ARGS arguments were refused at load.
            let kernel_args = unsafe { KernelArgs::new(values, args, writable) };
            run(context, &kernel_args).map_err(StepError::Kernel)?;
            Ok(Flow::Next)
        }
        Step::Delegate { delegate, args, writable } => {
            let args = pool_slice(arg_pool, args);
            let handle = delegates.get(delegate as usize).ok_or(StepError::Invalid("delegate index"))?;
            // SAFETY: as for kernels: alias-checked at load, exclusive table access, <= MAX_ARGS.
            let delegate_args = unsafe { KernelArgs::new(values, args, writable) };
            handle.execute(&delegate_args).map_err(StepError::Delegate)?;
            Ok(Flow::Next)
        }
        Step::Move { from, to } => {
            let v = values.get(from).ok_or(StepError::Invalid("move source out of range"))?;
            values.set(to, v);
            Ok(Flow::Next)
        }
        Step::JumpFalse { cond, destination } => {
            let c = match values.get(cond) {
                Some(EValue::Bool(b)) => b,
                Some(EValue::Tensor(id)) => {
                    let t = values.tensor(id).ok_or(StepError::Invalid("condition tensor"))?;
                    let t = Tensor::new(t, 0);
                    if t.dtype() != DType::Bool {
                        return Err(StepError::Invalid("jump condition tensor is not bool"));
                    }
                    t.data::<etch_kernels::Bool>().map_err(StepError::Kernel)?.iter().all(|b| b.get())
                }
                _ => return Err(StepError::Invalid("jump condition is not a Bool or bool tensor")),
            };
            Ok(if c { Flow::Next } else { Flow::Jump(destination as usize) })
        }
        Step::Free { value } => {
            if let Some(t) = values.value_tensor_mut(value) {
                t.free_data();
            }
            Ok(Flow::Next)
        }
    }
}

fn pool_slice(pool: &[u32], s: Span) -> &[u32] {
    pool.get(s.start as usize..s.start as usize + s.len as usize).unwrap_or(&[])
}

/// Copies row-major `src` into `dst` laid out in `order`.
fn copy_into_layout(src: &[u8], shape: &Shape, order: &DimOrder, dst: &mut [u8], elem: usize) {
    if order.is_contiguous() {
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
        return;
    }
    let dst_strides = etch_kernels::shape::strides_for(shape, order);
    let src_strides = etch_kernels::shape::strides_for(shape, &DimOrder::contiguous(shape.rank()));
    for [d, s] in etch_kernels::shape::StridedIter::new(shape, [dst_strides, src_strides]) {
        let (d, s) = (d * elem, s * elem);
        if let (Some(to), Some(from)) = (dst.get_mut(d..d + elem), src.get(s..s + elem)) {
            to.copy_from_slice(from);
        }
    }
}

/// Row-major bytes of a tensor whatever its dim order (for writing outputs out).
pub fn to_contiguous_bytes(t: &Tensor<'_>) -> std::result::Result<Vec<u8>, KernelError> {
    let bytes = t.bytes()?;
    if t.dim_order().is_contiguous() {
        return Ok(bytes.to_vec());
    }
    let elem = align_of(t.dtype());
    let shape = t.shape();
    let mut out = vec![0u8; bytes.len()];
    let src_strides = t.strides();
    let dst_strides = etch_kernels::shape::strides_for(&shape, &DimOrder::contiguous(shape.rank()));
    for [d, s] in etch_kernels::shape::StridedIter::new(&shape, [dst_strides, src_strides]) {
        let (d, s) = (d * elem, s * elem);
        if let (Some(to), Some(from)) = (out.get_mut(d..d + elem), bytes.get(s..s + elem)) {
            to.copy_from_slice(from);
        }
    }
    Ok(out)
}

type Instructions = (Vec<Step>, Vec<u32>, Vec<(Arc<str>, usize)>, Vec<Box<dyn DelegateHandle>>, Vec<(u32, u32)>);

impl Builder<'_> {
    /// Creates every tensor: placement, alignment, initial data.
    #[allow(clippy::type_complexity)]
    fn tensors(
        &self,
        memory: &mut MemoryManager<'_>,
    ) -> Result<(Vec<TensorImpl>, Vec<Region>, Vec<Option<TensorId>>, Vec<AlignedBuf>)> {
        let file = self.program.bytes();
        let inputs: BTreeSet<u32> = self.def.inputs.iter().copied().collect();
        let (mut tensors, mut regions, mut of_value, mut owned) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (vi, v) in self.def.values.iter().enumerate() {
            let ValueDef::Tensor(t) = v else {
                of_value.push(None);
                continue;
            };
            let bad = |reason: String, kind| self.invalid(format!("value {vi}: {reason}"), kind);
            if t.dynamism == ShapeDynamism::DynamicUnbound {
                return Err(bad("DYNAMIC_UNBOUND tensors are not supported".into(), ErrorKind::NotSupported));
            }
            let dtype = t.scalar_type;
            let align = align_of(dtype);
            let shape = Shape::new(&t.sizes).ok_or_else(|| bad("rank above 16".into(), ErrorKind::InvalidProgram))?;
            let order =
                DimOrder::new(&t.dim_order).ok_or_else(|| bad("bad dim order".into(), ErrorKind::InvalidProgram))?;
            let (ptr, writable, region) = match &t.data {
                TensorData::Planned { buffer, offset, initial } => {
                    let (base, len) = memory
                        .base(*buffer)
                        .ok_or_else(|| bad("planned buffer missing".into(), ErrorKind::InvalidProgram))?;
                    // The parser checked offset + nbytes <= planned size <= len.
                    let offset =
                        usize::try_from(*offset).ok().filter(|o| o.checked_add(t.nbytes).is_some_and(|e| e <= len));
                    let offset = offset
                        .ok_or_else(|| bad("planned placement outside its buffer".into(), ErrorKind::InvalidProgram))?;
                    let ptr = base.wrapping_add(offset);
                    if !(ptr as usize).is_multiple_of(align) {
                        return Err(bad(
                            format!("planned offset {offset} is not aligned for {dtype}"),
                            ErrorKind::InvalidProgram,
                        ));
                    }
                    if let Some(init) = initial {
                        let src = init.slice(file).filter(|s| s.len() == t.nbytes);
                        let src =
                            src.ok_or_else(|| bad("initial data outside the file".into(), ErrorKind::InvalidProgram))?;
                        // SAFETY: `ptr..ptr + nbytes` lies inside planned buffer `buffer` (checked
                        // above), which the memory manager holds exclusively; `src` is program bytes,
                        // a different allocation.
                        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), ptr, t.nbytes) };
                    }
                    let region =
                        Region::Planned { buffer: *buffer, start: offset as u64, end: (offset + t.nbytes) as u64 };
                    (ptr, true, region)
                }
                TensorData::Constant(range) => {
                    let src = range
                        .slice(file)
                        .ok_or_else(|| bad("constant outside the file".into(), ErrorKind::InvalidProgram))?;
                    let ptr = if (src.as_ptr() as usize).is_multiple_of(align) {
                        src.as_ptr().cast_mut()
                    } else {
                        // Misaligned in the file (legacy layouts): use an aligned copy.
                        let mut buf = AlignedBuf::copy_of(src)
                            .ok_or_else(|| bad("constant too large".into(), ErrorKind::MemoryAllocationFailed))?;
                        let p = buf.as_mut_ptr();
                        owned.push(buf);
                        p
                    };
                    (ptr, false, Region::Constant)
                }
                TensorData::External(fqn) => {
                    return Err(bad(
                        format!("external tensor data '{fqn}' is not supported"),
                        ErrorKind::InvalidExternalData,
                    ));
                }
                TensorData::Unplanned if inputs.contains(&(vi as u32)) => {
                    let mut buf = AlignedBuf::zeroed(t.nbytes)
                        .ok_or_else(|| bad("input too large".into(), ErrorKind::MemoryAllocationFailed))?;
                    let p = buf.as_mut_ptr();
                    owned.push(buf);
                    (p, true, Region::Private)
                }
                TensorData::Unplanned => (std::ptr::null_mut(), true, Region::Private),
            };
            let capacity = if ptr.is_null() { 0 } else { t.nbytes };
            let id = TensorId(
                u32::try_from(tensors.len()).map_err(|_| bad("too many tensors".into(), ErrorKind::InvalidProgram))?,
            );
            // SAFETY: `ptr` is null, or valid for `capacity` bytes: planned memory owned by the
            // manager, program bytes kept alive by the Program the method holds (read-only: not
            // writable), or an AlignedBuf the method keeps in `_owned`. Only tensor views derived
            // from this TensorImpl access those bytes, under the method's alias rules.
            let imp = unsafe {
                TensorImpl::new(dtype, shape, order, t.dynamism == ShapeDynamism::DynamicBound, writable, ptr, capacity)
            };
            tensors.push(imp);
            regions.push(region);
            of_value.push(Some(id));
        }
        Ok((tensors, regions, of_value, owned))
    }

    /// Converts values to runtime values and list pools.
    fn values(&self, tensor_of_value: &[Option<TensorId>]) -> Result<(Vec<EValue>, ListPool)> {
        let (mut indices, mut doubles, mut bools, mut strings) = (Vec::new(), Vec::new(), Vec::new(), String::new());
        let mut values = Vec::with_capacity(self.def.values.len());
        let too_big = || self.invalid("list data too large".into(), ErrorKind::InvalidProgram);
        for (vi, v) in self.def.values.iter().enumerate() {
            let e = match v {
                ValueDef::None => EValue::None,
                ValueDef::Int(i) => EValue::Int(*i),
                ValueDef::Bool(b) => EValue::Bool(*b),
                ValueDef::Double(d) => EValue::Double(*d),
                ValueDef::String(s) => {
                    let sp = span(strings.len(), s.len()).ok_or_else(too_big)?;
                    strings.push_str(s);
                    EValue::String(sp)
                }
                ValueDef::IntList(items) | ValueDef::TensorList(items) => {
                    let sp = span(indices.len(), items.len()).ok_or_else(too_big)?;
                    indices.extend_from_slice(items);
                    if matches!(v, ValueDef::IntList(_)) { EValue::IntList(sp) } else { EValue::TensorList(sp) }
                }
                ValueDef::OptionalTensorList(items) => {
                    let sp = span(indices.len(), items.len()).ok_or_else(too_big)?;
                    indices.extend(items.iter().map(|i| i.unwrap_or(NONE_INDEX)));
                    EValue::OptionalTensorList(sp)
                }
                ValueDef::DoubleList(items) => {
                    let sp = span(doubles.len(), items.len()).ok_or_else(too_big)?;
                    doubles.extend_from_slice(items);
                    EValue::DoubleList(sp)
                }
                ValueDef::BoolList(items) => {
                    let sp = span(bools.len(), items.len()).ok_or_else(too_big)?;
                    bools.extend_from_slice(items);
                    EValue::BoolList(sp)
                }
                ValueDef::Tensor(_) => match tensor_of_value.get(vi) {
                    Some(Some(id)) => EValue::Tensor(*id),
                    _ => return Err(self.invalid(format!("value {vi}: tensor missing"), ErrorKind::Internal)),
                },
            };
            values.push(e);
        }
        let pool =
            ListPool { indices: indices.into(), doubles: doubles.into(), bools: bools.into(), strings: strings.into() };
        Ok((values, pool))
    }

    /// Resolves kernels and delegates and checks each call against its schema.
    fn instructions(&self, runtime: &Runtime, values: &[EValue]) -> Result<Instructions> {
        let def = self.def;
        let file = self.program.bytes();
        let named = ProgramNamedData { program: self.program };
        let mut delegates: Vec<Box<dyn DelegateHandle>> = Vec::new();
        for (di, d) in def.delegates.iter().enumerate() {
            // The first call of each delegate names it in errors.
            let first = def
                .instructions
                .iter()
                .position(|i| matches!(i, InstructionDef::Delegate { delegate, .. } if *delegate as usize == di))
                .unwrap_or(0);
            let at = self.site(first, &d.backend_id);
            let backend = runtime
                .backends()
                .get(&d.backend_id)
                .filter(|b| b.is_available())
                .ok_or_else(|| Error::BackendMissing { at: at.clone(), backend: d.backend_id.clone() })?;
            let processed = d.processed.slice(file).unwrap_or(&[]);
            let specs: Vec<CompileSpec<'_>> = d
                .compile_specs
                .iter()
                .map(|s| CompileSpec { key: &s.key, value: s.value.slice(file).unwrap_or(&[]) })
                .collect();
            let ctx = InitContext { method_name: &def.name, named_data: &named };
            let handle = backend.init(&ctx, processed, &specs).map_err(|source| Error::Delegate { at, source })?;
            delegates.push(handle);
        }

        let op_names: Vec<Arc<str>> = def.operators.iter().map(|o| Arc::from(o.qualified_name())).collect();
        let (mut steps, mut pool, mut sites, mut moves) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let push_args = |pool: &mut Vec<u32>, args: &[u32], i: usize, name: &str| -> Result<Span> {
            span(pool.len(), args.len()).inspect(|_| pool.extend_from_slice(args)).ok_or_else(|| {
                Error::InvalidInstruction { at: self.site(i, name), reason: "too many arguments".into() }
            })
        };
        for (i, ins) in def.instructions.iter().enumerate() {
            let offset = def.instruction_offsets.get(i).copied().unwrap_or(0);
            let (step, name): (Step, Arc<str>) = match ins {
                InstructionDef::Kernel { op, args } => {
                    let name = op_names.get(*op as usize).cloned().unwrap_or_else(|| "?".into());
                    let at = || self.site(i, &name);
                    let kernel = runtime
                        .kernels()
                        .get(&name)
                        .ok_or_else(|| Error::OperatorMissing { at: at(), operator: name.to_string() })?;
                    let schema = &kernel.schema;
                    if args.len() != schema.slot_count() {
                        return Err(Error::InvalidInstruction {
                            at: at(),
                            reason: format!(
                                "the operator takes {} values ({} arguments, {} returns), the call passes {}",
                                schema.slot_count(),
                                schema.args.len(),
                                schema.returns.len(),
                                args.len()
                            ),
                        });
                    }
                    let n_args = schema.args.len();
                    for (p, spec) in schema.args.iter().enumerate() {
                        let v = &def.values[args[p] as usize];
                        if !kind_fits(&spec.ty, v) {
                            return Err(Error::InvalidInstruction {
                                at: at(),
                                reason: format!(
                                    "argument {p} '{}' is {} (value {}), the schema says {}",
                                    spec.name,
                                    v.kind_name(),
                                    args[p],
                                    spec.ty
                                ),
                            });
                        }
                    }
                    // Returns that alias an `out` argument must repeat it; the kernel never sees them.
                    let mut all_alias = true;
                    for (j, r) in schema.returns.iter().enumerate() {
                        match r.aliases_arg {
                            Some(a) if args[n_args + j] == args[a] => {}
                            Some(_) => {
                                return Err(Error::InvalidInstruction {
                                    at: at(),
                                    reason: format!("return {j} does not repeat its out argument"),
                                });
                            }
                            None => all_alias = false,
                        }
                    }
                    let shown = if all_alias { &args[..n_args] } else { &args[..] };
                    if !all_alias && schema.returns.iter().any(|r| r.aliases_arg.is_some()) {
                        return Err(Error::InvalidInstruction {
                            at: at(),
                            reason: "mixed aliased and fresh returns are not supported".into(),
                        });
                    }
                    let span = push_args(&mut pool, shown, i, &name)?;
                    (Step::Kernel { run: kernel.run, args: span, writable: schema.writable_mask() }, name)
                }
                InstructionDef::Delegate { delegate, args } => {
                    let d = &def.delegates[*delegate as usize];
                    let name: Arc<str> = Arc::from(format!("delegate {}", d.backend_id));
                    if args.len() > MAX_ARGS {
                        return Err(Error::InvalidInstruction {
                            at: self.site(i, &name),
                            reason: format!("{} arguments; etch supports {MAX_ARGS}", args.len()),
                        });
                    }
                    let n = args.len();
                    let outputs = delegates[*delegate as usize].num_outputs().unwrap_or(n).min(n);
                    let mut writable = 0u64;
                    for (p, &v) in args.iter().enumerate().skip(n - outputs) {
                        if matches!(values.get(v as usize), Some(EValue::Tensor(_))) {
                            writable |= 1 << p;
                        }
                    }
                    let span = push_args(&mut pool, args, i, &name)?;
                    (Step::Delegate { delegate: *delegate, args: span, writable }, name)
                }
                InstructionDef::Move { from, to } => {
                    moves.push((*from, *to));
                    (Step::Move { from: *from, to: *to }, "MoveCall".into())
                }
                InstructionDef::JumpFalse { cond, destination } => {
                    (Step::JumpFalse { cond: *cond, destination: *destination }, "JumpFalseCall".into())
                }
                InstructionDef::Free { value } => (Step::Free { value: *value }, "FreeCall".into()),
            };
            steps.push(step);
            sites.push((name, offset));
        }
        Ok((steps, pool, sites, delegates, moves))
    }
}
