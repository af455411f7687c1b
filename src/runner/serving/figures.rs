//! The serving figures of one repeat: latency percentiles, failures, goodput, the steady state
//! and the client's CPU time, as text and as JSON.

use crate::ui;
use serde_json::{json, Value};
use wattbench_openai::metrics::{Spread, Summary};

fn spread_row(name: &str, s: &Option<Spread>) -> Vec<String> {
    let ms = |v: f64| format!("{:.1}", v * 1e3);
    match s {
        Some(s) => vec![
            name.into(),
            s.n.to_string(),
            ms(s.mean),
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
        ],
        None => vec![
            name.into(),
            "0".into(),
            "n/a".into(),
            "n/a".into(),
            "n/a".into(),
            "n/a".into(),
        ],
    }
}

/// The serving figures of one repeat, for the summary and the JSON.
pub struct Serving {
    pub summary: Summary,
    /// (start, end, seconds, output tokens, energy J) of the steady state.
    pub steady: Option<(f64, f64, f64, f64, Option<f64>)>,
    pub client_cpu_s: f64,
    pub warnings: Vec<String>,
}

impl Serving {
    pub fn json(&self) -> Value {
        json!({
            "summary": self.summary,
            "steady_state": self.steady.map(|(a, b, secs, tokens, e)| json!({
                "start_s": a, "end_s": b, "seconds": secs, "output_tokens": tokens,
                "output_tokens_per_s": tokens / secs, "energy_j": e,
                "j_per_token": e.map(|e| e / tokens),
            })),
            "client_cpu_s": self.client_cpu_s,
            "client_cpu_ms_per_token": self.summary.output_tokens.map(|t| 1e3 * self.client_cpu_s / t.max(1) as f64),
            "warnings": self.warnings,
        })
    }

    pub fn text(&self) -> String {
        let s = &self.summary;
        let mut out = format!("\nrequests: {} sent, {} answered", s.requests, s.succeeded);
        if !s.failures.is_empty() {
            let f: Vec<String> = s
                .failures
                .iter()
                .map(|(k, v)| format!("{k} × {v}"))
                .collect();
            out.push_str(&format!("; failed: {}", f.join(", ")));
        }
        if s.usage_missing > 0 {
            out.push_str(&format!("; {} without token usage", s.usage_missing));
        }
        let rows = vec![
            spread_row("time to first token", &s.ttft_s),
            spread_row("inter-token latency", &s.itl_s),
            spread_row("time per output token", &s.tpot_s),
            spread_row("end-to-end latency", &s.e2e_s),
        ];
        out.push_str(&format!(
            "\n\n{}\n",
            ui::table(
                &["latency", "n", "mean ms", "p50 ms", "p90 ms", "p99 ms"],
                &rows,
                2
            )
        ));
        if let Some(g) = s.goodput_per_s {
            out.push_str(&format!("goodput: {g:.3} requests/s within the targets\n"));
        }
        match self.steady {
            Some((_, _, secs, tokens, e)) => out.push_str(&format!(
                "steady state ({secs:.2} s from full to draining): {:.1} tokens/s, {} J/token\n",
                tokens / secs,
                ui::num(e.map(|e| e / tokens), 4)
            )),
            None => {
                out.push_str("steady state: n/a (the server never held the full concurrency)\n")
            }
        }
        out.push_str(&format!(
            "client CPU: {:.2} s ({} ms per output token)\n",
            self.client_cpu_s,
            ui::num(
                s.output_tokens
                    .map(|t| 1e3 * self.client_cpu_s / t.max(1) as f64),
                3
            )
        ));
        for w in &self.warnings {
            out.push_str(&format!("  warning: {w}\n"));
        }
        out
    }
}
