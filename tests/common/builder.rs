//! Builds small `.pte` programs with flatc's generated builders, for tests that need programs the
//! exporter would never write: out-of-range indices, missing operators, delegate calls to a test
//! backend. Constants use the inline `constant_buffer` table (no segments needed).

use etch_fbs::program as fb;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

/// A value of the program under construction.
#[derive(Clone, Debug)]
pub enum V {
    /// float32 tensor: sizes, placement (memory_id, offset) or constant data.
    F32 {
        sizes: Vec<i32>,
        planned: Option<(u32, u32)>,
        constant: Option<Vec<f32>>,
    },
    /// Any dtype code, planned.
    Tensor {
        dtype: i8,
        sizes: Vec<i32>,
        planned: Option<(u32, u32)>,
        dynamic: bool,
    },
    Int(i64),
    Double(f64),
    Bool(bool),
    None,
    IntList(Vec<i64>),
    TensorList(Vec<i32>),
}

/// An instruction of the program under construction.
#[derive(Clone, Debug)]
pub enum I {
    Kernel(i32, Vec<i32>),
    Delegate(i32, Vec<i32>),
    Move(i32, i32),
    JumpFalse(i32, i32),
    Free(i32),
}

/// (compile spec key, value)
pub type Spec = (String, Vec<u8>);
/// (backend id, inline blob, compile specs)
pub type Delegate = (String, Vec<u8>, Vec<Spec>);

#[derive(Clone, Debug, Default)]
pub struct ProgramSpec {
    pub values: Vec<V>,
    pub instructions: Vec<I>,
    pub operators: Vec<(String, String)>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    /// Planned buffer sizes (without the placeholder entry 0).
    pub buffers: Vec<i64>,
    pub delegates: Vec<Delegate>,
}

impl ProgramSpec {
    pub fn build(&self) -> Vec<u8> {
        let mut b = FlatBufferBuilder::new();
        let mut constants: Vec<Vec<u8>> = vec![Vec::new()];
        let mut values = Vec::new();
        for v in &self.values {
            let (ty, val) = match v {
                V::F32 { sizes, planned, constant } => {
                    let idx = match constant {
                        Some(data) => {
                            constants.push(data.iter().flat_map(|x| x.to_le_bytes()).collect());
                            (constants.len() - 1) as u32
                        }
                        None => 0,
                    };
                    (fb::KernelTypes::Tensor, tensor(&mut b, 6, sizes, *planned, idx, false).as_union_value())
                }
                V::Tensor { dtype, sizes, planned, dynamic } => {
                    (fb::KernelTypes::Tensor, tensor(&mut b, *dtype, sizes, *planned, 0, *dynamic).as_union_value())
                }
                V::Int(i) => {
                    (fb::KernelTypes::Int, fb::Int::create(&mut b, &fb::IntArgs { int_val: *i }).as_union_value())
                }
                V::Double(d) => (
                    fb::KernelTypes::Double,
                    fb::Double::create(&mut b, &fb::DoubleArgs { double_val: *d }).as_union_value(),
                ),
                V::Bool(x) => {
                    (fb::KernelTypes::Bool, fb::Bool::create(&mut b, &fb::BoolArgs { bool_val: *x }).as_union_value())
                }
                V::None => (fb::KernelTypes::Null, fb::Null::create(&mut b, &fb::NullArgs {}).as_union_value()),
                V::IntList(items) => {
                    let items = b.create_vector(items);
                    (
                        fb::KernelTypes::IntList,
                        fb::IntList::create(&mut b, &fb::IntListArgs { items: Some(items) }).as_union_value(),
                    )
                }
                V::TensorList(items) => {
                    let items = b.create_vector(items);
                    let t = fb::TensorList::create(&mut b, &fb::TensorListArgs { items: Some(items) });
                    (fb::KernelTypes::TensorList, t.as_union_value())
                }
            };
            values.push(fb::EValue::create(&mut b, &fb::EValueArgs { val_type: ty, val: Some(val) }));
        }
        let values = b.create_vector(&values);

        let mut instructions = Vec::new();
        for ins in &self.instructions {
            let (ty, val) = match ins {
                I::Kernel(op, args) => {
                    let args = b.create_vector(args);
                    let k = fb::KernelCall::create(&mut b, &fb::KernelCallArgs { op_index: *op, args: Some(args) });
                    (fb::InstructionArguments::KernelCall, k.as_union_value())
                }
                I::Delegate(d, args) => {
                    let args = b.create_vector(args);
                    let k = fb::DelegateCall::create(
                        &mut b,
                        &fb::DelegateCallArgs { delegate_index: *d, args: Some(args) },
                    );
                    (fb::InstructionArguments::DelegateCall, k.as_union_value())
                }
                I::Move(from, to) => {
                    let m = fb::MoveCall::create(&mut b, &fb::MoveCallArgs { move_from: *from, move_to: *to });
                    (fb::InstructionArguments::MoveCall, m.as_union_value())
                }
                I::JumpFalse(cond, dest) => {
                    let j = fb::JumpFalseCall::create(
                        &mut b,
                        &fb::JumpFalseCallArgs { cond_value_index: *cond, destination_instruction: *dest },
                    );
                    (fb::InstructionArguments::JumpFalseCall, j.as_union_value())
                }
                I::Free(v) => {
                    let f = fb::FreeCall::create(&mut b, &fb::FreeCallArgs { value_index: *v });
                    (fb::InstructionArguments::FreeCall, f.as_union_value())
                }
            };
            instructions.push(fb::Instruction::create(
                &mut b,
                &fb::InstructionArgs { instr_args_type: ty, instr_args: Some(val) },
            ));
        }
        let instructions = b.create_vector(&instructions);
        let chain =
            fb::Chain::create(&mut b, &fb::ChainArgs { instructions: Some(instructions), ..Default::default() });
        let chains = b.create_vector(&[chain]);

        let operators: Vec<_> = self
            .operators
            .iter()
            .map(|(n, o)| {
                let (name, overload) = (b.create_string(n), b.create_string(o));
                fb::Operator::create(&mut b, &fb::OperatorArgs { name: Some(name), overload: Some(overload) })
            })
            .collect();
        let operators = b.create_vector(&operators);

        let mut inline = Vec::new();
        let mut delegates = Vec::new();
        for (id, blob, specs) in &self.delegates {
            let data = b.create_vector(blob);
            inline.push(fb::BackendDelegateInlineData::create(
                &mut b,
                &fb::BackendDelegateInlineDataArgs { data: Some(data) },
            ));
            let processed = fb::BackendDelegateDataReference::create(
                &mut b,
                &fb::BackendDelegateDataReferenceArgs {
                    location: fb::DataLocation::INLINE,
                    index: (inline.len() - 1) as u32,
                },
            );
            let specs: Vec<_> = specs
                .iter()
                .map(|(k, v)| {
                    let (key, value) = (b.create_string(k), b.create_vector(v));
                    fb::CompileSpec::create(&mut b, &fb::CompileSpecArgs { key: Some(key), value: Some(value) })
                })
                .collect();
            let specs = b.create_vector(&specs);
            let id = b.create_string(id);
            delegates.push(fb::BackendDelegate::create(
                &mut b,
                &fb::BackendDelegateArgs { id: Some(id), processed: Some(processed), compile_specs: Some(specs) },
            ));
        }
        let delegates = b.create_vector(&delegates);
        let inline = b.create_vector(&inline);

        let mut sizes = vec![0i64];
        sizes.extend(&self.buffers);
        let sizes = b.create_vector(&sizes);
        let inputs = b.create_vector(&self.inputs);
        let outputs = b.create_vector(&self.outputs);
        let name = b.create_string("forward");
        let plan = fb::ExecutionPlan::create(
            &mut b,
            &fb::ExecutionPlanArgs {
                name: Some(name),
                values: Some(values),
                inputs: Some(inputs),
                outputs: Some(outputs),
                chains: Some(chains),
                operators: Some(operators),
                delegates: Some(delegates),
                non_const_buffer_sizes: Some(sizes),
                ..Default::default()
            },
        );
        let plans = b.create_vector(&[plan]);
        let buffers: Vec<_> = constants
            .iter()
            .map(|c| {
                let storage = b.create_vector(c);
                fb::Buffer::create(&mut b, &fb::BufferArgs { storage: Some(storage) })
            })
            .collect();
        let buffers = b.create_vector(&buffers);
        let root = fb::Program::create(
            &mut b,
            &fb::ProgramArgs {
                version: 0,
                execution_plan: Some(plans),
                constant_buffer: Some(buffers),
                backend_delegate_data: Some(inline),
                ..Default::default()
            },
        );
        fb::finish_program_buffer(&mut b, root);
        b.finished_data().to_vec()
    }
}

fn tensor<'a>(
    b: &mut FlatBufferBuilder<'a>,
    dtype: i8,
    sizes: &[i32],
    planned: Option<(u32, u32)>,
    constant: u32,
    dynamic: bool,
) -> WIPOffset<fb::Tensor<'a>> {
    let dim_order: Vec<u8> = (0..sizes.len() as u8).collect();
    let (s, d) = (b.create_vector(sizes), b.create_vector(&dim_order));
    let alloc = planned.map(|(id, off)| {
        fb::AllocationDetails::create(
            b,
            &fb::AllocationDetailsArgs { memory_id: id, memory_offset_low: off, memory_offset_high: 0 },
        )
    });
    fb::Tensor::create(
        b,
        &fb::TensorArgs {
            scalar_type: fb::ScalarType(dtype),
            sizes: Some(s),
            dim_order: Some(d),
            data_buffer_idx: constant,
            allocation_info: alloc,
            shape_dynamism: if dynamic {
                fb::TensorShapeDynamism::DYNAMIC_BOUND
            } else {
                fb::TensorShapeDynamism::STATIC
            },
            ..Default::default()
        },
    )
}

/// `out = x + y` on float32 [4] tensors with alpha = 1: the smallest valid program.
pub fn add_program() -> ProgramSpec {
    ProgramSpec {
        values: vec![
            V::F32 { sizes: vec![4], planned: Some((1, 0)), constant: None },
            V::F32 { sizes: vec![4], planned: Some((1, 16)), constant: None },
            V::Int(1),
            V::F32 { sizes: vec![4], planned: Some((1, 32)), constant: None },
        ],
        instructions: vec![I::Kernel(0, vec![0, 1, 2, 3, 3])],
        operators: vec![("aten::add".into(), "out".into())],
        inputs: vec![0, 1],
        outputs: vec![3],
        buffers: vec![48],
        delegates: vec![],
    }
}
