//! The checked, owned model of a program: what [`crate::parse_program`] produces after verifying the
//! flatbuffer and every index, size and offset in it.
//!
//! Invariants (established by the parser, relied on by the engine):
//! - every value, operator, delegate, segment and instruction index is in range;
//! - `IntList` items name `Int` values, `TensorList` items name `Tensor` values, `OptionalTensorList`
//!   items name `Tensor` or `None` values;
//! - every byte range ([`ByteRange`]) lies inside the file, every planned placement inside its
//!   planned buffer, and every size computation was done with checked arithmetic;
//! - tensors have rank <= [`MAX_RANK`], a known element size and a dim order that is a permutation.

use alloc::string::String;
use alloc::vec::Vec;

use crate::ScalarType;

/// Largest tensor rank the format allows.
pub const MAX_RANK: usize = 16;

/// A range of bytes in the program file; always inside the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteRange {
    pub start: usize,
    pub len: usize,
}

impl ByteRange {
    /// One past the last byte (cannot overflow: the range lies inside the file).
    pub fn end(&self) -> usize {
        self.start + self.len
    }

    /// The bytes of this range in `file` (the file the range was checked against).
    pub fn slice<'f>(&self, file: &'f [u8]) -> Option<&'f [u8]> {
        file.get(self.start..self.start.checked_add(self.len)?)
    }
}

/// A whole program: its methods and the file-level data they refer to.
#[derive(Debug, Clone)]
pub struct ProgramDef {
    /// `Program.version` from the flatbuffer.
    pub version: u32,
    /// The extended header, when the file has one.
    pub header: Option<crate::ExtendedHeader>,
    /// Size of the flatbuffer part of the file.
    pub flatbuffer_size: usize,
    pub methods: Vec<MethodDef>,
    /// `Program.segments`, resolved to absolute ranges of the file.
    pub segments: Vec<ByteRange>,
    /// Index of the segment holding constants, when constants use the constant segment.
    pub constant_segment: Option<usize>,
    /// Count of legacy inline constant buffers (`Program.constant_buffer`).
    pub legacy_constant_buffers: usize,
    pub named_data: Vec<NamedDataDef>,
}

impl ProgramDef {
    /// The method called `name`.
    pub fn method(&self, name: &str) -> Option<&MethodDef> {
        self.methods.iter().find(|m| m.name == name)
    }
}

/// `Program.named_data[i]`: a blob in a segment, found by key (XNNPACK weights use these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedDataDef {
    pub key: String,
    pub segment: usize,
    pub data: ByteRange,
}

/// One method (an `ExecutionPlan`).
#[derive(Debug, Clone)]
pub struct MethodDef {
    pub name: String,
    /// File offset of the `ExecutionPlan` table.
    pub byte_offset: usize,
    pub values: Vec<ValueDef>,
    /// Value indices of the inputs.
    pub inputs: Vec<u32>,
    /// Value indices of the outputs.
    pub outputs: Vec<u32>,
    /// The instructions of the method's (single) chain.
    pub instructions: Vec<InstructionDef>,
    /// File offset of each instruction's table, parallel to `instructions`.
    pub instruction_offsets: Vec<usize>,
    pub operators: Vec<OperatorDef>,
    pub delegates: Vec<DelegateDef>,
    /// Sizes of the planned buffers; entry `i` is for `memory_id` `i + 1`.
    pub planned_buffer_sizes: Vec<u64>,
}

impl MethodDef {
    /// The tensor behind value `index`, if that value is a tensor.
    pub fn tensor(&self, index: u32) -> Option<&TensorDef> {
        match self.values.get(index as usize)? {
            ValueDef::Tensor(t) => Some(t),
            _ => None,
        }
    }
}

/// `ExecutionPlan.operators[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorDef {
    pub name: String,
    pub overload: String,
}

impl OperatorDef {
    /// `name.overload` (or just `name` when the overload is empty), the key kernels register under.
    pub fn qualified_name(&self) -> String {
        if self.overload.is_empty() { self.name.clone() } else { alloc::format!("{}.{}", self.name, self.overload) }
    }
}

/// `ExecutionPlan.delegates[i]`: a backend id, its processed blob and compile specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegateDef {
    pub backend_id: String,
    /// The blob handed to the backend's `init`.
    pub processed: ByteRange,
    pub compile_specs: Vec<CompileSpecDef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileSpecDef {
    pub key: String,
    pub value: ByteRange,
}

/// One entry of a method's value table.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueDef {
    None,
    Int(i64),
    Bool(bool),
    Double(f64),
    String(String),
    /// Indices of `Int` values (so sizes can be symbolic), not literals.
    IntList(Vec<u32>),
    DoubleList(Vec<f64>),
    BoolList(Vec<bool>),
    Tensor(TensorDef),
    /// Indices of `Tensor` values.
    TensorList(Vec<u32>),
    /// Indices of `Tensor` values, `None` for an absent tensor.
    OptionalTensorList(Vec<Option<u32>>),
}

impl ValueDef {
    /// The variant's name, as the format calls it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ValueDef::None => "None",
            ValueDef::Int(_) => "Int",
            ValueDef::Bool(_) => "Bool",
            ValueDef::Double(_) => "Double",
            ValueDef::String(_) => "String",
            ValueDef::IntList(_) => "IntList",
            ValueDef::DoubleList(_) => "DoubleList",
            ValueDef::BoolList(_) => "BoolList",
            ValueDef::Tensor(_) => "Tensor",
            ValueDef::TensorList(_) => "TensorList",
            ValueDef::OptionalTensorList(_) => "OptionalTensorList",
        }
    }
}

/// How a tensor's shape may change at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeDynamism {
    /// `sizes` is the shape.
    Static,
    /// `sizes` is an upper bound; storage is planned at the bound.
    DynamicBound,
    /// `sizes` means nothing; the runtime would have to allocate (etch refuses such methods).
    DynamicUnbound,
}

/// A tensor value's metadata and where its data lives.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDef {
    pub scalar_type: ScalarType,
    /// Sizes as declared (the upper bound for dynamic tensors); each fits in `i32`.
    pub sizes: Vec<usize>,
    /// Permutation of `0..rank`, outermost dimension first.
    pub dim_order: Vec<u8>,
    pub dynamism: ShapeDynamism,
    /// Bytes at the declared sizes (checked product).
    pub nbytes: usize,
    pub data: TensorData,
}

impl TensorDef {
    pub fn rank(&self) -> usize {
        self.sizes.len()
    }

    pub fn numel(&self) -> usize {
        self.sizes.iter().product()
    }
}

/// Where a tensor's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorData {
    /// Read-only bytes in the file (constant segment or legacy inline buffer), `nbytes` long.
    Constant(ByteRange),
    /// Planned memory: buffer `buffer` (that is, `memory_id - 1`) at byte `offset`; the whole
    /// `nbytes` fit inside the buffer. `initial` holds the starting contents of a mutable buffer.
    Planned { buffer: usize, offset: u64, initial: Option<ByteRange> },
    /// Stored in an external data file under this fully qualified name.
    External(String),
    /// No data until an input is set or an operator writes it.
    Unplanned,
}

/// One instruction of a chain, with every index checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionDef {
    /// Call `operators[op]` with these value indices (schema arguments, then returns).
    Kernel { op: u32, args: Vec<u32> },
    /// Call `delegates[delegate]` with these value indices (inputs, then outputs).
    Delegate { delegate: u32, args: Vec<u32> },
    /// `values[to] = values[from]`.
    Move { from: u32, to: u32 },
    /// Jump to `destination` (at most the instruction count, which ends the method) when the
    /// condition is false.
    JumpFalse { cond: u32, destination: u32 },
    /// The tensor at `value` loses its data.
    Free { value: u32 },
}
