//! `etch`: run, inspect, benchmark and verify ExecuTorch programs.

mod cli;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // Usage errors too are one line, as the contract says for every failure.
            let text = e.to_string();
            let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("bad arguments");
            eprintln!("{first} (see etch --help)");
            return ExitCode::from(2);
        }
    };
    let result = match args.command {
        cli::Command::Run { program, method, inputs, outputs, mode, threads, plan } => {
            let groups: Vec<_> = inputs.iter().map(|g| cli::input_group(g)).collect();
            cli::run::run(&program, &method, &groups, outputs.as_deref(), &cli::config(mode, plan, threads))
        }
        cli::Command::Inspect { program, json } => cli::inspect::inspect(&program, json),
        cli::Command::Bench { program, method, mode, threads, plan, iters, loads, inputs, json, trace, concurrent } => {
            match concurrent {
                Some(levels) => cli::bench::throughput(
                    &program,
                    &method,
                    &cli::config(mode, plan, threads),
                    &levels,
                    iters,
                    inputs.as_deref(),
                    json,
                ),
                None => cli::bench::bench(
                    &program,
                    &method,
                    &cli::config(mode, plan, threads),
                    cli::bench::Repeats { iters, loads },
                    inputs.as_deref(),
                    json,
                    trace.as_deref(),
                ),
            }
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
