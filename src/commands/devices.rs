//! `wattbench devices`: what can be measured here and how, and why a sensor is unavailable.

use crate::cli::DevicesArgs;
use crate::ui;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use wattbench_core::DeviceInfo;
use wattbench_meter::nvml::NvmlSensor;
use wattbench_meter::rapl::RaplSensor;
use wattbench_meter::spec::{POWERCAP_ROOT, POWERCAP_ROOT_ENV};
use wattbench_meter::{EnergySensor, SensorError};

struct Probe {
    sensor: &'static str,
    result: Result<Vec<DeviceInfo>, SensorError>,
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn run(args: DevicesArgs) -> anyhow::Result<ExitCode> {
    let root = std::env::var_os(POWERCAP_ROOT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(POWERCAP_ROOT));
    let probes = [
        Probe {
            sensor: "nvml",
            result: NvmlSensor::open().map(|s| s.devices().to_vec()),
        },
        Probe {
            sensor: "rapl",
            result: RaplSensor::open(&root).map(|s| s.devices().to_vec()),
        },
    ];
    let real = probes
        .iter()
        .any(|p| p.result.as_ref().is_ok_and(|d| !d.is_empty()));
    let simulated = [
        ("fake", "--sensor fake:WATTS[xN]: N simulated devices at a constant power, for trying the tool and for tests"),
        ("replay", "--sensor replay:FILE: plays a recorded trace with the header t_s,device,power_w,energy_j"),
    ];
    if args.json {
        let mut sensors: Vec<serde_json::Value> = probes
            .iter()
            .map(|p| match &p.result {
                Ok(devices) => json!({ "sensor": p.sensor, "available": true, "reason": null, "devices": devices }),
                Err(e) => json!({ "sensor": p.sensor, "available": false, "reason": e.to_string(), "devices": [] }),
            })
            .collect();
        sensors.extend(
            simulated
                .iter()
                .map(|(s, usage)| json!({ "sensor": s, "available": true, "simulated": true, "usage": usage })),
        );
        let doc = json!({ "real_energy_sensor": real, "sensors": sensors });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    for p in &probes {
        match &p.result {
            Ok(devices) => {
                println!("{}: {} device(s)", p.sensor, devices.len());
                let rows: Vec<Vec<String>> = devices
                    .iter()
                    .map(|d| {
                        let c = &d.capabilities;
                        let limits = d.power_limits.map_or("n/a".to_string(), |l| {
                            format!(
                                "{:.0} W ({}-{} W)",
                                l.current_w.0,
                                ui::num(l.min_w.map(|w| w.0), 0),
                                ui::num(l.max_w.map(|w| w.0), 0)
                            )
                        });
                        vec![
                            d.id.clone(),
                            d.name.clone(),
                            d.uuid.clone().unwrap_or_else(|| "-".into()),
                            yes(c.energy_counter).into(),
                            yes(c.instant_power).into(),
                            yes(c.averaged_power).into(),
                            yes(c.utilization).into(),
                            limits,
                        ]
                    })
                    .collect();
                let header = [
                    "  id",
                    "name",
                    "uuid",
                    "counter",
                    "instant W",
                    "avg W",
                    "util",
                    "power limit",
                ];
                let rows: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|mut r| {
                        r[0] = format!("  {}", r[0]);
                        r
                    })
                    .collect();
                println!("{}", ui::table(&header, &rows, 3));
            }
            Err(e) => println!("{}: unavailable: {e}", p.sensor),
        }
    }
    for (s, usage) in simulated {
        println!("{s}: available (simulated): {usage}");
    }
    if !real {
        println!(
            "\nNo real energy sensor works here: `wattbench measure` will report wall time with energy null.\n\
             Install the NVIDIA driver for GPUs, or run as root for RAPL; use --sensor fake:WATTS to try the tool."
        );
    }
    Ok(ExitCode::SUCCESS)
}
