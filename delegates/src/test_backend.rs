//! A tiny backend for tests: its blob names one float32 elementwise operation.

use etch_kernels::DType;

use crate::{BackendInterface, CompileSpec, DelegateArgs, DelegateError, DelegateHandle, InitContext};

/// Backend id under which tests register [`ElementwiseTestBackend`].
pub const TEST_BACKEND_ID: &str = "EtchElementwiseTest";

/// Blob `b"add"` or `b"mul"`: a call `(a, b, out)` of same-shape float32 tensors computes
/// `out = a + b` or `out = a * b`. A compile spec `scale` (f32 little endian) multiplies the result.
#[derive(Debug, Default)]
pub struct ElementwiseTestBackend;

impl ElementwiseTestBackend {
    pub const ID: &'static str = TEST_BACKEND_ID;
}

#[derive(Debug)]
struct Handle {
    mul: bool,
    scale: f32,
}

impl BackendInterface for ElementwiseTestBackend {
    fn is_available(&self) -> bool {
        true
    }

    fn init(
        &self,
        _: &InitContext<'_>,
        processed: &[u8],
        compile_specs: &[CompileSpec<'_>],
    ) -> Result<Box<dyn DelegateHandle>, DelegateError> {
        let mul = match processed {
            b"add" => false,
            b"mul" => true,
            _ => {
                return Err(DelegateError::InvalidCompatibility(format!(
                    "unknown operation blob of {} bytes",
                    processed.len()
                )));
            }
        };
        let mut scale = 1.0;
        for spec in compile_specs {
            if spec.key == "scale" {
                let bytes: [u8; 4] = spec
                    .value
                    .try_into()
                    .map_err(|_| DelegateError::InvalidArgument("compile spec 'scale' must be 4 bytes".into()))?;
                scale = f32::from_le_bytes(bytes);
            }
        }
        Ok(Box::new(Handle { mul, scale }))
    }
}

impl DelegateHandle for Handle {
    fn num_outputs(&self) -> Option<usize> {
        Some(1)
    }

    fn execute(&self, args: &DelegateArgs<'_>) -> Result<(), DelegateError> {
        if args.len() != 3 {
            return Err(DelegateError::InvalidArgument(format!("expected 3 arguments, got {}", args.len())));
        }
        let (a, b) = (args.tensor(0)?, args.tensor(1)?);
        let mut out = args.tensor_mut(2)?;
        for t in [a.dtype(), b.dtype(), out.dtype()] {
            if t != DType::Float {
                return Err(DelegateError::NotSupported(format!("dtype {t}")));
            }
        }
        if a.sizes() != b.sizes() {
            return Err(DelegateError::InvalidArgument("inputs differ in shape".into()));
        }
        out.resize(a.sizes())?;
        let (x, y) = (a.data::<f32>()?, b.data::<f32>()?);
        for ((o, &x), &y) in out.data_mut::<f32>()?.iter_mut().zip(x).zip(y) {
            *o = self.scale * if self.mul { x * y } else { x + y };
        }
        Ok(())
    }
}
