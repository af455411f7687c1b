//! Many requests under a load pattern: a closed loop that keeps `concurrency` requests in flight
//! (offline serving when every prompt is queued at the start), or an open loop that sends them at
//! a constant or Poisson rate, with an optional cap on those in flight.

use crate::api::{Sampling, Target};
use crate::request::{agent, send, Outcome};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use wattbench_workload::sample::SplitMix64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// `concurrency` requests in flight until the prompts run out.
    Closed { concurrency: usize },
    /// `rate` requests per second, evenly spaced or as a Poisson process (exponential gaps drawn
    /// from `seed`), at most `max_concurrency` in flight (later ones wait for a slot).
    Open {
        rate: f64,
        poisson: bool,
        max_concurrency: Option<usize>,
    },
}

impl Load {
    /// The most requests in flight the pattern allows (None: unbounded).
    pub fn cap(&self) -> Option<usize> {
        match *self {
            Load::Closed { concurrency } => Some(concurrency),
            Load::Open {
                max_concurrency, ..
            } => max_concurrency,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub load: Load,
    pub seed: u64,
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub text: String,
    pub max_tokens: u32,
}

/// When each of `n` requests is due, in seconds from the start (open loop).
pub fn arrivals(n: usize, rate: f64, poisson: bool, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    let mut t = 0.0;
    (0..n)
        .map(|i| {
            if i > 0 {
                t += if poisson {
                    -(1.0 - rng.unit()).ln() / rate
                } else {
                    1.0 / rate
                };
            }
            t
        })
        .collect()
}

/// Slots for requests in flight.
struct Slots {
    free: Mutex<usize>,
    turn: Condvar,
}

impl Slots {
    fn take(&self) {
        let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *f == 0 {
            f = self.turn.wait(f).unwrap_or_else(|e| e.into_inner());
        }
        *f -= 1;
    }

    fn give(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.turn.notify_one();
    }
}

/// Sends every prompt under `opts`, on `clock` (outcome times are seconds since it), calling
/// `on_done` as each request ends; returns the outcomes in prompt order. Prompt `i` has index
/// `first_index + i`. Once `stop` is set no new request is sent; those in flight finish.
#[allow(clippy::too_many_arguments)]
pub fn run(
    t: &Target,
    prompts: &[Prompt],
    sampling: &Sampling,
    opts: &LoadOptions,
    first_index: usize,
    clock: Instant,
    stop: &AtomicBool,
    on_done: &(dyn Fn(&Outcome) + Sync),
) -> Vec<Outcome> {
    let client = agent(t);
    let done: Mutex<Vec<Outcome>> = Mutex::new(Vec::with_capacity(prompts.len()));
    let finish = |o: Outcome| {
        on_done(&o);
        done.lock().unwrap_or_else(|e| e.into_inner()).push(o);
    };
    match opts.load {
        Load::Closed { concurrency } => {
            let next = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..concurrency.clamp(1, prompts.len().max(1)) {
                    s.spawn(|| loop {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(p) = prompts.get(i) else { break };
                        finish(send(
                            &client,
                            t,
                            first_index + i,
                            &p.text,
                            p.max_tokens,
                            sampling,
                            clock,
                        ));
                    });
                }
            });
        }
        Load::Open {
            rate,
            poisson,
            max_concurrency,
        } => {
            let due = arrivals(prompts.len(), rate, poisson, opts.seed);
            let slots = Slots {
                free: Mutex::new(max_concurrency.unwrap_or(usize::MAX)),
                turn: Condvar::new(),
            };
            let start = clock.elapsed().as_secs_f64();
            std::thread::scope(|s| {
                for (i, p) in prompts.iter().enumerate() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let wait = start + due[i] - clock.elapsed().as_secs_f64();
                    if wait > 0.0 {
                        std::thread::sleep(Duration::from_secs_f64(wait));
                    }
                    slots.take();
                    let (client, slots, finish) = (&client, &slots, &finish);
                    s.spawn(move || {
                        let o = send(
                            client,
                            t,
                            first_index + i,
                            &p.text,
                            p.max_tokens,
                            sampling,
                            clock,
                        );
                        slots.give();
                        finish(o);
                    });
                }
            });
        }
    }
    let mut out = done.into_inner().unwrap_or_else(|e| e.into_inner());
    out.sort_by_key(|o| o.index);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_arrivals_have_the_rate_and_are_seeded() {
        let a = arrivals(20_000, 50.0, true, 7);
        assert_eq!(a[0], 0.0);
        let rate = (a.len() - 1) as f64 / a[a.len() - 1];
        assert!((rate - 50.0).abs() < 1.5, "{rate}");
        assert_eq!(a, arrivals(20_000, 50.0, true, 7));
        assert_ne!(a, arrivals(20_000, 50.0, true, 8));
        // Exponential gaps: their standard deviation equals their mean.
        let gaps: Vec<f64> = a.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        assert!((sd / mean - 1.0).abs() < 0.05, "{}", sd / mean);
        let even = arrivals(5, 4.0, false, 0);
        assert_eq!(even, [0.0, 0.25, 0.5, 0.75, 1.0]);
    }
}
