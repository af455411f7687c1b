//! A sensor set's readings as Prometheus text, for `wattbench meter --listen`: GPUs under
//! dcgm-exporter's metric names, units and labels (so that one scrape configuration serves both),
//! other devices (RAPL's CPU packages and DRAM, fake devices) under `wattbench_*` names.

use super::text::{escape, family};
use super::*;

/// The text of one scrape of `devices` (with their `readings`, in the same order) on `node`.
pub fn render(devices: &[DeviceInfo], readings: &[Reading], node: &str) -> String {
    let node = escape(node);
    let mut gpu_rows: BTreeMap<&str, Vec<(String, f64)>> = BTreeMap::new();
    let mut other_energy = Vec::new();
    let mut other_power = Vec::new();
    for (d, r) in devices.iter().zip(readings) {
        if d.kind == DeviceKind::Gpu {
            let labels = format!(
                "gpu=\"{}\",UUID=\"{}\",device=\"nvidia{}\",modelName=\"{}\",Hostname=\"{node}\"",
                d.index,
                escape(d.uuid.as_deref().unwrap_or("")),
                d.index,
                escape(&d.name)
            );
            let mut put = |name: &'static str, v: Option<f64>| {
                if let Some(v) = v {
                    gpu_rows.entry(name).or_default().push((labels.clone(), v));
                }
            };
            put(DCGM_ENERGY_MJ, r.energy_j.map(|j| (j * 1000.0).round()));
            put(DCGM_POWER_W, r.power_w);
            put(DCGM_GPU_UTIL, r.sm_util_pct);
            put(DCGM_MEM_COPY_UTIL, r.mem_util_pct);
            put(
                DCGM_FB_USED_MIB,
                r.mem_used_bytes.map(|b| (b / 1048576) as f64),
            );
            put(DCGM_SM_CLOCK, r.sm_clock_mhz.map(f64::from));
            put(DCGM_GPU_TEMP, r.temperature_c);
        } else {
            let labels = format!(
                "device=\"{}\",kind=\"{}\",name=\"{}\",Hostname=\"{node}\"",
                escape(&d.id),
                d.kind.as_str(),
                escape(&d.name)
            );
            if let Some(j) = r.energy_j {
                other_energy.push((labels.clone(), j));
            }
            if let Some(w) = r.power_w {
                other_power.push((labels, w));
            }
        }
    }
    let mut out = String::new();
    for (name, kind, help) in [
        (
            DCGM_ENERGY_MJ,
            "counter",
            "Total energy consumption since boot (in mJ).",
        ),
        (DCGM_POWER_W, "gauge", "Power draw (in W)."),
        (DCGM_GPU_UTIL, "gauge", "GPU utilization (in %)."),
        (DCGM_MEM_COPY_UTIL, "gauge", "Memory utilization (in %)."),
        (
            DCGM_FB_USED_MIB,
            "gauge",
            "Framebuffer memory used (in MiB).",
        ),
        (DCGM_SM_CLOCK, "gauge", "SM clock frequency (in MHz)."),
        (DCGM_GPU_TEMP, "gauge", "GPU temperature (in C)."),
    ] {
        family(
            &mut out,
            name,
            kind,
            help,
            gpu_rows.get(name).map_or(&[], |v| v),
        );
    }
    family(
        &mut out,
        WB_ENERGY_J,
        "counter",
        "Energy counter of a device that is not a GPU (in J).",
        &other_energy,
    );
    family(
        &mut out,
        WB_POWER_W,
        "gauge",
        "Power of a device that is not a GPU (in W).",
        &other_power,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_reads_back_as_the_same_devices() {
        let gpu = DeviceInfo {
            id: "gpu0".into(),
            index: 0,
            kind: DeviceKind::Gpu,
            sensor: "nvml".into(),
            name: "NVIDIA H100 80GB HBM3".into(),
            uuid: Some("GPU-abc".into()),
            driver_version: None,
            power_limits: None,
            capabilities: Capabilities::default(),
        };
        let cpu = DeviceInfo {
            id: "rapl:package-0".into(),
            kind: DeviceKind::CpuPackage,
            sensor: "rapl".into(),
            name: "CPU package 0".into(),
            uuid: None,
            ..gpu.clone()
        };
        let readings = [
            Reading {
                energy_j: Some(1234.567),
                power_w: Some(410.0),
                mem_used_bytes: Some(2 << 30),
                ..Reading::default()
            },
            Reading {
                energy_j: Some(99.5),
                ..Reading::default()
            },
        ];
        let text = render(&[gpu, cpu], &readings, "node-a");
        assert!(
            text.contains("# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter"),
            "{text}"
        );
        let back = devices_of(&text::parse(&text).unwrap());
        let (meta, r) = &back["gpu0"];
        assert_eq!(meta.node.as_deref(), Some("node-a"));
        assert_eq!(meta.uuid.as_deref(), Some("GPU-abc"));
        assert_eq!(r.energy_j, Some(1234.567), "mJ resolution");
        assert_eq!(r.power_w, Some(410.0));
        assert_eq!(r.mem_used_bytes, Some(2 << 30));
        let (meta, r) = &back["rapl:package-0"];
        assert_eq!(meta.kind, DeviceKind::CpuPackage);
        assert_eq!(r.energy_j, Some(99.5));
    }
}
