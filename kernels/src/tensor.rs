//! Tensors over memory the runtime owns: [`TensorImpl`] holds the metadata and a data pointer;
//! kernels see it through [`Tensor`] (read) and [`TensorMut`] (write, resize).

use core::fmt;

use crate::dtype::{DType, Element};
use crate::error::KernelError;
use crate::shape::{DimOrder, Shape, strides_for};

/// Metadata and storage of one tensor. The data pointer refers to memory the runtime owns
/// (planned buffers, program constants, input buffers); the tensor never frees it.
pub struct TensorImpl {
    dtype: DType,
    shape: Shape,
    dim_order: DimOrder,
    /// Element strides of `shape` in `dim_order` (kept in step by `new` and `resize`: kernels ask
    /// for them on every call, and recomputing them was a visible share of small kernels' time).
    strides: Shape,
    resizable: bool,
    writable: bool,
    data: *mut u8,
    /// Bytes valid at `data`.
    capacity: usize,
    /// Cached product of `shape` (kept in step by `new` and `resize`).
    numel: usize,
    /// Bytes per element.
    elem_size: usize,
    /// The storage the tensor was created with; `restore_data` puts it back after a free.
    home: *mut u8,
}

// SAFETY: a TensorImpl is metadata plus a pointer it does not own; whoever shares it between
// threads (the engine) guarantees that writes through it never race with other accesses, which
// is the same contract as for the `&mut` views it hands out.
unsafe impl Send for TensorImpl {}
// SAFETY: as above; shared access only reads through the pointer.
unsafe impl Sync for TensorImpl {}

impl fmt::Debug for TensorImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorImpl")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("dim_order", &self.dim_order)
            .field("capacity", &self.capacity)
            .field("has_data", &!self.data.is_null())
            .finish()
    }
}

impl TensorImpl {
    /// A tensor of `shape` over `capacity` bytes at `data` (null for "no data yet").
    ///
    /// # Safety
    /// Unless `data` is null, it must be valid for reads of `capacity` bytes — and for writes when
    /// `writable` — for as long as this tensor (or anything it is moved into) is used, and no other
    /// Rust reference may alias those bytes while a view created from this tensor is alive.
    pub unsafe fn new(
        dtype: DType,
        shape: Shape,
        dim_order: DimOrder,
        resizable: bool,
        writable: bool,
        data: *mut u8,
        capacity: usize,
    ) -> TensorImpl {
        let numel = shape.numel().unwrap_or(0);
        let elem_size = dtype.element_size().unwrap_or(0);
        // A shape whose bytes exceed the storage would make views read past it: expose no data.
        let data =
            if numel.checked_mul(elem_size).is_some_and(|n| n <= capacity) { data } else { core::ptr::null_mut() };
        let strides = strides_for(&shape, &dim_order);
        TensorImpl {
            dtype,
            shape,
            dim_order,
            strides,
            resizable,
            writable,
            data,
            capacity,
            numel,
            elem_size,
            home: data,
        }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    #[inline]
    pub fn sizes(&self) -> &[usize] {
        &self.shape
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn dim_order(&self) -> &DimOrder {
        &self.dim_order
    }

    #[inline]
    pub fn numel(&self) -> usize {
        self.numel
    }

    /// Bytes of the current shape (never more than `capacity`).
    #[inline]
    pub fn nbytes(&self) -> usize {
        self.numel * self.elem_size
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    pub fn is_resizable(&self) -> bool {
        self.resizable
    }

    pub fn has_data(&self) -> bool {
        !self.data.is_null()
    }

    /// Start address of the data, for overlap checks and diagnostics.
    pub fn data_addr(&self) -> usize {
        self.data as usize
    }

    /// Forbids further writes (a constant computed at load).
    pub fn make_read_only(&mut self) {
        self.writable = false;
    }

    /// Drops the data pointer (FreeCall).
    pub fn free_data(&mut self) {
        self.data = core::ptr::null_mut();
    }

    /// Restores the storage the tensor was created with (undoes [`Self::free_data`]).
    pub fn restore_data(&mut self) {
        self.data = self.home;
    }

    /// Shape change within the storage: same rank, at most `capacity` bytes; static tensors
    /// accept only their current shape.
    #[inline]
    pub fn resize(&mut self, sizes: &[usize]) -> Result<(), KernelError> {
        if crate::shape::same_sizes(&self.shape, sizes) {
            return Ok(());
        }
        self.resize_slow(sizes)
    }

    fn resize_slow(&mut self, sizes: &[usize]) -> Result<(), KernelError> {
        let elements = sizes.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let err = |what| KernelError::Resize {
            arg: 0,
            elements: elements.unwrap_or(usize::MAX),
            rank: sizes.len(),
            current_rank: self.shape.rank(),
            capacity: self.capacity,
            what,
        };
        if !self.resizable {
            return Err(err("static"));
        }
        if sizes.len() != self.shape.rank() {
            return Err(err("of another rank"));
        }
        let bytes = elements.and_then(|n| n.checked_mul(self.dtype.element_size().unwrap_or(0)));
        match bytes {
            Some(b) if b <= self.capacity => {}
            _ => return Err(err("too small")),
        }
        // Rank is unchanged, so this cannot fail.
        self.shape = Shape::new(sizes).ok_or(err("of another rank"))?;
        self.strides = strides_for(&self.shape, &self.dim_order);
        self.numel = elements.unwrap_or(0);
        Ok(())
    }

    #[inline]
    fn bytes(&self, arg: usize) -> Result<&[u8], KernelError> {
        if self.data.is_null() {
            return Err(KernelError::NoData { arg });
        }
        let len = self.nbytes();
        // SAFETY: `data` is non-null and valid for reads of `capacity >= nbytes` bytes (the
        // contract of `new`; `resize` keeps nbytes <= capacity), and no `&mut` to these bytes is
        // alive while `&self` is borrowed (the contract of `new`, upheld by the engine).
        Ok(unsafe { core::slice::from_raw_parts(self.data, len.min(self.capacity)) })
    }

    #[inline]
    fn bytes_mut(&mut self, arg: usize) -> Result<&mut [u8], KernelError> {
        if self.data.is_null() {
            return Err(KernelError::NoData { arg });
        }
        if !self.writable {
            return Err(KernelError::NotWritable { arg });
        }
        let len = self.nbytes().min(self.capacity);
        // SAFETY: `data` is non-null and valid for writes of `capacity` bytes because the tensor
        // is writable (contract of `new`); `&mut self` plus the no-alias contract of `new` make
        // this the only reference to these bytes while it lives.
        Ok(unsafe { core::slice::from_raw_parts_mut(self.data, len) })
    }
}

#[inline]
fn typed<T: Element>(bytes: &[u8], dtype: DType, arg: usize) -> Result<&[T], KernelError> {
    if dtype != T::DTYPE {
        return Err(KernelError::DtypeMismatch { arg, expected: T::DTYPE, found: dtype });
    }
    bytemuck::try_cast_slice(bytes).map_err(|_| KernelError::Misaligned { arg, dtype })
}

#[inline]
fn typed_mut<T: Element>(bytes: &mut [u8], dtype: DType, arg: usize) -> Result<&mut [T], KernelError> {
    if dtype != T::DTYPE {
        return Err(KernelError::DtypeMismatch { arg, expected: T::DTYPE, found: dtype });
    }
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| KernelError::Misaligned { arg, dtype })
}

/// A read-only view of a kernel argument.
#[derive(Clone, Copy)]
pub struct Tensor<'a> {
    pub(crate) imp: &'a TensorImpl,
    pub(crate) arg: usize,
}

impl<'a> Tensor<'a> {
    /// A view of `imp` reported as argument `arg` in errors.
    pub fn new(imp: &'a TensorImpl, arg: usize) -> Self {
        Tensor { imp, arg }
    }

    #[inline]
    pub fn dtype(&self) -> DType {
        self.imp.dtype
    }

    /// Whether the tensor is a constant of the program (or computed from constants at load): its
    /// data never changes once the method is built.
    pub fn is_constant(&self) -> bool {
        !self.imp.writable
    }

    #[inline]
    pub fn sizes(&self) -> &'a [usize] {
        &self.imp.shape
    }

    pub fn shape(&self) -> Shape {
        self.imp.shape
    }

    pub fn dim(&self) -> usize {
        self.imp.shape.rank()
    }

    pub fn numel(&self) -> usize {
        self.imp.numel()
    }

    #[inline]
    pub fn dim_order(&self) -> &'a DimOrder {
        &self.imp.dim_order
    }

    /// Element strides implied by the dim order.
    #[inline]
    pub fn strides(&self) -> &'a Shape {
        &self.imp.strides
    }

    /// Position of this argument in the operator's schema.
    pub fn arg(&self) -> usize {
        self.arg
    }

    /// The elements, in storage order; fails unless `T` matches the dtype.
    #[inline]
    pub fn data<T: Element>(&self) -> Result<&'a [T], KernelError> {
        typed(self.imp.bytes(self.arg)?, self.imp.dtype, self.arg)
    }

    /// The raw bytes, in storage order.
    pub fn bytes(&self) -> Result<&'a [u8], KernelError> {
        self.imp.bytes(self.arg)
    }

    /// The single element of a one-element tensor, converted to `T`.
    pub fn item<T: Element>(&self) -> Result<T, KernelError> {
        if self.numel() != 1 {
            return Err(KernelError::ShapeMismatch { arg: self.arg, reason: "expected a one-element tensor" });
        }
        let arg = self.arg;
        crate::dispatch_dtype!(self.dtype(), S => Ok(T::cast_from(self.data::<S>()?[0])),
            _ => Err(KernelError::UnsupportedDtype { arg, dtype: self.dtype() }))
    }
}

impl fmt::Debug for Tensor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor(arg {}, {} {:?})", self.arg, self.dtype(), self.sizes())
    }
}

/// A writable view of a kernel's output argument.
pub struct TensorMut<'a> {
    pub(crate) imp: &'a mut TensorImpl,
    pub(crate) arg: usize,
}

impl<'a> TensorMut<'a> {
    /// A writable view of `imp` reported as argument `arg` in errors.
    pub fn new(imp: &'a mut TensorImpl, arg: usize) -> Self {
        TensorMut { imp, arg }
    }

    #[inline]
    pub fn dtype(&self) -> DType {
        self.imp.dtype
    }

    #[inline]
    pub fn sizes(&self) -> &[usize] {
        &self.imp.shape
    }

    pub fn dim(&self) -> usize {
        self.imp.shape.rank()
    }

    pub fn numel(&self) -> usize {
        self.imp.numel()
    }

    #[inline]
    pub fn dim_order(&self) -> &DimOrder {
        &self.imp.dim_order
    }

    #[inline]
    pub fn strides(&self) -> Shape {
        self.imp.strides
    }

    pub fn arg(&self) -> usize {
        self.arg
    }

    /// Sets the output's shape (ExecuTorch's `resize_tensor`): the current shape always passes;
    /// a dynamic tensor may change within its planned bytes and rank.
    #[inline]
    pub fn resize(&mut self, sizes: &[usize]) -> Result<(), KernelError> {
        if crate::shape::same_sizes(&self.imp.shape, sizes) {
            return Ok(());
        }
        self.resize_slow(sizes)
    }

    fn resize_slow(&mut self, sizes: &[usize]) -> Result<(), KernelError> {
        let arg = self.arg;
        self.imp.resize(sizes).map_err(|e| match e {
            KernelError::Resize { elements, rank, current_rank, capacity, what, .. } => {
                KernelError::Resize { arg, elements, rank, current_rank, capacity, what }
            }
            other => other,
        })
    }

    /// The elements, in storage order; fails unless `T` matches the dtype.
    #[inline(always)]
    pub fn data_mut<T: Element>(&mut self) -> Result<&mut [T], KernelError> {
        let (dtype, arg) = (self.imp.dtype, self.arg);
        typed_mut(self.imp.bytes_mut(arg)?, dtype, arg)
    }

    /// The raw bytes, in storage order.
    pub fn bytes_mut(&mut self) -> Result<&mut [u8], KernelError> {
        self.imp.bytes_mut(self.arg)
    }

    /// A read-only view of the same tensor (for shape queries while holding the output).
    pub fn as_ref(&self) -> Tensor<'_> {
        Tensor { imp: self.imp, arg: self.arg }
    }
}

impl fmt::Debug for TensorMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TensorMut(arg {}, {} {:?})", self.arg, self.dtype(), self.sizes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strides a tensor keeps follow its shape through resizes, in its dim order
    /// (channels-last included), and a refused resize leaves both as they were.
    #[test]
    fn strides_follow_resizes() {
        let mut storage = vec![0f32; 2 * 3 * 4 * 5];
        let capacity = storage.len() * 4;
        let make = |order: &[u8], storage: &mut Vec<f32>| {
            let shape = Shape::new(&[2, 3, 4, 5]).unwrap();
            let order = DimOrder::new(order).unwrap();
            // SAFETY: `storage` outlives the tensor and nothing else touches it meanwhile.
            unsafe { TensorImpl::new(DType::Float, shape, order, true, true, storage.as_mut_ptr().cast(), capacity) }
        };
        let mut t = make(&[0, 1, 2, 3], &mut storage);
        assert_eq!(&Tensor::new(&t, 0).strides()[..], &[60, 20, 5, 1]);
        t.resize(&[1, 3, 2, 5]).unwrap();
        assert_eq!(&Tensor::new(&t, 0).strides()[..], &[30, 10, 5, 1]);
        assert!(t.resize(&[3, 3, 4, 5]).is_err());
        assert_eq!((t.sizes(), &Tensor::new(&t, 0).strides()[..]), (&[1, 3, 2, 5][..], &[30, 10, 5, 1][..]));
        let mut t = make(&[0, 2, 3, 1], &mut storage);
        assert_eq!(&Tensor::new(&t, 0).strides()[..], &[60, 1, 15, 3]);
        t.resize(&[2, 3, 1, 5]).unwrap();
        assert_eq!(&TensorMut::new(&mut t, 0).strides()[..], &[15, 1, 15, 3]);
    }
}
