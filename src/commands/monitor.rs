//! `wattbench monitor`: a live per-device view, optionally logged to CSV, until Ctrl-C or
//! `--duration`. The CSV is flushed after every sample, so a killed monitor keeps its log.

use crate::cli::MonitorArgs;
use crate::{meters, ui};
use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use wattbench_core::{window_energy, DeviceInfo, DeviceSeries, Point, Reading, WindowOptions};
use wattbench_meter::{EnergySensor, LiveSample, Sampler};

/// Energy since the start of monitoring, accumulated one sampling step at a time with the same
/// window rules as measurements (counter delta, wrap- and reset-safe, else integrated power).
struct Accumulator {
    last: DeviceSeries,
    /// Devices with a counter accumulate counter deltas only: their periodic readings may leave the
    /// counter out (it is read at most every ~100 ms), and those are skipped here.
    has_counter: bool,
    opts: WindowOptions,
    energy_j: Option<f64>,
}

impl Accumulator {
    fn new(d: &DeviceInfo) -> Self {
        Accumulator {
            last: DeviceSeries::new(d.id.clone()),
            has_counter: d.capabilities.energy_counter,
            opts: WindowOptions {
                counter_wrap_j: d.capabilities.counter_wrap_j,
                ..WindowOptions::default()
            },
            energy_j: None,
        }
    }

    fn push(&mut self, t_s: f64, reading: Reading) {
        if self.has_counter && reading.energy_j.is_none() {
            return;
        }
        self.last.points.push(Point { t_s, reading });
        if self.last.points.len() > 2 {
            self.last.points.remove(0);
        }
        if let [a, b] = self.last.points.as_slice() {
            let step = window_energy(&self.last, a.t_s, b.t_s, &self.opts).energy_j;
            if let Some(e) = step {
                self.energy_j = Some(self.energy_j.unwrap_or(0.0) + e);
            }
        }
    }
}

struct CsvLog {
    out: std::io::BufWriter<std::fs::File>,
}

impl CsvLog {
    const HEADER: &'static str =
        "unix_time_s,t_s,device_id,energy_j,power_w,avg_power_w,sm_util_pct,mem_util_pct,\
                                  mem_used_bytes,sm_clock_mhz,temperature_c";

    fn create(path: &std::path::Path) -> anyhow::Result<CsvLog> {
        let f = std::fs::File::create(path).with_context(|| {
            format!(
                "cannot create the CSV log {}; pass --csv a writable path",
                path.display()
            )
        })?;
        let mut out = std::io::BufWriter::new(f);
        writeln!(out, "{}", Self::HEADER)?;
        out.flush()?;
        Ok(CsvLog { out })
    }

    fn write(
        &mut self,
        start_unix_s: f64,
        s: &LiveSample,
        devices: &[DeviceInfo],
    ) -> std::io::Result<()> {
        fn o<T: ToString>(v: Option<T>) -> String {
            v.map(|v| v.to_string()).unwrap_or_default()
        }
        for (d, r) in devices.iter().zip(&s.readings) {
            writeln!(
                self.out,
                "{:.3},{:.4},{},{},{},{},{},{},{},{},{}",
                start_unix_s + s.t_s,
                s.t_s,
                d.id,
                o(r.energy_j),
                o(r.power_w),
                o(r.avg_power_w),
                o(r.sm_util_pct),
                o(r.mem_util_pct),
                o(r.mem_used_bytes),
                o(r.sm_clock_mhz),
                o(r.temperature_c),
            )?;
        }
        self.out.flush()
    }
}

fn render(s: &LiveSample, devices: &[DeviceInfo], acc: &[Accumulator]) -> String {
    let rows: Vec<Vec<String>> = devices
        .iter()
        .zip(&s.readings)
        .zip(acc)
        .map(|((d, r), a)| {
            vec![
                d.id.clone(),
                ui::num(r.power_w.or(r.avg_power_w), 1),
                ui::num(a.energy_j, 1),
                ui::num(r.sm_util_pct, 0),
                ui::num(r.mem_util_pct, 0),
                ui::gib(r.mem_used_bytes),
                r.sm_clock_mhz.map_or("n/a".into(), |c| c.to_string()),
                ui::num(r.temperature_c, 0),
            ]
        })
        .collect();
    ui::table(
        &[
            "device", "power W", "energy J", "SM %", "mem %", "mem GiB", "SM MHz", "temp °C",
        ],
        &rows,
        1,
    )
}

pub fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let sensors = meters::open(&args.sensor)?;
    let devices = sensors.devices().to_vec();
    if devices.is_empty() {
        let reasons: Vec<String> = sensors
            .unavailable
            .iter()
            .map(|u| format!("{}: {}", u.sensor, u.reason))
            .collect();
        anyhow::bail!(
            "no device to monitor here ({}); pass --sensor fake:WATTS to try the tool",
            reasons.join("; ")
        );
    }
    let mut csv = args.csv.as_deref().map(CsvLog::create).transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let (tx, rx) = mpsc::channel();
    let sampler = Sampler::start(sensors, args.sensor.interval, false, Some(tx))
        .context("starting the sampler")?;
    let start_unix = sampler.start_unix_s();
    let mut acc: Vec<Accumulator> = devices.iter().map(Accumulator::new).collect();
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let handle = |s: LiveSample,
                  acc: &mut Vec<Accumulator>,
                  csv: &mut Option<CsvLog>|
     -> anyhow::Result<()> {
        for (a, r) in acc.iter_mut().zip(&s.readings) {
            a.push(s.t_s, *r);
        }
        if let Some(log) = csv.as_mut() {
            log.write(start_unix, &s, &devices)
                .context("writing the CSV log")?;
        }
        let view = render(&s, &devices, acc);
        let mut out = std::io::stdout().lock();
        if tty {
            write!(
                out,
                "\x1b[2J\x1b[Hwattbench monitor  t = {:.1} s  (Ctrl-C to stop)\n\n{view}\n",
                s.t_s
            )?;
        } else {
            writeln!(out, "t = {:.3} s\n{view}", s.t_s)?;
        }
        out.flush()?;
        Ok(())
    };
    while !stop.load(Ordering::SeqCst) && args.duration.is_none_or(|d| started.elapsed() < d) {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(s) => handle(s, &mut acc, &mut csv)?,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let out = sampler.stop();
    for s in rx.try_iter() {
        handle(s, &mut acc, &mut csv)?;
    }
    eprintln!(
        "\nmonitored {:.1} s, {} samples every {} ms",
        started.elapsed().as_secs_f64(),
        out.stats.samples,
        args.sensor.interval.as_millis()
    );
    for (d, a) in devices.iter().zip(&acc) {
        eprintln!("  {}: {} J", d.id, ui::num(a.energy_j, 1));
    }
    if !out.warnings.is_empty() {
        eprintln!("{}", ui::warnings(&out.warnings));
    }
    if let Some(p) = &args.csv {
        eprintln!("samples logged to {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
