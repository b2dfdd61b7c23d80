//! Untrusted input: damaged files, crafted programs with bad indices, wrong inputs and missing
//! operators all give a typed error, never a panic.

mod common;

use common::builder::{I, ProgramSpec, V, add_program};
use etch::{DType, ErrorKind, Program, TensorView};

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(common::fixtures().join("programs").join(name)).unwrap()
}

/// Loads and, if that succeeds, loads every method and runs it on zero inputs. Any outcome but a
/// panic is acceptable; returns the error kinds seen.
fn exercise(bytes: &[u8]) -> Option<ErrorKind> {
    let program = match Program::from_bytes(bytes) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
            return Some(e.kind());
        }
    };
    let names: Vec<String> = program.method_names().map(String::from).collect();
    for name in names {
        let mut method = match program.load_method(&name) {
            Ok(m) => m,
            Err(e) => return Some(e.kind()),
        };
        let meta = program.method_meta(&name).unwrap();
        for i in 0..meta.num_inputs() {
            if let Some(t) = meta.input_tensor_meta(i) {
                let data = vec![0u8; t.nbytes];
                if let Err(e) = method.set_input(i, TensorView { dtype: t.dtype, sizes: t.sizes, data: &data }) {
                    return Some(e.kind());
                }
            }
        }
        if let Err(e) = method.execute() {
            return Some(e.kind());
        }
    }
    None
}

/// Deterministic pseudo-random numbers for mutations.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn truncated_files_are_refused() {
    for name in ["add_broadcast.pte", "linear.pte", "cond.pte", "counter.pte", "two_methods.pte"] {
        let bytes = fixture_bytes(name);
        for len in (0..bytes.len()).step_by(7) {
            let kind = exercise(&bytes[..len]);
            assert!(kind.is_some(), "{name} truncated to {len} bytes loaded and ran");
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    let mut rng = Lcg(7);
    let mut errors = 0;
    for name in ["add_broadcast.pte", "linear.pte", "cond.pte", "counter.pte", "dynamic_batch.pte", "two_methods.pte"] {
        let bytes = fixture_bytes(name);
        for _ in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.next() % 8 {
                let at = (rng.next() as usize) % b.len();
                b[at] ^= 1 << (rng.next() % 8);
            }
            errors += usize::from(exercise(&b).is_some());
        }
    }
    // Most flips land in data or padding and change nothing structural; many must be caught.
    assert!(errors > 100, "only {errors} of 1800 mutants were refused");
}

#[test]
fn extreme_values_in_aligned_words_never_panic() {
    let mut rng = Lcg(11);
    for name in ["add_broadcast.pte", "linear.pte", "cond.pte", "counter.pte"] {
        let bytes = fixture_bytes(name);
        for _ in 0..400 {
            let mut b = bytes.clone();
            let at = ((rng.next() as usize) % (b.len() / 4)) * 4;
            let v: u32 = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, b.len() as u32][(rng.next() % 6) as usize];
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            exercise(&b);
        }
    }
}

#[test]
fn bad_headers_are_typed() {
    let bytes = fixture_bytes("add_broadcast.pte");
    let mut b = bytes.clone();
    b[4..8].copy_from_slice(b"ET11");
    let e = Program::from_bytes(&b).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotSupported, "{e}");
    b[4..8].copy_from_slice(b"XXXX");
    assert_eq!(Program::from_bytes(&b).unwrap_err().kind(), ErrorKind::InvalidProgram);
    // Extended header claiming a program larger than the file.
    let mut b = bytes.clone();
    if &b[8..12] == b"eh00" {
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = Program::from_bytes(&b).unwrap_err();
        assert!(e.to_string().contains("byte offset"), "{e}");
    }
    assert_eq!(Program::from_bytes(&[]).unwrap_err().kind(), ErrorKind::InvalidProgram);
}

#[test]
fn the_builder_makes_valid_programs() {
    // The baseline for the crafted-program tests below: unmodified, it loads and computes.
    let program = Program::from_bytes(&add_program().build()).unwrap();
    let mut m = program.load_method("forward").unwrap();
    let (x, y) = ([1f32, 2., 3., 4.], [10f32, 20., 30., 40.]);
    m.set_input(0, TensorView { dtype: DType::Float, sizes: &[4], data: bytemuck::cast_slice(&x) }).unwrap();
    m.set_input(1, TensorView { dtype: DType::Float, sizes: &[4], data: bytemuck::cast_slice(&y) }).unwrap();
    m.execute().unwrap();
    assert_eq!(m.output_tensor(0).unwrap().data::<f32>().unwrap(), &[11., 22., 33., 44.]);
}

fn load_error(spec: &ProgramSpec) -> etch::Error {
    match Program::from_bytes(&spec.build()) {
        Err(e) => e,
        Ok(p) => p.load_method("forward").expect_err("the crafted program loaded"),
    }
}

#[test]
fn out_of_range_indices_are_refused_with_their_location() {
    type Mutation = Box<dyn Fn(&mut ProgramSpec)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("argument value index", Box::new(|s| s.instructions[0] = I::Kernel(0, vec![0, 1, 2, 3, 99]))),
        ("op_index", Box::new(|s| s.instructions[0] = I::Kernel(5, vec![0, 1, 2, 3, 3]))),
        ("negative argument", Box::new(|s| s.instructions[0] = I::Kernel(0, vec![0, -1, 2, 3, 3]))),
        ("inputs", Box::new(|s| s.inputs = vec![0, 40])),
        ("outputs", Box::new(|s| s.outputs = vec![-3])),
        ("memory_id", Box::new(|s| s.values[0] = V::F32 { sizes: vec![4], planned: Some((2, 0)), constant: None })),
        ("memory_id 0", Box::new(|s| s.values[0] = V::F32 { sizes: vec![4], planned: Some((0, 0)), constant: None })),
        (
            "planned offset",
            Box::new(|s| s.values[0] = V::F32 { sizes: vec![4], planned: Some((1, 40)), constant: None }),
        ),
        (
            "huge sizes",
            Box::new(|s| {
                s.values[0] = V::F32 { sizes: vec![1 << 30, 1 << 30, 1 << 30], planned: Some((1, 0)), constant: None }
            }),
        ),
        (
            "negative size",
            Box::new(|s| s.values[0] = V::F32 { sizes: vec![-4], planned: Some((1, 0)), constant: None }),
        ),
        ("jump destination", Box::new(|s| s.instructions.push(I::JumpFalse(2, 7)))),
        ("move target", Box::new(|s| s.instructions.push(I::Move(0, 1000)))),
        ("free target", Box::new(|s| s.instructions.push(I::Free(77)))),
        ("delegate index", Box::new(|s| s.instructions.push(I::Delegate(3, vec![0])))),
        (
            "unknown dtype",
            Box::new(|s| s.values[0] = V::Tensor { dtype: 9, sizes: vec![4], planned: Some((1, 0)), dynamic: false }),
        ),
        ("int list item", Box::new(|s| s.values.push(V::IntList(vec![500])))),
        ("tensor list item", Box::new(|s| s.values.push(V::TensorList(vec![2])))),
    ];
    for (what, mutate) in cases {
        let mut spec = add_program();
        mutate(&mut spec);
        let e = load_error(&spec);
        assert_eq!(e.kind(), ErrorKind::InvalidProgram, "{what}: {e}");
        assert!(
            e.to_string().contains("byte offset") || e.to_string().contains("instruction"),
            "{what}: no location in '{e}'"
        );
    }
}

#[test]
fn programs_that_would_alias_are_refused() {
    // Output placed over an input: a kernel would read and write the same bytes.
    let mut spec = add_program();
    spec.values[3] = V::F32 { sizes: vec![4], planned: Some((1, 8)), constant: None };
    let e = load_error(&spec);
    assert_eq!(e.kind(), ErrorKind::InvalidProgram, "{e}");
    assert!(e.to_string().contains("instruction 0"), "{e}");
    // Writing a constant.
    let mut spec = add_program();
    spec.values[3] = V::F32 { sizes: vec![4], planned: None, constant: Some(vec![0.0; 4]) };
    let e = load_error(&spec);
    assert!(e.to_string().contains("constant"), "{e}");
    // A move makes an input and the output the same tensor.
    let mut spec = add_program();
    spec.instructions.insert(0, I::Move(0, 3));
    assert_eq!(load_error(&spec).kind(), ErrorKind::InvalidProgram);
}

#[test]
fn calls_that_do_not_fit_the_schema_are_refused() {
    let mut spec = add_program();
    spec.instructions[0] = I::Kernel(0, vec![0, 1, 2, 3]);
    let e = load_error(&spec);
    assert!(e.to_string().contains("aten::add.out"), "{e}");
    let mut spec = add_program();
    spec.instructions[0] = I::Kernel(0, vec![0, 2, 2, 3, 3]);
    let e = load_error(&spec);
    assert!(e.to_string().contains("argument 1"), "{e}");
}

#[test]
fn a_missing_operator_is_named() {
    let mut spec = add_program();
    spec.operators[0] = ("etch_test::does_not_exist".into(), "out".into());
    let e = load_error(&spec);
    assert_eq!(e.kind(), ErrorKind::OperatorMissing);
    assert!(e.to_string().contains("etch_test::does_not_exist.out") && e.to_string().contains("instruction 0"), "{e}");
}

#[test]
fn endless_loops_stop_at_the_budget() {
    let mut spec = add_program();
    spec.values.push(V::Bool(false));
    spec.instructions.push(I::JumpFalse(4, 0));
    let program = Program::from_bytes(&spec.build()).unwrap();
    let mut m = program.load_method("forward").unwrap();
    for i in 0..2 {
        m.set_input(i, TensorView { dtype: DType::Float, sizes: &[4], data: &[0u8; 16] }).unwrap();
    }
    let e = m.execute().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
}

#[test]
fn wrong_inputs_are_typed_errors() {
    let program = Program::load_file(common::fixtures().join("programs/add_broadcast.pte")).unwrap();
    let mut m = program.load_method("forward").unwrap();
    let f32s = vec![0u8; 24 * 4];
    let f64s = vec![0u8; 24 * 8];
    let cases: Vec<(TensorView<'_>, usize)> = vec![
        (TensorView { dtype: DType::Double, sizes: &[2, 3, 4], data: &f64s }, 0),
        (TensorView { dtype: DType::Float, sizes: &[4, 3, 2], data: &f32s }, 0),
        (TensorView { dtype: DType::Float, sizes: &[24], data: &f32s }, 0),
        (TensorView { dtype: DType::Float, sizes: &[2, 3, 4], data: &f32s[..8] }, 0),
        (TensorView { dtype: DType::Float, sizes: &[2, 3, 4], data: &f32s }, 7),
    ];
    for (view, index) in cases {
        let e = m.set_input(index, view).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(&format!("input {index}")), "{e}");
    }
    // Executing before the inputs are set.
    let e = m.execute().unwrap_err();
    assert!(e.to_string().contains("not set"), "{e}");
    assert!(m.output(3).is_err());
}

#[test]
fn caller_memory_must_fit_the_plan() {
    let program = Program::load_file(common::fixtures().join("programs/add_broadcast.pte")).unwrap();
    let runtime = etch::Runtime::global();
    let mut small = [0u8; 16];
    let e = program
        .load_method_with("forward", runtime, Some(etch::MemoryManager::from_buffers(vec![&mut small[..]])))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MemoryAllocationFailed, "{e}");
    let e = program.load_method_with("forward", runtime, Some(etch::MemoryManager::from_buffers(vec![]))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MemoryAllocationFailed, "{e}");
    // Enough caller memory works, and outputs land in it.
    let mut arena = vec![0u64; 64];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut arena);
    let mut m =
        program.load_method_with("forward", runtime, Some(etch::MemoryManager::from_buffers(vec![bytes]))).unwrap();
    let x = [1f32; 24];
    let y = [2f32; 3];
    m.set_input(0, TensorView { dtype: DType::Float, sizes: &[2, 3, 4], data: bytemuck::cast_slice(&x) }).unwrap();
    m.set_input(1, TensorView { dtype: DType::Float, sizes: &[3, 1], data: bytemuck::cast_slice(&y) }).unwrap();
    m.execute().unwrap();
    let out = m.output_tensor(0).unwrap();
    // add_broadcast computes x + 2 * y (alpha = 2 in the exported program).
    assert!(out.data::<f32>().unwrap().iter().all(|&v| v == 5.0));
}

#[test]
fn delegate_calls_run_through_a_registered_backend() {
    use std::sync::Arc;
    let spec = ProgramSpec {
        values: vec![
            V::F32 { sizes: vec![4], planned: Some((1, 0)), constant: None },
            V::F32 { sizes: vec![4], planned: Some((1, 16)), constant: None },
            V::F32 { sizes: vec![4], planned: Some((1, 32)), constant: None },
        ],
        instructions: vec![I::Delegate(0, vec![0, 1, 2])],
        operators: vec![],
        inputs: vec![0, 1],
        outputs: vec![2],
        buffers: vec![48],
        delegates: vec![(
            "EtchElementwiseTest".into(),
            b"mul".to_vec(),
            vec![("scale".into(), 2f32.to_le_bytes().to_vec())],
        )],
    };
    let program = Program::from_bytes(&spec.build()).unwrap();
    // Without the backend registered: a typed error naming it.
    let e = program.load_method("forward").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("EtchElementwiseTest"), "{e}");
    let mut backends = etch::BackendRegistry::new();
    backends
        .register(etch::delegates::ElementwiseTestBackend::ID, Arc::new(etch::delegates::ElementwiseTestBackend))
        .unwrap();
    let runtime = etch::Runtime::new(etch::KernelRegistry::portable(), backends);
    let mut m = program.load_method_with("forward", &runtime, None).unwrap();
    let (x, y) = ([1f32, 2., 3., 4.], [5f32, 6., 7., 8.]);
    m.set_input(0, TensorView { dtype: DType::Float, sizes: &[4], data: bytemuck::cast_slice(&x) }).unwrap();
    m.set_input(1, TensorView { dtype: DType::Float, sizes: &[4], data: bytemuck::cast_slice(&y) }).unwrap();
    m.execute().unwrap();
    assert_eq!(m.output_tensor(0).unwrap().data::<f32>().unwrap(), &[10., 24., 42., 64.]);
    // A blob the backend does not understand fails at load with the delegate error kind.
    let mut bad = spec.clone();
    bad.delegates[0].1 = b"div".to_vec();
    let program = Program::from_bytes(&bad.build()).unwrap();
    let e = program.load_method_with("forward", &runtime, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DelegateInvalidCompatibility, "{e}");
}
