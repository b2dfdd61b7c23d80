//! etch's portable kernels: plain, readable Rust that defines what each operator computes. Faster
//! kernels are tested against these.
//!
//! Each module registers its own operators (`register`), with the ATen schema string that tells the
//! engine what each call passes and writes, and the dtypes the kernel accepts (for `etch ops`).

pub mod activation;
pub mod binary;
pub mod bitwise;
pub mod conv;
pub mod creation;
pub mod distance;
pub mod elementwise;
pub mod glu;
pub mod index;
pub mod layout;
pub mod linalg;
pub mod math;
pub mod norm;
pub mod pad;
pub mod pool;
pub mod rearrange;
pub mod reduce;
pub mod resample;
pub mod scatter;
pub mod shape_ops;
pub mod softmax;
pub mod spatial;
pub mod split;
/// Builds one operator call over owned buffers and runs a kernel on it: for unit tests, and for
/// the kernel benchmarks (feature `bench-support`). Not a stable API.
#[cfg(any(test, feature = "bench-support"))]
#[doc(hidden)]
pub mod test_support;
pub mod topk;
pub mod unary;

#[cfg(test)]
mod kernel_tests;

#[cfg(test)]
use crate::OpSchema;
use crate::registry::{KernelFn, KernelRegistry};

/// The schemas of ExecuTorch's portable operator library (`kernels/portable/functions.yaml`,
/// 209 entries), as PyTorch prints them: the reference for argument order and for what is missing.
pub const EXECUTORCH_PORTABLE_SCHEMAS: &str = include_str!("../../portable_schemas.txt");

/// Registers every portable kernel.
pub fn register_all(r: &mut KernelRegistry) {
    binary::register(r);
    unary::register(r);
    linalg::register(r);
    reduce::register(r);
    softmax::register(r);
    shape_ops::register(r);
    activation::register(r);
    bitwise::register(r);
    creation::register(r);
    conv::register(r);
    norm::register(r);
    pool::register(r);
    resample::register(r);
    pad::register(r);
    rearrange::register(r);
    glu::register(r);
    distance::register(r);
    split::register(r);
    index::register(r);
    scatter::register(r);
    topk::register(r);
}

/// Registers a module's table of (schema, dtypes, kernel).
pub(crate) fn register_table(r: &mut KernelRegistry, table: &[(&str, &'static [crate::DType], KernelFn)]) {
    for (schema, dtypes, run) in table {
        // The tables are etch's own; a bad schema or a duplicate is a bug caught by the tests
        // (`every_portable_schema_parses_once`).
        if let Err(e) = r.register_pure(schema, dtypes, *run) {
            debug_assert!(false, "{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_portable_schema_parses_once() {
        let mut r = KernelRegistry::new();
        register_all(&mut r);
        assert!(r.len() >= 42, "{} kernels", r.len());
        // Registering again must find every name taken: no silent duplicates in the tables.
        let mut again = r.clone();
        for (name, k) in r.iter() {
            let schema_text = format!("{name}(Tensor x) -> Tensor");
            assert!(again.register(&schema_text, k.dtypes, k.run).is_err(), "{name}");
        }
    }

    /// Kernels registered under an ExecuTorch portable operator carry PyTorch's exact schema
    /// (`kernels/portable_schemas.txt`, printed from `torch.ops.<ns>.<op>.<overload>._schema`), so
    /// argument positions match what the exporter emits.
    #[test]
    fn schemas_match_pytorch() {
        let reference: std::collections::BTreeMap<String, OpSchema> = EXECUTORCH_PORTABLE_SCHEMAS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let s = OpSchema::parse(l).unwrap_or_else(|e| panic!("{e}"));
                (s.qualified_name.clone(), s)
            })
            .collect();
        assert_eq!(reference.len(), 209);
        let mut r = KernelRegistry::new();
        register_all(&mut r);
        for (name, k) in r.iter() {
            if let Some(want) = reference.get(name) {
                assert_eq!(&*k.schema, want, "{name}");
            }
        }
    }
}
