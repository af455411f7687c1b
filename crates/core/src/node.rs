//! Figures per node, for measurements that span machines: devices read from other nodes'
//! exporters are named `NODE/DEVICE`; the others belong to this machine.

use crate::record::DeviceResult;
use serde::{Deserialize, Serialize};

/// The node of this machine's own devices.
pub const LOCAL: &str = "local";

/// The energy of one node's devices over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEnergy {
    pub node: String,
    pub devices: usize,
    /// Sum of the devices' known energies; null when none is known.
    pub energy_j: Option<f64>,
    pub avg_power_w: Option<f64>,
}

/// The node a device id belongs to.
pub fn node_of(id: &str) -> &str {
    id.split_once('/').map_or(LOCAL, |(node, _)| node)
}

/// Each node's energy over a window of `wall_s`, in order of first appearance; empty when every
/// device is this machine's (there is nothing to split).
pub fn by_node(devices: &[DeviceResult], wall_s: f64) -> Vec<NodeEnergy> {
    if devices.iter().all(|d| node_of(&d.info.id) == LOCAL) {
        return Vec::new();
    }
    let mut out: Vec<NodeEnergy> = Vec::new();
    for d in devices {
        let node = node_of(&d.info.id);
        let i = match out.iter().position(|n| n.node == node) {
            Some(i) => i,
            None => {
                out.push(NodeEnergy {
                    node: node.to_string(),
                    devices: 0,
                    energy_j: None,
                    avg_power_w: None,
                });
                out.len() - 1
            }
        };
        let n = &mut out[i];
        n.devices += 1;
        if let Some(e) = d.energy_j {
            n.energy_j = Some(n.energy_j.unwrap_or(0.0) + e);
        }
    }
    for n in &mut out {
        n.avg_power_w = n.energy_j.filter(|_| wall_s > 0.0).map(|e| e / wall_s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Capabilities, DeviceInfo, DeviceKind};

    fn dev(id: &str, energy_j: Option<f64>) -> DeviceResult {
        DeviceResult {
            info: DeviceInfo {
                id: id.into(),
                index: 0,
                kind: DeviceKind::Gpu,
                sensor: "prometheus".into(),
                name: id.into(),
                uuid: None,
                driver_version: None,
                power_limits: None,
                capabilities: Capabilities::default(),
            },
            energy_j,
            energy_method: None,
            counter_energy_j: None,
            integrated_power_j: None,
            avg_power_w: None,
            peak_power_w: None,
            idle_power_w: None,
            net_energy_j: None,
            counter_updates: 0,
            mean_sm_util_pct: None,
            mean_mem_util_pct: None,
            max_mem_used_bytes: None,
            mean_sm_clock_mhz: None,
            max_temperature_c: None,
        }
    }

    #[test]
    fn devices_are_summed_per_node_and_unknown_energy_stays_out() {
        let nodes = by_node(
            &[
                dev("n1/gpu0", Some(10.0)),
                dev("rapl:package-0", Some(1.0)),
                dev("n1/gpu1", Some(5.0)),
                dev("n2/gpu0", None),
            ],
            5.0,
        );
        assert_eq!(nodes.len(), 3);
        assert_eq!((nodes[0].node.as_str(), nodes[0].devices), ("n1", 2));
        assert_eq!(nodes[0].energy_j, Some(15.0));
        assert_eq!(nodes[0].avg_power_w, Some(3.0));
        assert_eq!(nodes[1].node, LOCAL);
        assert_eq!(nodes[2].energy_j, None, "unmeasured stays null, never zero");
        assert!(by_node(&[dev("gpu0", Some(1.0))], 1.0).is_empty());
    }
}
