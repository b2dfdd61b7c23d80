//! The sequential path allocates nothing inside `execute` once the method is loaded: a counting
//! global allocator sees zero allocations over many executions of real programs. This is the
//! portable (reference, heapless) configuration, `Runtime::portable()`; optimized kernels may
//! allocate scratch (the GEMM's packing buffers).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use etch::{Program, TensorView};

struct Counting;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = ACTIVE.try_with(|a| {
        if a.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations on this thread while `f` runs.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    ACTIVE.with(|a| a.set(true));
    f();
    ACTIVE.with(|a| a.set(false));
    COUNT.with(|c| c.get())
}

/// A method on the exporter's plan, and a closure that sets its inputs (that plan may give an
/// input's bytes to other tensors, so they are set before each execution).
fn loaded(name: &str) -> (etch::Method<'static>, impl Fn(&mut etch::Method<'static>)) {
    let case = common::case(name);
    let program = Program::load_file(&case.program).unwrap();
    let method = program.load_method_with(&case.method, &etch::Runtime::portable(), None).unwrap();
    let arrays: Vec<_> = case.runs[0].0.iter().map(|path| etch::npy::read(path).unwrap()).collect();
    let set = move |method: &mut etch::Method<'static>| {
        for (i, a) in arrays.iter().enumerate() {
            method.set_input(i, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data }).unwrap();
        }
    };
    (method, set)
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the test itself: if counting were broken, the assertions below would pass vacuously.
    let n = allocations(|| {
        let v: Vec<u64> = std::hint::black_box(vec![1, 2, 3]);
        drop(v);
    });
    assert_eq!(n, 1);
}

#[test]
fn execute_allocates_nothing() {
    for name in ["mlp_towers", "dispatch_chain", "dispatch_fan", "cond", "counter", "dynamic_batch"] {
        let (mut method, set_inputs) = loaded(name);
        set_inputs(&mut method);
        method.execute().unwrap();
        let mut n = 0;
        for _ in 0..20 {
            set_inputs(&mut method);
            n += allocations(|| method.execute().unwrap());
        }
        assert_eq!(n, 0, "{name}: {n} allocations in 20 executions");
    }
}
