//! The background sampler: one thread reads a sensor at a fixed interval into a timeline.
//!
//! Ticks are scheduled on absolute deadlines (`start + k * interval`), so the interval does not
//! drift; a tick that cannot be kept is counted as an overrun and skipped. `mark` takes a reading
//! at once and returns its time, so that windows start and end on a real reading rather than
//! between two ticks. The thread's own CPU time is measured, giving the sampler's overhead.

use crate::sensor::{EnergySensor, ReadKind};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use wattbench_core::{Reading, SamplerStats, Timeline, Warning};

/// One sampling instant, forwarded live to a listener (the `monitor` view, a CSV log).
#[derive(Debug, Clone)]
pub struct LiveSample {
    pub t_s: f64,
    pub readings: Vec<Reading>,
}

/// What a stopped sampler hands back.
pub struct SamplerOutput<S> {
    pub sensor: S,
    /// Unix time at which the timeline's clock read zero.
    pub start_unix_s: f64,
    pub timeline: Timeline,
    pub stats: SamplerStats,
    pub warnings: Vec<Warning>,
}

enum Command {
    Mark(Sender<f64>),
    Snapshot(Sender<Timeline>),
    Stop,
}

pub struct Sampler<S: EnergySensor + 'static> {
    commands: Sender<Command>,
    handle: JoinHandle<SamplerOutput<S>>,
    start: Instant,
    start_unix_s: f64,
}

/// CPU time consumed by the calling thread, in seconds.
fn thread_cpu_s() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant libc defines.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

struct Worker<S> {
    sensor: S,
    start: Instant,
    start_unix_s: f64,
    timeline: Timeline,
    keep_timeline: bool,
    live: Option<Sender<LiveSample>>,
    samples: u64,
    read_errors: u64,
    last_error: Option<String>,
}

impl<S: EnergySensor> Worker<S> {
    fn sample(&mut self, kind: ReadKind) -> f64 {
        let t_s = self.start.elapsed().as_secs_f64();
        match self.sensor.read(t_s, kind) {
            Ok(readings) => {
                self.samples += 1;
                if self.keep_timeline {
                    for (series, r) in self.timeline.series.iter_mut().zip(&readings) {
                        series
                            .points
                            .push(wattbench_core::Point { t_s, reading: *r });
                    }
                }
                if let Some(tx) = &self.live {
                    if tx.send(LiveSample { t_s, readings }).is_err() {
                        self.live = None;
                    }
                }
            }
            Err(e) => {
                self.read_errors += 1;
                self.last_error = Some(e.to_string());
            }
        }
        t_s
    }
}

impl<S: EnergySensor + 'static> Sampler<S> {
    /// Starts sampling `sensor` every `interval`, taking the first reading at once. With
    /// `keep_timeline` false, readings only go to `live` (long monitoring sessions).
    pub fn start(
        sensor: S,
        interval: Duration,
        keep_timeline: bool,
        live: Option<Sender<LiveSample>>,
    ) -> std::io::Result<Sampler<S>> {
        let (commands, rx) = mpsc::channel();
        let start = Instant::now();
        let start_unix_s = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let timeline = Timeline::with_devices(sensor.devices().iter().map(|d| d.id.as_str()));
        let worker = Worker {
            sensor,
            start,
            start_unix_s,
            timeline,
            keep_timeline,
            live,
            samples: 0,
            read_errors: 0,
            last_error: None,
        };
        let handle = std::thread::Builder::new()
            .name("wattbench-sampler".into())
            .spawn(move || run(worker, interval, rx))?;
        Ok(Sampler {
            commands,
            handle,
            start,
            start_unix_s,
        })
    }

    /// Seconds since the sampler started, on the timeline's clock.
    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Unix time at which the timeline's clock read zero.
    pub fn start_unix_s(&self) -> f64 {
        self.start_unix_s
    }

    /// Takes a reading now and returns its time on the timeline's clock.
    pub fn mark(&self) -> f64 {
        let (tx, rx) = mpsc::channel();
        if self.commands.send(Command::Mark(tx)).is_ok() {
            if let Ok(t) = rx.recv() {
                return t;
            }
        }
        self.elapsed_s()
    }

    /// A copy of the timeline so far (empty when the timeline is not kept), for computing windows
    /// while sampling goes on.
    pub fn snapshot(&self) -> Timeline {
        let (tx, rx) = mpsc::channel();
        if self.commands.send(Command::Snapshot(tx)).is_ok() {
            if let Ok(t) = rx.recv() {
                return t;
            }
        }
        Timeline::default()
    }

    /// Takes a last reading and stops the thread.
    pub fn stop(self) -> SamplerOutput<S> {
        let _ = self.commands.send(Command::Stop);
        match self.handle.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn run<S: EnergySensor>(
    mut w: Worker<S>,
    interval: Duration,
    rx: Receiver<Command>,
) -> SamplerOutput<S> {
    let cpu0 = thread_cpu_s();
    let mut overruns = 0u64;
    w.sample(ReadKind::Edge);
    let mut next = w.start + interval;
    loop {
        let now = Instant::now();
        let wait = next.saturating_duration_since(now);
        match rx.recv_timeout(wait) {
            Ok(Command::Mark(reply)) => {
                let t = w.sample(ReadKind::Edge);
                let _ = reply.send(t);
            }
            Ok(Command::Snapshot(reply)) => {
                let _ = reply.send(w.timeline.clone());
            }
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                w.sample(ReadKind::Tick);
                next += interval;
                let now = Instant::now();
                if next < now {
                    let behind = (now - next).as_nanos() / interval.as_nanos().max(1) + 1;
                    overruns += behind as u64;
                    next += interval * behind as u32;
                }
            }
        }
    }
    w.sample(ReadKind::Edge);
    let cpu_s = cpu0.zip(thread_cpu_s()).map(|(a, b)| b - a);
    let mut warnings = Vec::new();
    if overruns > 0 {
        warnings.push(Warning::SamplerOverrun {
            missed: overruns,
            interval_s: interval.as_secs_f64(),
        });
    }
    if w.read_errors > 0 {
        warnings.push(Warning::SensorReadFailed {
            count: w.read_errors,
            last_error: w.last_error.clone().unwrap_or_default(),
        });
    }
    let stats = SamplerStats {
        interval_s: interval.as_secs_f64(),
        samples: w.samples,
        cpu_s,
        cpu_per_sample_ms: cpu_s
            .filter(|_| w.samples > 0)
            .map(|c| c * 1000.0 / w.samples as f64),
        overruns,
        read_errors: w.read_errors,
    };
    SamplerOutput {
        sensor: w.sensor,
        start_unix_s: w.start_unix_s,
        timeline: w.timeline,
        stats,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeSensor;

    #[test]
    fn samples_at_the_interval_and_marks_on_demand() {
        let s = Sampler::start(
            FakeSensor::new(100.0, 2),
            Duration::from_millis(10),
            true,
            None,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let m = s.mark();
        assert!(m >= 0.09, "{m}");
        assert!(
            s.snapshot().series[1].points.len() >= 2,
            "the mark and the first reading"
        );
        let out = s.stop();
        let pts = &out.timeline.series[1].points;
        assert!(pts.len() >= 8, "{}", pts.len());
        assert!(pts.iter().any(|p| p.t_s == m));
        assert!(pts.windows(2).all(|w| w[0].t_s <= w[1].t_s));
        assert_eq!(out.stats.samples as usize, pts.len());
        assert!(out.stats.cpu_s.is_some());
    }

    /// Records the kind of every read.
    struct Recorder {
        devices: Vec<wattbench_core::DeviceInfo>,
        kinds: Vec<ReadKind>,
    }

    impl EnergySensor for Recorder {
        fn devices(&self) -> &[wattbench_core::DeviceInfo] {
            &self.devices
        }
        fn read(&mut self, _t_s: f64, kind: ReadKind) -> Result<Vec<Reading>, crate::SensorError> {
            self.kinds.push(kind);
            Ok(vec![])
        }
        fn retain(&mut self, _keep: &[usize]) {}
    }

    #[test]
    fn first_last_and_marked_readings_are_edges() {
        let rec = Recorder {
            devices: vec![],
            kinds: vec![],
        };
        let s = Sampler::start(rec, Duration::from_millis(10), true, None).unwrap();
        std::thread::sleep(Duration::from_millis(35));
        s.mark();
        std::thread::sleep(Duration::from_millis(35));
        let kinds = s.stop().sensor.kinds;
        assert_eq!(kinds.first(), Some(&ReadKind::Edge));
        assert_eq!(kinds.last(), Some(&ReadKind::Edge));
        assert_eq!(
            kinds.iter().filter(|k| **k == ReadKind::Edge).count(),
            3,
            "{kinds:?}"
        );
        assert!(
            kinds.iter().filter(|k| **k == ReadKind::Tick).count() >= 4,
            "{kinds:?}"
        );
    }

    #[test]
    fn live_listener_gets_every_sample() {
        let (tx, rx) = mpsc::channel();
        let s = Sampler::start(
            FakeSensor::new(5.0, 1),
            Duration::from_millis(5),
            false,
            Some(tx),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let out = s.stop();
        let got: Vec<LiveSample> = rx.try_iter().collect();
        assert_eq!(got.len() as u64, out.stats.samples);
        assert!(out.timeline.series[0].points.is_empty());
    }
}
