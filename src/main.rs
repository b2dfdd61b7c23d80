//! `etch`: run, inspect, benchmark and verify ExecuTorch programs.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Run { program, method, inputs, outputs, mode, threads: _ } => {
            let groups: Vec<_> = inputs.iter().map(|g| cli::input_group(g)).collect();
            cli::run::run(&program, &method, &groups, outputs.as_deref(), mode)
        }
        cli::Command::Inspect { program, json } => cli::inspect::inspect(&program, json),
        cli::Command::Bench { program, method, mode, threads: _, iters, inputs, json } => {
            cli::bench::bench(&program, &method, mode, iters, inputs.as_deref(), json)
        }
        cli::Command::Ops { missing } => cli::ops::ops(missing),
        cli::Command::Verify { bundled, rtol, atol } => cli::verify::verify(&bundled, rtol, atol),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the contract other tools parse.
            let line: String =
                e.split(['\n', '\r']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}
