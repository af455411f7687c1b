//! The figures of a load run: latency percentiles (time to first token, inter-token latency,
//! time per output token, end-to-end), request and token throughput, goodput under latency
//! targets, failures by reason, the steady-state window, and each request's share of the energy.

use crate::request::Outcome;
use std::collections::BTreeMap;

/// Mean and percentiles (nearest rank) of a sample.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    pub n: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    /// None for an empty sample.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Spread {
            n: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// Latency targets a request must meet to count toward goodput (None: no target).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Targets {
    pub ttft_s: Option<f64>,
    pub tpot_s: Option<f64>,
    pub e2e_s: Option<f64>,
}

/// Time per output token after the first: (last token - first token) / (tokens - 1).
pub fn tpot(o: &Outcome, tokens: Option<u64>) -> Option<f64> {
    let (first, last) = (o.first_token_s?, *o.token_times.last()?);
    let n = tokens? as f64;
    (n > 1.0).then(|| (last - first) / (n - 1.0))
}

/// A request's (output, input) token counts, where known.
pub type Counts = (Option<u64>, Option<u64>);

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub requests: usize,
    pub succeeded: usize,
    /// Failed requests by reason (`timeout`, `http_500`, `truncated_stream`, ...).
    pub failures: BTreeMap<String, usize>,
    /// Succeeded requests whose server sent no token usage.
    pub usage_missing: usize,
    /// From the first request's start to the last one's end.
    pub duration_s: f64,
    /// Generated tokens of the succeeded requests (None where one has no count).
    pub output_tokens: Option<u64>,
    pub input_tokens: Option<u64>,
    pub requests_per_s: f64,
    pub output_tokens_per_s: Option<f64>,
    pub ttft_s: Option<Spread>,
    pub itl_s: Option<Spread>,
    pub tpot_s: Option<Spread>,
    pub e2e_s: Option<Spread>,
    /// Succeeded requests per second that met every target (None without targets).
    pub goodput_per_s: Option<f64>,
}

/// The summary of `outcomes`; `tokens(o)` gives a request's (output, input) token counts, from
/// the server's usage or a tokenizer.
pub fn summarize(
    outcomes: &[Outcome],
    tokens: &dyn Fn(&Outcome) -> Counts,
    targets: &Targets,
) -> Summary {
    let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.ok()).collect();
    let mut failures = BTreeMap::new();
    for o in outcomes {
        if let Some(f) = o.failure {
            *failures.entry(f.reason()).or_insert(0) += 1;
        }
    }
    let start = outcomes
        .iter()
        .map(|o| o.start_s)
        .fold(f64::INFINITY, f64::min);
    let end = outcomes
        .iter()
        .map(|o| o.end_s)
        .fold(f64::NEG_INFINITY, f64::max);
    let duration_s = if outcomes.is_empty() {
        0.0
    } else {
        end - start
    };
    let counts: Vec<Counts> = ok.iter().map(|o| tokens(o)).collect();
    let sum = |f: fn(&Counts) -> Option<u64>| counts.iter().map(f).sum::<Option<u64>>();
    let output_tokens = sum(|c| c.0);
    let input_tokens = sum(|c| c.1);
    let per_s = |x: f64| {
        if duration_s > 0.0 {
            x / duration_s
        } else {
            0.0
        }
    };
    let ttft: Vec<f64> = ok
        .iter()
        .filter_map(|o| Some(o.first_token_s? - o.start_s))
        .collect();
    let itl: Vec<f64> = ok
        .iter()
        .flat_map(|o| o.token_times.windows(2).map(|w| w[1] - w[0]))
        .collect();
    let tpots: Vec<f64> = ok
        .iter()
        .zip(&counts)
        .filter_map(|(o, c)| tpot(o, c.0))
        .collect();
    let e2e: Vec<f64> = ok.iter().map(|o| o.end_s - o.start_s).collect();
    let any_target =
        targets.ttft_s.is_some() || targets.tpot_s.is_some() || targets.e2e_s.is_some();
    let good = ok
        .iter()
        .zip(&counts)
        .filter(|(o, c)| {
            let within =
                |v: Option<f64>, t: Option<f64>| t.is_none_or(|t| v.is_some_and(|v| v <= t));
            within(o.first_token_s.map(|f| f - o.start_s), targets.ttft_s)
                && within(tpot(o, c.0), targets.tpot_s)
                && within(Some(o.end_s - o.start_s), targets.e2e_s)
        })
        .count();
    Summary {
        requests: outcomes.len(),
        succeeded: ok.len(),
        failures,
        usage_missing: ok.iter().filter(|o| o.usage.is_none()).count(),
        duration_s,
        output_tokens,
        input_tokens,
        requests_per_s: per_s(ok.len() as f64),
        output_tokens_per_s: output_tokens.map(|t| per_s(t as f64)),
        ttft_s: Spread::of(&ttft),
        itl_s: Spread::of(&itl),
        tpot_s: Spread::of(&tpots),
        e2e_s: Spread::of(&e2e),
        goodput_per_s: any_target.then(|| per_s(good as f64)),
    }
}

/// The steady state: from when the requests in flight first reach `cap` (or, without a cap,
/// their highest level) until the first request ends after the last one started (from then on
/// the server drains). None when it never filled up.
pub fn steady_window(outcomes: &[Outcome], cap: Option<usize>) -> Option<(f64, f64)> {
    let mut edges: Vec<(f64, i64)> = outcomes
        .iter()
        .flat_map(|o| [(o.start_s, 1), (o.end_s, -1)])
        .collect();
    // Ends before starts at the same instant: a slot freed and refilled is not a peak.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut level = 0i64;
    let mut peak = 0i64;
    for &(_, d) in &edges {
        level += d;
        peak = peak.max(level);
    }
    let want = cap.map_or(peak, |c| (c as i64).min(peak));
    if want < 1 || cap.is_some_and(|c| (c as i64) > peak) {
        return None;
    }
    let mut level = 0i64;
    let mut full = None;
    for &(t, d) in &edges {
        level += d;
        if level >= want {
            full = Some(t);
            break;
        }
    }
    let full = full?;
    let last_start = outcomes
        .iter()
        .map(|o| o.start_s)
        .fold(f64::NEG_INFINITY, f64::max);
    let drain = outcomes
        .iter()
        .map(|o| o.end_s)
        .filter(|&e| e > last_start)
        .fold(f64::INFINITY, f64::min);
    (drain > full).then_some((full, drain))
}

/// Each request's share of the energy: every interval `(from_s, to_s, joules)` is split among the
/// requests in flight by the tokens each received in it (streamed events, each counting
/// `tokens / events` of its request; a non-streamed request's tokens spread evenly over its
/// life); an interval in which requests are in flight but none received a token (prefill) is
/// split by the time each was in flight. Energy with no request in flight is nobody's.
pub fn apportion(
    outcomes: &[Outcome],
    tokens: &dyn Fn(&Outcome) -> Option<u64>,
    intervals: &[(f64, f64, f64)],
) -> Vec<f64> {
    let weight_per_event: Vec<f64> = outcomes
        .iter()
        .map(|o| match (tokens(o), o.token_times.len()) {
            (Some(t), n) if n > 0 => t as f64 / n as f64,
            (_, n) if n > 0 => 1.0,
            _ => 0.0,
        })
        .collect();
    let mut out = vec![0.0; outcomes.len()];
    for &(a, b, joules) in intervals {
        if b <= a {
            continue;
        }
        let mut weights = vec![0.0; outcomes.len()];
        let mut overlap = vec![0.0; outcomes.len()];
        for (i, o) in outcomes.iter().enumerate() {
            let ov = (o.end_s.min(b) - o.start_s.max(a)).max(0.0);
            overlap[i] = ov;
            if ov == 0.0 {
                // Its tokens all lie in its own life.
                continue;
            }
            if o.token_times.is_empty() {
                if let (Some(t), true) = (tokens(o), o.end_s > o.start_s) {
                    weights[i] = t as f64 * ov / (o.end_s - o.start_s);
                }
            } else {
                // Token times are in order: two binary searches count those in [a, b).
                let tt = &o.token_times;
                let n = tt.partition_point(|&t| t < b) - tt.partition_point(|&t| t < a);
                weights[i] = n as f64 * weight_per_event[i];
            }
        }
        let total: f64 = weights.iter().sum();
        let (w, sum) = if total > 0.0 {
            (&weights, total)
        } else {
            (&overlap, overlap.iter().sum())
        };
        if sum > 0.0 {
            for (i, x) in w.iter().enumerate() {
                out[i] += joules * x / sum;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Failure, Usage};

    fn req(index: usize, start: f64, tokens: &[f64], end: f64) -> Outcome {
        Outcome {
            index,
            start_s: start,
            first_token_s: tokens.first().copied(),
            end_s: end,
            token_times: tokens.to_vec(),
            usage: Some(Usage {
                prompt_tokens: Some(10),
                completion_tokens: Some(tokens.len() as u64),
            }),
            ..Outcome::default()
        }
    }

    fn usage(o: &Outcome) -> (Option<u64>, Option<u64>) {
        let u = o.usage.unwrap_or_default();
        (u.completion_tokens, u.prompt_tokens)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Spread::of(&v).unwrap();
        assert_eq!(
            (s.p50, s.p90, s.p99, s.max, s.mean),
            (50.0, 90.0, 99.0, 100.0, 50.5)
        );
        assert_eq!(Spread::of(&[3.0]).unwrap().p99, 3.0);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn latencies_throughput_goodput_and_failures() {
        let mut failed = req(2, 0.0, &[], 0.5);
        failed.failure = Some(Failure::Http(500));
        let outs = vec![
            req(0, 0.0, &[0.5, 0.6, 0.7], 1.0),
            req(1, 1.0, &[2.0, 2.5], 3.0),
            failed,
        ];
        let s = summarize(
            &outs,
            &usage,
            &Targets {
                ttft_s: Some(0.6),
                ..Targets::default()
            },
        );
        assert_eq!((s.requests, s.succeeded), (3, 2));
        assert_eq!(s.failures["http_500"], 1);
        assert_eq!(s.duration_s, 3.0);
        assert_eq!((s.output_tokens, s.input_tokens), (Some(5), Some(20)));
        assert_eq!(s.output_tokens_per_s, Some(5.0 / 3.0));
        let ttft = s.ttft_s.unwrap();
        assert_eq!((ttft.n, ttft.mean), (2, 0.75));
        let itl = s.itl_s.unwrap();
        assert_eq!(itl.n, 3);
        assert!((itl.max - 0.5).abs() < 1e-12);
        // tpot: (0.7 - 0.5) / 2 and (2.5 - 2.0) / 1.
        let tpot = s.tpot_s.unwrap();
        assert!((tpot.mean - 0.3).abs() < 1e-12, "{tpot:?}");
        assert_eq!(s.e2e_s.unwrap().max, 2.0);
        // Only the first request's first token came within 0.6 s.
        assert_eq!(s.goodput_per_s, Some(1.0 / 3.0));
    }

    #[test]
    fn the_steady_window_runs_from_full_to_the_first_end_after_the_last_start() {
        // Two slots: requests start at 0 and 0.1 (full at 0.1), refills at 1 and 1.2; the last
        // starts at 1.2 and the first end after it is at 2.
        let outs = vec![
            req(0, 0.0, &[], 1.0),
            req(1, 0.1, &[], 1.2),
            req(2, 1.0, &[], 2.0),
            req(3, 1.2, &[], 2.5),
        ];
        assert_eq!(steady_window(&outs, Some(2)), Some((0.1, 2.0)));
        assert_eq!(steady_window(&outs, Some(3)), None, "never three in flight");
        assert_eq!(steady_window(&outs, None), Some((0.1, 2.0)));
    }

    #[test]
    fn energy_is_shared_by_tokens_in_each_interval() {
        let outs = vec![
            req(0, 0.0, &[0.2, 0.3, 0.4], 0.5),
            req(1, 0.0, &[0.45, 1.2], 1.5),
        ];
        let intervals = [
            (0.0, 0.1, 10.0),
            (0.1, 1.0, 40.0),
            (1.0, 2.0, 30.0),
            (2.0, 3.0, 5.0),
        ];
        let e = apportion(&outs, &|o: &Outcome| usage(o).0, &intervals);
        // 0–0.1: no tokens, both in flight for 0.1 s: 5 J each. 0.1–1: tokens 3 and 1: 30 and
        // 10. 1–2: only request 1: 30. 2–3: nobody in flight.
        assert!(
            (e[0] - 35.0).abs() < 1e-9 && (e[1] - 45.0).abs() < 1e-9,
            "{e:?}"
        );
    }
}
