//! Inputs for runs without `--inputs`: deterministic values of each input's planned dtype and shape.

use etch::{DType, Method, TensorView};

/// A small deterministic generator (SplitMix64), so every run sees the same inputs.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// Row-major bytes of `numel` deterministic elements of `dtype`: floats in [-1, 1), integers in
/// 0..4 (small, so they are valid indices for most embedding-style ops), alternating bools.
pub fn deterministic(dtype: DType, numel: usize, seed: u64) -> Vec<u8> {
    use etch::kernels::Element;
    let mut rng = SplitMix(seed);
    etch::kernels::dispatch_dtype!(dtype, T => {
        let v: Vec<T> = (0..numel)
            .map(|i| {
                if dtype == DType::Bool {
                    T::from_i64((i % 2) as i64)
                } else if T::IS_FLOAT {
                    T::from_f64(rng.unit())
                } else {
                    T::from_i64((rng.next() % 4) as i64)
                }
            })
            .collect();
        bytemuck::cast_slice(&v).to_vec()
    }, _ => vec![0u8; numel * dtype.element_size().unwrap_or(1)])
}

/// Sets every tensor input of `method` to deterministic data at its planned shape.
pub fn set_deterministic(method: &mut Method<'_>) -> Result<Vec<String>, String> {
    let meta_inputs: Vec<(DType, Vec<usize>)> = {
        let meta = method.method_meta();
        (0..meta.num_inputs())
            .map(|i| {
                meta.input_tensor_meta(i).map(|t| (t.dtype, t.sizes.to_vec())).unwrap_or((DType::Float, Vec::new()))
            })
            .collect()
    };
    let mut described = Vec::new();
    for (i, (dtype, sizes)) in meta_inputs.into_iter().enumerate() {
        if method.method_meta().input_tag(i) != Some(etch::Tag::Tensor) {
            continue;
        }
        let numel = sizes.iter().product();
        let data = deterministic(dtype, numel, i as u64 + 1);
        method.set_input(i, TensorView { dtype, sizes: &sizes, data: &data }).map_err(|e| e.to_string())?;
        described.push(format!("input {i}: {dtype} {sizes:?} (deterministic)"));
    }
    Ok(described)
}
