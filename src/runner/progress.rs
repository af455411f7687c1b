//! The live status line of a run on standard error: batch, tokens per second, power drawn now,
//! and the time left. Drawn only on a terminal; otherwise the live samples are just drained.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wattbench_meter::LiveSample;

/// What the run has done so far, shared with the drawing thread.
pub struct Progress {
    pub tokens: AtomicU64,
    pub batch: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    label: String,
    batches: usize,
    planned_tokens: u64,
    started: Instant,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress {
            tokens: AtomicU64::new(0),
            batch: AtomicUsize::new(0),
            state: Mutex::new(State {
                label: String::new(),
                batches: 0,
                planned_tokens: 0,
                started: Instant::now(),
            }),
        })
    }

    /// Starts counting a new phase (`label`: warm-up, repeat 2/3, ...).
    pub fn phase(&self, label: String, batches: usize, planned_tokens: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = State {
            label,
            batches,
            planned_tokens,
            started: Instant::now(),
        };
        self.tokens.store(0, Ordering::Relaxed);
        self.batch.store(0, Ordering::Relaxed);
    }

    fn line(&self, watts: Option<f64>) -> String {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = self.tokens.load(Ordering::Relaxed);
        let elapsed = s.started.elapsed().as_secs_f64();
        let rate = (elapsed > 0.0).then(|| tokens as f64 / elapsed);
        let eta = rate
            .filter(|r| *r > 0.0)
            .map(|r| s.planned_tokens.saturating_sub(tokens) as f64 / r);
        format!(
            "{}  batch {}/{}  {} tok/s  {} W  ETA {}",
            s.label,
            (self.batch.load(Ordering::Relaxed) + 1).min(s.batches.max(1)),
            s.batches,
            rate.map_or("-".into(), |r| format!("{r:.0}")),
            watts.map_or("-".into(), |w| format!("{w:.0}")),
            eta.map_or("-".into(), |e| humantime::format_duration(
                Duration::from_secs(e.round() as u64)
            )
            .to_string()),
        )
    }
}

/// Draws the status line from live samples until the sampler stops sending them.
pub fn draw(progress: Arc<Progress>, live: Receiver<LiveSample>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let tty = std::io::stderr().is_terminal();
        let mut last = Instant::now() - Duration::from_secs(1);
        let mut drawn = false;
        for sample in live {
            if !tty || last.elapsed() < Duration::from_millis(500) {
                continue;
            }
            last = Instant::now();
            let powers: Vec<f64> = sample.readings.iter().filter_map(|r| r.power_w).collect();
            let watts = (!powers.is_empty()).then(|| powers.iter().sum());
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{}", progress.line(watts));
            let _ = err.flush();
            drawn = true;
        }
        if drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    })
}
