//! Benchmark runs: one configuration (model, dataset, batch size, lengths, sampling, device) run
//! over a sample of prompts in batches, each batch inside its own energy window, and the figures
//! the paper reports, computed from the stored records alone.

use crate::record::DeviceResult;
use serde::{Deserialize, Serialize};

/// Everything that defines a run. Two runs with equal configurations (but for `repeats`) measure
/// the same thing: their [`RunConfig::key`] is equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub model: String,
    pub dataset: String,
    pub split: Option<String>,
    pub num_prompts: usize,
    pub batch_size: usize,
    pub max_new_tokens: u32,
    /// `max`: every request may use `max_new_tokens`; `reference`: the reference answer's length
    /// in tokens, capped at `max_new_tokens`.
    pub output_lengths: String,
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    pub ignore_eos: bool,
    pub device: String,
    /// The GPUs a tensor-parallel run is split over (empty: the one `device`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<usize>,
    pub dtype: String,
    pub weights_seed: u64,
    /// `--tokenizer` as given, or `model`: the model's own (the byte tokenizer for models with
    /// random weights and none of their own). It sets every token count.
    pub tokenizer: String,
    /// Prompts wrapped in the model's chat template, where it has one.
    pub chat_template: bool,
    pub warmup_batches: usize,
    pub repeats: usize,
    pub sensors: Vec<String>,
    pub interval_s: f64,
    /// The GPU power limit the run was measured at (None: the limits were left as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_limit: Option<PowerCap>,
    /// The OpenAI-compatible server the run drove (None: the embedded engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerConfig>,
}

/// How a run drove a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerConfig {
    pub base_url: String,
    /// `completions` or `chat`.
    pub endpoint: String,
    pub stream: bool,
    /// Most requests in flight: the concurrency of a closed loop, the cap of an open one (None:
    /// no cap).
    pub max_concurrency: Option<usize>,
    /// Requests per second of an open loop (None: a closed loop at `max_concurrency`).
    pub request_rate: Option<f64>,
    /// `poisson` or `constant` (open loop).
    pub arrivals: String,
}

/// A GPU power limit set for a run: as asked for (`175W`, `70%`), and the limit in force on each
/// capped GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerCap {
    pub requested: String,
    /// NVML indices of the capped GPUs.
    pub gpus: Vec<u32>,
    /// The limit of each, in watts.
    pub limits_w: Vec<f64>,
}

impl RunConfig {
    /// A stable identity of what is measured: the configuration without `repeats`, as canonical
    /// JSON, hashed with FNV-1a (64 bit) and written in hex.
    pub fn key(&self) -> String {
        let mut c = self.clone();
        c.repeats = 0;
        let json =
            serde_json::to_string(&c).expect("a run config always serializes; this is a bug");
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every batch ran.
    Complete,
    /// The configuration cannot run here (out of memory, longer than the context): recorded so
    /// that sweeps show it, as the paper's Table II does, and skip it on resume.
    Infeasible,
    /// Stopped by an error or an interrupt; the batches measured before it are kept.
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Complete => "complete",
            RunStatus::Infeasible => "infeasible",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        match s {
            "complete" => Some(RunStatus::Complete),
            "infeasible" => Some(RunStatus::Infeasible),
            "failed" => Some(RunStatus::Failed),
            _ => None,
        }
    }
}

/// One batch: its own energy window inside the run's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub index: usize,
    /// Start of the batch from the start of the run's window.
    pub start_s: f64,
    pub wall_s: f64,
    pub prefill_s: f64,
    pub decode_s: f64,
    pub prompts: usize,
    /// Every prompt of the batch is padded to this many tokens.
    pub padded_prompt_len: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub energy_j: Option<f64>,
    pub avg_power_w: Option<f64>,
}

/// One request (prompt and response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub batch: usize,
    pub position: usize,
    /// Index of the prompt in its dataset.
    pub dataset_index: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Words of the response as the paper counts them (split on spaces); null when the text is
    /// not meaningful (random weights).
    pub words: Option<u64>,
    pub finish: String,
    /// The batch's energy shared equally among its requests: in a static batch every sequence
    /// holds its slot, padding and all, until the batch ends.
    pub energy_j: Option<f64>,
    /// From the batch's start until its last token: offline batches return together.
    pub latency_s: f64,
    pub output_text: Option<String>,
    /// With `--score`: whether the response's final number equals the reference answer.
    pub correct: Option<bool>,
    /// Time to the first token (requests to a server that streams).
    #[serde(default)]
    pub ttft_s: Option<f64>,
    /// Time per output token after the first (requests to a server that streams).
    #[serde(default)]
    pub tpot_s: Option<f64>,
}

/// A finished (or stopped) run, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: Option<i64>,
    /// [`RunConfig::key`].
    pub key: String,
    /// Sweep the run belongs to, if any.
    pub sweep: Option<String>,
    /// 0-based repeat of the configuration.
    pub repeat: usize,
    pub status: RunStatus,
    /// Why the run is infeasible or failed.
    pub reason: Option<String>,
    pub config: RunConfig,
    /// The energy window of the timed batches, with its devices and power timeline.
    pub measurement_id: Option<i64>,
    pub started_at: String,
    /// From the first timed batch's start to the last one's end.
    pub wall_s: f64,
    pub warmup_s: f64,
    /// Time inside the window spent outside batches (the harness's own work).
    pub harness_s: f64,
    pub energy_j: Option<f64>,
    /// Figures that are null, and why.
    pub notes: Vec<String>,
    pub batches: Vec<BatchRecord>,
    pub requests: Vec<RequestRecord>,
}

/// The paper's figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    pub responses: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub words: Option<u64>,
    pub wall_s: f64,
    /// Prompt processing and decoding, summed over batches (None for runs against a server,
    /// which does not say).
    pub prefill_s: Option<f64>,
    pub decode_s: Option<f64>,
    pub words_per_s: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub responses_per_s: Option<f64>,
    pub energy_j: Option<f64>,
    /// Energy per second.
    pub avg_power_w: Option<f64>,
    pub j_per_token: Option<f64>,
    pub j_per_response: Option<f64>,
    pub j_per_word: Option<f64>,
    /// Share of the window spent outside batches.
    pub harness_pct: Option<f64>,
    pub correct: Option<u64>,
    pub accuracy: Option<f64>,
    pub j_per_correct: Option<f64>,
}

fn ratio(a: Option<f64>, b: f64) -> Option<f64> {
    a.filter(|_| b > 0.0).map(|a| a / b)
}

impl RunMetrics {
    /// Words, tokens and responses per second over the run's wall time (the paper's definitions:
    /// tokens are generated tokens, responses are completed requests); energy per token, response
    /// and word.
    pub fn of(run: &RunRecord) -> RunMetrics {
        let responses = run.requests.len() as u64;
        let output_tokens: u64 = run.requests.iter().map(|r| r.output_tokens).sum();
        let input_tokens: u64 = run.requests.iter().map(|r| r.input_tokens).sum();
        let words = run
            .requests
            .iter()
            .map(|r| r.words)
            .sum::<Option<u64>>()
            .filter(|_| responses > 0);
        let wall = run.wall_s;
        let per_s = |x: f64| (wall > 0.0).then(|| x / wall);
        let scored: Vec<bool> = run.requests.iter().filter_map(|r| r.correct).collect();
        let correct = (!scored.is_empty()).then(|| scored.iter().filter(|&&c| c).count() as u64);
        RunMetrics {
            responses,
            input_tokens,
            output_tokens,
            words,
            wall_s: wall,
            prefill_s: (!run.batches.is_empty())
                .then(|| run.batches.iter().map(|b| b.prefill_s).sum()),
            decode_s: (!run.batches.is_empty())
                .then(|| run.batches.iter().map(|b| b.decode_s).sum()),
            words_per_s: words.and_then(|w| per_s(w as f64)),
            tokens_per_s: per_s(output_tokens as f64),
            responses_per_s: per_s(responses as f64),
            energy_j: run.energy_j,
            avg_power_w: ratio(run.energy_j, wall),
            j_per_token: ratio(run.energy_j, output_tokens as f64),
            j_per_response: ratio(run.energy_j, responses as f64),
            j_per_word: words.and_then(|w| ratio(run.energy_j, w as f64)),
            // A server run has no harness time between batches; its client cost is reported apart.
            harness_pct: (wall > 0.0 && run.config.server.is_none())
                .then(|| 100.0 * run.harness_s / wall),
            correct,
            accuracy: correct.map(|c| c as f64 / scored.len() as f64),
            j_per_correct: correct.and_then(|c| ratio(run.energy_j, c as f64)),
        }
    }
}

/// Utilization and memory of one device over a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceUse {
    pub device: String,
    pub name: String,
    pub energy_j: Option<f64>,
    pub avg_power_w: Option<f64>,
    pub mean_sm_util_pct: Option<f64>,
    pub mean_mem_util_pct: Option<f64>,
    pub max_mem_used_bytes: Option<u64>,
}

impl DeviceUse {
    pub fn of(d: &DeviceResult) -> DeviceUse {
        DeviceUse {
            device: d.info.id.clone(),
            name: d.info.name.clone(),
            energy_j: d.energy_j,
            avg_power_w: d.avg_power_w,
            mean_sm_util_pct: d.mean_sm_util_pct,
            mean_mem_util_pct: d.mean_mem_util_pct,
            max_mem_used_bytes: d.max_mem_used_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RunConfig {
        RunConfig {
            model: "synthetic:tiny".into(),
            dataset: "gsm8k".into(),
            split: None,
            num_prompts: 4,
            batch_size: 2,
            max_new_tokens: 8,
            output_lengths: "max".into(),
            temperature: 0.8,
            top_p: 0.95,
            seed: 0,
            ignore_eos: true,
            device: "cpu".into(),
            gpus: vec![],
            dtype: "f32".into(),
            weights_seed: 0,
            tokenizer: "bytes".into(),
            chat_template: false,
            warmup_batches: 1,
            repeats: 3,
            sensors: vec!["fake:300".into()],
            interval_s: 0.1,
            power_limit: None,
            server: None,
        }
    }

    fn request(batch: usize, out: u64, words: Option<u64>, correct: Option<bool>) -> RequestRecord {
        RequestRecord {
            batch,
            position: 0,
            dataset_index: 0,
            input_tokens: 10,
            output_tokens: out,
            words,
            finish: "length".into(),
            energy_j: None,
            latency_s: 1.0,
            output_text: None,
            correct,
            ttft_s: None,
            tpot_s: None,
        }
    }

    #[test]
    fn the_key_ignores_repeats_only() {
        let a = config();
        let mut b = config();
        b.repeats = 5;
        assert_eq!(a.key(), b.key());
        b.batch_size = 4;
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn metrics_follow_the_paper() {
        let run = RunRecord {
            id: None,
            key: config().key(),
            sweep: None,
            repeat: 0,
            status: RunStatus::Complete,
            reason: None,
            config: config(),
            measurement_id: None,
            started_at: String::new(),
            wall_s: 4.0,
            warmup_s: 1.0,
            harness_s: 0.04,
            energy_j: Some(1200.0),
            notes: vec![],
            batches: vec![],
            requests: vec![
                request(0, 8, Some(3), Some(true)),
                request(0, 8, Some(5), Some(false)),
                request(1, 4, Some(2), Some(true)),
                request(1, 4, Some(2), None),
            ],
        };
        let m = RunMetrics::of(&run);
        assert_eq!((m.responses, m.output_tokens, m.words), (4, 24, Some(12)));
        assert_eq!(m.tokens_per_s, Some(6.0));
        assert_eq!(m.responses_per_s, Some(1.0));
        assert_eq!(m.words_per_s, Some(3.0));
        assert_eq!(m.avg_power_w, Some(300.0));
        assert_eq!(m.j_per_token, Some(50.0));
        assert_eq!(m.j_per_response, Some(300.0));
        assert_eq!(m.j_per_word, Some(100.0));
        assert_eq!((m.correct, m.accuracy), (Some(2), Some(2.0 / 3.0)));
        assert_eq!(m.j_per_correct, Some(600.0));
        assert!((m.harness_pct.unwrap() - 1.0).abs() < 1e-12);
        let mut unknown = run.clone();
        unknown.requests[1].words = None;
        unknown.energy_j = None;
        let m = RunMetrics::of(&unknown);
        assert_eq!((m.words, m.words_per_s, m.j_per_token), (None, None, None));
    }
}
