//! `etch ops`: the operators the default runtime can run.

use std::io::Write;

use etch::Runtime;

pub fn ops(missing: bool) -> Result<(), String> {
    let kernels = Runtime::global().kernels();
    // A closed pipe (`etch ops | head`) ends the listing quietly instead of panicking in println!.
    let mut out = std::io::stdout().lock();
    if missing {
        let mut n = 0;
        for line in etch::kernels::portable::EXECUTORCH_PORTABLE_SCHEMAS.lines() {
            let name = line.split('(').next().unwrap_or("").trim();
            if !name.is_empty() && kernels.get(name).is_none() {
                if writeln!(out, "{name}").is_err() {
                    return Ok(());
                }
                n += 1;
            }
        }
        eprintln!("{n} ExecuTorch portable operators are not registered");
        return Ok(());
    }
    for (name, k) in kernels.iter() {
        let dtypes: Vec<&str> = k.dtypes.iter().map(|d| d.name()).collect();
        if writeln!(out, "{name} {}", dtypes.join(",")).is_err() {
            return Ok(());
        }
    }
    eprintln!("{} operators", kernels.len());
    Ok(())
}
