//! Every supported fixture runs through the library and matches PyTorch's outputs within the
//! case's tolerance. The fixtures are real programs from the official exporter (torch 2.15,
//! executorch 1.5.1); expected outputs are PyTorch eager results (see tests/fixtures/README.md).

mod common;

use common::{manifest, mismatch};
use etch::npy::Array;
use etch::{MethodConfig, PlanChoice, Program, Runtime, TensorView, Value};

/// Every fixture that calls no delegate must run. The manifest lists all of them; the repository
/// holds all but `mobilenet_v2` (14 MB; the zoo has MobileNet v2 at a smaller width, and
/// `../shared/tools/conform.py` runs this one).
fn portable_cases() -> Vec<common::Case> {
    let cases: Vec<_> = manifest().into_iter().filter(|c| !c.delegated && c.program.exists()).collect();
    assert!(cases.len() >= 30, "only {} portable fixtures found", cases.len());
    cases
}

fn run_case(case: &common::Case, config: &MethodConfig) -> Result<(), String> {
    let program = Program::load_file(&case.program).map_err(|e| e.to_string())?;
    // One loaded method for all runs: state carries over (stateful cases).
    let mut method = program.load_method_configured(&case.method, config, None).map_err(|e| e.to_string())?;
    for (k, (inputs, outputs)) in case.runs.iter().enumerate() {
        for (i, path) in inputs.iter().enumerate() {
            let a = etch::npy::read(path)?;
            method
                .set_input(i, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data })
                .map_err(|e| e.to_string())?;
        }
        method.execute().map_err(|e| e.to_string())?;
        if outputs.len() != method.num_outputs() {
            return Err(format!("run {k}: {} outputs, expected {}", method.num_outputs(), outputs.len()));
        }
        for (j, path) in outputs.iter().enumerate() {
            let want = etch::npy::read(path)?;
            let Value::Tensor(t) = method.output(j).map_err(|e| e.to_string())? else {
                return Err(format!("run {k} output {j} is not a tensor"));
            };
            let got = Array {
                dtype: t.dtype(),
                shape: t.sizes().to_vec(),
                data: etch::to_contiguous_bytes(&t).map_err(|e| e.to_string())?,
            };
            if let Some(why) = mismatch(&got, &want, case.atol, case.rtol) {
                return Err(format!("run {k} output {j}: {why}"));
            }
        }
    }
    Ok(())
}

#[test]
fn portable_fixtures_match_pytorch() {
    let mut failures = Vec::new();
    for case in portable_cases() {
        if let Err(why) = run_case(&case, &MethodConfig::default()) {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(failures.is_empty(), "failing fixtures:\n{}", failures.join("\n"));
}

/// Sequential execution on etch's own memory plan (the concurrency-aware re-plan, run in its
/// schedule's order). Views the exporter placed on their base's bytes must travel with the base.
#[test]
fn portable_fixtures_match_pytorch_on_the_replan() {
    let config = MethodConfig { plan: PlanChoice::Concurrent, ..MethodConfig::default() };
    let mut failures = Vec::new();
    for case in portable_cases() {
        if let Err(why) = run_case(&case, &config) {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(failures.is_empty(), "failing fixtures:\n{}", failures.join("\n"));
}

#[test]
fn stateful_counter_keeps_state_across_executions() {
    // Same inputs twice: different outputs, because the buffer advanced.
    let case = common::case("counter");
    let program = Program::load_file(&case.program).unwrap();
    let mut method = program.load_method("forward").unwrap();
    let a = etch::npy::read(&case.runs[0].0[0]).unwrap();
    let mut results = Vec::new();
    for _ in 0..2 {
        method.set_input(0, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data }).unwrap();
        method.execute().unwrap();
        results.push(method.output_tensor(0).unwrap().data::<f32>().unwrap().to_vec());
    }
    assert_ne!(results[0], results[1]);
    // A freshly loaded method starts from the initial state again.
    let mut fresh = program.load_method("forward").unwrap();
    fresh.set_input(0, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data }).unwrap();
    fresh.execute().unwrap();
    assert_eq!(fresh.output_tensor(0).unwrap().data::<f32>().unwrap(), &results[0][..]);
}

#[test]
fn dynamic_batch_resizes_within_its_bound() {
    let case = common::case("dynamic_batch");
    let program = Program::load_file(&case.program).unwrap();
    let mut method = program.load_method("forward").unwrap();
    let meta = program.method_meta("forward").unwrap();
    let bound = meta.input_tensor_meta(0).unwrap().sizes.to_vec();
    // Above the bound: refused with a typed input error.
    let mut too_big = bound.clone();
    too_big[0] += 1;
    let n: usize = too_big.iter().product();
    let data = vec![0u8; n * 4];
    let e = method.set_input(0, TensorView { dtype: etch::DType::Float, sizes: &too_big, data: &data }).unwrap_err();
    assert_eq!(e.kind(), etch::ErrorKind::InvalidArgument, "{e}");
    // Each run's output has the run's batch size.
    for (inputs, _) in &case.runs {
        let a = etch::npy::read(&inputs[0]).unwrap();
        method.set_input(0, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data }).unwrap();
        method.execute().unwrap();
        assert_eq!(method.output_tensor(0).unwrap().sizes()[0], a.shape[0]);
    }
}

#[test]
fn bundled_program_passes_through_the_library() {
    let bundled = etch::BundledProgram::load_file(common::fixtures().join("programs/add_broadcast.bpte")).unwrap();
    let reports = bundled.verify(etch::Runtime::global(), 1e-5, 1e-8).unwrap();
    assert!(!reports.is_empty());
    for r in &reports {
        assert!(r.passed, "{r:?}");
    }
    // A tolerance nothing can meet makes cases with any rounding fail, proving the check compares.
    let external =
        etch::BundledProgram::load_file(common::fixtures().join("external/module_test_bundled_program.bpte"));
    // ExecuTorch's own test bundle: it loads and every case is reported.
    let external = external.unwrap();
    let reports = external.verify(etch::Runtime::global(), 1e-5, 1e-8).unwrap();
    assert_eq!(reports.len(), 10);
    assert!(reports.iter().all(|r| r.passed), "{reports:?}");
}

#[test]
fn external_programs_from_executorch() {
    let ext = common::fixtures().join("external");
    // x + x on ones → 2s (ExecuTorch's own example).
    let program = Program::load_file(ext.join("arduino_add_model.pte")).unwrap();
    let mut m = program.load_method("forward").unwrap();
    let ones = [1f32; 3];
    m.set_input(0, TensorView { dtype: etch::DType::Float, sizes: &[3], data: bytemuck::cast_slice(&ones) }).unwrap();
    m.execute().unwrap();
    assert_eq!(m.output_tensor(0).unwrap().data::<f32>().unwrap(), &[2.0, 2.0, 2.0]);

    let program = Program::load_file(ext.join("apple_add.pte")).unwrap();
    let mut m = program.load_method("forward").unwrap();
    for i in 0..2 {
        m.set_input(i, TensorView { dtype: etch::DType::Float, sizes: &[1], data: bytemuck::cast_slice(&[1f32]) })
            .unwrap();
    }
    m.execute().unwrap();
    assert_eq!(m.output_tensor(0).unwrap().data::<f32>().unwrap(), &[2.0]);

    // The legacy inline constant_buffer layout, which the 1.5.1 wheel no longer loads:
    // y = x * a + b, where ExecuTorch's deserializer reads a = 3s and b = 2s from the file.
    let program = Program::load_file(ext.join("module_linear_legacy_constant_buffer.pte")).unwrap();
    let mut m = program.load_method("forward").unwrap();
    m.set_input(0, TensorView { dtype: etch::DType::Float, sizes: &[2, 2], data: bytemuck::cast_slice(&[1f32; 4]) })
        .unwrap();
    m.execute().unwrap();
    assert_eq!(m.output_tensor(0).unwrap().data::<f32>().unwrap(), &[5.0; 4]);

    // The microcontroller model needs cortex_m kernels that etch does not have: a typed error.
    let program = Program::load_file(ext.join("arduino_keyword_spotting.pte")).unwrap();
    let e = program.load_method("forward").unwrap_err();
    assert_eq!(e.kind(), etch::ErrorKind::OperatorMissing, "{e}");
    assert!(e.to_string().contains("cortex_m::"), "{e}");
}

/// A batch-1 linear layer (`addmm(b, x, permute_copy(W))`) reads its weight where the file holds
/// it: with fusion the transpose is neither run nor folded into a copy at load, and the results
/// stay within tolerance of PyTorch. Products of more rows keep the folded transpose.
#[test]
fn batch_one_linear_reads_its_weight_untransposed() {
    let optimized = MethodConfig { runtime: Runtime::optimized(), ..MethodConfig::default() };
    let portable = MethodConfig { runtime: Runtime::portable(), ..MethodConfig::default() };
    let zoo = common::manifest_in(&common::fixtures().join("zoo"));
    let case = zoo.into_iter().find(|c| c.name == "mobilenet_v2_w050").expect("zoo case");
    let program = Program::load_file(&case.program).unwrap();
    // Its one transpose is the classifier's weight's.
    assert_eq!(program.load_method_configured(&case.method, &portable, None).unwrap().folded_instructions(), 1);
    assert_eq!(program.load_method_configured(&case.method, &optimized, None).unwrap().folded_instructions(), 0);
    run_case(&case, &optimized).unwrap();
    // `linear`: two layers on a batch of 5.
    let case = common::case("linear");
    let program = Program::load_file(&case.program).unwrap();
    assert_eq!(program.load_method_configured(&case.method, &optimized, None).unwrap().folded_instructions(), 2);
}

/// The optimized runtime folds inference batch norms into the convolutions before them; the
/// results stay within each fixture's tolerance of PyTorch, and the portable runtime (the exact
/// reference) never fuses.
#[test]
fn batch_norm_folds_into_convolution_within_tolerance() {
    // Fused instructions: batch norms folded into convolutions, activations that alone read a
    // convolution's output, residual adds and the ReLU after them (res_block: conv-bn-relu, then
    // conv-bn, the residual add and the ReLU after it).
    for (name, convs) in [("batch_norm", 1), ("res_block", 5)] {
        let case = common::case(name);
        let program = Program::load_file(&case.program).unwrap();
        let optimized = MethodConfig { runtime: Runtime::optimized(), ..MethodConfig::default() };
        let fused = program.load_method_configured(&case.method, &optimized, None).unwrap();
        assert_eq!(fused.fused_instructions(), convs, "{name}");
        run_case(&case, &optimized).unwrap_or_else(|e| panic!("{name}: {e}"));
        let portable = MethodConfig { runtime: Runtime::portable(), ..MethodConfig::default() };
        let exact = program.load_method_configured(&case.method, &portable, None).unwrap();
        assert_eq!(exact.fused_instructions(), 0, "{name}");
        run_case(&case, &portable).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A ReLU that alone reads a linear layer's product becomes part of the product's call:
/// mlp_towers has twelve. Results stay within tolerance of PyTorch in both modes (and equal the
/// unfused calls' bit for bit: the kernel's test).
#[test]
fn relu_fuses_into_linear_layers() {
    let case = common::case("mlp_towers");
    let program = Program::load_file(&case.program).unwrap();
    let optimized = MethodConfig { runtime: Runtime::optimized(), ..MethodConfig::default() };
    assert_eq!(program.load_method_configured(&case.method, &optimized, None).unwrap().fused_instructions(), 12);
    run_case(&case, &optimized).unwrap();
    run_case(&case, &MethodConfig { mode: etch::ExecutionMode::Parallel, ..optimized }).unwrap();
}

/// A global mean over a concatenation reads the concatenated tensors where they lie:
/// inception_block's `cat` and `mean` become one call (one instruction fused away, besides its 7
/// convolutions' ReLUs and its classifier's weight transpose). Results stay within tolerance of PyTorch in both modes (and equal
/// the unfused calls' bit for bit: the kernel's test).
#[test]
fn mean_of_a_concatenation_fuses() {
    let case = common::case("inception_block");
    let program = Program::load_file(&case.program).unwrap();
    let optimized = MethodConfig { runtime: Runtime::optimized(), ..MethodConfig::default() };
    let method = program.load_method_configured(&case.method, &optimized, None).unwrap();
    assert_eq!(method.fused_instructions(), 7 + 1 + 1);
    run_case(&case, &optimized).unwrap();
    run_case(&case, &MethodConfig { mode: etch::ExecutionMode::Parallel, ..optimized }).unwrap();
}

/// Zoo case `name` loads with `fused` instructions fused away on the optimized runtime and stays
/// within tolerance of PyTorch in sequential and parallel mode.
fn zoo_case_fuses(name: &str, fused: usize) {
    let zoo = common::manifest_in(&common::fixtures().join("zoo"));
    let case = zoo.into_iter().find(|c| c.name == name).expect("zoo case");
    let program = Program::load_file(&case.program).unwrap();
    let optimized = MethodConfig { runtime: Runtime::optimized(), ..MethodConfig::default() };
    let method = program.load_method_configured(&case.method, &optimized, None).unwrap();
    assert_eq!(method.fused_instructions(), fused, "{name}");
    run_case(&case, &optimized).unwrap();
    let parallel = MethodConfig { mode: etch::ExecutionMode::Parallel, ..optimized };
    run_case(&case, &parallel).unwrap();
}

/// `nn.Hardswish` and `nn.Hardsigmoid` chains (`add`, two `clamp`s, [`mul`,] `div`) become one
/// call each: mobilenet_v3_small_w050 has 19 hardswish (4 calls fused away each) and 9
/// hardsigmoid (3 each) chains, besides its 34 batch norms folded into convolutions, 14 ReLUs
/// fused into them, the transposes of its 2 linear layers' weights and its 7 residual adds.
/// Results stay within tolerance of PyTorch in both modes.
#[test]
fn hard_activations_fuse_into_one_call() {
    zoo_case_fuses("mobilenet_v3_small_w050", 34 + 14 + 2 + 19 * 4 + 9 * 3 + 7);
}

/// Depthwise convolutions fuse with the 1x1 convolution on either side when the product between
/// them is large: inverted_residual is mobilenet_v2's second block at 112x112, whose expansion of
/// 16 channels to 96 (4.8 MB, 256 KiB or more fuses) becomes one call with the depthwise convolution
/// after it; depthwise_separable is its first block at 96x96, whose depthwise result (32 channels,
/// 1.2 MB, 1 MiB or more fuses) becomes one call with the projection after it. Besides: their
/// batch norms folded into convolutions (3 and 2) and ReLU6s fused into them (2 and 1).
/// Results stay within tolerance of PyTorch in both modes (and equal the unfused calls' bit for
/// bit: the kernels' tests); mobilenet_v2_w050's products, at most 0.2 MB on its 64x64 input,
/// stay between two calls (its 10 residual adds fuse into the projections before them).
/// residual_block is mobilenet_v2's third block at 56x56 with its residual connection: its
/// expansion of 24 channels to 144 (1.8 MB) fuses with the depthwise convolution (which is then
/// not fused with the projection), and the residual add into the projection; besides, 3 batch
/// norms folded and 2 ReLU6s fused. channels_last_block is exported
/// channels-last (weights and input): its 4 batch norms fold into the convolutions all the same
/// (the 1x1 weights' layout is the contiguous one, the depthwise copy keeps its memory order) and
/// its 3 ReLU6s fuse; its 1x1 convolutions run with the pixels as rows.
#[test]
fn depthwise_convolutions_fuse_with_large_neighbouring_products() {
    let optimized = MethodConfig { runtime: Runtime::optimized(), ..MethodConfig::default() };
    let parallel = MethodConfig { mode: etch::ExecutionMode::Parallel, ..optimized.clone() };
    for (set, name, fused) in [
        ("multibranch", "inverted_residual", 3 + 2 + 1),
        ("multibranch", "residual_block", 3 + 2 + 1 + 1),
        ("multibranch", "channels_last_block", 4 + 3),
        ("zoo", "mobilenet_v2_w050", 52 + 35 + 1 + 10),
    ] {
        let cases = common::manifest_in(&common::fixtures().join(set));
        let case = cases.into_iter().find(|c| c.name == name).expect("fixture");
        let program = Program::load_file(&case.program).unwrap();
        let method = program.load_method_configured(&case.method, &optimized, None).unwrap();
        assert_eq!(method.fused_instructions(), fused, "{name}");
        run_case(&case, &optimized).unwrap_or_else(|e| panic!("{name}: {e}"));
        run_case(&case, &parallel).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// `nn.SiLU`, exported as `mul(x, sigmoid(x))`, becomes one call: efficientnet_b0_w050 has 65
/// sigmoids, 16 of them squeeze-excitation gates whose product is with another tensor (not
/// fused), so 49 SiLUs, each fusing its sigmoid away; besides its 49 batch norms folded into
/// convolutions, its linear layer's transpose and its 9 residual adds. Results stay within
/// tolerance of PyTorch in both modes.
#[test]
fn silu_fuses_into_one_call() {
    zoo_case_fuses("efficientnet_b0_w050", 49 + 1 + 49 + 9);
}

/// Each `nn.LSTM` time step's ten calls after its gate pre-activations (split into four gates,
/// three sigmoids, two tanhs, three products, a sum) become one call: the zoo's lstm (2 layers, 8
/// steps) has 16 such steps, 9 calls fused away each, besides the transposes of its 16 recurrent
/// weights read in place. Results stay within tolerance of PyTorch in both modes (and equal the
/// unfused calls' bit for bit: the kernel's test).
#[test]
fn lstm_steps_fuse_into_one_call() {
    zoo_case_fuses("lstm", 16 * 9 + 16);
}
