//! `prometheus:URL[,URL...]`: the GPUs (and CPUs) of other machines, read from Prometheus text
//! endpoints — NVIDIA's dcgm-exporter and `wattbench meter --listen`.
//!
//! Every device of an endpoint becomes a device of the measurement, named `NODE/KEY`: the node is
//! the samples' `Hostname` label (the URL's host and port without one), the key `gpuN` for
//! dcgm-exporter's GPUs and the exporter's own device id for wattbench's metrics. Energy comes
//! from counter deltas (`DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`, mJ; `wattbench_energy_joules_total`,
//! J), power from `DCGM_FI_DEV_POWER_USAGE` / `wattbench_power_watts`.
//!
//! Remote clocks are never used: a scrape's readings carry the local time the scrape started, so
//! every window is bounded by scrape times on this machine's clock. How far apart a reading and
//! its time can be (the scrape's round trip) is reported per endpoint as the alignment error.
//! Periodic reads scrape at most once per scrape interval (window edges always scrape). An
//! endpoint that stops answering leaves its devices without readings for that span — their
//! energy stops at the last answered scrape — and is reported with the span it missed; the others
//! go on. Exporters that collect less often than they are scraped (dcgm-exporter caches between
//! collections) return the same counters twice; such stale scrapes are counted and reported.

pub mod expose;
pub mod text;

use crate::error::SensorError;
use crate::sensor::{retain_positions, EnergySensor, ReadKind};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use text::Sample;
use wattbench_core::{Capabilities, DeviceInfo, DeviceKind, Reading, Warning};

pub const DCGM_ENERGY_MJ: &str = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION";
pub const DCGM_POWER_W: &str = "DCGM_FI_DEV_POWER_USAGE";
pub const DCGM_GPU_UTIL: &str = "DCGM_FI_DEV_GPU_UTIL";
pub const DCGM_MEM_COPY_UTIL: &str = "DCGM_FI_DEV_MEM_COPY_UTIL";
pub const DCGM_FB_USED_MIB: &str = "DCGM_FI_DEV_FB_USED";
pub const DCGM_SM_CLOCK: &str = "DCGM_FI_DEV_SM_CLOCK";
pub const DCGM_GPU_TEMP: &str = "DCGM_FI_DEV_GPU_TEMP";
pub const WB_ENERGY_J: &str = "wattbench_energy_joules_total";
pub const WB_POWER_W: &str = "wattbench_power_watts";

/// How endpoints are scraped.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeOptions {
    /// Longest wait for one scrape.
    pub timeout: Duration,
    /// Shortest time between two periodic scrapes of an endpoint.
    pub interval: Duration,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
}

impl Default for ScrapeOptions {
    fn default() -> Self {
        ScrapeOptions {
            timeout: Duration::from_secs(2),
            interval: Duration::from_secs(1),
            token: None,
        }
    }
}

/// What a device is, from its samples' labels.
#[derive(Debug, Clone)]
struct Meta {
    node: Option<String>,
    kind: DeviceKind,
    name: String,
    uuid: Option<String>,
    index: u32,
}

/// One scrape: each device key's reading and description.
type Scrape = BTreeMap<String, (Meta, Reading)>;

fn kind_of(label: Option<&str>) -> DeviceKind {
    match label {
        Some("gpu") => DeviceKind::Gpu,
        Some("cpu_package") => DeviceKind::CpuPackage,
        Some("dram") => DeviceKind::Dram,
        _ => DeviceKind::Simulated,
    }
}

/// The devices of one scrape's samples, with their readings.
fn devices_of(samples: &[Sample]) -> Scrape {
    let mut out: Scrape = BTreeMap::new();
    for s in samples {
        let dcgm = s.name.starts_with("DCGM_FI_DEV_");
        let key = if dcgm {
            match (s.label("gpu"), s.label("UUID")) {
                (Some(g), _) => format!("gpu{g}"),
                (None, Some(u)) => u.to_string(),
                (None, None) => continue,
            }
        } else if s.name.starts_with("wattbench_") {
            match s.label("device") {
                Some(d) => d.to_string(),
                None => continue,
            }
        } else {
            continue;
        };
        let (meta, r) = out.entry(key.clone()).or_insert_with(|| {
            let index = s
                .label("gpu")
                .or(s.label("index"))
                .and_then(|g| g.parse().ok())
                .unwrap_or(0);
            let kind = if dcgm {
                DeviceKind::Gpu
            } else {
                kind_of(s.label("kind"))
            };
            (
                Meta {
                    node: s.label("Hostname").map(str::to_string),
                    kind,
                    name: s
                        .label("modelName")
                        .or(s.label("name"))
                        .unwrap_or(&key)
                        .to_string(),
                    uuid: s.label("UUID").map(str::to_string),
                    index,
                },
                Reading::default(),
            )
        });
        if meta.node.is_none() {
            meta.node = s.label("Hostname").map(str::to_string);
        }
        let v = s.value;
        let finite = v.is_finite().then_some(v);
        match s.name.as_str() {
            DCGM_ENERGY_MJ => r.energy_j = finite.map(|v| v / 1000.0),
            DCGM_POWER_W | WB_POWER_W => r.power_w = finite,
            WB_ENERGY_J => r.energy_j = finite,
            DCGM_GPU_UTIL => r.sm_util_pct = finite,
            DCGM_MEM_COPY_UTIL => r.mem_util_pct = finite,
            DCGM_FB_USED_MIB => r.mem_used_bytes = finite.map(|v| (v * 1048576.0) as u64),
            DCGM_SM_CLOCK => r.sm_clock_mhz = finite.map(|v| v as u32),
            DCGM_GPU_TEMP => r.temperature_c = finite,
            _ => {}
        }
    }
    out.retain(|_, (_, r)| r.energy_j.is_some() || r.power_w.is_some());
    out
}

/// A span during which an endpoint did not answer, on the sampler's clock.
#[derive(Debug, Clone)]
struct Gap {
    /// The last answered scrape before it (or the failed one, when none had answered).
    from_s: f64,
    /// The first answered scrape after it; `None` while it lasts.
    to_s: Option<f64>,
    error: String,
}

struct Endpoint {
    url: String,
    agent: ureq::Agent,
    /// Device keys, in the order of this endpoint's devices in the sensor.
    keys: Vec<String>,
    last_ok_s: Option<f64>,
    gaps: Vec<Gap>,
    last_energy: Option<Vec<Option<f64>>>,
    scrapes: u64,
    stale: u64,
    max_round_trip_s: f64,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str, token: Option<&str>) -> Result<String, String> {
    let mut req = agent.get(url).header("Accept", "text/plain;version=0.0.4");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    match status {
        200 => Ok(body),
        401 | 403 => Err(format!(
            "it answered {status}: the exporter wants a token (pass --scrape-token-env VAR)"
        )),
        _ => Err(format!(
            "it answered HTTP {status}: {}",
            body.lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(80)
                .collect::<String>()
        )),
    }
}

fn scrape(agent: &ureq::Agent, url: &str, token: Option<&str>) -> Result<Scrape, String> {
    let body = get(agent, url, token)?;
    Ok(devices_of(&text::parse(&body)?))
}

/// The URL's `host:port`, naming the node when its samples carry no `Hostname`.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

pub struct PrometheusSensor {
    endpoints: Vec<Endpoint>,
    devices: Vec<DeviceInfo>,
    /// For each device: its endpoint and its position among that endpoint's keys.
    owners: Vec<(usize, usize)>,
    options: ScrapeOptions,
    last_scrape: Option<Instant>,
}

impl PrometheusSensor {
    /// Scrapes every URL once; each must answer with Prometheus samples that carry energy or
    /// power of at least one device.
    pub fn open(urls: &[String], options: ScrapeOptions) -> Result<PrometheusSensor, SensorError> {
        let mut endpoints = Vec::new();
        let mut devices: Vec<DeviceInfo> = Vec::new();
        let mut owners = Vec::new();
        for url in urls {
            let bad = |reason: String| SensorError::Scrape {
                url: url.clone(),
                reason,
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(
                    "give the full URL of the metrics page, as in http://node1:9400/metrics".into(),
                ));
            }
            let agent = agent(options.timeout);
            let body = get(&agent, url, options.token.as_deref()).map_err(&bad)?;
            let samples = text::parse(&body).map_err(&bad)?;
            let found = devices_of(&samples);
            if found.is_empty() {
                return Err(SensorError::NoEnergyMetrics {
                    url: url.clone(),
                    metrics: samples.len(),
                });
            }
            let e = endpoints.len();
            let mut keys = Vec::new();
            for (key, (meta, r)) in found {
                let node = meta.node.clone().unwrap_or_else(|| authority(url));
                let id = format!("{node}/{key}");
                if let Some(d) = devices.iter().find(|d| d.id == id) {
                    return Err(bad(format!(
                        "its device {id} was already read from another endpoint ({}); give each \
                         exporter its own node name (wattbench meter --node-name, or the \
                         Hostname label of dcgm-exporter)",
                        d.name
                    )));
                }
                owners.push((e, keys.len()));
                keys.push(key);
                devices.push(DeviceInfo {
                    id,
                    index: meta.index,
                    kind: meta.kind,
                    sensor: "prometheus".into(),
                    name: format!("{} on {node}", meta.name),
                    uuid: meta.uuid,
                    driver_version: None,
                    power_limits: None,
                    capabilities: Capabilities {
                        energy_counter: r.energy_j.is_some(),
                        instant_power: r.power_w.is_some(),
                        ..Capabilities::default()
                    },
                });
            }
            endpoints.push(Endpoint {
                url: url.clone(),
                agent,
                keys,
                last_ok_s: None,
                gaps: Vec::new(),
                last_energy: None,
                scrapes: 0,
                stale: 0,
                max_round_trip_s: 0.0,
            });
        }
        Ok(PrometheusSensor {
            endpoints,
            devices,
            owners,
            options,
            last_scrape: None,
        })
    }
}

impl EnergySensor for PrometheusSensor {
    fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    fn read(&mut self, t_s: f64, kind: ReadKind) -> Result<Vec<Reading>, SensorError> {
        let due = self
            .last_scrape
            .is_none_or(|t| t.elapsed() >= self.options.interval);
        if kind == ReadKind::Tick && !due {
            return Ok(vec![Reading::default(); self.devices.len()]);
        }
        self.last_scrape = Some(Instant::now());
        let token = self.options.token.as_deref();
        let results: Vec<(Result<Scrape, String>, f64)> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .endpoints
                .iter()
                .map(|e| {
                    s.spawn(move || {
                        let t = Instant::now();
                        let r = scrape(&e.agent, &e.url, token);
                        (r, t.elapsed().as_secs_f64())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| (Err("the scrape panicked".into()), 0.0))
                })
                .collect()
        });
        let mut per_endpoint: Vec<Vec<Reading>> = Vec::with_capacity(results.len());
        for (e, (result, round_trip)) in self.endpoints.iter_mut().zip(results) {
            match result {
                Ok(scrape) => {
                    if let Some(g) = e.gaps.last_mut().filter(|g| g.to_s.is_none()) {
                        g.to_s = Some(t_s);
                    }
                    e.last_ok_s = Some(t_s);
                    e.scrapes += 1;
                    e.max_round_trip_s = e.max_round_trip_s.max(round_trip);
                    let readings: Vec<Reading> = e
                        .keys
                        .iter()
                        .map(|k| scrape.get(k).map(|(_, r)| *r).unwrap_or_default())
                        .collect();
                    let energy: Vec<Option<f64>> = readings.iter().map(|r| r.energy_j).collect();
                    if energy.iter().any(Option::is_some) && e.last_energy.as_ref() == Some(&energy)
                    {
                        e.stale += 1;
                    }
                    e.last_energy = Some(energy);
                    per_endpoint.push(readings);
                }
                Err(error) => {
                    if e.gaps.last().is_none_or(|g| g.to_s.is_some()) {
                        e.gaps.push(Gap {
                            from_s: e.last_ok_s.unwrap_or(t_s),
                            to_s: None,
                            error,
                        });
                    }
                    per_endpoint.push(vec![Reading::default(); e.keys.len()]);
                }
            }
        }
        Ok(self
            .owners
            .iter()
            .map(|&(e, k)| per_endpoint[e][k])
            .collect())
    }

    fn retain(&mut self, keep: &[usize]) {
        retain_positions(&mut self.devices, keep);
        retain_positions(&mut self.owners, keep);
    }

    fn window_warnings(&self, t0_s: f64, t1_s: f64) -> Vec<Warning> {
        let mut out = Vec::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            if !self.owners.iter().any(|&(o, _)| o == i) {
                continue;
            }
            for g in &e.gaps {
                if g.from_s <= t1_s && g.to_s.is_none_or(|t| t >= t0_s) {
                    out.push(Warning::EndpointMissed {
                        url: e.url.clone(),
                        from_s: g.from_s,
                        to_s: g.to_s,
                        error: g.error.clone(),
                    });
                }
            }
            if e.stale > 0 {
                out.push(Warning::StaleScrapes {
                    url: e.url.clone(),
                    stale: e.stale,
                    scrapes: e.scrapes,
                });
            }
            out.push(Warning::ScrapeAlignment {
                url: e.url.clone(),
                max_round_trip_ms: e.max_round_trip_s * 1e3,
                scrapes: e.scrapes,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcgm_and_wattbench_samples_become_devices() {
        let body = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"1\",UUID=\"GPU-b\",Hostname=\"n1\",modelName=\"H100\"} 5000\n\
                    DCGM_FI_DEV_POWER_USAGE{gpu=\"1\",UUID=\"GPU-b\",Hostname=\"n1\"} 300.5\n\
                    DCGM_FI_DEV_FB_USED{gpu=\"1\",Hostname=\"n1\"} 1024\n\
                    DCGM_FI_DEV_SM_CLOCK{gpu=\"2\",Hostname=\"n1\"} 1980\n\
                    wattbench_energy_joules_total{device=\"rapl:package-0\",kind=\"cpu_package\",Hostname=\"n1\"} 12.5\n\
                    process_cpu_seconds_total 3\n";
        let d = devices_of(&text::parse(body).unwrap());
        assert_eq!(d.len(), 2, "gpu2 has neither energy nor power: {d:?}");
        let (meta, r) = &d["gpu1"];
        assert_eq!(meta.node.as_deref(), Some("n1"));
        assert_eq!(meta.uuid.as_deref(), Some("GPU-b"));
        assert_eq!(meta.index, 1);
        assert_eq!(r.energy_j, Some(5.0), "mJ become J");
        assert_eq!(r.power_w, Some(300.5));
        assert_eq!(r.mem_used_bytes, Some(1 << 30));
        let (meta, r) = &d["rapl:package-0"];
        assert_eq!(meta.kind, DeviceKind::CpuPackage);
        assert_eq!(r.energy_j, Some(12.5));
    }

    #[test]
    fn nodes_without_a_hostname_are_named_by_the_url() {
        assert_eq!(authority("http://10.0.0.5:9400/metrics"), "10.0.0.5:9400");
        assert_eq!(authority("https://gpu-7/metrics?x=1"), "gpu-7");
    }
}
