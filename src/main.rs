//! `wattbench`: measure how fast LLM inference is and how much energy it costs.

mod cli;
mod commands;
mod engine;
mod meters;
mod prompts;
mod provenance;
mod runner;
mod serve;
mod signals;
mod ui;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    recover_power_limits();
    let result = match cli.command {
        cli::Command::Devices(args) => commands::devices::run(args),
        cli::Command::Monitor(args) => commands::monitor::run(args),
        cli::Command::Measure(args) => commands::measure::run(args),
        cli::Command::Export(args) => commands::export::run(args),
        cli::Command::Datasets(args) => commands::datasets::run(args),
        cli::Command::Generate(args) => commands::generate::run(args),
        cli::Command::Run(args) => commands::run::run(args),
        cli::Command::Sweep(args) => commands::sweep::run(args),
        cli::Command::Report(args) => commands::report::run(args),
        cli::Command::PowerLimit(args) => commands::power_limit::run(args),
        cli::Command::Serve(args) => commands::serve::run(args),
        cli::Command::Meter(args) => commands::meter::run(args),
        cli::Command::Merge(args) => commands::merge::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = e
                .downcast_ref::<commands::measure::SpawnError>()
                .map_or(1, |s| s.exit_code());
            ExitCode::from(code)
        }
    }
}

/// GPU power limits that a wattbench changed and could not restore (it was killed, or crashed)
/// are put back at the next start.
fn recover_power_limits() {
    let path = wattbench_meter::power::journal::default_path();
    match wattbench_meter::power::journal::recover(&path) {
        Ok(Some(msg)) => eprintln!("{msg}"),
        Ok(None) => {}
        Err(e) => eprintln!(
            "warning: GPU power limits left changed by an earlier run were not restored: {e}; run `sudo wattbench power-limit restore`"
        ),
    }
}
