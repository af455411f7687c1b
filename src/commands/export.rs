//! `wattbench export`: stored measurements as CSV or JSON.

use crate::cli::{ExportArgs, ExportFormat};
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;
use wattbench_store::{export, Store};

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let path = Store::resolve_path(args.db.db.as_deref());
    let store = Store::open_existing(&path)?;
    let measurements = store.measurements(args.timeline)?;
    let mut out: Box<dyn Write> = match args.output.as_deref() {
        None => Box::new(std::io::stdout().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdout().lock()),
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("cannot create the export file {}", p.display()))?,
        )),
    };
    match (args.format, args.timeline) {
        (ExportFormat::Json, _) => {
            serde_json::to_writer_pretty(&mut out, &export::to_json(&measurements))?;
            writeln!(out)?;
        }
        (ExportFormat::Csv, false) => export::write_csv(&measurements, &mut out)?,
        (ExportFormat::Csv, true) => export::write_timeline_csv(&measurements, &mut out)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
