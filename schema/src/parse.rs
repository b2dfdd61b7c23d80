//! From file bytes to a checked [`ProgramDef`]: verify the flatbuffer once, then walk it and check
//! every index, size and offset with checked arithmetic.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use etch_fbs::program as fb;
use flatbuffers::{Follow, Vector};

use crate::ScalarType;
use crate::error::{FormatError, Site};
use crate::header::{ExtendedHeader, PROGRAM_IDENTIFIER, check_identifier};
use crate::model::*;

/// Limits for the flatbuffer verifier. Generous for real models (mobilenet_v2 has ~2,000 tables)
/// yet bounded, so a hostile file cannot make verification run away.
fn verifier_options() -> flatbuffers::VerifierOptions {
    flatbuffers::VerifierOptions {
        max_depth: 64,
        max_tables: 10_000_000,
        max_apparent_size: 1 << 32,
        ignore_missing_null_terminator: false,
    }
}

/// Parses and checks a whole `.pte` file.
pub fn parse_program(file: &[u8]) -> Result<ProgramDef, FormatError> {
    if file.len() < 8 {
        return Err(FormatError::Truncated {
            what: "flatbuffer root offset and identifier",
            offset: 0,
            needed: 8,
            file_len: file.len(),
        });
    }
    check_identifier(file, PROGRAM_IDENTIFIER)?;
    let header = ExtendedHeader::parse(file)?;
    // The header check guarantees program_size <= file.len().
    let flatbuffer_size = match header {
        Some(h) => usize::try_from(h.program_size)
            .map_err(|_| FormatError::BadHeader { reason: "program_size too large", value: h.program_size })?,
        None => file.len(),
    };
    let flatbuffer = file.get(..flatbuffer_size).ok_or(FormatError::Truncated {
        what: "flatbuffer",
        offset: 0,
        needed: flatbuffer_size as u64,
        file_len: file.len(),
    })?;
    let root = flatbuffers::root_with_opts::<fb::Program<'_>>(&verifier_options(), flatbuffer)
        .map_err(|e| FormatError::from_verifier(&e))?;
    Parser { file, flatbuffer, header }.program(root, flatbuffer_size)
}

struct Parser<'f> {
    file: &'f [u8],
    flatbuffer: &'f [u8],
    header: Option<ExtendedHeader>,
}

fn site(path: impl Into<String>, byte_offset: usize) -> Site {
    Site { path: path.into(), byte_offset }
}

fn vec_iter<'a, T: Follow<'a> + 'a>(v: Option<Vector<'a, T>>) -> impl Iterator<Item = T::Inner> {
    v.into_iter().flat_map(|v| v.iter())
}

fn index_in(at: &Site, field: &'static str, index: i64, len: usize) -> Result<u32, FormatError> {
    match u32::try_from(index) {
        Ok(i) if (i as usize) < len => Ok(i),
        _ => Err(FormatError::IndexOutOfRange { at: at.clone(), field, index, len }),
    }
}

impl<'f> Parser<'f> {
    /// The file range of a byte vector that lives inside the flatbuffer.
    fn range_of(&self, bytes: &[u8]) -> ByteRange {
        // Both slices come from the same file buffer; the verifier put `bytes` inside it.
        let start = (bytes.as_ptr() as usize).saturating_sub(self.flatbuffer.as_ptr() as usize);
        ByteRange { start, len: bytes.len() }
    }

    fn program(&self, root: fb::Program<'f>, flatbuffer_size: usize) -> Result<ProgramDef, FormatError> {
        let at = site("program", 0);
        let segments = self.segments(&root)?;

        let constant_offsets: Vec<u64> =
            root.constant_segment().map(|c| vec_iter(c.offsets()).collect()).unwrap_or_default();
        let legacy: Vec<ByteRange> = vec_iter(root.constant_buffer())
            .map(|b| b.storage().map(|s| self.range_of(s.bytes())).unwrap_or_default())
            .collect();
        if !constant_offsets.is_empty() && legacy.len() > 1 {
            return Err(FormatError::InvalidField {
                at,
                field: "constant_buffer",
                reason: "a program must not use both constant_buffer and constant_segment",
                value: legacy.len() as i64,
            });
        }
        let constant_segment = match root.constant_segment() {
            Some(c) if !constant_offsets.is_empty() => {
                let cat = site("program constant_segment", c._tab.loc());
                Some(index_in(&cat, "segment_index", c.segment_index().into(), segments.len())? as usize)
            }
            _ => None,
        };
        let constants =
            Constants { segment: constant_segment.map(|i| (segments[i], constant_offsets)), legacy: legacy.clone() };

        let mut mutable_segments = Vec::new();
        for (i, m) in vec_iter(root.mutable_data_segments()).enumerate() {
            let mat = site(format!("program mutable_data_segments[{i}]"), m._tab.loc());
            let seg = index_in(&mat, "segment_index", m.segment_index().into(), segments.len())? as usize;
            mutable_segments.push((segments[seg], vec_iter(m.offsets()).collect::<Vec<u64>>()));
        }

        let inline_delegate_data: Vec<ByteRange> = vec_iter(root.backend_delegate_data())
            .map(|d| d.data().map(|s| self.range_of(s.bytes())).unwrap_or_default())
            .collect();

        let mut named_data = Vec::new();
        for (i, n) in vec_iter(root.named_data()).enumerate() {
            let nat = site(format!("program named_data[{i}]"), n._tab.loc());
            let key = n.key().ok_or(FormatError::MissingField { at: nat.clone(), field: "key" })?;
            let seg = index_in(&nat, "segment_index", n.segment_index().into(), segments.len())? as usize;
            named_data.push(NamedDataDef { key: key.to_string(), segment: seg, data: segments[seg] });
        }

        let data = DataTables {
            constants: &constants,
            mutable_segments: &mutable_segments,
            segments: &segments,
            inline_delegate_data: &inline_delegate_data,
        };
        let mut methods = Vec::new();
        for (i, plan) in vec_iter(root.execution_plan()).enumerate() {
            methods.push(self.method(i, plan, &data)?);
        }
        for (i, m) in methods.iter().enumerate() {
            if methods[..i].iter().any(|o| o.name == m.name) {
                return Err(FormatError::InvalidField {
                    at: site(format!("method '{}'", m.name), m.byte_offset),
                    field: "name",
                    reason: "two methods have this name",
                    value: i as i64,
                });
            }
        }
        Ok(ProgramDef {
            version: root.version(),
            header: self.header,
            flatbuffer_size,
            methods,
            segments,
            constant_segment,
            legacy_constant_buffers: legacy.len(),
            named_data,
        })
    }

    fn segments(&self, root: &fb::Program<'f>) -> Result<Vec<ByteRange>, FormatError> {
        let base = self.header.map(|h| h.segment_base_offset).unwrap_or(0);
        let mut out = Vec::new();
        for (i, s) in vec_iter(root.segments()).enumerate() {
            let at = site(format!("program segments[{i}]"), s._tab.loc());
            if s.size() == 0 {
                out.push(ByteRange { start: self.file.len(), len: 0 });
                continue;
            }
            if base == 0 {
                return Err(FormatError::InvalidField {
                    at,
                    field: "segments",
                    reason: "the file has segment data but no extended header locating it",
                    value: s.size() as i64,
                });
            }
            let oob = || FormatError::OutOfBounds {
                at: at.clone(),
                what: "segment",
                offset: s.offset(),
                len: s.size(),
                limit: (self.file.len() as u64).saturating_sub(base),
            };
            let start = base.checked_add(s.offset()).ok_or_else(oob)?;
            let end = start.checked_add(s.size()).ok_or_else(oob)?;
            if end > self.file.len() as u64 {
                return Err(oob());
            }
            // end <= file.len() so both fit in usize.
            out.push(ByteRange { start: start as usize, len: s.size() as usize });
        }
        Ok(out)
    }

    fn method(
        &self,
        index: usize,
        plan: fb::ExecutionPlan<'f>,
        data: &DataTables<'_>,
    ) -> Result<MethodDef, FormatError> {
        let plan_at = site(format!("execution_plan[{index}]"), plan._tab.loc());
        let name = plan.name().ok_or(FormatError::MissingField { at: plan_at.clone(), field: "name" })?.to_string();
        let mpath = format!("method '{name}'");
        let mat = site(mpath.clone(), plan._tab.loc());

        // Planned buffers: entry 0 is a placeholder.
        let mut planned_buffer_sizes = Vec::new();
        for (i, size) in vec_iter(plan.non_const_buffer_sizes()).enumerate().skip(1) {
            let size = u64::try_from(size).map_err(|_| FormatError::InvalidField {
                at: mat.clone(),
                field: "non_const_buffer_sizes",
                reason: "negative size",
                value: i as i64,
            })?;
            planned_buffer_sizes.push(size);
        }

        let raw_values: Vec<fb::EValue<'f>> = vec_iter(plan.values()).collect();
        let value_count = raw_values.len();
        let mut values = Vec::with_capacity(value_count);
        for (i, v) in raw_values.iter().enumerate() {
            let at = site(format!("{mpath} value {i}"), v._tab.loc());
            values.push(self.value(&at, v, &planned_buffer_sizes, data)?);
        }
        check_list_items(&mpath, &raw_values, &values)?;

        let idx_list = |field: &'static str, v: Option<Vector<'f, i32>>| -> Result<Vec<u32>, FormatError> {
            vec_iter(v).map(|x| index_in(&mat, field, x.into(), value_count)).collect()
        };
        let inputs = idx_list("inputs", plan.inputs())?;
        let outputs = idx_list("outputs", plan.outputs())?;

        let mut operators = Vec::new();
        for (i, op) in vec_iter(plan.operators()).enumerate() {
            let at = site(format!("{mpath} operator {i}"), op._tab.loc());
            let name = op.name().ok_or(FormatError::MissingField { at, field: "name" })?;
            operators.push(OperatorDef { name: name.to_string(), overload: op.overload().unwrap_or("").to_string() });
        }

        let mut delegates = Vec::new();
        for (i, d) in vec_iter(plan.delegates()).enumerate() {
            let at = site(format!("{mpath} delegate {i}"), d._tab.loc());
            delegates.push(self.delegate(&at, d, data)?);
        }

        let chains: Vec<fb::Chain<'f>> = vec_iter(plan.chains()).collect();
        if chains.len() > 1 {
            return Err(FormatError::Unsupported { at: mat, what: "more than one chain in a method" });
        }
        let raw_instructions: Vec<fb::Instruction<'f>> =
            chains.first().map(|c| vec_iter(c.instructions()).collect()).unwrap_or_default();
        let count = raw_instructions.len();
        let mut instructions = Vec::with_capacity(count);
        let mut instruction_offsets = Vec::with_capacity(count);
        for (i, ins) in raw_instructions.iter().enumerate() {
            let at = site(format!("{mpath} instruction {i}"), ins._tab.loc());
            instructions.push(instruction(&at, ins, value_count, operators.len(), delegates.len(), count)?);
            instruction_offsets.push(ins._tab.loc());
        }

        Ok(MethodDef {
            name,
            byte_offset: plan._tab.loc(),
            values,
            inputs,
            outputs,
            instructions,
            instruction_offsets,
            operators,
            delegates,
            planned_buffer_sizes,
        })
    }

    fn value(
        &self,
        at: &Site,
        v: &fb::EValue<'f>,
        planned: &[u64],
        data: &DataTables<'_>,
    ) -> Result<ValueDef, FormatError> {
        let kind = v.val_type();
        let missing = || FormatError::MissingField { at: at.clone(), field: "val" };
        Ok(match kind {
            fb::KernelTypes::Null => ValueDef::None,
            fb::KernelTypes::Int => ValueDef::Int(v.val_as_int().ok_or_else(missing)?.int_val()),
            fb::KernelTypes::Bool => ValueDef::Bool(v.val_as_bool().ok_or_else(missing)?.bool_val()),
            fb::KernelTypes::Double => ValueDef::Double(v.val_as_double().ok_or_else(missing)?.double_val()),
            fb::KernelTypes::String => {
                ValueDef::String(v.val_as_string().ok_or_else(missing)?.string_val().unwrap_or("").to_string())
            }
            fb::KernelTypes::IntList => ValueDef::IntList(
                vec_iter(v.val_as_int_list().ok_or_else(missing)?.items())
                    .map(|i| index_in(at, "IntList item", i, usize::MAX))
                    .collect::<Result<_, _>>()?,
            ),
            fb::KernelTypes::DoubleList => {
                ValueDef::DoubleList(vec_iter(v.val_as_double_list().ok_or_else(missing)?.items()).collect())
            }
            fb::KernelTypes::BoolList => {
                ValueDef::BoolList(vec_iter(v.val_as_bool_list().ok_or_else(missing)?.items()).collect())
            }
            fb::KernelTypes::TensorList => ValueDef::TensorList(
                vec_iter(v.val_as_tensor_list().ok_or_else(missing)?.items())
                    .map(|i| index_in(at, "TensorList item", i.into(), usize::MAX))
                    .collect::<Result<_, _>>()?,
            ),
            fb::KernelTypes::OptionalTensorList => ValueDef::OptionalTensorList(
                vec_iter(v.val_as_optional_tensor_list().ok_or_else(missing)?.items())
                    .map(|i| {
                        if i == -1 {
                            Ok(None)
                        } else {
                            index_in(at, "OptionalTensorList item", i.into(), usize::MAX).map(Some)
                        }
                    })
                    .collect::<Result<_, _>>()?,
            ),
            fb::KernelTypes::Tensor => {
                let t = v.val_as_tensor().ok_or_else(missing)?;
                let tat = Site { path: at.path.clone(), byte_offset: t._tab.loc() };
                ValueDef::Tensor(self.tensor(&tat, t, planned, data)?)
            }
            other => {
                return Err(FormatError::InvalidField {
                    at: at.clone(),
                    field: "EValue type",
                    reason: "unknown value type tag",
                    value: other.0.into(),
                });
            }
        })
    }

    fn tensor(
        &self,
        at: &Site,
        t: fb::Tensor<'f>,
        planned: &[u64],
        data: &DataTables<'_>,
    ) -> Result<TensorDef, FormatError> {
        let invalid = |field, reason, value: i64| FormatError::InvalidField { at: at.clone(), field, reason, value };
        let code = t.scalar_type().0;
        let scalar_type = ScalarType::from_code(code.into())
            .ok_or_else(|| invalid("scalar_type", "unknown scalar type", code.into()))?;
        let element_size = scalar_type.element_size().ok_or_else(|| FormatError::Unsupported {
            at: at.clone(),
            what: "sub-byte packed scalar types (quint4x2, quint2x4)",
        })?;
        if t.storage_offset() != 0 {
            return Err(invalid("storage_offset", "must be 0", t.storage_offset().into()));
        }
        let mut sizes = Vec::new();
        for s in vec_iter(t.sizes()) {
            sizes.push(usize::try_from(s).map_err(|_| invalid("sizes", "negative size", s.into()))?);
        }
        if sizes.len() > MAX_RANK {
            return Err(invalid("sizes", "rank above 16", sizes.len() as i64));
        }
        let mut dim_order: Vec<u8> = vec_iter(t.dim_order()).collect();
        if dim_order.is_empty() && !sizes.is_empty() {
            // Files written before dim_order existed: contiguous layout.
            dim_order = (0..sizes.len() as u8).collect();
        }
        if dim_order.len() != sizes.len() {
            return Err(invalid("dim_order", "length differs from the rank", dim_order.len() as i64));
        }
        let mut seen = [false; MAX_RANK];
        for &d in &dim_order {
            let slot = seen.get_mut(d as usize).filter(|s| !**s && (d as usize) < sizes.len());
            match slot {
                Some(s) => *s = true,
                None => {
                    return Err(invalid("dim_order", "not a permutation of the dimensions", d.into()));
                }
            }
        }
        let nbytes = sizes
            .iter()
            .try_fold(element_size, |acc, &s| acc.checked_mul(s))
            .filter(|&n| n <= isize::MAX as usize)
            .ok_or_else(|| invalid("sizes", "byte size overflows", sizes.len() as i64))?;
        let dynamism = match t.shape_dynamism() {
            fb::TensorShapeDynamism::STATIC => ShapeDynamism::Static,
            fb::TensorShapeDynamism::DYNAMIC_BOUND => ShapeDynamism::DynamicBound,
            fb::TensorShapeDynamism::DYNAMIC_UNBOUND => ShapeDynamism::DynamicUnbound,
            other => return Err(invalid("shape_dynamism", "unknown value", other.0.into())),
        };

        let buffer_idx = t.data_buffer_idx() as usize;
        let extra = t.extra_tensor_info();
        let external = extra.filter(|e| e.location() == fb::TensorDataLocation::EXTERNAL);
        let data = if let Some(e) = external {
            let fqn = e.fully_qualified_name().unwrap_or("");
            if fqn.is_empty() {
                return Err(FormatError::MissingField {
                    at: at.clone(),
                    field: "fully_qualified_name of external tensor",
                });
            }
            TensorData::External(fqn.to_string())
        } else if let Some(alloc) = t.allocation_info() {
            let memory_id = alloc.memory_id();
            if memory_id == 0 || memory_id as usize > planned.len() {
                return Err(FormatError::IndexOutOfRange {
                    at: at.clone(),
                    field: "allocation_info.memory_id (1-based)",
                    index: memory_id.into(),
                    len: planned.len() + 1,
                });
            }
            let buffer = memory_id as usize - 1;
            let offset = u64::from(alloc.memory_offset_low()) | (u64::from(alloc.memory_offset_high()) << 32);
            let limit = planned[buffer];
            if offset.checked_add(nbytes as u64).is_none_or(|end| end > limit) {
                return Err(FormatError::OutOfBounds {
                    at: at.clone(),
                    what: "planned tensor",
                    offset,
                    len: nbytes as u64,
                    limit,
                });
            }
            let initial = if buffer_idx > 0 {
                let which = extra.map(|e| e.mutable_data_segments_idx()).unwrap_or(0);
                Some(data.mutable_initial(at, which, buffer_idx, nbytes)?)
            } else {
                None
            };
            TensorData::Planned { buffer, offset, initial }
        } else if buffer_idx > 0 {
            TensorData::Constant(data.constant(at, buffer_idx, nbytes)?)
        } else {
            TensorData::Unplanned
        };
        Ok(TensorDef { scalar_type, sizes, dim_order, dynamism, nbytes, data })
    }

    fn delegate(
        &self,
        at: &Site,
        d: fb::BackendDelegate<'f>,
        data: &DataTables<'_>,
    ) -> Result<DelegateDef, FormatError> {
        let backend_id = d.id().ok_or(FormatError::MissingField { at: at.clone(), field: "id" })?.to_string();
        let processed = d.processed().ok_or(FormatError::MissingField { at: at.clone(), field: "processed" })?;
        let index = processed.index() as i64;
        let processed = match processed.location() {
            fb::DataLocation::INLINE => {
                data.inline_delegate_data[index_in(
                    at,
                    "processed.index (inline delegate data)",
                    index,
                    data.inline_delegate_data.len(),
                )? as usize]
            }
            fb::DataLocation::SEGMENT => {
                data.segments[index_in(at, "processed.index (segment)", index, data.segments.len())? as usize]
            }
            other => {
                return Err(FormatError::InvalidField {
                    at: at.clone(),
                    field: "processed.location",
                    reason: "unknown location",
                    value: other.0.into(),
                });
            }
        };
        let mut compile_specs = Vec::new();
        for spec in vec_iter(d.compile_specs()) {
            compile_specs.push(CompileSpecDef {
                key: spec.key().unwrap_or("").to_string(),
                value: spec.value().map(|v| self.range_of(v.bytes())).unwrap_or_default(),
            });
        }
        Ok(DelegateDef { backend_id, processed, compile_specs })
    }
}

/// Constant and mutable data tables of the program, for resolving tensor data.
struct Constants {
    /// The constant segment's range and its offsets table.
    segment: Option<(ByteRange, Vec<u64>)>,
    legacy: Vec<ByteRange>,
}

struct DataTables<'a> {
    constants: &'a Constants,
    mutable_segments: &'a [(ByteRange, Vec<u64>)],
    segments: &'a [ByteRange],
    inline_delegate_data: &'a [ByteRange],
}

/// `nbytes` at `offset` inside `segment`, or an error naming `what`.
fn sub_range(
    at: &Site,
    what: &'static str,
    segment: ByteRange,
    offset: u64,
    nbytes: usize,
) -> Result<ByteRange, FormatError> {
    let fits = offset.checked_add(nbytes as u64).is_some_and(|end| end <= segment.len as u64);
    if !fits {
        return Err(FormatError::OutOfBounds {
            at: at.clone(),
            what,
            offset,
            len: nbytes as u64,
            limit: segment.len as u64,
        });
    }
    // offset + nbytes <= segment.len, so offset fits in usize and the sum cannot overflow.
    Ok(ByteRange { start: segment.start + offset as usize, len: nbytes })
}

impl DataTables<'_> {
    fn constant(&self, at: &Site, index: usize, nbytes: usize) -> Result<ByteRange, FormatError> {
        if let Some((segment, offsets)) = &self.constants.segment {
            let i = index_in(at, "data_buffer_idx (constant segment)", index as i64, offsets.len())? as usize;
            return sub_range(at, "constant tensor", *segment, offsets[i], nbytes);
        }
        let i = index_in(at, "data_buffer_idx (constant_buffer)", index as i64, self.constants.legacy.len())? as usize;
        let storage = self.constants.legacy[i];
        sub_range(at, "constant tensor (inline storage)", storage, 0, nbytes)
    }

    fn mutable_initial(&self, at: &Site, which: u64, index: usize, nbytes: usize) -> Result<ByteRange, FormatError> {
        let which = index_in(at, "mutable_data_segments index", which as i64, self.mutable_segments.len())? as usize;
        let (segment, offsets) = &self.mutable_segments[which];
        let i = index_in(at, "data_buffer_idx (mutable data)", index as i64, offsets.len())? as usize;
        sub_range(at, "mutable tensor initial data", *segment, offsets[i], nbytes)
    }
}

fn instruction(
    at: &Site,
    ins: &fb::Instruction<'_>,
    values: usize,
    operators: usize,
    delegates: usize,
    count: usize,
) -> Result<InstructionDef, FormatError> {
    let value = |field, i: i32| index_in(at, field, i.into(), values);
    let missing = || FormatError::MissingField { at: at.clone(), field: "instr_args" };
    Ok(match ins.instr_args_type() {
        fb::InstructionArguments::KernelCall => {
            let k = ins.instr_args_as_kernel_call().ok_or_else(missing)?;
            let op = index_in(at, "op_index", k.op_index().into(), operators)?;
            let args = vec_iter(k.args()).map(|a| value("argument value index", a)).collect::<Result<_, _>>()?;
            InstructionDef::Kernel { op, args }
        }
        fb::InstructionArguments::DelegateCall => {
            let d = ins.instr_args_as_delegate_call().ok_or_else(missing)?;
            let delegate = index_in(at, "delegate_index", d.delegate_index().into(), delegates)?;
            let args = vec_iter(d.args()).map(|a| value("argument value index", a)).collect::<Result<_, _>>()?;
            InstructionDef::Delegate { delegate, args }
        }
        fb::InstructionArguments::MoveCall => {
            let m = ins.instr_args_as_move_call().ok_or_else(missing)?;
            InstructionDef::Move { from: value("move_from", m.move_from())?, to: value("move_to", m.move_to())? }
        }
        fb::InstructionArguments::JumpFalseCall => {
            let j = ins.instr_args_as_jump_false_call().ok_or_else(missing)?;
            let cond = value("cond_value_index", j.cond_value_index())?;
            // Jumping to `count` ends the method.
            let destination = index_in(at, "destination_instruction", j.destination_instruction().into(), count + 1)?;
            InstructionDef::JumpFalse { cond, destination }
        }
        fb::InstructionArguments::FreeCall => {
            let f = ins.instr_args_as_free_call().ok_or_else(missing)?;
            InstructionDef::Free { value: value("value_index", f.value_index())? }
        }
        other => {
            return Err(FormatError::InvalidField {
                at: at.clone(),
                field: "instr_args_type",
                reason: "unknown instruction type",
                value: other.0.into(),
            });
        }
    })
}

/// List items must name values of the right kind, and exist.
fn check_list_items(mpath: &str, raw: &[fb::EValue<'_>], values: &[ValueDef]) -> Result<(), FormatError> {
    let kind_of = |i: u32| values.get(i as usize).map(ValueDef::kind_name);
    for (vi, v) in values.iter().enumerate() {
        let at = || site(format!("{mpath} value {vi}"), raw.get(vi).map(|r| r._tab.loc()).unwrap_or(0));
        let check = |items: &mut dyn Iterator<Item = u32>,
                     want: &'static str,
                     field: &'static str|
         -> Result<(), FormatError> {
            for item in items {
                match kind_of(item) {
                    None => {
                        return Err(FormatError::IndexOutOfRange {
                            at: at(),
                            field,
                            index: item.into(),
                            len: values.len(),
                        });
                    }
                    Some(k) if k != want => {
                        return Err(FormatError::InvalidField {
                            at: at(),
                            field,
                            reason: "item names a value of the wrong kind",
                            value: item.into(),
                        });
                    }
                    Some(_) => {}
                }
            }
            Ok(())
        };
        match v {
            ValueDef::IntList(items) => check(&mut items.iter().copied(), "Int", "IntList item")?,
            ValueDef::TensorList(items) => check(&mut items.iter().copied(), "Tensor", "TensorList item")?,
            ValueDef::OptionalTensorList(items) => {
                check(&mut items.iter().flatten().copied(), "Tensor", "OptionalTensorList item")?
            }
            _ => {}
        }
    }
    Ok(())
}
