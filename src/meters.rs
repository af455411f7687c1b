//! Opening the sensors that the flags name.

use crate::cli::SensorArgs;
use anyhow::Context;
use wattbench_core::Warning;
use wattbench_meter::{EnergySensor, SensorSet, SensorSpec};

/// Opens the sensors named by `--sensor` and keeps the devices named by `--devices`.
pub fn open(args: &SensorArgs) -> anyhow::Result<SensorSet> {
    let mut specs = SensorSpec::parse_list(&args.sensors).context("--sensor")?;
    let token = match &args.scrape_token_env {
        Some(var) => Some(std::env::var(var).with_context(|| {
            format!("--scrape-token-env {var}: the environment variable {var} is not set; export it with the exporters' token")
        })?),
        None => None,
    };
    for spec in &mut specs {
        if let SensorSpec::Prometheus { options, .. } = spec {
            options.interval = args.scrape_interval;
            options.timeout = args.scrape_timeout;
            options.token = token.clone();
        }
    }
    let mut set = SensorSet::open(&specs)?;
    set.select(&args.devices)?;
    Ok(set)
}

/// What holds for every window of these sensors: no device to measure, or other processes on a
/// measured GPU (whose energy the windows then include).
pub fn start_warnings(sensors: &SensorSet) -> Vec<Warning> {
    let devices = sensors.devices();
    let mut warnings = Vec::new();
    if devices.is_empty() {
        warnings.push(Warning::NoEnergySensor);
    }
    let own = std::process::id();
    for (k, pids) in sensors.processes() {
        let others: Vec<u32> = pids.into_iter().filter(|&p| p != own).collect();
        if !others.is_empty() {
            warnings.push(Warning::OtherProcesses {
                device: devices[k].id.clone(),
                pids: others,
            });
        }
    }
    warnings
}
