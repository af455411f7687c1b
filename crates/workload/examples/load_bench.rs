//! Times loading a dataset and sampling prompts from it, as `wattbench run` does at start.
//! Usage: cargo run --release -p wattbench-workload --example load_bench -- DATASET [DATA_DIR] [REPEATS]

use std::time::Instant;
use wattbench_workload::{load, prompts, DatasetSpec, LoadOptions, SampleOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec = DatasetSpec::parse(args.first().map_or("alpaca", String::as_str))?;
    let mut opts = LoadOptions::from_env();
    if let Some(dir) = args.get(1) {
        opts.data_dir = Some(dir.into());
    }
    let repeats: usize = args.get(2).map_or(Ok(10), |r| r.parse())?;
    let mut load_s = Vec::new();
    let mut total_s = Vec::new();
    let mut n = 0;
    for _ in 0..repeats {
        let t0 = Instant::now();
        n = load(&spec, &opts)?.records.len();
        load_s.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        let ds = prompts(&spec, &opts, &SampleOptions::default(), None)?;
        total_s.push(t0.elapsed().as_secs_f64());
        assert_eq!(ds.records.len(), 4096);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{}: {n} records; load median {:.3} s; load + sample 4,096 median {:.3} s (min {:.3}, max {:.3}) over {repeats} runs",
        spec.name(),
        median(&mut load_s),
        median(&mut total_s.clone()),
        total_s.iter().copied().fold(f64::INFINITY, f64::min),
        total_s.iter().copied().fold(0.0, f64::max),
    );
    Ok(())
}
