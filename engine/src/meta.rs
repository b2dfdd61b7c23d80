//! [`MethodMeta`]: what a method takes and returns, and what it needs, without loading it.

use etch_schema::{InstructionDef, MethodDef, ShapeDynamism, TensorDef, ValueDef};

use etch_kernels::DType;

/// The kind of an input or output value (ExecuTorch's `Tag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    None,
    Int,
    Double,
    Bool,
    String,
    Tensor,
    List,
}

/// Static facts about a tensor input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo<'a> {
    pub dtype: DType,
    /// Sizes as planned (the upper bound for dynamic tensors).
    pub sizes: &'a [usize],
    pub dim_order: &'a [u8],
    pub dynamism: ShapeDynamism,
    pub nbytes: usize,
    /// Whether the tensor lives in planned memory.
    pub memory_planned: bool,
}

impl<'a> TensorInfo<'a> {
    fn new(t: &'a TensorDef) -> Self {
        TensorInfo {
            dtype: t.scalar_type,
            sizes: &t.sizes,
            dim_order: &t.dim_order,
            dynamism: t.dynamism,
            nbytes: t.nbytes,
            memory_planned: matches!(t.data, etch_schema::TensorData::Planned { .. }),
        }
    }
}

/// Describes one method of a program.
#[derive(Debug, Clone, Copy)]
pub struct MethodMeta<'a> {
    def: &'a MethodDef,
}

fn tag(v: &ValueDef) -> Tag {
    match v {
        ValueDef::None => Tag::None,
        ValueDef::Int(_) => Tag::Int,
        ValueDef::Double(_) => Tag::Double,
        ValueDef::Bool(_) => Tag::Bool,
        ValueDef::String(_) => Tag::String,
        ValueDef::Tensor(_) => Tag::Tensor,
        _ => Tag::List,
    }
}

impl<'a> MethodMeta<'a> {
    pub(crate) fn new(def: &'a MethodDef) -> Self {
        MethodMeta { def }
    }

    pub fn name(&self) -> &'a str {
        &self.def.name
    }

    pub fn num_inputs(&self) -> usize {
        self.def.inputs.len()
    }

    pub fn num_outputs(&self) -> usize {
        self.def.outputs.len()
    }

    fn value(&self, index: u32) -> Option<&'a ValueDef> {
        self.def.values.get(index as usize)
    }

    pub fn input_tag(&self, i: usize) -> Option<Tag> {
        self.value(*self.def.inputs.get(i)?).map(tag)
    }

    pub fn output_tag(&self, i: usize) -> Option<Tag> {
        self.value(*self.def.outputs.get(i)?).map(tag)
    }

    pub fn input_tensor_meta(&self, i: usize) -> Option<TensorInfo<'a>> {
        self.def.tensor(*self.def.inputs.get(i)?).map(TensorInfo::new)
    }

    pub fn output_tensor_meta(&self, i: usize) -> Option<TensorInfo<'a>> {
        self.def.tensor(*self.def.outputs.get(i)?).map(TensorInfo::new)
    }

    /// The value behind input `i` (for non-tensor inputs: the traced value).
    pub fn input_value(&self, i: usize) -> Option<&'a ValueDef> {
        self.value(*self.def.inputs.get(i)?)
    }

    pub fn num_memory_planned_buffers(&self) -> usize {
        self.def.planned_buffer_sizes.len()
    }

    pub fn memory_planned_buffer_size(&self, i: usize) -> Option<u64> {
        self.def.planned_buffer_sizes.get(i).copied()
    }

    pub fn planned_buffer_sizes(&self) -> &'a [u64] {
        &self.def.planned_buffer_sizes
    }

    pub fn num_instructions(&self) -> usize {
        self.def.instructions.len()
    }

    /// Operator names (`aten::add.out`) in the method's operator table order.
    pub fn operators(&self) -> impl Iterator<Item = String> + 'a {
        self.def.operators.iter().map(|o| o.qualified_name())
    }

    /// Backend ids of the method's delegates.
    pub fn delegates(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.def.delegates.iter().map(|d| d.backend_id.as_str())
    }

    /// How many times each instruction kind occurs: kernel, delegate, move, jump, free.
    pub fn instruction_counts(&self) -> [usize; 5] {
        let mut c = [0; 5];
        for i in &self.def.instructions {
            c[match i {
                InstructionDef::Kernel { .. } => 0,
                InstructionDef::Delegate { .. } => 1,
                InstructionDef::Move { .. } => 2,
                InstructionDef::JumpFalse { .. } => 3,
                InstructionDef::Free { .. } => 4,
            }] += 1;
        }
        c
    }

    /// The checked model of the method.
    pub fn def(&self) -> &'a MethodDef {
        self.def
    }
}
