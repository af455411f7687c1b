//! `fake:WATTS[xN]`: N devices drawing a constant power, with an energy counter. Deterministic,
//! driven by the sampler's clock, for tests and for trying the tool without hardware.

use crate::error::SensorError;
use crate::sensor::{retain_positions, EnergySensor, ReadKind};
use wattbench_core::{Capabilities, DeviceInfo, DeviceKind, Reading};

/// Arbitrary non-zero counter origin, so that nothing relies on counters starting at zero.
const COUNTER_ORIGIN_J: f64 = 1_000.0;

pub struct FakeSensor {
    watts: f64,
    devices: Vec<DeviceInfo>,
}

impl FakeSensor {
    pub fn new(watts: f64, count: u32) -> Self {
        let devices = (0..count)
            .map(|i| DeviceInfo {
                id: format!("fake{i}"),
                index: i,
                kind: DeviceKind::Simulated,
                sensor: "fake".into(),
                name: format!("fake device drawing {watts} W"),
                uuid: None,
                driver_version: None,
                power_limits: None,
                capabilities: Capabilities {
                    energy_counter: true,
                    instant_power: true,
                    ..Capabilities::default()
                },
            })
            .collect();
        FakeSensor { watts, devices }
    }
}

impl EnergySensor for FakeSensor {
    fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    fn read(&mut self, t_s: f64, _kind: ReadKind) -> Result<Vec<Reading>, SensorError> {
        Ok(self
            .devices
            .iter()
            .map(|_| Reading {
                energy_j: Some(COUNTER_ORIGIN_J + self.watts * t_s),
                power_w: Some(self.watts),
                ..Reading::default()
            })
            .collect())
    }

    fn retain(&mut self, keep: &[usize]) {
        retain_positions(&mut self.devices, keep);
    }
}
