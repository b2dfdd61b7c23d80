//! Test-only harness: builds the values of one operator call (tensors over owned buffers, ints,
//! lists, ...) and runs a kernel on them, so kernels can be fed arbitrary (including hostile)
//! arguments without a program.

use crate::args::KernelArgs;
use crate::dtype::{DType, Element};
use crate::error::KernelError;
use crate::registry::{KernelContext, KernelFn};
use crate::shape::{DimOrder, Shape};
use crate::tensor::{Tensor, TensorImpl};
use crate::value::{EValue, ListPool, Span, TensorId, ValueTable};

/// The values of one call, by schema position.
#[derive(Default)]
pub struct Call {
    values: Vec<EValue>,
    tensors: Vec<TensorImpl>,
    /// Tensor storage, 8-byte aligned; each buffer is owned here and never moved or resized.
    buffers: Vec<Vec<u64>>,
    list_items: Vec<u32>,
    doubles: Vec<f64>,
    strings: String,
    args: Vec<u32>,
    writable: u64,
}

impl Call {
    pub fn new() -> Call {
        Call::default()
    }

    fn push_value(&mut self, v: EValue) -> u32 {
        self.values.push(v);
        (self.values.len() - 1) as u32
    }

    fn arg(mut self, v: EValue) -> Call {
        let index = self.push_value(v);
        self.args.push(index);
        self
    }

    fn make_tensor<T: Element>(&mut self, sizes: &[usize], order: Option<&[u8]>, data: &[T], resizable: bool) -> u32 {
        self.make_tensor_with(sizes, order, data, resizable, true)
    }

    fn make_tensor_with<T: Element>(
        &mut self,
        sizes: &[usize],
        order: Option<&[u8]>,
        data: &[T],
        resizable: bool,
        writable: bool,
    ) -> u32 {
        let shape = Shape::new(sizes).expect("rank");
        let order = order.map_or_else(|| DimOrder::contiguous(sizes.len()), |o| DimOrder::new(o).expect("order"));
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let mut buffer = vec![0u64; bytes.len().div_ceil(8).max(1)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut buffer)[..bytes.len()].copy_from_slice(bytes);
        let capacity = bytes.len();
        let ptr = buffer.as_mut_ptr().cast::<u8>();
        self.buffers.push(buffer);
        // SAFETY: `ptr` points to `capacity` initialised bytes of a buffer this `Call` owns and
        // never touches again except through this tensor; the heap allocation does not move when
        // `buffers` grows, and it outlives the tensor (both are dropped with the `Call`).
        let t = unsafe { TensorImpl::new(T::DTYPE, shape, order, resizable, writable, ptr, capacity) };
        self.tensors.push(t);
        self.push_value(EValue::Tensor(TensorId((self.tensors.len() - 1) as u32)))
    }

    /// A tensor argument with these sizes and contiguous data.
    pub fn tensor<T: Element>(self, sizes: &[usize], data: &[T]) -> Call {
        self.tensor_ordered(sizes, None, data)
    }

    /// A constant tensor argument (a program constant: [`Tensor::is_constant`]), contiguous.
    pub fn constant<T: Element>(mut self, sizes: &[usize], data: &[T]) -> Call {
        let v = self.make_tensor_with(sizes, None, data, false, false);
        self.args.push(v);
        self
    }

    /// A tensor argument stored in dim order `order` (`data` in storage order).
    pub fn tensor_ordered<T: Element>(mut self, sizes: &[usize], order: Option<&[u8]>, data: &[T]) -> Call {
        let v = self.make_tensor(sizes, order, data, false);
        self.args.push(v);
        self
    }

    /// A tensor-list argument of contiguous float32 tensors (`(sizes, data)` each).
    pub fn tensor_list(mut self, items: &[(&[usize], &[f32])]) -> Call {
        let tensors: Vec<u32> = items.iter().map(|&(sizes, data)| self.make_tensor(sizes, None, data, false)).collect();
        let start = self.list_items.len() as u32;
        self.list_items.extend(tensors);
        self.arg(EValue::TensorList(Span { start, len: items.len() as u32 }))
    }

    /// A tensor of `sizes` filled with `0, 1, 2, ...` scaled by `step`.
    pub fn ramp(self, dtype: DType, sizes: &[usize], step: f64) -> Call {
        let n: usize = sizes.iter().product();
        crate::dispatch_dtype!(dtype, T => {
            let data: Vec<T> = (0..n).map(|i| T::from_f64(i as f64 * step)).collect();
            self.tensor(sizes, &data)
        }, _ => panic!("dtype"))
    }

    /// A writable output of `dtype` with room for `capacity` elements, dynamic (resizable) with
    /// the given current sizes.
    pub fn out(mut self, dtype: DType, sizes: &[usize], capacity: usize) -> Call {
        crate::dispatch_dtype!(dtype, T => {
            let data = vec![T::from_f64(0.0); capacity];
            let v = self.make_tensor(sizes, None, &data[..], true);
            self.writable |= 1 << self.args.len();
            self.args.push(v);
            self
        }, _ => panic!("dtype"))
    }

    /// Like [`Call::out`], stored in dim order `order`.
    pub fn out_ordered(mut self, dtype: DType, sizes: &[usize], order: &[u8], capacity: usize) -> Call {
        crate::dispatch_dtype!(dtype, T => {
            let data = vec![T::from_f64(0.0); capacity];
            let v = self.make_tensor(sizes, Some(order), &data[..], true);
            self.writable |= 1 << self.args.len();
            self.args.push(v);
            self
        }, _ => panic!("dtype"))
    }

    /// A writable input (e.g. running statistics updated in place).
    pub fn inout<T: Element>(mut self, sizes: &[usize], data: &[T]) -> Call {
        let v = self.make_tensor(sizes, None, data, false);
        self.writable |= 1 << self.args.len();
        self.args.push(v);
        self
    }

    pub fn int(self, v: i64) -> Call {
        self.arg(EValue::Int(v))
    }

    pub fn double(self, v: f64) -> Call {
        self.arg(EValue::Double(v))
    }

    pub fn bool(self, v: bool) -> Call {
        self.arg(EValue::Bool(v))
    }

    /// An optional float (a `Scalar?` argument): the value or None.
    pub fn opt_double(self, v: Option<f64>) -> Call {
        match v {
            Some(v) => self.double(v),
            None => self.none(),
        }
    }

    pub fn none(self) -> Call {
        self.arg(EValue::None)
    }

    pub fn ints(mut self, items: &[i64]) -> Call {
        let start = self.list_items.len() as u32;
        for &i in items {
            let index = self.push_value(EValue::Int(i));
            self.list_items.push(index);
        }
        self.arg(EValue::IntList(Span { start, len: items.len() as u32 }))
    }

    pub fn doubles(mut self, items: &[f64]) -> Call {
        let start = self.doubles.len() as u32;
        self.doubles.extend_from_slice(items);
        self.arg(EValue::DoubleList(Span { start, len: items.len() as u32 }))
    }

    pub fn string(mut self, text: &str) -> Call {
        let start = self.strings.len() as u32;
        self.strings.push_str(text);
        self.arg(EValue::String(Span { start, len: text.len() as u32 }))
    }

    /// Runs `kernel` on the arguments; returns the result and the call (to read outputs).
    pub fn run(self, kernel: KernelFn) -> (Result<(), KernelError>, Finished) {
        let mut done = self.prepare();
        let result = done.run(kernel, &mut KernelContext::new());
        (result, done)
    }

    /// Runs `kernel` on the arguments and returns the float32 elements (storage order) of the
    /// tensor at position `out`; panics if the kernel fails.
    pub fn run_f32(self, kernel: KernelFn, out: usize) -> Vec<f32> {
        let (r, mut done) = self.run(kernel);
        r.unwrap_or_else(|e| panic!("kernel failed: {e}"));
        done.tensor::<f32>(out).1
    }

    /// The call, ready to run (any number of times, e.g. in a benchmark).
    pub fn prepare(self) -> Finished {
        let lists = ListPool {
            indices: self.list_items.into(),
            doubles: self.doubles.into(),
            strings: self.strings.into(),
            ..ListPool::default()
        };
        let table = ValueTable::new(self.values, self.tensors, lists);
        Finished { table, args: self.args, writable: self.writable, _buffers: self.buffers }
    }
}

/// A call ready to run, or after its kernel ran.
pub struct Finished {
    table: ValueTable,
    args: Vec<u32>,
    writable: u64,
    _buffers: Vec<Vec<u64>>,
}

impl Finished {
    /// Runs `kernel` (again) on the arguments with context `ctx`.
    pub fn run(&mut self, kernel: KernelFn, ctx: &mut KernelContext) -> Result<(), KernelError> {
        // SAFETY: every tensor has its own buffer, so writable positions share no tensor or byte
        // with any other position; `&mut self` excludes any other access to the table while
        // `args` lives; writable positions are below 64 (calls have few arguments).
        let args = unsafe { KernelArgs::new(&self.table, &self.args, self.writable) };
        kernel(ctx, &args)
    }

    /// Runs `prepare` on the arguments (as the engine does at method init), then `kernel` with
    /// the state it returned; the result tells whether `prepare` returned any.
    pub fn run_prepared(
        &mut self,
        prepare: crate::registry::PrepareFn,
        kernel: KernelFn,
        ctx: &mut KernelContext,
    ) -> Result<bool, KernelError> {
        // SAFETY: as in `run`.
        let args = unsafe { KernelArgs::new(&self.table, &self.args, self.writable) };
        let state = prepare(&args)?;
        let args = args.with_prepared(state.as_deref());
        kernel(ctx, &args)?;
        Ok(state.is_some())
    }

    /// Runs `prepare` on the arguments (as the engine does at method init) and returns its state,
    /// for [`Finished::run_with`] to reuse across runs (benchmarks of prepared kernels).
    pub fn prepare_state(
        &mut self,
        prepare: crate::registry::PrepareFn,
    ) -> Result<Option<crate::registry::PreparedState>, KernelError> {
        // SAFETY: as in `run`.
        let args = unsafe { KernelArgs::new(&self.table, &self.args, self.writable) };
        prepare(&args)
    }

    /// Runs `kernel` with a state `prepare_state` returned.
    pub fn run_with(
        &mut self,
        state: Option<&crate::registry::PreparedState>,
        kernel: KernelFn,
        ctx: &mut KernelContext,
    ) -> Result<(), KernelError> {
        // SAFETY: as in `run`.
        let args = unsafe { KernelArgs::new(&self.table, &self.args, self.writable) };
        let args = args.with_prepared(state.map(|s| &**s));
        kernel(ctx, &args)
    }

    /// Sizes and elements (storage order) of the tensor at position `arg`.
    pub fn tensor<T: Element>(&mut self, arg: usize) -> (Vec<usize>, Vec<T>) {
        let imp = self.table.value_tensor_mut(self.args[arg]).expect("tensor");
        let t = Tensor::new(imp, arg);
        (t.sizes().to_vec(), t.data::<T>().expect("data").to_vec())
    }
}

/// Asserts that two float slices agree within `tol` (absolute plus relative).
pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "element {i}: {g} vs {w}\n got {got:?}\nwant {want:?}");
    }
}
