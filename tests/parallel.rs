//! The parallel engine: outputs bit-identical to sequential execution on every supported fixture
//! (repeated, with every memory plan, graphs forced even for tiny blocks), many methods of several
//! programs executing at once on shared pools, and `execute_async` on tokio.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use etch::{ExecutionMode, MethodConfig, PlanChoice, Program, Runtime, TensorView, Value};

/// Every fixture in the repository that calls no delegate.
fn portable_cases() -> Vec<common::Case> {
    let mut cases: Vec<_> = common::manifest().into_iter().filter(|c| !c.delegated && c.program.exists()).collect();
    assert!(cases.len() >= 30, "only {} portable fixtures found", cases.len());
    // The programs whose depthwise pairs the optimized runtime fuses into one call (with the
    // residual add, residual_block).
    let fused = ["inverted_residual", "depthwise_separable", "residual_block"];
    let multibranch = common::manifest_in(&common::fixtures().join("multibranch"));
    cases.extend(multibranch.into_iter().filter(|c| fused.contains(&c.name.as_str())));
    cases
}

/// Every output of every run of `case` on `method`, as (dtype, shape, bytes).
fn outputs(case: &common::Case, method: &mut etch::Method<'_>) -> Vec<(etch::DType, Vec<usize>, Vec<u8>)> {
    let mut all = Vec::new();
    for (inputs, _) in &case.runs {
        for (i, path) in inputs.iter().enumerate() {
            let a = etch::npy::read(path).unwrap();
            method.set_input(i, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data }).unwrap();
        }
        method.execute().unwrap_or_else(|e| panic!("{}: {e}", case.name));
        for j in 0..method.num_outputs() {
            let Value::Tensor(t) = method.output(j).unwrap() else { panic!("{}: non-tensor output", case.name) };
            all.push((t.dtype(), t.sizes().to_vec(), etch::to_contiguous_bytes(&t).unwrap()));
        }
    }
    all
}

fn parallel_config(runtime: &Runtime, plan: PlanChoice) -> MethodConfig {
    MethodConfig { runtime: runtime.clone(), mode: ExecutionMode::Parallel, plan, always_graph: true }
}

/// Every parallel configuration worth checking: each plan with graphs forced, and the re-plan with
/// the normal policy (a measured warm-up execution, then graphs only where they pay).
fn parallel_configs(runtime: &Runtime) -> Vec<MethodConfig> {
    let mut v: Vec<MethodConfig> = [PlanChoice::Auto, PlanChoice::Exporter, PlanChoice::Concurrent]
        .iter()
        .map(|&p| parallel_config(runtime, p))
        .collect();
    v.push(MethodConfig { always_graph: false, ..parallel_config(runtime, PlanChoice::Concurrent) });
    v
}

#[test]
fn parallel_is_bit_identical_to_sequential() {
    let runtime = Runtime::global().with_threads(2);
    for case in portable_cases() {
        let name = &case.name;
        // Small programs run more rounds: races show up as rare differences.
        let rounds = if std::fs::metadata(&case.program).map_or(0, |m| m.len()) < 100_000 { 5 } else { 2 };
        let program = Program::load_file(&case.program).unwrap();
        for config in parallel_configs(&runtime) {
            // The same runtime and plan choice, sequentially (fusion, which the exporter's plan
            // rules out, changes rounding; the mode must not).
            let sequential = MethodConfig { mode: ExecutionMode::Sequential, always_graph: false, ..config.clone() };
            let mut seq = program.load_method_configured(&case.method, &sequential, None).unwrap();
            let want = outputs(&case, &mut seq);
            // Stateful programs advance per execution, so each round uses a fresh method; a second
            // pass on the same method exercises executions after the warm-up.
            for round in 0..rounds {
                let mut m = program.load_method_configured(&case.method, &config, None).unwrap();
                let got = outputs(&case, &mut m);
                let (plan, forced) = (config.plan, config.always_graph);
                assert!(
                    got == want,
                    "{name} ({plan:?}, forced {forced}, round {round}): parallel differs from sequential"
                );
                if !case.name.starts_with("counter") {
                    let again = outputs(&case, &mut m);
                    assert!(again == want, "{name} ({plan:?}, forced {forced}, round {round}, second pass)");
                }
            }
        }
    }
}

/// Forced graphs have no inline warm-up, so they time their own first executions to find the
/// long instructions, whose kernels split over the pool while other branches run: inception_v1's
/// 3x3 branch convolutions (instructions 6 and 20, hundreds of microseconds each). Without that,
/// each ran on one thread while the other idled after its branches (1.50 ms against 1.26 with the
/// measured policy, which finds them from its inline warm-up). Nothing is known before the first
/// execution.
#[test]
fn forced_graphs_measure_their_long_instructions() {
    let cases = common::manifest_in(&common::fixtures().join("multibranch"));
    let case = cases.into_iter().find(|c| c.name == "inception_v1").expect("fixture");
    let program = Program::load_file(&case.program).unwrap();
    let runtime = Runtime::optimized().with_threads(2);
    for forced in [true, false] {
        let config = MethodConfig { always_graph: forced, ..parallel_config(&runtime, PlanChoice::Auto) };
        let mut m = program.load_method_configured(&case.method, &config, None).unwrap();
        assert_eq!(m.long_instructions(), None, "forced {forced}");
        for _ in 0..4 {
            outputs(&case, &mut m);
        }
        let long = m.long_instructions().expect("measured after four executions");
        assert!(long.contains(&6) && long.contains(&20), "forced {forced}: {long:?}");
    }
}

#[test]
fn graphs_really_run_in_parallel_mode() {
    // Guards the test above: with forced graphs, mlp_towers' block is a graph with independent
    // towers (critical path shorter than total work).
    let case = common::case("mlp_towers");
    let program = Program::load_file(&case.program).unwrap();
    let runtime = Runtime::global().with_threads(2);
    let mut m = program.load_method_configured("forward", &parallel_config(&runtime, PlanChoice::Auto), None).unwrap();
    let a = etch::npy::read(&case.runs[0].0[0]).unwrap();
    m.set_input(0, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data }).unwrap();
    m.execute().unwrap();
    let costs = vec![1.0; m.num_instructions()];
    let blocks = m.parallel_profile(&costs, &costs);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].runs_as_graph, Some(true));
    assert!(blocks[0].critical_path_ns < blocks[0].work_ns / 3.0, "{blocks:?}");
    // The re-plan is used and smaller than the exporter's plan once weight transposes are folded.
    let (sizes, replanned) = m.planned_memory();
    assert!(replanned);
    assert!(sizes.iter().sum::<u64>() < program.method_meta("forward").unwrap().planned_buffer_sizes().iter().sum());
    assert_eq!(m.folded_instructions(), 12);
}

/// Runs `case` on `method` and checks every output against PyTorch's (panics otherwise).
fn check_against_expected(case: &common::Case, method: &mut etch::Method<'_>) {
    for (k, (inputs, expected)) in case.runs.iter().enumerate() {
        for (i, path) in inputs.iter().enumerate() {
            let a = etch::npy::read(path).unwrap();
            method.set_input(i, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data }).unwrap();
        }
        method.execute().unwrap();
        for (j, path) in expected.iter().enumerate() {
            let want = etch::npy::read(path).unwrap();
            let t = method.output_tensor(j).unwrap();
            let got = etch::npy::Array {
                dtype: t.dtype(),
                shape: t.sizes().to_vec(),
                data: etch::to_contiguous_bytes(&t).unwrap(),
            };
            assert_eq!(common::mismatch(&got, &want, case.atol, case.rtol), None, "{} run {k} output {j}", case.name);
        }
    }
}

/// Methods of one program loaded the same way share what the load derived (mlp_towers' folded
/// weight transposes, res_block's packed convolution weights), a method outlives the one whose
/// load made it, and each still matches PyTorch. Other kernels or fusion settings get their own.
#[test]
fn methods_share_derived_data_and_outlive_the_first() {
    let cases = common::manifest();
    for name in ["mlp_towers", "res_block"] {
        let case = cases.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no fixture {name}"));
        let program = Program::load_file(&case.program).unwrap();
        let optimized = MethodConfig::parallel(Runtime::optimized().with_threads(2));
        let first = program.load_method_configured(&case.method, &optimized, None).unwrap();
        let mut second = program.load_method_configured(&case.method, &optimized, None).unwrap();
        assert!(first.shares_derived_data_with(&second), "{name}");
        let unfused = MethodConfig { plan: PlanChoice::Exporter, ..optimized.clone() };
        let mut third = program.load_method_configured(&case.method, &unfused, None).unwrap();
        assert!(!third.shares_derived_data_with(&second), "{name}: fused and unfused share");
        let portable = MethodConfig::parallel(Runtime::portable().with_threads(2));
        let fourth = program.load_method_configured(&case.method, &portable, None).unwrap();
        assert!(!fourth.shares_derived_data_with(&second), "{name}: two kernel registries share");
        drop(first);
        check_against_expected(case, &mut second);
        check_against_expected(case, &mut third);
        // Loaded while `second` lives: shares with it.
        let mut fifth = program.load_method_configured(&case.method, &optimized, None).unwrap();
        assert!(fifth.shares_derived_data_with(&second), "{name}");
        drop(second);
        check_against_expected(case, &mut fifth);
    }
}

#[test]
fn stress_many_methods_of_several_programs_at_once() {
    // Several programs shared by threads; each thread loads its own methods (sequential and
    // parallel, on one 2-thread pool) and executes them for a bounded time, checking every output.
    let runtime = Runtime::global().with_threads(2);
    let names = ["mlp_towers", "dispatch_fan", "cond", "two_methods.encode", "compare_where", "dynamic_batch"];
    let programs: Vec<(common::Case, Program)> = names
        .iter()
        .map(|n| {
            let c = common::case(n);
            let p = Program::load_file(&c.program).unwrap();
            (c, p)
        })
        .collect();
    let programs = Arc::new(programs);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut handles = Vec::new();
    for t in 0..4 {
        let programs = programs.clone();
        let runtime = runtime.clone();
        handles.push(std::thread::spawn(move || {
            let mut executions = 0usize;
            let mut methods: Vec<_> = programs
                .iter()
                .enumerate()
                .map(|(i, (case, program))| {
                    let config = if (i + t) % 2 == 0 {
                        parallel_config(&runtime, PlanChoice::Auto)
                    } else {
                        MethodConfig::sequential(runtime.clone())
                    };
                    (case, program.load_method_configured(&case.method, &config, None).unwrap())
                })
                .collect();
            while Instant::now() < deadline {
                for (case, m) in methods.iter_mut() {
                    check_against_expected(case, m);
                    executions += 1;
                }
            }
            executions
        }));
    }
    let total: usize = handles.into_iter().map(|h| h.join().expect("a stress thread failed")).sum();
    assert!(total > 0);
}

#[test]
fn execute_async_does_not_block_the_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let case = common::case("mlp_towers");
    let program = Program::load_file(&case.program).unwrap();
    let runtime = Runtime::global().with_threads(2);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..4 {
            let mode = if i % 2 == 0 { ExecutionMode::Parallel } else { ExecutionMode::Sequential };
            let config =
                MethodConfig { runtime: runtime.clone(), mode, plan: PlanChoice::Auto, always_graph: i % 4 == 0 };
            let mut m = program.load_method_configured("forward", &config, None).unwrap();
            let case = common::case("mlp_towers");
            tasks.push(tokio::spawn(async move {
                let a = etch::npy::read(&case.runs[0].0[0]).unwrap();
                let want = etch::npy::read(&case.runs[0].1[0]).unwrap();
                for _ in 0..5 {
                    m.set_input(0, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data }).unwrap();
                    m.execute_async().await.unwrap();
                    let t = m.output_tensor(0).unwrap();
                    let got = etch::npy::Array {
                        dtype: t.dtype(),
                        shape: t.sizes().to_vec(),
                        data: etch::to_contiguous_bytes(&t).unwrap(),
                    };
                    assert_eq!(common::mismatch(&got, &want, case.atol, case.rtol), None);
                }
            }));
        }
        // While kernels run on the pool, the tokio workers stay free for other tasks.
        let ticker = tokio::spawn(async {
            let mut ticks = 0;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                ticks += 1;
            }
            ticks
        });
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(ticker.await.unwrap(), 10);
    });
    // A dropped future: the execution finishes in the background; the method stays usable.
    let mut m = program.load_method_configured("forward", &parallel_config(&runtime, PlanChoice::Auto), None).unwrap();
    let a = etch::npy::read(&case.runs[0].0[0]).unwrap();
    m.set_input(0, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data }).unwrap();
    rt.block_on(async {
        // Polled (so it starts on the pool), then dropped when the timeout fires first.
        let _ = tokio::time::timeout(Duration::from_micros(1), m.execute_async()).await;
    });
    // The next call waits for the detached execution, then runs normally.
    check_against_expected(&case, &mut m);
}

#[test]
fn program_is_shared_by_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Program>();
    fn assert_send<T: Send>() {}
    assert_send::<etch::Method<'static>>();
    let case = common::case("two_methods.forward");
    let program = Program::load_file(&case.program).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut m = program.load_method("forward").unwrap();
                for _ in 0..50 {
                    check_against_expected(&case, &mut m);
                }
            });
        }
    });
}

/// The model zoo in parallel mode (each plan, graphs forced and not), executed three times, matches
/// PyTorch every time and is bit-identical to sequential execution. Inputs the method says it keeps
/// are set once (a plan that gave a kept input's bytes to another tensor would fail here: an early
/// re-plan did, and resnet18_narrow's second execution computed on overwritten pixels, and
/// bert_encoder's read token ids out of range); the others before each execution.
#[test]
fn zoo_in_parallel_matches_pytorch_and_sequential_with_kept_inputs_set_once() {
    let runtime = Runtime::global().with_threads(2);
    let kernels = runtime.kernels();
    let mut checked = 0;
    for case in common::manifest_in(&common::fixtures().join("zoo")) {
        let program = Program::load_file(&case.program).unwrap();
        let meta = program.method_meta(&case.method).unwrap();
        if meta.operators().any(|op| kernels.get(&op).is_none()) {
            continue;
        }
        let (inputs, expected) = &case.runs[0];
        let run = |config: &MethodConfig| -> Vec<Vec<u8>> {
            let mut m = program.load_method_configured(&case.method, config, None).unwrap();
            let mut last = Vec::new();
            for k in 0..3 {
                // A plan may give an input's bytes to another tensor once it is read (the
                // exporter's does, as in ExecuTorch): those inputs are set before every execution.
                for (i, path) in inputs.iter().enumerate() {
                    if k == 0 || !m.keeps_input(i).unwrap() {
                        let a = etch::npy::read(path).unwrap();
                        m.set_input(i, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data }).unwrap();
                    }
                }
                m.execute().unwrap_or_else(|e| panic!("{} ({:?}) execution {k}: {e}", case.name, config.plan));
                last.clear();
                for (j, path) in expected.iter().enumerate() {
                    let want = etch::npy::read(path).unwrap();
                    let Value::Tensor(t) = m.output(j).unwrap() else { panic!("{}: non-tensor output", case.name) };
                    let bytes = etch::to_contiguous_bytes(&t).unwrap();
                    let got = etch::npy::Array { dtype: t.dtype(), shape: t.sizes().to_vec(), data: bytes.clone() };
                    if let Some(why) = common::mismatch(&got, &want, case.atol, case.rtol) {
                        panic!("{} ({:?}) execution {k} output {j}: {why}", case.name, config.plan);
                    }
                    last.push(bytes);
                }
            }
            last
        };
        for config in parallel_configs(&runtime) {
            let sequential = MethodConfig { mode: ExecutionMode::Sequential, always_graph: false, ..config.clone() };
            let want = run(&sequential);
            let got = run(&config);
            assert!(
                got == want,
                "{} ({:?}, forced {}): parallel differs from sequential",
                case.name,
                config.plan,
                config.always_graph
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} zoo models ran");
}

/// An input whose bytes the plan gives to another tensor must be set again: the next execution
/// fails with a typed error instead of computing on what the last one left. resnet18_narrow's
/// re-plan (batch norms not fused) frees its 48 KiB image after the first convolution reads it
/// (keeping it would need 1.38× the exporter's bytes); mlp_towers' re-plan has room to keep its input.
#[test]
fn inputs_the_plan_reuses_must_be_set_again() {
    let runtime = Runtime::global().with_threads(2).with_fusion(false);
    let zoo = common::manifest_in(&common::fixtures().join("zoo"));
    let case = zoo.iter().find(|c| c.name == "resnet18_narrow").expect("resnet18_narrow in the zoo");
    let program = Program::load_file(&case.program).unwrap();
    let mut m =
        program.load_method_configured(&case.method, &parallel_config(&runtime, PlanChoice::Concurrent), None).unwrap();
    assert_eq!(m.planned_memory(), (&[131_072][..], true), "runs on the re-plan");
    assert_eq!(m.keeps_input(0), Some(false));
    assert_eq!(m.keeps_input(1), None);
    check_against_expected(case, &mut m);
    match m.execute() {
        Err(etch::Error::Input { index: 0, .. }) => {}
        other => panic!("second execution without inputs: {other:?}"),
    }
    // Set again, it matches PyTorch again.
    check_against_expected(case, &mut m);

    let case = common::case("mlp_towers");
    let program = Program::load_file(&case.program).unwrap();
    let mut m =
        program.load_method_configured(&case.method, &parallel_config(&runtime, PlanChoice::Concurrent), None).unwrap();
    assert_eq!(m.keeps_input(0), Some(true));
    check_against_expected(&case, &mut m);
    m.execute().unwrap();
}

/// Issue 4's memory goal, on every committed program without control flow: the re-plan needs at
/// most 1.25× the exporter's planned bytes and keeps the parallelism two workers can use (its
/// bound `max(critical path, ⌈work / 2⌉)` in instructions of unit cost is within 1% of the data
/// edges' own, the tolerance the re-planner's choice allows) and no longer critical path than the
/// exporter's plan with hazard edges.
#[test]
fn replan_stays_within_a_quarter_more_memory() {
    let fixtures = common::fixtures();
    let mut checked = 0;
    for root in [fixtures.clone(), fixtures.join("zoo"), fixtures.join("multibranch")] {
        for case in common::manifest_in(&root) {
            // The repository leaves out the largest shared programs (mobilenet_v2, 14 MB).
            if !case.program.exists() {
                continue;
            }
            let program = Program::load_file(&case.program).unwrap();
            let Ok(s) = etch::plan_summary(&program, &case.method, Runtime::global(), None, 2) else { continue };
            let (Some(bytes), Some(critical_path)) = (s.replan_bytes, s.replan_critical_path) else { continue };
            let ratio = bytes as f64 / s.exporter_bytes as f64;
            assert!(ratio <= 1.25, "{}: re-plan {bytes} bytes, {ratio:.2}× the exporter's", case.name);
            assert!(
                critical_path <= s.exporter_critical_path,
                "{}: re-plan critical path {critical_path} > the exporter plan's {}",
                case.name,
                s.exporter_critical_path
            );
            let two_workers = |cp: f64| cp.max((s.total_work / 2.0).ceil());
            assert!(
                two_workers(critical_path) <= 1.01 * two_workers(s.data_critical_path),
                "{}: re-plan bound {} > the data edges' {} (work {})",
                case.name,
                two_workers(critical_path),
                two_workers(s.data_critical_path),
                s.total_work
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked} programs checked");
}
