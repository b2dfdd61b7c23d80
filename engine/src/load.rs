//! Method load: from a checked `MethodDef` to placed tensors, runtime values and resolved steps,
//! plus the dependency analysis both `Method` and `etch inspect` use.

use std::collections::BTreeSet;
use std::sync::Arc;

use etch_delegates::{CompileSpec, DelegateHandle, InitContext, NamedData};
use etch_kernels::{DType, DimOrder, EValue, ListPool, MAX_ARGS, NONE_INDEX, Shape, Span, TensorId, TensorImpl};
use etch_schema::{InstructionDef, MethodDef, ShapeDynamism, TensorData, ValueDef};

use crate::alias::{PointsTo, Region};
use crate::dag::{self, Accesses, BlockRange, PlannedTensor, Replan, StepShape};
use crate::error::{Error, ErrorKind, InstructionSite, Result};
use crate::exec::{NOT_PREPARED, Step};
use crate::memory::{AlignedBuf, MemoryManager};
use crate::program::{Program, Runtime};

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

pub(crate) fn align_of(dtype: DType) -> usize {
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

fn span(start: usize, len: usize) -> Option<Span> {
    Some(Span { start: u32::try_from(start).ok()?, len: u32::try_from(len).ok()? })
}

/// A method's instructions resolved against a runtime.
pub(crate) struct Instructions {
    pub steps: Vec<Step>,
    pub arg_pool: Vec<u32>,
    /// Per instruction: operator name (or backend id / kind) and byte offset.
    pub sites: Vec<(Arc<str>, usize)>,
    pub delegates: Vec<Box<dyn DelegateHandle>>,
    /// (from, to) of every MoveCall.
    pub moves: Vec<(u32, u32)>,
    /// Per instruction: a kernel call whose kernel is pure (may be constant-folded).
    pub pure: Vec<bool>,
}

/// Builds a method's runtime pieces from its definition.
pub(crate) struct Builder<'p> {
    pub program: &'p Program,
    pub def: &'p MethodDef,
    pub method: Arc<str>,
}

impl Builder<'_> {
    pub(crate) fn site(&self, instruction: usize, operator: &str) -> InstructionSite {
        InstructionSite {
            method: self.method.clone(),
            instruction,
            byte_offset: self.def.instruction_offsets.get(instruction).copied().unwrap_or(0),
            operator: operator.into(),
        }
    }

    pub(crate) fn invalid(&self, reason: String, kind: ErrorKind) -> Error {
        Error::InvalidMethod { method: self.method.to_string(), reason, kind }
    }

    /// Tensor id of each value (None for non-tensors), in value order.
    pub(crate) fn tensor_ids(&self) -> Vec<Option<TensorId>> {
        let mut next = 0u32;
        self.def
            .values
            .iter()
            .map(|v| match v {
                ValueDef::Tensor(_) => {
                    let id = TensorId(next);
                    next += 1;
                    Some(id)
                }
                _ => None,
            })
            .collect()
    }

    /// Who may hold which tensor, over storage classes (see [`Builder::storage_classes`]).
    pub(crate) fn points_to(
        &self,
        ins: &Instructions,
        values: &[EValue],
        pool: &ListPool,
        ids: &[Option<TensorId>],
    ) -> PointsTo {
        let raw = PointsTo::new(values, &ins.moves);
        let storage = self.storage_classes(ins, values, pool, ids, &raw);
        PointsTo::new(values, &ins.moves).with_storage(storage)
    }

    /// Storage classes of planned tensors. The exporter removes view operators (reshapes,
    /// squeezes...) by placing the view's tensor on its base's bytes: no instruction writes the
    /// view, yet it holds what the base's writer wrote. Such a tensor (read, never written, not an
    /// input, no initial data) joins the class of the overlapping tensor written last before its
    /// first read (program order; inputs and mutable state count as written before the first
    /// instruction). Returns each tensor's class representative.
    fn storage_classes(
        &self,
        ins: &Instructions,
        values: &[EValue],
        pool: &ListPool,
        ids: &[Option<TensorId>],
        raw: &PointsTo,
    ) -> Vec<TensorId> {
        let n = ids.iter().flatten().count();
        let mut class: Vec<u32> = (0..n as u32).collect();
        fn find(class: &mut [u32], t: u32) -> u32 {
            let mut r = t;
            while class[r as usize] != r {
                r = class[r as usize];
            }
            class[t as usize] = r;
            r
        }
        // (buffer, start, end) of each planned tensor; `seeded`: holds data before instruction 0.
        let mut place: Vec<Option<(usize, u64, u64)>> = vec![None; n];
        let mut seeded = vec![false; n];
        for (vi, v) in self.def.values.iter().enumerate() {
            if let (ValueDef::Tensor(t), Some(Some(id))) = (v, ids.get(vi))
                && let TensorData::Planned { buffer, offset, initial } = &t.data
                && t.nbytes > 0
            {
                let k = id.0 as usize;
                place[k] = Some((*buffer, *offset, offset.saturating_add(t.nbytes as u64)));
                seeded[k] = initial.is_some();
            }
        }
        for &v in &self.def.inputs {
            if let Some(Some(id)) = ids.get(v as usize) {
                seeded[id.0 as usize] = true;
            }
        }
        let shapes = step_shapes(&ins.steps, &ins.arg_pool);
        let accesses: Vec<Accesses> = shapes.iter().map(|s| dag::accesses(*s, values, pool, raw)).collect();
        let mut written = vec![false; n];
        for a in &accesses {
            for t in &a.write_tensors {
                if let Some(w) = written.get_mut(t.0 as usize) {
                    *w = true;
                }
            }
        }
        // Time of the latest write so far: 0 for seeded tensors, i + 1 after instruction i.
        let mut last_write: Vec<Option<usize>> = seeded.iter().map(|&s| s.then_some(0)).collect();
        let mut resolved = vec![false; n];
        for (i, a) in accesses.iter().enumerate() {
            for &x in &a.read_tensors {
                let k = x.0 as usize;
                if k >= n || resolved[k] || written[k] || seeded[k] {
                    continue;
                }
                resolved[k] = true;
                let Some((buffer, start, end)) = place[k] else { continue };
                let base = (0..n)
                    .filter(|&y| y != k)
                    .filter_map(|y| {
                        let (b, s, e) = place[y]?;
                        (b == buffer && s < end && start < e).then_some((last_write[y]?, y))
                    })
                    .max();
                if let Some((_, y)) = base {
                    let root = find(&mut class, y as u32);
                    class[k] = root;
                }
            }
            for t in &a.write_tensors {
                if let Some(w) = last_write.get_mut(t.0 as usize) {
                    *w = Some(i + 1);
                }
            }
        }
        (0..n as u32).map(|t| TensorId(find(&mut class, t))).collect()
    }

    /// Kernel calls that can run once at load: a pure kernel whose read arguments are all constant
    /// tensors or literals nothing writes, and whose written arguments are static planned tensors
    /// that only this call writes and that are neither inputs nor outputs of the method.
    pub(crate) fn foldable(
        &self,
        ins: &Instructions,
        values: &[EValue],
        pool: &ListPool,
        pt: &PointsTo,
        ids: &[Option<TensorId>],
    ) -> Vec<bool> {
        let shapes = step_shapes(&ins.steps, &ins.arg_pool);
        let accesses: Vec<Accesses> = shapes.iter().map(|s| dag::accesses(*s, values, pool, pt)).collect();
        let tensor_count = ids.iter().flatten().count();
        let mut writers = vec![0u32; tensor_count];
        let mut written_values = vec![false; values.len()];
        for a in &accesses {
            for t in &a.write_tensors {
                if let Some(w) = writers.get_mut(t.0 as usize) {
                    *w += 1;
                }
            }
            for &v in &a.write_values {
                if let Some(w) = written_values.get_mut(v as usize) {
                    *w = true;
                }
            }
        }
        // A folded output moves to memory of its own; its views would be left behind.
        let class_size = pt.class_sizes(tensor_count);
        let mut tensor_def = vec![None; tensor_count];
        for (vi, v) in self.def.values.iter().enumerate() {
            if let (ValueDef::Tensor(t), Some(Some(id))) = (v, ids.get(vi))
                && let Some(slot) = tensor_def.get_mut(id.0 as usize)
            {
                *slot = Some(t);
            }
        }
        let external: BTreeSet<u32> = self.def.inputs.iter().chain(&self.def.outputs).copied().collect();
        let is_constant = |t: &TensorId| matches!(tensor_def.get(t.0 as usize), Some(Some(d)) if matches!(d.data, TensorData::Constant(_)));
        shapes
            .iter()
            .zip(&accesses)
            .zip(&ins.pure)
            .map(|((shape, a), &pure)| {
                let StepShape::Call { args, writable } = *shape else { return false };
                if !pure || writable == 0 || args.iter().any(|v| external.contains(v)) {
                    return false;
                }
                let reads_constants = a.read_tensors.iter().all(is_constant)
                    && a.read_values.iter().all(|&v| !written_values.get(v as usize).copied().unwrap_or(true));
                let writes_private = a.write_tensors.iter().all(|t| {
                    class_size.get(t.0 as usize) == Some(&1)
                        && writers.get(t.0 as usize) == Some(&1)
                        && matches!(tensor_def.get(t.0 as usize), Some(Some(d))
                            if d.dynamism == ShapeDynamism::Static && matches!(d.data, TensorData::Planned { initial: None, .. }))
                });
                // Every written position must be a plain tensor (no lists, no scalar returns).
                let tensor_outputs = args
                    .iter()
                    .enumerate()
                    .filter(|(p, _)| *p < 64 && writable & (1 << p) != 0)
                    .all(|(_, &v)| matches!(values.get(v as usize), Some(EValue::Tensor(_))));
                reads_constants && writes_private && tensor_outputs && !a.write_tensors.is_empty()
            })
            .collect()
    }

    /// The exporter's placement of every tensor, as regions (for hazards and plan comparison).
    pub(crate) fn exporter_regions(&self) -> Vec<Region> {
        self.def
            .values
            .iter()
            .filter_map(|v| match v {
                ValueDef::Tensor(t) => Some(match &t.data {
                    TensorData::Planned { buffer, offset, .. } => {
                        Region::Planned { buffer: *buffer, start: *offset, end: offset.saturating_add(t.nbytes as u64) }
                    }
                    TensorData::Constant(_) => Region::Constant,
                    _ => Region::Private,
                }),
                _ => None,
            })
            .collect()
    }

    /// Creates every tensor: placement (the exporter's offsets, or `plan`'s), alignment, initial
    /// data. Memory for data derived at load (folded results, fused constants, aligned copies of
    /// constants) comes from `derived`: shared with an earlier load, those tensors are read-only
    /// from the start and their data is already there (folded calls must then not run).
    #[allow(clippy::type_complexity)]
    pub(crate) fn tensors(
        &self,
        memory: &mut MemoryManager<'_>,
        plan: Option<&Replan>,
        folded: &BTreeSet<TensorId>,
        fused: crate::fuse::FusedConstants,
        derived: &mut crate::derived::BufferSource<'_>,
    ) -> Result<(Vec<TensorImpl>, Vec<Region>, Vec<Option<TensorId>>, Vec<AlignedBuf>)> {
        let shared = derived.is_shared();
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
                // Computed once at load: memory of its own, read-only afterwards.
                TensorData::Planned { .. } if folded.contains(&TensorId(tensors.len() as u32)) => {
                    let p = derived
                        .take(t.nbytes, || AlignedBuf::for_writing(t.nbytes))
                        .ok_or_else(|| bad("folded constant too large".into(), ErrorKind::MemoryAllocationFailed))?;
                    (p, !shared, Region::Constant)
                }
                TensorData::Planned { buffer, offset, initial } => {
                    let id = tensors.len();
                    let offset = &plan.and_then(|p| p.offsets.get(id).copied().flatten()).unwrap_or(*offset);
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
                        derived
                            .take(src.len(), || AlignedBuf::copy_of(src))
                            .ok_or_else(|| bad("constant too large".into(), ErrorKind::MemoryAllocationFailed))?
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
            // writable), or an AlignedBuf the method keeps in `_owned` or in its derived data
            // (read-only when shared with other methods: not writable). Only tensor views derived
            // from this TensorImpl access those bytes, under the method's alias rules.
            let imp = unsafe {
                TensorImpl::new(dtype, shape, order, t.dynamism == ShapeDynamism::DynamicBound, writable, ptr, capacity)
            };
            tensors.push(imp);
            regions.push(region);
            of_value.push(Some(id));
        }
        // Constants made by fusion: values appended after the program's, in tensor id order.
        if let Some(arena) = fused.arena {
            let arena_len = arena.len();
            let base = derived.take(arena_len, || Some(arena)).ok_or_else(|| {
                self.invalid("fused constants differ from the shared ones".into(), ErrorKind::Internal)
            })?;
            for c in fused.items {
                let bad = || self.invalid("fused constant".into(), ErrorKind::Internal);
                let shape = Shape::new(&c.sizes).ok_or_else(bad)?;
                let id = TensorId(u32::try_from(tensors.len()).map_err(|_| bad())?);
                if c.range.start > c.range.end || c.range.end > arena_len {
                    return Err(bad());
                }
                let (ptr, len) = (base.wrapping_add(c.range.start), c.range.end - c.range.start);
                // SAFETY: `ptr..ptr + len` is inside the arena (range checked just above), an
                // AlignedBuf the method keeps alive in its derived data (moving the buffer does
                // not move its memory); the tensor is read-only.
                let imp = unsafe {
                    TensorImpl::new(c.dtype, shape, DimOrder::contiguous(c.sizes.len()), false, false, ptr, len)
                };
                tensors.push(imp);
                regions.push(Region::Constant);
                of_value.push(Some(id));
            }
        }
        Ok((tensors, regions, of_value, owned))
    }

    /// Converts values to runtime values and list pools.
    pub(crate) fn values(&self, tensor_of_value: &[Option<TensorId>]) -> Result<(Vec<EValue>, ListPool)> {
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

    /// Resolves kernels and, if `init_delegates`, initialises delegates; checks each call against
    /// its schema. Without delegate handles, every tensor argument of a delegate call counts as
    /// written.
    pub(crate) fn instructions(
        &self,
        runtime: &Runtime,
        values: &[EValue],
        init_delegates: bool,
    ) -> Result<Instructions> {
        let def = self.def;
        let file = self.program.bytes();
        let named = ProgramNamedData { program: self.program };
        let mut delegates: Vec<Box<dyn DelegateHandle>> = Vec::new();
        for (di, d) in def.delegates.iter().enumerate().filter(|_| init_delegates) {
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
        let mut pure = Vec::new();
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
                    let n_args = schema.args.len();
                    // The exporter passes several returns as one TensorList value naming the out
                    // tensors (e.g. batch norm's output, mean and invstd).
                    let packed_returns = schema.returns.len() > 1
                        && args.len() == n_args + 1
                        && matches!(def.values.get(args[n_args] as usize), Some(ValueDef::TensorList(_)));
                    // An op that writes a list of outputs and returns nothing (`-> ()`, e.g.
                    // split_with_sizes_copy) gets the out list once more as its return value;
                    // accept it when it names the same tensors, and never pass it on.
                    let repeated_out_list = schema.returns.is_empty()
                        && args.len() == n_args + 1
                        && schema.args.last().is_some_and(|a| a.mutable)
                        && n_args > 0
                        && matches!(
                            (def.values.get(args[n_args - 1] as usize), def.values.get(args[n_args] as usize)),
                            (Some(ValueDef::TensorList(a)), Some(ValueDef::TensorList(b))) if a == b
                        );
                    let args = if repeated_out_list { &args[..n_args] } else { &args[..] };
                    if args.len() != schema.slot_count() && !packed_returns {
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
                    let return_value = |j: usize| -> Option<u32> {
                        if packed_returns {
                            match def.values.get(args[n_args] as usize) {
                                Some(ValueDef::TensorList(items)) => items.get(j).copied(),
                                _ => None,
                            }
                        } else {
                            args.get(n_args + j).copied()
                        }
                    };
                    if packed_returns
                        && !matches!(def.values.get(args[n_args] as usize), Some(ValueDef::TensorList(items)) if items.len() == schema.returns.len())
                    {
                        return Err(Error::InvalidInstruction {
                            at: at(),
                            reason: format!("the returns list must name {} tensors", schema.returns.len()),
                        });
                    }
                    let mut all_alias = true;
                    for (j, r) in schema.returns.iter().enumerate() {
                        match r.aliases_arg {
                            Some(a) if return_value(j) == Some(args[a]) => {}
                            Some(_) => {
                                return Err(Error::InvalidInstruction {
                                    at: at(),
                                    reason: format!("return {j} does not repeat its out argument"),
                                });
                            }
                            None => all_alias = false,
                        }
                    }
                    let shown = if all_alias { &args[..n_args] } else { args };
                    if !all_alias && schema.returns.iter().any(|r| r.aliases_arg.is_some()) {
                        return Err(Error::InvalidInstruction {
                            at: at(),
                            reason: "mixed aliased and fresh returns are not supported".into(),
                        });
                    }
                    let span = push_args(&mut pool, shown, i, &name)?;
                    pure.resize(i, false);
                    pure.push(kernel.pure);
                    (
                        Step::Kernel {
                            run: kernel.run,
                            args: span,
                            writable: schema.writable_mask(),
                            prepared: NOT_PREPARED,
                        },
                        name,
                    )
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
                    let outputs = delegates.get(*delegate as usize).and_then(|h| h.num_outputs()).unwrap_or(n).min(n);
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
        pure.resize(steps.len(), false);
        Ok(Instructions { steps, arg_pool: pool, sites, delegates, moves, pure })
    }
}

/// Output tensors of folded calls: computed once at load into memory of their own.
pub(crate) fn folded_outputs(
    steps: &[Step],
    folded: &[bool],
    arg_pool: &[u32],
    values: &[EValue],
) -> BTreeSet<TensorId> {
    let mut out = BTreeSet::new();
    for (s, _) in steps.iter().zip(folded).filter(|(_, f)| **f) {
        if let Step::Kernel { args, writable, .. } = s {
            for (p, &v) in crate::exec::pool_slice(arg_pool, *args).iter().enumerate() {
                if p < 64
                    && writable & (1 << p) != 0
                    && let Some(EValue::Tensor(id)) = values.get(v as usize)
                {
                    out.insert(*id);
                }
            }
        }
    }
    out
}

/// Per-step shapes for the dependency analysis.
pub(crate) fn step_shapes<'a>(steps: &[Step], arg_pool: &'a [u32]) -> Vec<StepShape<'a>> {
    steps
        .iter()
        .map(|s| match *s {
            Step::Kernel { args, writable, .. } | Step::Delegate { args, writable, .. } => {
                StepShape::Call { args: crate::exec::pool_slice(arg_pool, args), writable }
            }
            Step::Move { from, to } => StepShape::Move { from, to },
            Step::JumpFalse { cond, destination } => StepShape::JumpFalse { cond, destination },
            Step::Free { value } => StepShape::Free { value },
            Step::Nop => StepShape::Nop,
        })
        .collect()
}

/// The dependency structure of a method, independent of where tensors are placed.
pub(crate) struct Analysis {
    pub accesses: Vec<Accesses>,
    pub blocks: Vec<BlockRange>,
    pub tensor_count: usize,
    pub value_count: usize,
}

impl Analysis {
    pub(crate) fn new(
        shapes: &[StepShape<'_>],
        values: &[EValue],
        pool: &ListPool,
        pt: &PointsTo,
        tensor_count: usize,
    ) -> Analysis {
        let accesses = shapes.iter().map(|s| dag::accesses(*s, values, pool, pt)).collect();
        Analysis { accesses, blocks: dag::blocks(shapes), tensor_count, value_count: values.len() }
    }

    /// Edges of block `b` under the placement described by `overlaps` (hazards where bytes
    /// overlap), in program order; nodes are block-relative instruction indices.
    pub(crate) fn block_edges(&self, b: &BlockRange, overlaps: &[Vec<TensorId>]) -> Vec<(u32, u32)> {
        let acc: Vec<&Accesses> = self.accesses[b.start..b.end].iter().collect();
        dag::edges(&acc, self.tensor_count, self.value_count, overlaps)
    }

    /// Edges of block `b` when its instructions run in `order` (block-relative indices); node `k`
    /// of the result is instruction `b.start + order[k]`.
    pub(crate) fn block_edges_in(&self, b: &BlockRange, order: &[u32], overlaps: &[Vec<TensorId>]) -> Vec<(u32, u32)> {
        let acc: Vec<&Accesses> = order.iter().filter_map(|&i| self.accesses.get(b.start + i as usize)).collect();
        dag::edges(&acc, self.tensor_count, self.value_count, overlaps)
    }

    /// The critical path (in `costs`, indexed by instruction) of block `block` run as a graph in
    /// `r`'s order, with hazard edges wherever `r` gives two of `planned` the same bytes.
    fn placement_critical_path(&self, block: &BlockRange, r: &Replan, planned: &[PlannedTensor], costs: &[f64]) -> f64 {
        let mut regions = vec![Region::Private; self.tensor_count];
        for p in planned {
            if let (Some(slot), Some(&Some(start))) =
                (regions.get_mut(p.tensor.0 as usize), r.offsets.get(p.tensor.0 as usize))
            {
                *slot = Region::Planned { buffer: p.buffer, start, end: start.saturating_add(p.nbytes) };
            }
        }
        let edges = self.block_edges_in(block, &r.order, &dag::overlaps(&regions));
        let graph = dag::block_graph(edges, block.end - block.start);
        let ordered: Vec<f64> = r.order.iter().map(|&i| costs.get(i as usize).copied().unwrap_or(0.0)).collect();
        graph.critical_path(&ordered)
    }

    /// A concurrency-aware placement, or `None` when the method has control flow (several blocks)
    /// or no planned tensors.
    pub(crate) fn replan(
        &self,
        def: &MethodDef,
        tensor_ids: &[Option<TensorId>],
        outputs_live: &BTreeSet<TensorId>,
        folded: &BTreeSet<TensorId>,
        pt: &PointsTo,
        workers: usize,
    ) -> Option<Replan> {
        if self.blocks.len() != 1 || def.planned_buffer_sizes.is_empty() {
            return None;
        }
        let block = self.blocks[0];
        let graph = dag::block_graph(self.block_edges(&block, &[]), block.end - block.start);
        let before = graph.reachability();
        // A static cost model for the schedule: bytes an instruction touches (a proxy for memory
        // traffic; exact costs are only known after running).
        let mut tensor_bytes = vec![0u64; self.tensor_count];
        for (vi, v) in def.values.iter().enumerate() {
            if let (ValueDef::Tensor(t), Some(Some(id))) = (v, tensor_ids.get(vi))
                && let Some(b) = tensor_bytes.get_mut(id.0 as usize)
            {
                *b = t.nbytes as u64;
            }
        }
        let costs: Vec<f64> = self.accesses[block.start..block.end]
            .iter()
            .map(|a| {
                1.0 + a.tensors().map(|t| tensor_bytes.get(t.0 as usize).copied().unwrap_or(0) as f64).sum::<f64>()
            })
            .collect();
        // Accesses per tensor, in block-relative instruction indices.
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); self.tensor_count];
        let mut first_is_read = vec![None::<bool>; self.tensor_count];
        let mut written = vec![false; self.tensor_count];
        for (i, a) in self.accesses[block.start..block.end].iter().enumerate() {
            for t in a.tensors() {
                if let Some(l) = lists.get_mut(t.0 as usize) {
                    l.push(i as u32);
                }
            }
            for &t in &a.read_tensors {
                if let Some(f) = first_is_read.get_mut(t.0 as usize) {
                    f.get_or_insert(!a.write_tensors.contains(&t));
                }
            }
            for &t in &a.write_tensors {
                if let Some(f) = first_is_read.get_mut(t.0 as usize) {
                    f.get_or_insert(false);
                }
                if let Some(w) = written.get_mut(t.0 as usize) {
                    *w = true;
                }
            }
        }
        let inputs: BTreeSet<u32> = def.inputs.iter().copied().collect();
        // One placement per storage class (a base and its views): the class's extent in the
        // exporter's plan, its members keeping their offsets relative to it.
        struct Class {
            buffer: usize,
            start: u64,
            end: u64,
            live_in: bool,
            live_out: bool,
            /// Holds a method input (see `keep_inputs` below).
            input: bool,
        }
        let mut classes: Vec<Option<Class>> = (0..self.tensor_count).map(|_| None).collect();
        let mut members: Vec<(TensorId, TensorId, u64)> = Vec::new(); // (tensor, class, exporter offset)
        for (vi, v) in def.values.iter().enumerate() {
            let (ValueDef::Tensor(t), Some(Some(id))) = (v, tensor_ids.get(vi)) else { continue };
            let TensorData::Planned { buffer, offset, initial } = &t.data else { continue };
            if folded.contains(id) {
                continue;
            }
            let c = pt.canonical(*id);
            let k = c.0 as usize;
            // Read before any write: the value comes from outside this execution (an input, or
            // state kept in planned memory between executions).
            let read_first = first_is_read.get(k).copied().flatten().unwrap_or(false);
            let state = initial.is_some() || (read_first && written.get(k).copied().unwrap_or(false));
            let is_input = inputs.contains(&(vi as u32));
            let live_in = is_input || read_first || state;
            let live_out = outputs_live.contains(&c) || state;
            let end = offset.saturating_add(t.nbytes as u64);
            let Some(slot) = classes.get_mut(k) else { continue };
            match slot {
                None => {
                    *slot = Some(Class { buffer: *buffer, start: *offset, end, live_in, live_out, input: is_input })
                }
                Some(cl) => {
                    if cl.buffer != *buffer {
                        // Views never cross buffers; a class that does cannot be re-placed.
                        return None;
                    }
                    cl.start = cl.start.min(*offset);
                    cl.end = cl.end.max(end);
                    cl.live_in |= live_in;
                    cl.live_out |= live_out;
                    cl.input |= is_input;
                }
            }
            members.push((*id, c, *offset));
        }
        // Whether inputs keep their bytes to the end. Kept, a caller may set an input once and
        // execute again (as with ONNX Runtime or tract); given to another tensor after its last
        // read, as the exporter's plan does, the input must be set before each execution (as in
        // ExecuTorch; the method then asks for it, see `Method::keeps_input`).
        let planned_with = |keep_inputs: bool| -> Vec<PlannedTensor> {
            classes
                .iter()
                .enumerate()
                .filter_map(|(k, c)| {
                    let c = c.as_ref()?;
                    Some(PlannedTensor {
                        tensor: TensorId(k as u32),
                        buffer: c.buffer,
                        nbytes: c.end - c.start,
                        live_in: c.live_in,
                        live_out: c.live_out || (keep_inputs && c.input),
                    })
                })
                .collect()
        };
        let kept = planned_with(true);
        let freed = planned_with(false);
        if kept.is_empty() {
            return None;
        }
        // Candidates, best first when the critical paths tie: sharing only what the graph orders
        // keeps every schedule open; sharing what a schedule orders too binds the dynamic
        // scheduler to the static cost model's guess (on mlp_towers it held one tower's last
        // layer behind another's); the same schedule run backwards starts each branch as late as
        // it can (the same makespan, fewer tensors live at once), and a schedule in program order
        // keeps fewer still but may lengthen the critical path. Kept inputs before freed ones.
        let schedules = [
            dag::list_schedule(&graph, &costs, workers, dag::Priority::LongestPath),
            dag::latest_schedule(&graph, &costs, workers),
            dag::list_schedule(&graph, &costs, workers, dag::Priority::ProgramOrder),
        ];
        // Sharing only what the graph orders adds no edge the data edges do not imply: its
        // critical path is the data edges' own, the least any placement can have.
        let shortest_possible = graph.critical_path(&costs);
        // Within the bytes the automatic choice accepts over the exporter's plan, the shortest
        // critical path (within 1%; the first in the order above among equals); the fewest bytes
        // when none fits. Candidates are placed in that order until one reaches the least
        // possible critical path (most methods stop at the first: load time).
        let budget = crate::config::AUTO_REPLAN_MAX_GROWTH * def.planned_buffer_sizes.iter().sum::<u64>() as f64;
        let bytes = |r: &Replan| r.buffer_sizes.iter().sum::<u64>();
        let mut fitting: Vec<(Replan, f64)> = Vec::new();
        let mut smallest: Option<Replan> = None;
        'candidates: for planned in [&kept, &freed] {
            for (when, by_schedule) in
                [(&schedules[0], false), (&schedules[0], true), (&schedules[1], true), (&schedules[2], true)]
            {
                let r = dag::replan(
                    planned,
                    &lists,
                    &before,
                    when,
                    by_schedule,
                    def.planned_buffer_sizes.len(),
                    self.tensor_count,
                );
                if bytes(&r) as f64 > budget {
                    if smallest.as_ref().is_none_or(|s| bytes(&r) < bytes(s)) {
                        smallest = Some(r);
                    }
                    continue;
                }
                let critical_path = if by_schedule {
                    self.placement_critical_path(&block, &r, planned, &costs)
                } else {
                    shortest_possible
                };
                fitting.push((r, critical_path));
                if critical_path <= shortest_possible * 1.01 {
                    break 'candidates;
                }
            }
        }
        let chosen = match fitting.iter().map(|c| c.1).reduce(f64::min) {
            Some(shortest) => fitting.into_iter().find(|c| c.1 <= shortest * 1.01).map(|c| c.0),
            None => smallest,
        };
        let mut r = chosen?;
        let class_offsets = r.offsets.clone();
        for (id, c, offset) in members {
            let (Some(Some(base)), Some(Some(cl))) = (class_offsets.get(c.0 as usize), classes.get(c.0 as usize))
            else {
                continue;
            };
            if let Some(slot) = r.offsets.get_mut(id.0 as usize) {
                *slot = Some(base + (offset - cl.start));
            }
        }
        Some(r)
    }
}

/// The exporter's memory plan against etch's concurrency-aware re-plan, for one method.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSummary {
    pub instructions: usize,
    /// Straight-line blocks (jumps split methods; each block is its own graph).
    pub blocks: usize,
    /// Sum of instruction costs (the cost model's units: ns when measured, else 1 per instruction).
    pub total_work: f64,
    /// Planned bytes and critical path with the exporter's placement (data + hazard edges).
    pub exporter_bytes: u64,
    pub exporter_edges: usize,
    pub exporter_critical_path: f64,
    /// Critical path of data edges alone: the parallelism the program itself allows.
    pub data_edges: usize,
    pub data_critical_path: f64,
    /// The re-plan's bytes and critical path (`None` for methods with control flow).
    pub replan_bytes: Option<u64>,
    pub replan_critical_path: Option<f64>,
}

/// Compares memory plans of method `name`: bytes against critical path. `costs` gives each
/// instruction's cost (e.g. ns from `Method::profile_instructions`); without it every instruction
/// costs 1. Needs only the kernels' schemas: delegates are not initialised.
pub fn plan_summary(
    program: &Program,
    name: &str,
    runtime: &Runtime,
    costs: Option<&[f64]>,
    workers: usize,
) -> Result<PlanSummary> {
    let def = program.method_def(name)?;
    let b = Builder { program, def, method: name.into() };
    let ids = b.tensor_ids();
    let (values, pool) = b.values(&ids)?;
    let ins = b.instructions(runtime, &values, false)?;
    let pt = b.points_to(&ins, &values, &pool, &ids);
    let folded = b.foldable(&ins, &values, &pool, &pt, &ids);
    let steps: Vec<Step> = ins.steps.iter().zip(&folded).map(|(s, &f)| if f { Step::Nop } else { *s }).collect();
    let arg_pool = ins.arg_pool;
    let shapes = step_shapes(&steps, &arg_pool);
    let tensor_count = ids.iter().flatten().count();
    let analysis = Analysis::new(&shapes, &values, &pool, &pt, tensor_count);
    let unit = vec![1.0; steps.len()];
    let costs = costs.filter(|c| c.len() == steps.len()).unwrap_or(&unit);
    let measure = |overlaps: &[Vec<TensorId>]| -> (usize, f64) {
        let mut edges = 0;
        let mut cp = 0.0;
        for block in &analysis.blocks {
            let e = analysis.block_edges(block, overlaps);
            edges += e.len();
            let g = dag::block_graph(e, block.end - block.start);
            cp += g.critical_path(&costs[block.start..block.end]);
            // A terminator runs after its block.
            if let Some(t) = block.terminator {
                cp += costs[t];
            }
        }
        (edges, cp)
    };
    let folded_set = folded_outputs(&ins.steps, &folded, &arg_pool, &values);
    let exporter_regions: Vec<Region> = b
        .exporter_regions()
        .into_iter()
        .enumerate()
        .map(|(t, r)| if folded_set.contains(&TensorId(t as u32)) { Region::Constant } else { r })
        .collect();
    let (exporter_edges, exporter_critical_path) = measure(&pt.canonical_overlaps(dag::overlaps(&exporter_regions)));
    let (data_edges, data_critical_path) = measure(&[]);
    let mut live = BTreeSet::new();
    for &o in &def.outputs {
        live.extend(pt.position_tensors(o, &values, &pool));
    }
    let folded_tensors = folded_outputs(&ins.steps, &folded, &arg_pool, &values);
    let replan = analysis.replan(def, &ids, &live, &folded_tensors, &pt, workers);
    let replan_critical_path = replan.as_ref().map(|r| {
        let regions: Vec<Region> = b
            .exporter_regions()
            .into_iter()
            .enumerate()
            .map(|(t, region)| match (region, r.offsets.get(t).copied().flatten()) {
                _ if folded_tensors.contains(&TensorId(t as u32)) => Region::Constant,
                (Region::Planned { buffer, start, end }, Some(o)) => {
                    Region::Planned { buffer, start: o, end: o + (end - start) }
                }
                (other, _) => other,
            })
            .collect();
        // The re-plan runs its single block in the schedule's order.
        let block = analysis.blocks[0];
        let e = analysis.block_edges_in(&block, &r.order, &pt.canonical_overlaps(dag::overlaps(&regions)));
        let g = dag::block_graph(e, block.end - block.start);
        let ordered: Vec<f64> = r.order.iter().map(|&i| costs[block.start + i as usize]).collect();
        g.critical_path(&ordered)
    });
    Ok(PlanSummary {
        instructions: steps.len(),
        blocks: analysis.blocks.len(),
        total_work: costs.iter().sum(),
        exporter_bytes: def.planned_buffer_sizes.iter().sum(),
        exporter_edges,
        exporter_critical_path,
        data_edges,
        data_critical_path,
        replan_bytes: replan.as_ref().map(|r| r.buffer_sizes.iter().sum()),
        replan_critical_path,
    })
}
