//! Opening the sensors that the flags name.

use crate::cli::SensorArgs;
use anyhow::Context;
use wattbench_meter::{SensorSet, SensorSpec};

/// Opens the sensors named by `--sensor` and keeps the devices named by `--devices`.
pub fn open(args: &SensorArgs) -> anyhow::Result<SensorSet> {
    let specs = SensorSpec::parse_list(&args.sensors).context("--sensor")?;
    let mut set = SensorSet::open(&specs)?;
    set.select(&args.devices)?;
    Ok(set)
}
