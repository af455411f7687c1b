//! Command-line flags (clap derive). Values are parsed here and validated once in the commands.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use wattbench_workload::Split;

pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("WATTBENCH_GIT_SHA"),
    ")"
);

#[derive(Parser, Debug)]
#[command(name = "wattbench", version = LONG_VERSION, about = "Measure the speed and energy cost of LLM inference")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what can be measured here, with which sensor, and why a sensor is unavailable
    Devices(DevicesArgs),
    /// Watch power, energy, utilization, memory, clocks and temperature live
    Monitor(MonitorArgs),
    /// Run a command and report its wall time and energy per device
    Measure(MeasureArgs),
    /// Export stored results as CSV or JSON
    Export(ExportArgs),
    /// List the datasets and where each loads from, or describe one: records, lengths, histogram
    Datasets(DatasetsArgs),
    /// Generate from one prompt, streamed, with tokens per second and joules
    Generate(GenerateArgs),
    /// Benchmark one configuration: batches of prompts, energy per batch, the paper's figures.
    /// Without --model: a small complete benchmark on this machine, with bundled data
    Run(RunArgs),
    /// Benchmark the cross product of models, datasets, batch sizes and lengths; resumable
    Sweep(SweepArgs),
    /// Write the report of the stored runs: Markdown, HTML, and the paper's figures as SVG and PNG
    Report(ReportArgs),
    /// Show GPU power limits and bounds, or restore limits that a stopped wattbench left changed
    PowerLimit(PowerLimitArgs),
    /// Serve the embedded engine over the OpenAI API (completions and chat, streamed or not)
    Serve(ServeArgs),
    /// Merge the results databases of a folder (a Slurm sweep's task-N.db) into one, skipping duplicates
    Merge(MergeArgs),
    /// Serve this node's sensors as Prometheus metrics (dcgm-exporter's names for GPUs), for
    /// `--sensor prometheus:URL` on the machine that runs the benchmark
    Meter(MeterArgs),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Folder holding the databases (searched recursively for *.db)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Database to merge into [default: DIR/merged.db]
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MeterArgs {
    /// Address to serve /metrics on: 127.0.0.1:9400 (this machine only) or 0.0.0.0:9400 (every interface)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9400")]
    pub listen: String,
    /// Node name in every sample's Hostname label [default: this machine's host name]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Require this environment variable's value as a bearer token (Authorization: Bearer TOKEN)
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    #[command(flatten)]
    pub sensor: SensorArgs,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at the start)
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Most requests generated together in one batch
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_batch: usize,
    /// A batch closes when no request has arrived for this long...
    #[arg(long, default_value = "10ms", value_name = "DURATION", value_parser = parse_duration)]
    pub batch_quiet: Duration,
    /// ...or when it has waited this long for requests
    #[arg(long, default_value = "200ms", value_name = "DURATION", value_parser = parse_duration)]
    pub batch_wait: Duration,
    /// Require this environment variable's value as the API key (Authorization: Bearer KEY)
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
}

#[derive(Args, Debug)]
pub struct PowerLimitArgs {
    #[command(subcommand)]
    pub action: PowerLimitAction,
}

#[derive(Subcommand, Debug)]
pub enum PowerLimitAction {
    /// Every GPU's power limit, enforced limit, default and bounds, and any journal of changes
    Show {
        /// nvml, or fake:STATE.json
        #[arg(long, value_name = "CONTROL", default_value = "nvml")]
        power_control: String,
    },
    /// Put back the limits listed in the journal of a wattbench that is no longer running
    Restore,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Folder to write report.md, report.html and figures/ into
    #[arg(long, value_name = "DIR", default_value = "report")]
    pub out: PathBuf,
    /// Draw the power timeline of this run id [default: the longest run of the last configuration]
    #[arg(long, value_name = "RUN")]
    pub timeline: Option<i64>,
}

/// The embedded engine's model and device.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: synthetic:PRESET (tiny, smollm2-135m, llama-7b, llama-13b, llama-33b, llama-65b, llama2-7b/13b/70b,
    /// llama3-8b/70b), synthetic:PATH/config.json, a model folder, gguf:PATH or hf:ORG/NAME
    #[arg(long, value_name = "MODEL")]
    pub model: String,
    /// Device: cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weight and activation type: auto (bf16 on GPUs, f32 on the CPU), bf16, f16 or f32
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Seed of synthetic weights
    #[arg(long, default_value_t = 0)]
    pub weights_seed: u64,
    /// Tokenizer, for models without their own: tokenizer.json, a model folder or a .gguf file
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<String>,
}

/// Sampling settings (the paper: temperature 0.8, top-p 0.95).
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 decodes greedily
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Nucleus sampling: keep the most probable tokens up to this probability mass
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f64,
    /// Seed of the sampling
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep generating past end-of-sequence tokens
    #[arg(long)]
    pub ignore_eos: bool,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The prompt
    #[arg(long)]
    pub prompt: String,
    /// Most tokens to generate
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: u32,
    /// Send the prompt as is, without the model's chat template
    #[arg(long)]
    pub raw: bool,
    /// A system message for the chat template
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sensor: SensorArgs,
}

/// Which sensors to read and which of their devices to keep.
#[derive(Args, Debug, Clone)]
pub struct SensorArgs {
    /// Sensors to read: auto, nvml, rapl[:POWERCAP_ROOT], prometheus:URL[,URL...] (dcgm-exporter or
    /// `wattbench meter` on other nodes), fake:WATTS[xN], replay:FILE (repeat or comma-separate)
    #[arg(long = "sensor", value_name = "SENSOR", default_value = "auto")]
    pub sensors: Vec<String>,
    /// Measure only these devices: GPU indices, UUIDs (or unique prefixes) or device ids such as rapl:package-0
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Time between samples, from 10ms to 10s
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_interval)]
    pub interval: Duration,
    /// prometheus: sensors: shortest time between two periodic scrapes of an endpoint (window
    /// edges always scrape)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub scrape_interval: Duration,
    /// prometheus: sensors: longest wait for one scrape
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval)]
    pub scrape_timeout: Duration,
    /// prometheus: sensors: send this environment variable's value as a bearer token
    #[arg(long, value_name = "VAR")]
    pub scrape_token_env: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputLengths {
    /// Every request may generate --max-new-tokens
    Max,
    /// Each request generates as many tokens as its reference answer has (capped by --max-new-tokens)
    Reference,
}

/// What runs and sweeps share: device, data, sampling, warm-up, sensors, database, output.
#[derive(Args, Debug)]
pub struct RunSettings {
    /// Device: auto (the first GPU when built with CUDA and one is present, else the CPU), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Weight and activation type: auto (bf16 on GPUs, f32 on the CPU), bf16, f16 or f32
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Seed of synthetic weights
    #[arg(long, default_value_t = 0)]
    pub weights_seed: u64,
    #[command(flatten)]
    pub data: DataArgs,
    /// Draw prompts with replacement (to draw more than the dataset has)
    #[arg(long)]
    pub with_replacement: bool,
    /// How long each response may be
    #[arg(long, value_enum, default_value = "max")]
    pub output_lengths: OutputLengths,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Send prompts as they are, without the model's chat template
    #[arg(long)]
    pub raw: bool,
    /// Untimed batches before the timed ones, with the same shapes
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub warmup: usize,
    /// Score GSM8K answers (exact match of the final number) and report joules per correct answer
    #[arg(long)]
    pub score: bool,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sensor: SensorArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub power: PowerArgs,
}

/// GPU power limits as an axis (the paper's Table III).
#[derive(Args, Debug, Clone)]
pub struct PowerArgs {
    /// GPU power limits to measure at, comma-separated: watts (250,175) or shares of each GPU's default limit (100%,70%).
    /// Needs root and --allow-power-changes; every limit is restored at the end
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub power_limit: Vec<String>,
    /// Let wattbench change GPU power limits (written to a journal first, restored at exit, on error and on Ctrl-C,
    /// and by the next start after a crash)
    #[arg(long)]
    pub allow_power_changes: bool,
    /// Show the power limits --power-limit would set, from the GPUs' real limits and bounds, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// GPUs whose limits change (NVML indices) [default: the GPUs the model runs on]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub power_gpus: Vec<u32>,
    /// Where limits are read and set: nvml, or fake:STATE.json (simulated GPUs that record every change, for tests)
    #[arg(long, value_name = "CONTROL", default_value = "nvml")]
    pub power_control: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Model, as for `generate` [default: a small synthetic model: tiny on the CPU, smollm2-135m on a GPU]
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Dataset: alpaca, gsm8k, sharegpt (each optionally :PATH), jsonl:PATH, csv:PATH, hf:ORG/NAME, synthetic:in=N,out=M
    #[arg(long, default_value = "gsm8k")]
    pub dataset: String,
    /// Prompts drawn from the dataset [default: 4096; without --model 64 on the CPU, 512 on a GPU]
    #[arg(long, value_name = "N")]
    pub num_prompts: Option<usize>,
    /// Prompts per batch [default: 64; without --model 16 on the CPU, 64 on a GPU]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Most tokens each response may have [default: 256; without --model 32 on the CPU, 128 on a GPU]
    #[arg(long, value_name = "N")]
    pub max_new_tokens: Option<u32>,
    /// Times to run the whole configuration; figures are means with 95% confidence intervals [default: 1; 3 without --model]
    #[arg(long, value_name = "N")]
    pub repeats: Option<usize>,
    /// Split the model over these GPUs, tensor-parallel (a build with the `nccl` feature)
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        conflicts_with = "tensor_parallel"
    )]
    pub gpus: Vec<usize>,
    /// Split the model over the first N GPUs, tensor-parallel (the same as --gpus 0,..,N-1)
    #[arg(long, value_name = "N")]
    pub tensor_parallel: Option<usize>,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub settings: RunSettings,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// The embedded engine (candle), in this process
    Embedded,
    /// An OpenAI-compatible server (vLLM, SGLang, llama.cpp, `wattbench serve`, ...) at --base-url
    Openai,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum EndpointArg {
    /// /v1/completions: the prompt as it is
    Completions,
    /// /v1/chat/completions: the prompt as a user message, in the server's chat template
    Chat,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Arrivals {
    /// Exponential gaps (a Poisson process), drawn from --seed
    Poisson,
    /// Even gaps
    Constant,
}

/// Driving a server over the OpenAI API.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Who generates: embedded, or openai (a server at --base-url; --model is its model name)
    #[arg(long, value_enum, default_value = "embedded")]
    pub engine: EngineKind,
    /// The server, e.g. http://127.0.0.1:8000 (https works too)
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// The endpoint to call
    #[arg(long, value_enum, default_value = "completions")]
    pub endpoint: EndpointArg,
    /// Ask for whole responses instead of streamed events (then there is no time to first token)
    #[arg(long)]
    pub no_stream: bool,
    /// Environment variable that holds the API key [default: OPENAI_API_KEY where it is set]
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Most requests in flight: a closed loop's concurrency [default: --batch-size], an open loop's cap [default: none]
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<usize>,
    /// Requests per second (an open loop), one point per rate (2,4,8); without it, a closed loop keeps
    /// --max-concurrency in flight
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub request_rate: Vec<f64>,
    /// How requests arrive at --request-rate
    #[arg(long, value_enum, default_value = "poisson")]
    pub arrivals: Arrivals,
    /// The longest one request may take
    #[arg(long, default_value = "600s", value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Exit with status 1 when more than this share of requests fail (0 to 1)
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub max_failure_rate: f64,
    /// Goodput counts requests whose time to first token is at most this
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttft_target: Option<Duration>,
    /// ... whose time per output token is at most this
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub tpot_target: Option<Duration>,
    /// ... and whose end-to-end latency is at most this
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub e2e_target: Option<Duration>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The paper's grid: LLaMA 7B, 13B and 65B shapes × Alpaca, GSM8K × batch 64, 128, 256, 512 ×
    /// 256, 512, 1024 new tokens, 4,096 prompts; models larger than the GPU are recorded as
    /// infeasible. Flags replace any of its lists (GSM8K's bundled test split has 1,319 prompts:
    /// add --split train with --data-dir, --with-replacement, or a smaller --num-prompts)
    WordsToWatts,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// A TOML file of lists and settings (model, dataset, batch_size, max_new_tokens, gpus, power_limit, num_prompts, repeats, name)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A built-in grid
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Models, comma-separated
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub model: Vec<String>,
    /// Datasets, comma-separated [default: gsm8k]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub dataset: Vec<String>,
    /// Batch sizes, comma-separated [default: 64]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub batch_size: Vec<usize>,
    /// Maximum generation lengths, comma-separated [default: 256]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub max_new_tokens: Vec<u32>,
    /// Shard counts, comma-separated: each model split over GPUs 0..N (a build with the `nccl` feature) [default: 1]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub gpus: Vec<usize>,
    /// Prompts drawn from each dataset [default: 4096]
    #[arg(long, value_name = "N")]
    pub num_prompts: Option<usize>,
    /// Repeats of every point [default: 1]
    #[arg(long, value_name = "N")]
    pub repeats: Option<usize>,
    /// Instead of measuring, find the largest batch that fits for each model, dataset and length
    #[arg(long)]
    pub find_max_batch: bool,
    /// Name of the sweep in the database [default: from its grid]
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub slurm: SlurmArgs,
    #[command(flatten)]
    pub settings: RunSettings,
}

/// Running a sweep as a Slurm job array.
#[derive(Args, Debug, Clone)]
pub struct SlurmArgs {
    /// Submit the sweep to Slurm as a job array (with --dry-run: write and print the batch script only)
    #[arg(long)]
    pub slurm: bool,
    /// Slurm partition
    #[arg(long, value_name = "P", requires = "slurm")]
    pub partition: Option<String>,
    /// GPUs each task asks for [default: the most GPUs a point uses, on GPUs; none on the CPU]
    #[arg(long, value_name = "N", requires = "slurm")]
    pub gpus_per_node: Option<u32>,
    /// Time limit of each task, in Slurm's format (30:00, 4:00:00, 1-00:00:00)
    #[arg(long, value_name = "TIME", requires = "slurm")]
    pub time: Option<String>,
    /// Slurm account to charge
    #[arg(long, value_name = "ACCOUNT", requires = "slurm")]
    pub account: Option<String>,
    /// What one task of the array runs: every point of one model (loaded once), or one point
    #[arg(long, value_enum, default_value = "model", requires = "slurm")]
    pub slurm_tasks: SlurmTasks,
    /// Shared folder for the tasks' databases (task-N.db) and logs [default: wattbench-SWEEP]
    #[arg(long, value_name = "DIR", requires = "slurm")]
    pub results: Option<PathBuf>,
    /// Run only task N of the sweep's job array (set by the batch script)
    #[arg(long, value_name = "N", hide = true)]
    pub task: Option<usize>,
    /// How the tasks were cut (set by the batch script)
    #[arg(long, value_enum, hide = true, default_value = "model")]
    pub tasks_by: SlurmTasks,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SlurmTasks {
    /// One task per model (and shard count): each model loads once
    Model,
    /// One task per point
    Point,
}

#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub sensor: SensorArgs,
    /// Also append every sample to this CSV file
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Stop after this long instead of waiting for Ctrl-C
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

#[derive(Args, Debug)]
pub struct MeasureArgs {
    #[command(flatten)]
    pub sensor: SensorArgs,
    /// Before the command, measure idle power for this long to report net energy
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_baseline: Option<Duration>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
    /// Include the sampled timeline in the JSON output
    #[arg(long, requires = "json")]
    pub timeline: bool,
    #[command(flatten)]
    pub db: DbArgs,
    /// The command to measure, after `--`
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Results database [default: $WATTBENCH_DB, else wattbench.db]
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Output format
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// Export the sampled timelines (CSV: one row per sample; JSON: inside each measurement)
    #[arg(long)]
    pub timeline: bool,
    /// Write here instead of standard output ("-" is standard output)
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Where prompts come from and how they are read.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Dataset split: train, test or all [default: test for gsm8k (bundled), else train]
    #[arg(long, value_parser = Split::parse)]
    pub split: Option<Split>,
    /// Folder with alpaca/alpaca_data.json, gsm8k/{train,test}.jsonl, sharegpt/*.json
    #[arg(long, value_name = "DIR", env = "WATTBENCH_DATA")]
    pub data_dir: Option<PathBuf>,
    /// Field holding the prompt, for jsonl:, csv: and hub datasets of unknown layout
    #[arg(long, value_name = "FIELD")]
    pub prompt_field: Option<String>,
    /// Field holding the reference answer
    #[arg(long, value_name = "FIELD")]
    pub reference_field: Option<String>,
    /// Ask GSM8K questions to end with the answer after "####", so it can be scored
    #[arg(long)]
    pub gsm8k_instruction: bool,
    /// Configuration (top-level folder) of a hub dataset that has several, such as main or socratic
    #[arg(long, value_name = "NAME")]
    pub hf_config: Option<String>,
    /// Tokenizer for token counts and synthetic prompts: tokenizer.json, a model folder, or a .gguf file
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<String>,
}

#[derive(Args, Debug)]
pub struct DatasetsArgs {
    /// A dataset to describe: alpaca, gsm8k, sharegpt (each optionally :PATH), jsonl:PATH, csv:PATH, hf:ORG/NAME, synthetic:in=N,out=M
    pub name: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Describe a sample of this many prompts (drawn with --seed) instead of the whole dataset
    #[arg(long, value_name = "N")]
    pub num_prompts: Option<usize>,
    /// Seed of the draw; the same seed gives the same prompts everywhere
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Draw with replacement (needed to draw more prompts than the dataset has)
    #[arg(long)]
    pub with_replacement: bool,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; write a duration such as 500ms, 10s or 2m"))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(10) || d > Duration::from_secs(10) {
        return Err(format!(
            "{s} is outside 10ms..10s; pick an interval in that range"
        ));
    }
    Ok(d)
}
