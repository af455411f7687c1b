//! `wattbench measure -- CMD ARGS...`: runs a command between two energy readings.
//!
//! The database is opened first, so an unusable path fails before anything runs. The sampler
//! starts, optionally measures idle power, takes a reading, spawns the command, waits, takes a
//! reading, and stops. SIGINT and SIGQUIT (sent by the terminal to the whole process group) reach
//! the command directly and are ignored here; SIGTERM and SIGHUP are forwarded to it. Either way
//! the measurement is finished, stored and printed, and wattbench exits with the command's code.

use crate::cli::MeasureArgs;
use crate::{meters, provenance, ui};
use anyhow::Context;
use serde_json::json;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use wattbench_core::{by_node, summarize, window_energy, Measurement, WindowOptions};
use wattbench_meter::{EnergySensor, Sampler};
use wattbench_store::Store;

/// The command could not be started; exits 127 (not found) or 126 (not executable), like a shell.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the command {program:?}: {source}{hint}")]
pub struct SpawnError {
    program: String,
    hint: &'static str,
    #[source]
    source: std::io::Error,
}

impl SpawnError {
    pub fn exit_code(&self) -> u8 {
        if self.source.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        }
    }
}

/// Forwards SIGTERM and SIGHUP to the child; swallows SIGINT and SIGQUIT, which the terminal
/// already sent to the child's process group.
fn guard_signals(child_pid: Arc<AtomicI32>) -> anyhow::Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGQUIT, SIGTERM, SIGHUP])
        .context("installing signal handlers")?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("wattbench-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let pid = child_pid.load(Ordering::SeqCst);
                if pid > 0 && (sig == SIGTERM || sig == SIGHUP) {
                    // SAFETY: kill(2) with a pid of our own child and a valid signal number.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        })?;
    Ok(handle)
}

pub fn run(args: MeasureArgs) -> anyhow::Result<ExitCode> {
    let db_path = Store::resolve_path(args.db.db.as_deref());
    let mut store = Store::open(&db_path)?;
    let sensors = meters::open(&args.sensor)?;
    let devices = sensors.devices().to_vec();
    let mut warnings = meters::start_warnings(&sensors);

    let interval = args.sensor.interval;
    let sampler =
        Sampler::start(sensors, interval, true, None).context("starting the sampler thread")?;
    let idle_end = args.idle_baseline.map(|d| {
        std::thread::sleep(d);
        sampler.mark()
    });

    let child_pid = Arc::new(AtomicI32::new(0));
    let signals = guard_signals(child_pid.clone())?;
    let program = &args.command[0];
    let t0 = sampler.mark();
    let spawned = Command::new(program).args(&args.command[1..]).spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(source) => {
            signals.close();
            sampler.stop();
            let hint = match source.kind() {
                std::io::ErrorKind::NotFound => " (is it installed and on PATH?)",
                std::io::ErrorKind::PermissionDenied => " (is it executable?)",
                _ => "",
            };
            return Err(SpawnError {
                program: program.clone(),
                hint,
                source,
            }
            .into());
        }
    };
    child_pid.store(child.id() as i32, Ordering::SeqCst);
    let status = child.wait();
    let t1 = sampler.mark();
    child_pid.store(0, Ordering::SeqCst);
    signals.close();
    let out = sampler.stop();
    let exit_code = match &status {
        Ok(s) => s.code().or_else(|| s.signal().map(|sig| 128 + sig)),
        Err(_) => None,
    };

    let idle_w: Option<Vec<Option<f64>>> = idle_end.map(|end| {
        out.timeline
            .series
            .iter()
            .zip(&devices)
            .map(|(s, d)| {
                let opts = WindowOptions {
                    counter_wrap_j: d.capabilities.counter_wrap_j,
                    ..WindowOptions::default()
                };
                let first = s.points.first().map_or(0.0, |p| p.t_s);
                window_energy(s, first, end, &opts).avg_power_w
            })
            .collect()
    });
    let summary = summarize(&devices, &out.timeline, t0, t1, idle_w.as_deref());
    warnings.extend(summary.warnings);
    warnings.extend(out.warnings);
    warnings.extend(out.sensor.window_warnings(t0, t1));

    let start_unix = out.start_unix_s + t0;
    let measurement = Measurement {
        id: None,
        started_at: provenance::rfc3339(start_unix),
        finished_at: provenance::rfc3339(out.start_unix_s + t1),
        started_unix_s: start_unix,
        wall_s: t1 - t0,
        command: args.command.clone(),
        exit_code,
        energy_j: summary.energy_j,
        avg_power_w: summary.avg_power_w,
        peak_power_w: summary.peak_power_w,
        idle_power_w: summary.idle_power_w,
        net_energy_j: summary.net_energy_j,
        devices: summary.devices,
        warnings,
        sampler: out.stats,
        config: json!({
            "sensors": args.sensor.sensors,
            "devices": args.sensor.devices,
            "interval_s": interval.as_secs_f64(),
            "idle_baseline_s": args.idle_baseline.map(|d| d.as_secs_f64()),
        }),
        provenance: provenance::collect(),
        window_start_s: t0,
        timeline: out.timeline,
    };
    let stored = store.insert_measurement(&measurement);
    let mut shown = measurement;
    shown.id = stored.as_ref().ok().copied();
    print(&shown, &args, &db_path)?;
    if let Err(e) = &status {
        eprintln!("error: waiting for the command failed: {e}");
    }
    let code = exit_code.unwrap_or(1).clamp(0, 255) as u8;
    match stored {
        Ok(_) => Ok(ExitCode::from(code)),
        Err(e) => {
            eprintln!("error: the measurement above was not stored: {e}");
            Ok(ExitCode::from(if code == 0 { 1 } else { code }))
        }
    }
}

fn print(m: &Measurement, args: &MeasureArgs, db: &std::path::Path) -> anyhow::Result<()> {
    if args.json {
        let mut v = serde_json::to_value(m)?;
        let obj = v
            .as_object_mut()
            .expect("a measurement serializes to an object; this is a bug");
        if !args.timeline {
            obj.remove("timeline");
        }
        obj.insert(
            "warnings".into(),
            m.warnings.iter().map(ui::warning_json).collect(),
        );
        obj.insert("nodes".into(), json!(by_node(&m.devices, m.wall_s)));
        obj.insert("db".into(), json!(db));
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    let code = m.exit_code.map_or("unknown".to_string(), |c| c.to_string());
    eprintln!();
    eprintln!("command    {} (exit {code})", m.command.join(" "));
    eprintln!("wall time  {:.3} s", m.wall_s);
    if !m.devices.is_empty() {
        let rows: Vec<Vec<String>> = m
            .devices
            .iter()
            .map(|d| {
                vec![
                    d.info.id.clone(),
                    d.info.name.clone(),
                    ui::num(d.energy_j, 1),
                    d.energy_method.map_or("none", |m| m.as_str()).to_string(),
                    ui::num(d.integrated_power_j, 1),
                    ui::num(d.avg_power_w, 1),
                    ui::num(d.peak_power_w, 1),
                    ui::num(d.mean_sm_util_pct, 0),
                    ui::gib(d.max_mem_used_bytes),
                ]
            })
            .collect();
        eprintln!(
            "{}",
            ui::table(
                &[
                    "device",
                    "name",
                    "energy J",
                    "method",
                    "∫power J",
                    "avg W",
                    "peak W",
                    "SM %",
                    "mem GiB"
                ],
                &rows,
                2
            )
        );
    }
    eprintln!(
        "total      {} J, average {} W, peak {} W",
        ui::num(m.energy_j, 1),
        ui::num(m.avg_power_w, 1),
        ui::num(m.peak_power_w, 1)
    );
    for n in by_node(&m.devices, m.wall_s) {
        eprintln!(
            "node       {}: {} J, average {} W ({} device(s))",
            n.node,
            ui::num(n.energy_j, 1),
            ui::num(n.avg_power_w, 1),
            n.devices
        );
    }
    if let Some(net) = m.net_energy_j {
        eprintln!(
            "net        {net:.1} J above idle ({} W idle)",
            ui::num(m.idle_power_w, 1)
        );
    }
    if !m.warnings.is_empty() {
        eprintln!("{}", ui::warnings(&m.warnings));
    }
    match m.id {
        Some(id) => eprintln!("stored     measurement {id} in {}", db.display()),
        None => eprintln!("stored     nothing (see the error below)"),
    }
    Ok(())
}
