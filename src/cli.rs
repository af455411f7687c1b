//! Command-line flags (clap derive). Values are parsed here and validated once in the commands.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("WATTBENCH_GIT_SHA"),
    ")"
);

#[derive(Parser, Debug)]
#[command(name = "wattbench", version = LONG_VERSION, about = "Measure the speed and energy cost of LLM inference")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what can be measured here, with which sensor, and why a sensor is unavailable
    Devices(DevicesArgs),
    /// Watch power, energy, utilization, memory, clocks and temperature live
    Monitor(MonitorArgs),
    /// Run a command and report its wall time and energy per device
    Measure(MeasureArgs),
    /// Export stored results as CSV or JSON
    Export(ExportArgs),
}

/// Which sensors to read and which of their devices to keep.
#[derive(Args, Debug, Clone)]
pub struct SensorArgs {
    /// Sensors to read: auto, nvml, rapl[:POWERCAP_ROOT], fake:WATTS[xN], replay:FILE (repeat or comma-separate)
    #[arg(long = "sensor", value_name = "SENSOR", default_value = "auto")]
    pub sensors: Vec<String>,
    /// Measure only these devices: GPU indices, UUIDs (or unique prefixes) or device ids such as rapl:package-0
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Time between samples, from 10ms to 10s
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_interval)]
    pub interval: Duration,
}

#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub sensor: SensorArgs,
    /// Also append every sample to this CSV file
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Stop after this long instead of waiting for Ctrl-C
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

#[derive(Args, Debug)]
pub struct MeasureArgs {
    #[command(flatten)]
    pub sensor: SensorArgs,
    /// Before the command, measure idle power for this long to report net energy
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_baseline: Option<Duration>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
    /// Include the sampled timeline in the JSON output
    #[arg(long, requires = "json")]
    pub timeline: bool,
    #[command(flatten)]
    pub db: DbArgs,
    /// The command to measure, after `--`
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Results database [default: $WATTBENCH_DB, else wattbench.db]
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Output format
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// Export the sampled timelines (CSV: one row per sample; JSON: inside each measurement)
    #[arg(long)]
    pub timeline: bool,
    /// Write here instead of standard output ("-" is standard output)
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; write a duration such as 500ms, 10s or 2m"))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(10) || d > Duration::from_secs(10) {
        return Err(format!(
            "{s} is outside 10ms..10s; pick an interval in that range"
        ));
    }
    Ok(d)
}
