//! Typed warnings: every figure that may be doubtful says so, and each message names what to do.

use serde::{Deserialize, Serialize};

/// Relative disagreement between the energy counter and integrated instantaneous power above
/// which a window is flagged.
pub const DISAGREEMENT_THRESHOLD: f64 = 0.05;
/// A window should span at least this many energy-counter updates to be trusted.
pub const MIN_COUNTER_UPDATES: usize = 3;
/// SM utilization (percent) at the start of a window above which the GPU counts as busy.
pub const BUSY_UTIL_PCT: f64 = 10.0;
/// Temperature (°C) at the start of a window above which the GPU counts as hot: a hot GPU leaks
/// more power, so its energy is not comparable with a cold start.
pub const HOT_TEMPERATURE_C: f64 = 60.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// No selected sensor can measure energy on this machine.
    NoEnergySensor,
    /// The device has no energy counter; its energy is the integral of instantaneous power.
    NoCounter { device: String },
    /// The device provides neither a counter nor instantaneous power; its energy is null.
    NoEnergy { device: String },
    /// Counter delta and integrated power differ by more than the threshold.
    CounterPowerDisagreement {
        device: String,
        counter_j: f64,
        integrated_j: f64,
        rel_diff: f64,
    },
    /// The window spans too few counter updates for its energy to be precise.
    WindowTooShort {
        device: String,
        window_s: f64,
        counter_updates: usize,
    },
    /// The energy counter went backwards (driver reload or reset); the lost segment was estimated.
    CounterReset {
        device: String,
        at_s: f64,
        estimated_j: f64,
    },
    /// The GPU was already busy when the window started.
    DeviceBusyAtStart { device: String, sm_util_pct: f64 },
    /// The GPU was already hot when the window started.
    DeviceHotAtStart { device: String, temperature_c: f64 },
    /// Other processes were using a measured GPU; their energy is included.
    OtherProcesses { device: String, pids: Vec<u32> },
    /// The sampler could not keep its interval.
    SamplerOverrun { missed: u64, interval_s: f64 },
    /// Some sensor reads failed during sampling.
    SensorReadFailed { count: u64, last_error: String },
    /// A replayed trace ended before the window did; its last values were held.
    ReplayTraceEnded { trace_end_s: f64, window_s: f64 },
    /// A metrics endpoint did not answer from `from_s` (its last answered scrape) to `to_s` (its
    /// next one; `None`: it never came back): its devices' energy misses that span.
    EndpointMissed {
        url: String,
        from_s: f64,
        to_s: Option<f64>,
        error: String,
    },
    /// Scrapes that returned the same energy counters as the scrape before: the exporter collects
    /// less often than it is scraped.
    StaleScrapes {
        url: String,
        stale: u64,
        scrapes: u64,
    },
    /// How far a remote reading can be from the local time it is filed under: the longest
    /// scrape round trip of the endpoint.
    ScrapeAlignment {
        url: String,
        max_round_trip_ms: f64,
        scrapes: u64,
    },
}

impl Warning {
    /// The device a warning is about, if it is about one.
    pub fn device(&self) -> Option<&str> {
        match self {
            Warning::NoCounter { device }
            | Warning::NoEnergy { device }
            | Warning::CounterPowerDisagreement { device, .. }
            | Warning::WindowTooShort { device, .. }
            | Warning::CounterReset { device, .. }
            | Warning::DeviceBusyAtStart { device, .. }
            | Warning::DeviceHotAtStart { device, .. }
            | Warning::OtherProcesses { device, .. } => Some(device),
            _ => None,
        }
    }

    /// Short machine name of the warning (the serialized `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Warning::NoEnergySensor => "no_energy_sensor",
            Warning::NoCounter { .. } => "no_counter",
            Warning::NoEnergy { .. } => "no_energy",
            Warning::CounterPowerDisagreement { .. } => "counter_power_disagreement",
            Warning::WindowTooShort { .. } => "window_too_short",
            Warning::CounterReset { .. } => "counter_reset",
            Warning::DeviceBusyAtStart { .. } => "device_busy_at_start",
            Warning::DeviceHotAtStart { .. } => "device_hot_at_start",
            Warning::OtherProcesses { .. } => "other_processes",
            Warning::SamplerOverrun { .. } => "sampler_overrun",
            Warning::SensorReadFailed { .. } => "sensor_read_failed",
            Warning::ReplayTraceEnded { .. } => "replay_trace_ended",
            Warning::EndpointMissed { .. } => "endpoint_missed",
            Warning::StaleScrapes { .. } => "stale_scrapes",
            Warning::ScrapeAlignment { .. } => "scrape_alignment",
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::NoEnergySensor => write!(
                f,
                "no sensor could measure energy here, so energy is null; run `wattbench devices` to see why, \
                 or pass --sensor fake:WATTS to try the tool without hardware"
            ),
            Warning::NoCounter { device } => write!(
                f,
                "{device}: no energy counter; energy is the integral of instantaneous power"
            ),
            Warning::NoEnergy { device } => write!(
                f,
                "{device}: neither an energy counter nor instantaneous power is available; its energy is null"
            ),
            Warning::CounterPowerDisagreement { device, counter_j, integrated_j, rel_diff } => write!(
                f,
                "{device}: energy counter ({counter_j:.1} J) and integrated power ({integrated_j:.1} J) differ by \
                 {:.1}%; the counter is used. Check the sensor, or lower --interval to integrate power more finely",
                rel_diff * 100.0
            ),
            Warning::WindowTooShort { device, window_s, counter_updates } => write!(
                f,
                "{device}: the {window_s:.3} s window spans only {counter_updates} energy-counter update(s) \
                 (at least {MIN_COUNTER_UPDATES} wanted); measure a longer or repeated workload"
            ),
            Warning::CounterReset { device, at_s, estimated_j } => write!(
                f,
                "{device}: the energy counter went backwards at {at_s:.3} s (driver reload or reset); \
                 {estimated_j:.1} J of that segment were estimated"
            ),
            Warning::DeviceBusyAtStart { device, sm_util_pct } => write!(
                f,
                "{device}: already {sm_util_pct:.0}% busy at the start; energy includes other work. \
                 Wait for the GPU to idle, or measure --idle-baseline to subtract it"
            ),
            Warning::DeviceHotAtStart { device, temperature_c } => write!(
                f,
                "{device}: already at {temperature_c:.0} °C at the start (threshold {HOT_TEMPERATURE_C:.0} °C); \
                 a hot GPU draws more power. Let it cool down before measuring"
            ),
            Warning::OtherProcesses { device, pids } => write!(
                f,
                "{device}: other processes are using it (pids {}); their energy is included",
                pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
            ),
            Warning::SamplerOverrun { missed, interval_s } => write!(
                f,
                "the sampler missed {missed} tick(s) of its {:.0} ms interval; pass a longer --interval",
                interval_s * 1000.0
            ),
            Warning::SensorReadFailed { count, last_error } => write!(
                f,
                "{count} sensor read(s) failed during sampling (last: {last_error}); those samples are missing"
            ),
            Warning::ReplayTraceEnded { trace_end_s, window_s } => write!(
                f,
                "the replayed trace ends at {trace_end_s:.3} s but the window lasted {window_s:.3} s; \
                 its last values were held. Supply a longer trace"
            ),
            Warning::EndpointMissed { url, from_s, to_s: Some(to_s), error } => write!(
                f,
                "{url} did not answer from {from_s:.3} s to {to_s:.3} s ({error}); the energy of its \
                 devices in that span is missing, so their figures are partial"
            ),
            Warning::EndpointMissed { url, from_s, to_s: None, error } => write!(
                f,
                "{url} stopped answering at {from_s:.3} s ({error}); the energy of its devices stops \
                 there, so their figures are partial"
            ),
            Warning::StaleScrapes { url, stale, scrapes } => write!(
                f,
                "{stale} of {scrapes} scrapes of {url} returned the same energy counters as the one \
                 before: the exporter collects less often than it is scraped, so window edges may be \
                 off by one collection interval. Collect more often (dcgm-exporter -c MS) or pass a \
                 longer --scrape-interval"
            ),
            Warning::ScrapeAlignment { url, max_round_trip_ms, scrapes } => write!(
                f,
                "{url}: {scrapes} scrapes, readings filed under the local time each scrape started; \
                 alignment error up to {max_round_trip_ms:.1} ms (the longest round trip)"
            ),
        }
    }
}
