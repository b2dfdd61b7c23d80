//! `etch run`.

use std::path::{Path, PathBuf};

use etch::npy;
use etch::{Program, Value};

use super::{inputs, set_inputs};

pub fn run(
    program: &Path,
    method_name: &str,
    groups: &[Vec<PathBuf>],
    outputs: Option<&Path>,
    config: &etch::MethodConfig,
) -> Result<(), String> {
    let program = Program::load_file(program).map_err(|e| e.to_string())?;
    let mut method = program.load_method_configured(method_name, config, None).map_err(|e| e.to_string())?;
    if let Some(dir) = outputs {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let runs = groups.len().max(1);
    for k in 0..runs {
        let described = match groups.get(k) {
            Some(files) => {
                set_inputs(&mut method, files)?;
                Vec::new()
            }
            None => inputs::set_deterministic(&mut method)?,
        };
        method.execute().map_err(|e| e.to_string())?;
        let summary = outputs.is_none();
        if summary {
            println!("method '{}', run {k}:", method.name());
            for d in &described {
                println!("  {d}");
            }
        }
        for j in 0..method.num_outputs() {
            let value = method.output(j).map_err(|e| e.to_string())?;
            match value {
                Value::Tensor(t) => {
                    let bytes = etch::to_contiguous_bytes(&t).map_err(|e| format!("output {j}: {e}"))?;
                    if let Some(dir) = outputs {
                        npy::write(&dir.join(format!("run{k}_out{j}.npy")), t.dtype(), t.sizes(), &bytes)?;
                    }
                    if summary {
                        println!("  output {j}: {} {:?} {}", t.dtype(), t.sizes(), npy::preview(t.dtype(), &bytes, 8));
                    }
                }
                other => {
                    if outputs.is_some() {
                        return Err(format!("output {j} is {other:?}; only tensor outputs can be written as .npy"));
                    }
                    println!("  output {j}: {other:?}");
                }
            }
        }
    }
    Ok(())
}
