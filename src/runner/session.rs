//! What stays the same over the points of a run or a sweep: the database, the sensors and their
//! sampler, the progress line and Ctrl-C; and running one point (a configuration) on a loaded
//! model, repeat by repeat, each stored as soon as it ends.

use super::execute::{self, Context};
use super::plan::{self, ModelLimits, TooLong};
use super::progress::{self, Progress};
use super::summary::Repeat;
use crate::cli::SensorArgs;
use crate::meters;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use wattbench_core::{DeviceInfo, DeviceKind, RunConfig, RunRecord, RunStatus, Warning};
use wattbench_engine::{GenerationParams, LoadedModel};
use wattbench_meter::{EnergySensor, Sampler, SensorSet};
use wattbench_store::{Finished, Store};
use wattbench_workload::{Dataset, Tokenizer};

pub struct Session {
    pub store: Store,
    pub db_path: PathBuf,
    sampler: Option<Sampler<SensorSet>>,
    drawer: Option<JoinHandle<()>>,
    pub devices: Vec<DeviceInfo>,
    warnings: Vec<Warning>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
}

/// What one point left: its repeats (stored or not) and the error that stopped it.
pub struct PointResult {
    pub repeats: Vec<Repeat>,
    pub failure: Option<anyhow::Error>,
}

/// `auto`: the first GPU in a CUDA build where one answers, else the CPU.
pub fn resolve_device(flag: &str) -> String {
    if flag != "auto" {
        return flag.to_string();
    }
    if cfg!(feature = "cuda") && wattbench_engine::device::parse_device("cuda").is_ok() {
        "cuda:0".into()
    } else {
        "cpu".into()
    }
}

impl Session {
    /// Opens the database (first, so that a bad `--db` fails before anything slow), the sensors
    /// (on a GPU device, only that GPU unless `--devices` says otherwise) and the sampler.
    pub fn open(db: Option<&Path>, sensor: &SensorArgs, device: &str) -> anyhow::Result<Session> {
        let db_path = Store::resolve_path(db);
        let store = Store::open(&db_path)?;
        let mut sensors = meters::open(sensor)?;
        if let Some(gpu) = device.strip_prefix("cuda") {
            // The GPUs the model runs on (`cuda`, `cuda:N` or `cuda:N,M,..`), not the others.
            let used: Vec<String> = match gpu.strip_prefix(':') {
                Some(list) => list.split(',').map(String::from).collect(),
                None => vec!["0".into()],
            };
            let gpus = sensors.devices().iter().any(|d| d.kind == DeviceKind::Gpu);
            if sensor.devices.is_empty() && gpus {
                if let Err(e) = sensors.select(&used) {
                    if let wattbench_meter::SensorError::DeviceNotFound {
                        selector, found, ..
                    } = &e
                    {
                        anyhow::bail!(
                            "GPU {selector} does not exist ({found}); run on GPUs that exist (--gpus, --tensor-parallel or --device cuda:N)"
                        );
                    }
                    return Err(e.into());
                }
            }
        }
        let devices = sensors.devices().to_vec();
        let warnings = meters::start_warnings(&sensors);
        let progress = Progress::new();
        let (live_tx, live_rx) = std::sync::mpsc::channel();
        let drawer = progress::draw(progress.clone(), live_rx);
        let sampler = Sampler::start(sensors, sensor.interval, true, Some(live_tx))
            .context("starting the sampler thread")?;
        let stop = Arc::new(AtomicBool::new(false));
        // The first signal stops after the current batch; a second ends the process at once.
        crate::signals::install(stop.clone())?;
        Ok(Session {
            store,
            db_path,
            sampler: Some(sampler),
            drawer: Some(drawer),
            devices,
            warnings,
            progress,
            stop,
        })
    }

    /// The sampler of the session's sensors (running until [`Session::close`]).
    pub fn sampler(&self) -> &Sampler<SensorSet> {
        self.sampler.as_ref().expect("the sampler runs until close")
    }

    /// Warnings that hold for every window (busy or hot GPUs at the start, other processes).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The flag Ctrl-C sets.
    pub fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// Stores a finished record with its window.
    pub fn store_run(
        &mut self,
        record: RunRecord,
        window: Option<wattbench_core::Measurement>,
    ) -> Repeat {
        store_record(&mut self.store, record, window)
    }

    pub fn interrupted(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Records `config` as infeasible without running it (it cannot fit, as a smaller point
    /// already showed, or its prompts are longer than the context).
    pub fn record_infeasible(
        &mut self,
        config: &RunConfig,
        sweep: Option<String>,
        reason: String,
        notes: Vec<String>,
    ) -> Repeat {
        let record = execute::infeasible_record(config, sweep, reason, notes);
        store_record(&mut self.store, record, None)
    }

    /// Runs the repeats of `config` that are not in `done`, over `ds`, after one warm-up.
    #[allow(clippy::too_many_arguments)]
    pub fn run_point(
        &mut self,
        model: &LoadedModel,
        tokenizer: &Tokenizer,
        config: &RunConfig,
        ds: &Dataset,
        score: bool,
        sweep: Option<String>,
        done: &Finished,
    ) -> anyhow::Result<PointResult> {
        let key = config.key();
        let todo: Vec<usize> = (0..config.repeats)
            .filter(|&r| !done.contains(&key, r))
            .collect();
        if todo.is_empty() {
            return Ok(PointResult {
                repeats: Vec::new(),
                failure: None,
            });
        }
        let limits = ModelLimits {
            vocab: model.model.cfg.vocab_size,
            context: model.model.cfg.max_position_embeddings,
            synthetic: model.synthetic,
        };
        let plan = match plan::plan(ds, tokenizer, config, &limits) {
            Ok(p) => p,
            Err(e) if e.downcast_ref::<TooLong>().is_some() => {
                let r = self.record_infeasible(config, sweep, e.to_string(), Vec::new());
                return Ok(PointResult {
                    repeats: vec![r],
                    failure: Some(e),
                });
            }
            Err(e) => return Err(e),
        };
        let sampler = self.sampler.as_ref().expect("the sampler runs until close");
        let devices = used_devices(&self.devices, &config.device);
        let ctx = Context {
            model,
            tokenizer,
            plan: &plan,
            config,
            params: GenerationParams {
                temperature: config.temperature,
                top_p: config.top_p,
                seed: config.seed,
                ignore_eos: config.ignore_eos,
                eos_ids: tokenizer.eos_id.into_iter().collect(),
            },
            sampler,
            devices: &devices,
            warnings: self.warnings.clone(),
            sweep: sweep.clone(),
            score,
            progress: &self.progress,
            stop: &self.stop,
        };
        let mut repeats = Vec::new();
        let mut failure = None;
        match execute::warm_up(&ctx) {
            Ok(warmup_s) => {
                for &repeat in &todo {
                    let out = execute::run_repeat(&ctx, repeat, warmup_s);
                    let stopped = out.record.status != RunStatus::Complete;
                    // Stored before the next repeat starts: a killed sweep loses at most one.
                    repeats.push(store_record(&mut self.store, out.record, out.window));
                    if stopped {
                        failure = out.error;
                        break;
                    }
                }
            }
            Err(e) => {
                if execute::infeasible(&e) {
                    let record = execute::infeasible_record(
                        config,
                        sweep.clone(),
                        e.to_string(),
                        plan.notes.clone(),
                    );
                    repeats.push(store_record(&mut self.store, record, None));
                }
                failure = Some(anyhow::Error::new(e).context("the warm-up batch"));
            }
        }
        Ok(PointResult { repeats, failure })
    }

    /// Stops the sampler and the progress line.
    pub fn close(mut self) {
        if let Some(s) = self.sampler.take() {
            s.stop();
        }
        if let Some(d) = self.drawer.take() {
            let _ = d.join();
        }
    }
}

/// The devices a point on `device` measures: of the GPUs, those it runs on (`cuda:0,1`); every
/// other device (CPU packages, simulated ones) as they are.
fn used_devices(all: &[DeviceInfo], device: &str) -> Vec<DeviceInfo> {
    let Some(rest) = device.strip_prefix("cuda") else {
        return all.to_vec();
    };
    let used: Vec<u32> = match rest.strip_prefix(':') {
        Some(list) => list.split(',').filter_map(|i| i.parse().ok()).collect(),
        None => vec![0],
    };
    all.iter()
        .filter(|d| d.kind != DeviceKind::Gpu || used.contains(&d.index))
        .cloned()
        .collect()
}

/// Stores a record with its window; on failure says so and keeps going (the figures still show).
fn store_record(
    store: &mut Store,
    mut record: RunRecord,
    mut window: Option<wattbench_core::Measurement>,
) -> Repeat {
    match store.insert_run(&record, window.as_ref()) {
        Ok((id, measurement)) => {
            record.id = Some(id);
            record.measurement_id = measurement;
            if let Some(w) = &mut window {
                w.id = measurement;
            }
        }
        Err(e) => eprintln!(
            "error: run {} (repeat {}) was not stored: {e}",
            record.config.model,
            record.repeat + 1
        ),
    }
    Repeat { record, window }
}

#[cfg(test)]
mod tests {
    use super::used_devices;
    use wattbench_core::{Capabilities, DeviceInfo, DeviceKind};

    fn device(id: &str, index: u32, kind: DeviceKind) -> DeviceInfo {
        DeviceInfo {
            id: id.into(),
            index,
            kind,
            sensor: "test".into(),
            name: id.into(),
            uuid: None,
            driver_version: None,
            power_limits: None,
            capabilities: Capabilities::default(),
        }
    }

    #[test]
    fn a_point_measures_only_the_gpus_it_runs_on() {
        let all = vec![
            device("gpu0", 0, DeviceKind::Gpu),
            device("gpu1", 1, DeviceKind::Gpu),
            device("gpu2", 2, DeviceKind::Gpu),
            device("fake0", 0, DeviceKind::Simulated),
        ];
        let ids =
            |d: &str| -> Vec<String> { used_devices(&all, d).into_iter().map(|d| d.id).collect() };
        assert_eq!(ids("cuda:0,1"), ["gpu0", "gpu1", "fake0"]);
        assert_eq!(ids("cuda:2"), ["gpu2", "fake0"]);
        assert_eq!(ids("cuda"), ["gpu0", "fake0"]);
        assert_eq!(ids("cpu").len(), 4);
    }
}
