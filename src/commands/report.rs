//! `wattbench report`: the stored runs as Markdown, HTML and figures, from the database alone.

use crate::cli::ReportArgs;
use std::process::ExitCode;
use wattbench_report::{build, Options};
use wattbench_store::Store;

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let db = Store::resolve_path(args.db.db.as_deref());
    let store = Store::open_existing(&db)?;
    let written = build(
        &store,
        &args.out,
        &Options {
            timeline_run: args.timeline,
        },
    )?;
    println!(
        "report of {} configurations from {}:\n{}",
        written.points,
        db.display(),
        written
            .files
            .iter()
            .take(2)
            .map(|f| format!("  {}", f.display()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "  {} figures (SVG and PNG) in {}",
        (written.files.len() - 2) / 2,
        args.out.join("figures").display()
    );
    Ok(ExitCode::SUCCESS)
}
