//! [`KernelArgs`]: how a kernel reads its arguments and writes its outputs.

use core::cell::Cell;

use crate::dtype::DType;
use crate::error::KernelError;
use crate::shape::Shape;
use crate::tensor::{Tensor, TensorMut};
use crate::value::{EValue, NONE_INDEX, Scalar, TensorId, ValueTable};

/// Most arguments a call may have (the writable set is a 64-bit mask).
pub const MAX_ARGS: usize = 64;

/// The arguments of one operator call, by position in the operator's schema.
///
/// Read accessors check the value's kind; write accessors check that the schema marks the
/// position writable and that the kernel has not borrowed it already.
pub struct KernelArgs<'a> {
    table: &'a ValueTable,
    args: &'a [u32],
    writable: u64,
    borrowed_mut: Cell<u64>,
    borrowed_shared: Cell<u64>,
    prepared: Option<&'a (dyn core::any::Any + Send + Sync)>,
}

impl core::fmt::Debug for KernelArgs<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KernelArgs").field("args", &self.args).field("writable", &self.writable).finish()
    }
}

fn type_err(arg: usize, expected: &'static str, v: &EValue) -> KernelError {
    KernelError::ArgType { arg, expected, found: v.kind_name() }
}

impl<'a> KernelArgs<'a> {
    /// The call with value indices `args`, of which the positions set in `writable` may be written.
    ///
    /// # Safety
    /// 1. For every writable position, the tensors its value may refer to (for a tensor list: its
    ///    items) are distinct from, and their bytes do not overlap, the tensors of every other
    ///    position (including list items and tensors named through moved values).
    /// 2. While the returned value lives, no other code accesses the values and tensors of writable
    ///    positions, and no other code writes the values and tensors of the other positions
    ///    (including `Int` values that an `IntList` argument names).
    /// 3. Writable positions are below [`MAX_ARGS`].
    pub unsafe fn new(table: &'a ValueTable, args: &'a [u32], writable: u64) -> Self {
        KernelArgs { table, args, writable, borrowed_mut: Cell::new(0), borrowed_shared: Cell::new(0), prepared: None }
    }

    /// The same call, carrying the state its kernel's [`crate::PrepareFn`] derived at method init.
    pub fn with_prepared(self, prepared: Option<&'a (dyn core::any::Any + Send + Sync)>) -> Self {
        KernelArgs { prepared, ..self }
    }

    /// The state prepared for this call site at method init, if there is one of type `T`.
    pub fn prepared<T: core::any::Any>(&self) -> Option<&'a T> {
        self.prepared?.downcast_ref::<T>()
    }

    pub fn len(&self) -> usize {
        self.args.len()
    }

    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// The value index behind position `arg`.
    pub fn value_index(&self, arg: usize) -> Result<u32, KernelError> {
        self.args.get(arg).copied().ok_or(KernelError::MissingArg { arg, len: self.args.len() })
    }

    fn bit(arg: usize) -> u64 {
        if arg < MAX_ARGS { 1u64 << arg } else { 0 }
    }

    fn is_writable(&self, arg: usize) -> bool {
        self.writable & Self::bit(arg) != 0
    }

    /// The value at position `arg` (a copy).
    pub fn value(&self, arg: usize) -> Result<EValue, KernelError> {
        let index = self.value_index(arg)?;
        // SAFETY: by contract 2 of `new`, no other code writes this value while we run; writable
        // positions are only written by this kernel through `set_value`, which takes no reference.
        unsafe { self.table.read(index) }.ok_or(KernelError::MissingArg { arg, len: self.args.len() })
    }

    fn tensor_id(&self, arg: usize) -> Result<TensorId, KernelError> {
        match self.value(arg)? {
            EValue::Tensor(id) => Ok(id),
            v => Err(type_err(arg, "Tensor", &v)),
        }
    }

    fn shared_tensor(&self, id: TensorId, arg: usize) -> Result<Tensor<'_>, KernelError> {
        // SAFETY: contract 1 of `new` keeps every writable position's tensors distinct from this
        // one unless `arg` itself is writable, and then the borrow flags (checked by the callers)
        // rule out a live `TensorMut` of it. Contract 2 rules out writers elsewhere.
        let imp = unsafe { self.table.tensor_ref(id) }.ok_or(KernelError::MissingArg { arg, len: self.args.len() })?;
        Ok(Tensor::new(imp, arg))
    }

    /// The dtype of the tensor at position `arg`, without borrowing it (so a kernel can choose a
    /// path before taking an output with [`Self::tensor_mut`]).
    pub fn tensor_dtype(&self, arg: usize) -> Result<DType, KernelError> {
        let id = self.tensor_id(arg)?;
        if self.borrowed_mut.get() & Self::bit(arg) != 0 {
            return Err(KernelError::AlreadyBorrowed { arg });
        }
        // SAFETY: no `TensorMut` of this position is alive (checked above), and contract 1 of
        // `new` keeps other positions' mutable borrows on other tensors; the reference ends here.
        let imp = unsafe { self.table.tensor_ref(id) }.ok_or(KernelError::MissingArg { arg, len: self.args.len() })?;
        Ok(imp.dtype())
    }

    /// The dim order of the tensor at position `arg`, without borrowing it (like
    /// [`Self::tensor_dtype`]).
    pub fn tensor_dim_order(&self, arg: usize) -> Result<crate::shape::DimOrder, KernelError> {
        let id = self.tensor_id(arg)?;
        if self.borrowed_mut.get() & Self::bit(arg) != 0 {
            return Err(KernelError::AlreadyBorrowed { arg });
        }
        // SAFETY: as in `tensor_dtype`: no `TensorMut` of this position is alive, and the
        // reference ends here.
        let imp = unsafe { self.table.tensor_ref(id) }.ok_or(KernelError::MissingArg { arg, len: self.args.len() })?;
        Ok(*imp.dim_order())
    }

    /// Position `arg` as a read-only tensor.
    pub fn tensor(&self, arg: usize) -> Result<Tensor<'_>, KernelError> {
        let id = self.tensor_id(arg)?;
        if self.is_writable(arg) {
            if self.borrowed_mut.get() & Self::bit(arg) != 0 {
                return Err(KernelError::AlreadyBorrowed { arg });
            }
            self.borrowed_shared.set(self.borrowed_shared.get() | Self::bit(arg));
        }
        self.shared_tensor(id, arg)
    }

    /// Position `arg` as a tensor, or `None` for a `None` value.
    pub fn opt_tensor(&self, arg: usize) -> Result<Option<Tensor<'_>>, KernelError> {
        match self.value(arg)? {
            EValue::None => Ok(None),
            _ => self.tensor(arg).map(Some),
        }
    }

    fn take_mut(&self, arg: usize) -> Result<(), KernelError> {
        if !self.is_writable(arg) {
            return Err(KernelError::NotWritable { arg });
        }
        let bit = Self::bit(arg);
        if (self.borrowed_mut.get() | self.borrowed_shared.get()) & bit != 0 {
            return Err(KernelError::AlreadyBorrowed { arg });
        }
        self.borrowed_mut.set(self.borrowed_mut.get() | bit);
        Ok(())
    }

    /// Position `arg` as a writable tensor (an `out` argument). Each position can be taken once.
    pub fn tensor_mut(&self, arg: usize) -> Result<TensorMut<'_>, KernelError> {
        let id = self.tensor_id(arg)?;
        self.take_mut(arg)?;
        // SAFETY: the position is writable and taken for the first time (take_mut), so by
        // contract 1 of `new` no other position refers to this tensor or its bytes, and by
        // contract 2 nothing outside this call touches it.
        let imp = unsafe { self.table.tensor_excl(id) }.ok_or(KernelError::MissingArg { arg, len: self.args.len() })?;
        if !imp.is_writable() {
            return Err(KernelError::NotWritable { arg });
        }
        Ok(TensorMut::new(imp, arg))
    }

    pub fn int(&self, arg: usize) -> Result<i64, KernelError> {
        match self.value(arg)? {
            EValue::Int(i) => Ok(i),
            v => Err(type_err(arg, "Int", &v)),
        }
    }

    pub fn opt_int(&self, arg: usize) -> Result<Option<i64>, KernelError> {
        match self.value(arg)? {
            EValue::None => Ok(None),
            EValue::Int(i) => Ok(Some(i)),
            v => Err(type_err(arg, "Int or None", &v)),
        }
    }

    /// A `float` argument (an `Int` value is accepted and converted, as PyTorch does).
    pub fn double(&self, arg: usize) -> Result<f64, KernelError> {
        match self.value(arg)? {
            EValue::Double(d) => Ok(d),
            EValue::Int(i) => Ok(i as f64),
            v => Err(type_err(arg, "Double", &v)),
        }
    }

    pub fn opt_double(&self, arg: usize) -> Result<Option<f64>, KernelError> {
        match self.value(arg)? {
            EValue::None => Ok(None),
            _ => self.double(arg).map(Some),
        }
    }

    pub fn bool(&self, arg: usize) -> Result<bool, KernelError> {
        match self.value(arg)? {
            EValue::Bool(b) => Ok(b),
            v => Err(type_err(arg, "Bool", &v)),
        }
    }

    pub fn opt_bool(&self, arg: usize) -> Result<Option<bool>, KernelError> {
        match self.value(arg)? {
            EValue::None => Ok(None),
            EValue::Bool(b) => Ok(Some(b)),
            v => Err(type_err(arg, "Bool or None", &v)),
        }
    }

    /// A `Scalar` argument: Bool, Int or Double.
    pub fn scalar(&self, arg: usize) -> Result<Scalar, KernelError> {
        match self.value(arg)? {
            EValue::Bool(b) => Ok(Scalar::Bool(b)),
            EValue::Int(i) => Ok(Scalar::Int(i)),
            EValue::Double(d) => Ok(Scalar::Double(d)),
            v => Err(type_err(arg, "Scalar", &v)),
        }
    }

    pub fn opt_scalar(&self, arg: usize) -> Result<Option<Scalar>, KernelError> {
        match self.value(arg)? {
            EValue::None => Ok(None),
            _ => self.scalar(arg).map(Some),
        }
    }

    /// A `ScalarType?` argument (passed as an Int code).
    pub fn opt_dtype(&self, arg: usize) -> Result<Option<DType>, KernelError> {
        match self.value(arg)? {
            EValue::None => Ok(None),
            EValue::Int(code) => DType::from_code(code)
                .map(Some)
                .ok_or(KernelError::InvalidArgument { arg, reason: "unknown scalar type code" }),
            v => Err(type_err(arg, "ScalarType", &v)),
        }
    }

    pub fn string(&self, arg: usize) -> Result<&str, KernelError> {
        match self.value(arg)? {
            EValue::String(span) => Ok(self.table.lists().string(span)),
            v => Err(type_err(arg, "String", &v)),
        }
    }

    pub fn opt_string(&self, arg: usize) -> Result<Option<&str>, KernelError> {
        match self.value(arg)? {
            EValue::None => Ok(None),
            _ => self.string(arg).map(Some),
        }
    }

    /// An `int[]` argument.
    pub fn int_list(&self, arg: usize) -> Result<IntList<'_>, KernelError> {
        match self.value(arg)? {
            EValue::IntList(span) => Ok(IntList { args: self, items: self.table.lists().indices(span), arg }),
            v => Err(type_err(arg, "IntList", &v)),
        }
    }

    pub fn opt_int_list(&self, arg: usize) -> Result<Option<IntList<'_>>, KernelError> {
        match self.value(arg)? {
            EValue::None => Ok(None),
            _ => self.int_list(arg).map(Some),
        }
    }

    pub fn double_list(&self, arg: usize) -> Result<&[f64], KernelError> {
        match self.value(arg)? {
            EValue::DoubleList(span) => Ok(self.table.lists().doubles(span)),
            v => Err(type_err(arg, "DoubleList", &v)),
        }
    }

    pub fn opt_double_list(&self, arg: usize) -> Result<Option<&[f64]>, KernelError> {
        match self.value(arg)? {
            EValue::None => Ok(None),
            _ => self.double_list(arg).map(Some),
        }
    }

    pub fn bool_list(&self, arg: usize) -> Result<&[bool], KernelError> {
        match self.value(arg)? {
            EValue::BoolList(span) => Ok(self.table.lists().bools(span)),
            v => Err(type_err(arg, "BoolList", &v)),
        }
    }

    /// A `Tensor[]` argument, read-only.
    pub fn tensor_list(&self, arg: usize) -> Result<TensorList<'_>, KernelError> {
        match self.value(arg)? {
            EValue::TensorList(span) => {
                if self.is_writable(arg) {
                    if self.borrowed_mut.get() & Self::bit(arg) != 0 {
                        return Err(KernelError::AlreadyBorrowed { arg });
                    }
                    self.borrowed_shared.set(self.borrowed_shared.get() | Self::bit(arg));
                }
                Ok(TensorList { args: self, items: self.table.lists().indices(span), arg })
            }
            v => Err(type_err(arg, "TensorList", &v)),
        }
    }

    /// A `Tensor?[]` argument.
    pub fn opt_tensor_list(&self, arg: usize) -> Result<TensorList<'_>, KernelError> {
        match self.value(arg)? {
            EValue::OptionalTensorList(span) => {
                Ok(TensorList { args: self, items: self.table.lists().indices(span), arg })
            }
            EValue::TensorList(_) => self.tensor_list(arg),
            v => Err(type_err(arg, "OptionalTensorList", &v)),
        }
    }

    /// A writable `Tensor(a!)[]` argument (e.g. the outputs of `split_with_sizes_copy.out`).
    pub fn tensor_list_mut(&self, arg: usize) -> Result<TensorListMut<'_>, KernelError> {
        match self.value(arg)? {
            EValue::TensorList(span) => {
                self.take_mut(arg)?;
                Ok(TensorListMut { args: self, items: self.table.lists().indices(span), arg })
            }
            v => Err(type_err(arg, "TensorList", &v)),
        }
    }

    /// Writes a non-tensor return value (e.g. the `int` a `sym_size` returns).
    pub fn set_value(&self, arg: usize, value: EValue) -> Result<(), KernelError> {
        let index = self.value_index(arg)?;
        if !self.is_writable(arg) {
            return Err(KernelError::NotWritable { arg });
        }
        if matches!(value, EValue::Tensor(_)) || matches!(self.value(arg)?, EValue::Tensor(_)) {
            return Err(KernelError::InvalidArgument { arg, reason: "set_value cannot replace a tensor" });
        }
        // SAFETY: the position is writable, so by contract 2 of `new` nothing else accesses this
        // value during the call, and no reference into the cell exists (values are copied out).
        unsafe { self.table.write(index, value) };
        Ok(())
    }

    fn list_tensor(&self, index: u32, list_arg: usize) -> Result<TensorId, KernelError> {
        // SAFETY: list items are read like positions (contract 2 of `new`).
        match unsafe { self.table.read(index) } {
            Some(EValue::Tensor(id)) => Ok(id),
            Some(v) => Err(type_err(list_arg, "Tensor list item", &v)),
            None => Err(KernelError::MissingArg { arg: list_arg, len: self.args.len() }),
        }
    }
}

/// An `int[]` argument: its items are `Int` values, read when asked for.
#[derive(Clone, Copy)]
pub struct IntList<'a> {
    args: &'a KernelArgs<'a>,
    items: &'a [u32],
    arg: usize,
}

impl<'a> IntList<'a> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, k: usize) -> Result<i64, KernelError> {
        let index =
            *self.items.get(k).ok_or(KernelError::InvalidArgument { arg: self.arg, reason: "list too short" })?;
        // SAFETY: IntList items are read like positions (contract 2 of `KernelArgs::new`).
        match unsafe { self.args.table.read(index) } {
            Some(EValue::Int(i)) => Ok(i),
            Some(v) => Err(type_err(self.arg, "Int list item", &v)),
            None => Err(KernelError::MissingArg { arg: self.arg, len: self.args.len() }),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Result<i64, KernelError>> + '_ {
        (0..self.len()).map(move |k| self.get(k))
    }

    /// The items as sizes: each must be non-negative.
    pub fn to_shape(&self) -> Result<Shape, KernelError> {
        let mut s = Shape::scalar();
        for v in self.iter() {
            let v = v?;
            let d = usize::try_from(v)
                .map_err(|_| KernelError::InvalidArgument { arg: self.arg, reason: "negative size" })?;
            if !s.push(d) {
                return Err(KernelError::InvalidArgument { arg: self.arg, reason: "more than 16 dimensions" });
            }
        }
        Ok(s)
    }

    /// The items into a fixed array; `N` items or an error.
    pub fn to_array<const N: usize>(&self) -> Result<[i64; N], KernelError> {
        if self.len() != N {
            return Err(KernelError::InvalidArgument { arg: self.arg, reason: "list has the wrong length" });
        }
        let mut out = [0; N];
        for (k, o) in out.iter_mut().enumerate() {
            *o = self.get(k)?;
        }
        Ok(out)
    }

    pub fn arg(&self) -> usize {
        self.arg
    }
}

/// A `Tensor[]` (or `Tensor?[]`) argument, read-only.
#[derive(Clone, Copy)]
pub struct TensorList<'a> {
    args: &'a KernelArgs<'a>,
    items: &'a [u32],
    arg: usize,
}

impl<'a> TensorList<'a> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Item `k`; `None` for an absent optional item.
    pub fn get_opt(&self, k: usize) -> Result<Option<Tensor<'a>>, KernelError> {
        let index =
            *self.items.get(k).ok_or(KernelError::InvalidArgument { arg: self.arg, reason: "list too short" })?;
        if index == NONE_INDEX {
            return Ok(None);
        }
        let id = self.args.list_tensor(index, self.arg)?;
        self.args.shared_tensor(id, self.arg).map(Some)
    }

    /// Item `k`, which must be present.
    pub fn get(&self, k: usize) -> Result<Tensor<'a>, KernelError> {
        self.get_opt(k)?.ok_or(KernelError::InvalidArgument { arg: self.arg, reason: "list item is None" })
    }

    pub fn iter(&self) -> impl Iterator<Item = Result<Tensor<'a>, KernelError>> + '_ {
        (0..self.len()).map(move |k| self.get(k))
    }

    pub fn arg(&self) -> usize {
        self.arg
    }
}

/// A writable `Tensor(a!)[]` argument; items are handed out one at a time.
pub struct TensorListMut<'a> {
    args: &'a KernelArgs<'a>,
    items: &'a [u32],
    arg: usize,
}

impl TensorListMut<'_> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Item `k`, writable; the borrow of `self` keeps it the only live item.
    pub fn get_mut(&mut self, k: usize) -> Result<TensorMut<'_>, KernelError> {
        let index =
            *self.items.get(k).ok_or(KernelError::InvalidArgument { arg: self.arg, reason: "list too short" })?;
        let id = self.args.list_tensor(index, self.arg)?;
        // SAFETY: the list's position is writable and taken (tensor_list_mut), so by contract 1
        // of `KernelArgs::new` its items are distinct from each other and from every other
        // position; `&mut self` keeps at most one item borrowed at a time.
        let imp = unsafe { self.args.table.tensor_excl(id) }
            .ok_or(KernelError::MissingArg { arg: self.arg, len: self.args.len() })?;
        if !imp.is_writable() {
            return Err(KernelError::NotWritable { arg: self.arg });
        }
        Ok(TensorMut::new(imp, self.arg))
    }

    /// Reads item `k` (e.g. its shape) without writing it.
    pub fn get(&mut self, k: usize) -> Result<Tensor<'_>, KernelError> {
        let t = self.get_mut(k)?;
        Ok(Tensor::new(t.imp, t.arg))
    }
}
