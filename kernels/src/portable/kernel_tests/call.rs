//! Test support: builds a small value table over owned buffers and calls a kernel on it, so
//! kernel tests can check results and error paths without a `.pte`.

use crate::args::KernelArgs;
use crate::dtype::{DType, Element};
use crate::error::KernelError;
use crate::registry::{KernelContext, KernelFn};
use crate::shape::{DimOrder, Shape};
use crate::tensor::{Tensor, TensorImpl};
use crate::value::{EValue, ListPool, Span, TensorId, ValueTable};

/// Values of one kernel call under construction; `add_*` return value indices.
#[derive(Default)]
pub(crate) struct Call {
    values: Vec<EValue>,
    tensors: Vec<TensorImpl>,
    /// One buffer per tensor, in u64 words so every dtype is aligned. Never resized after the
    /// tensor pointing into it is made, so the pointer stays valid.
    buffers: Vec<Vec<u64>>,
    indices: Vec<u32>,
}

impl Call {
    fn add_value(&mut self, v: EValue) -> u32 {
        self.values.push(v);
        (self.values.len() - 1) as u32
    }

    fn add_tensor_bytes(&mut self, dtype: DType, sizes: &[usize], bytes: &[u8], capacity: usize, dynamic: bool) -> u32 {
        let mut buffer = vec![0u64; capacity.div_ceil(8).max(1)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut buffer)[..bytes.len()].copy_from_slice(bytes);
        let ptr = buffer.as_mut_ptr().cast::<u8>();
        let shape = Shape::new(sizes).expect("rank <= 16");
        // SAFETY: `ptr` points at `capacity` (rounded up) bytes of `buffer`, which lives in `self`
        // for as long as the tensor and is never reallocated; each tensor has its own buffer.
        let t =
            unsafe { TensorImpl::new(dtype, shape, DimOrder::contiguous(sizes.len()), dynamic, true, ptr, capacity) };
        self.buffers.push(buffer);
        self.tensors.push(t);
        self.add_value(EValue::Tensor(TensorId((self.tensors.len() - 1) as u32)))
    }

    /// An input tensor of `sizes` holding `data` (row-major).
    pub fn tensor<T: Element>(&mut self, sizes: &[usize], data: &[T]) -> u32 {
        let bytes = bytemuck::cast_slice(data);
        self.add_tensor_bytes(T::DTYPE, sizes, bytes, bytes.len(), false)
    }

    /// An output tensor of `sizes`, zero-filled; `dynamic` ones may be resized within their bytes.
    pub fn out<T: Element>(&mut self, sizes: &[usize], dynamic: bool) -> u32 {
        let n = sizes.iter().product::<usize>() * core::mem::size_of::<T>();
        self.add_tensor_bytes(T::DTYPE, sizes, &vec![0u8; n], n, dynamic)
    }

    pub fn int(&mut self, v: i64) -> u32 {
        self.add_value(EValue::Int(v))
    }

    pub fn boolean(&mut self, v: bool) -> u32 {
        self.add_value(EValue::Bool(v))
    }

    pub fn none(&mut self) -> u32 {
        self.add_value(EValue::None)
    }

    pub fn int_list(&mut self, items: &[i64]) -> u32 {
        let start = self.indices.len() as u32;
        for &v in items {
            let i = self.int(v);
            self.indices.push(i);
        }
        self.add_value(EValue::IntList(Span { start, len: items.len() as u32 }))
    }

    /// A `Tensor?[]` of the given value indices (`None` items as [`crate::NONE_INDEX`]).
    pub fn opt_tensor_list(&mut self, items: &[u32]) -> u32 {
        let start = self.indices.len() as u32;
        self.indices.extend_from_slice(items);
        self.add_value(EValue::OptionalTensorList(Span { start, len: items.len() as u32 }))
    }

    /// A `Tensor[]` of the given value indices.
    pub fn tensor_list(&mut self, items: &[u32]) -> u32 {
        let start = self.indices.len() as u32;
        self.indices.extend_from_slice(items);
        self.add_value(EValue::TensorList(Span { start, len: items.len() as u32 }))
    }

    /// Runs `kernel` with `args` (value indices), positions in `writable` writable.
    pub fn run(self, kernel: KernelFn, args: &[u32], writable: u64) -> Done {
        let Call { values, tensors, buffers, indices } = self;
        let table = ValueTable::new(values, tensors, ListPool { indices: indices.into(), ..Default::default() });
        // SAFETY: every tensor has its own buffer, so no written tensor overlaps another; nothing
        // else touches the table during the call; writable positions are below 64.
        let kernel_args = unsafe { KernelArgs::new(&table, args, writable) };
        let result = kernel(&mut KernelContext::new(), &kernel_args);
        Done { table, _buffers: buffers, result }
    }
}

/// A finished call: its result and the tensors as the kernel left them.
pub(crate) struct Done {
    table: ValueTable,
    _buffers: Vec<Vec<u64>>,
    pub result: Result<(), KernelError>,
}

impl Done {
    /// Sizes and elements of the tensor at value index `value`.
    pub fn read<T: Element>(&mut self, value: u32) -> (Vec<usize>, Vec<T>) {
        let Some(EValue::Tensor(id)) = self.table.get(value) else { panic!("value {value} is not a tensor") };
        let imp = self.table.tensor(id).expect("tensor");
        let t = Tensor::new(imp, 0);
        (t.sizes().to_vec(), t.data::<T>().expect("data").to_vec())
    }
}
