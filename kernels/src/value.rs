//! Runtime values (`EValue`) and the table that holds a method's values and tensors.

use core::cell::UnsafeCell;

use crate::tensor::TensorImpl;

/// Index of a tensor in a [`ValueTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub u32);

/// A range of a [`ListPool`] array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    fn range(self) -> core::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// Marks a `None` item of an optional tensor list in [`ListPool::indices`].
pub const NONE_INDEX: u32 = u32::MAX;

/// One runtime value. Small and `Copy`: tensors and lists are referred to by index, so a
/// `MoveCall` is a plain copy (both values then share the tensor, as in ExecuTorch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EValue {
    None,
    Int(i64),
    Double(f64),
    Bool(bool),
    /// A string in [`ListPool::strings`] (byte span).
    String(Span),
    /// Value indices of `Int` values.
    IntList(Span),
    DoubleList(Span),
    BoolList(Span),
    Tensor(TensorId),
    /// Value indices of `Tensor` values.
    TensorList(Span),
    /// Value indices of `Tensor` values, [`NONE_INDEX`] for none.
    OptionalTensorList(Span),
}

impl EValue {
    /// The variant's name, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            EValue::None => "None",
            EValue::Int(_) => "Int",
            EValue::Double(_) => "Double",
            EValue::Bool(_) => "Bool",
            EValue::String(_) => "String",
            EValue::IntList(_) => "IntList",
            EValue::DoubleList(_) => "DoubleList",
            EValue::BoolList(_) => "BoolList",
            EValue::Tensor(_) => "Tensor",
            EValue::TensorList(_) => "TensorList",
            EValue::OptionalTensorList(_) => "OptionalTensorList",
        }
    }
}

/// A number passed where ATen's schema says `Scalar`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Double(f64),
}

impl Scalar {
    pub fn to_f64(self) -> f64 {
        match self {
            Scalar::Bool(b) => f64::from(u8::from(b)),
            Scalar::Int(i) => i as f64,
            Scalar::Double(d) => d,
        }
    }

    pub fn to_i64(self) -> i64 {
        match self {
            Scalar::Bool(b) => i64::from(b),
            Scalar::Int(i) => i,
            Scalar::Double(d) => d as i64,
        }
    }

    /// The dtype PyTorch gives a wrapped Python number of this kind.
    pub fn default_dtype(self) -> crate::DType {
        match self {
            Scalar::Bool(_) => crate::DType::Bool,
            Scalar::Int(_) => crate::DType::Long,
            Scalar::Double(_) => crate::DType::Float,
        }
    }

    pub fn is_floating_point(self) -> bool {
        matches!(self, Scalar::Double(_))
    }
}

/// The immutable contents of list and string values.
#[derive(Debug, Default)]
pub struct ListPool {
    /// Items of IntList, TensorList and OptionalTensorList values: value indices.
    pub indices: Box<[u32]>,
    pub doubles: Box<[f64]>,
    pub bools: Box<[bool]>,
    pub strings: Box<str>,
}

impl ListPool {
    pub fn indices(&self, span: Span) -> &[u32] {
        self.indices.get(span.range()).unwrap_or(&[])
    }

    pub fn doubles(&self, span: Span) -> &[f64] {
        self.doubles.get(span.range()).unwrap_or(&[])
    }

    pub fn bools(&self, span: Span) -> &[bool] {
        self.bools.get(span.range()).unwrap_or(&[])
    }

    pub fn string(&self, span: Span) -> &str {
        self.strings.get(span.range()).unwrap_or("")
    }
}

/// A method's values and tensors, with interior mutability so that kernels running at the same
/// time can each write their own outputs.
///
/// Access rules (the engine's invariant, checked at method load and kept by the scheduler): while a
/// kernel runs, no other code writes any value or tensor that kernel reads or writes, and no other
/// code reads what it writes. With `&mut ValueTable` everything is exclusive and the safe accessors
/// apply.
pub struct ValueTable {
    values: Box<[UnsafeCell<EValue>]>,
    tensors: Box<[UnsafeCell<TensorImpl>]>,
    lists: ListPool,
}

// SAFETY: shared access from several threads follows the access rules above: cells are only read
// or written through `&mut self`, or by kernels whose reads and writes the engine keeps disjoint
// from everything running concurrently. The tensors' pointees are plain bytes.
unsafe impl Sync for ValueTable {}
// SAFETY: the table owns its cells; TensorImpl is Send.
unsafe impl Send for ValueTable {}

impl core::fmt::Debug for ValueTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ValueTable").field("values", &self.values.len()).field("tensors", &self.tensors.len()).finish()
    }
}

impl ValueTable {
    pub fn new(values: Vec<EValue>, tensors: Vec<TensorImpl>, lists: ListPool) -> ValueTable {
        ValueTable {
            values: values.into_iter().map(UnsafeCell::new).collect(),
            tensors: tensors.into_iter().map(UnsafeCell::new).collect(),
            lists,
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    pub fn lists(&self) -> &ListPool {
        &self.lists
    }

    /// The value at `index` (exclusive access).
    pub fn get(&mut self, index: u32) -> Option<EValue> {
        self.values.get_mut(index as usize).map(|c| *c.get_mut())
    }

    /// Replaces the value at `index`; `false` when out of range.
    pub fn set(&mut self, index: u32, value: EValue) -> bool {
        match self.values.get_mut(index as usize) {
            Some(c) => {
                *c.get_mut() = value;
                true
            }
            None => false,
        }
    }

    /// The tensor `id` (exclusive access).
    pub fn tensor_mut(&mut self, id: TensorId) -> Option<&mut TensorImpl> {
        self.tensors.get_mut(id.0 as usize).map(UnsafeCell::get_mut)
    }

    /// The tensor behind value `index`, when it is a tensor (exclusive access).
    pub fn value_tensor_mut(&mut self, index: u32) -> Option<&mut TensorImpl> {
        match self.get(index)? {
            EValue::Tensor(id) => self.tensor_mut(id),
            _ => None,
        }
    }

    /// Every tensor (exclusive access), e.g. to restore freed data pointers.
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = &mut TensorImpl> {
        self.tensors.iter_mut().map(UnsafeCell::get_mut)
    }

    /// Reads a value through a shared reference.
    ///
    /// # Safety
    /// No other thread may be writing value `index` (the access rules above).
    pub unsafe fn read(&self, index: u32) -> Option<EValue> {
        // SAFETY: the caller guarantees no concurrent writer; EValue is Copy, so no reference
        // into the cell outlives this read.
        self.values.get(index as usize).map(|c| unsafe { *c.get() })
    }

    /// Writes a value through a shared reference.
    ///
    /// # Safety
    /// No other code may read or write value `index` during this call.
    pub unsafe fn write(&self, index: u32, value: EValue) -> bool {
        match self.values.get(index as usize) {
            Some(c) => {
                // SAFETY: the caller guarantees exclusive access to this cell; no reference to
                // its contents is held anywhere (values are only copied out).
                unsafe { *c.get() = value };
                true
            }
            None => false,
        }
    }

    /// A shared reference to tensor `id`.
    ///
    /// # Safety
    /// No `&mut` to this tensor may exist while the returned reference lives.
    pub unsafe fn tensor_ref(&self, id: TensorId) -> Option<&TensorImpl> {
        // SAFETY: the caller guarantees there is no live `&mut` to this cell.
        self.tensors.get(id.0 as usize).map(|c| unsafe { &*c.get() })
    }

    /// An exclusive reference to tensor `id` through a shared table.
    ///
    /// # Safety
    /// No other reference to this tensor (shared or exclusive) may exist while the returned
    /// reference lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn tensor_excl(&self, id: TensorId) -> Option<&mut TensorImpl> {
        // SAFETY: the caller guarantees exclusivity for the lifetime of the reference.
        self.tensors.get(id.0 as usize).map(|c| unsafe { &mut *c.get() })
    }

    /// A shared reference to tensor `id`, given exclusive access to the table.
    pub fn tensor(&mut self, id: TensorId) -> Option<&TensorImpl> {
        self.tensors.get_mut(id.0 as usize).map(|c| &*c.get_mut())
    }
}
