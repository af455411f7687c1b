//! Datasets against the real Alpaca and GSM8K files and small fixtures.

mod common;
use common::*;
use wattbench_workload::hub::Hub;
use wattbench_workload::*;

fn opts(data_dir: Option<std::path::PathBuf>) -> LoadOptions {
    let hub_dir = std::env::temp_dir().join("wattbench-test-empty-hub");
    LoadOptions {
        split: None,
        data_dir,
        prompt_field: None,
        reference_field: None,
        gsm8k_instruction: false,
        hf_config: None,
        hub: Hub {
            // Nothing listens on port 9 of loopback: the hub is unreachable.
            endpoint: "http://127.0.0.1:9".into(),
            cache: hub_dir,
            offline: false,
            token: None,
        },
    }
}

fn sample(n: usize, seed: u64) -> SampleOptions {
    SampleOptions {
        num_prompts: n,
        seed,
        ..SampleOptions::default()
    }
}

#[test]
fn alpaca_has_52002_records_and_seeded_samples_are_stable() {
    let Some(shared) = shared() else { return };
    let o = opts(Some(shared.join("data")));
    let spec = DatasetSpec::parse("alpaca").unwrap();
    let all = load(&spec, &o).unwrap();
    assert_eq!(all.records.len(), 52_002);
    assert!(all.records[0]
        .prompt
        .starts_with("Below is an instruction that describes a task. Write"));
    assert!(all.records[0].prompt.ends_with("### Response:"));
    assert_eq!(
        all.records
            .iter()
            .filter(|r| r.prompt.contains("### Input:"))
            .count(),
        52_002 - 31_323
    );
    let a = prompts(&spec, &o, &sample(4096, 42), None).unwrap();
    let b = prompts(&spec, &o, &sample(4096, 42), None).unwrap();
    let c = prompts(&spec, &o, &sample(4096, 43), None).unwrap();
    assert_eq!(a.records.len(), 4096);
    assert_eq!(a.records, b.records);
    assert_ne!(a.records, c.records);
    let ids: Vec<usize> = a.records.iter().map(|r| r.index).collect();
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4096);
}

#[test]
fn the_sampling_algorithm_is_pinned_by_a_golden_list() {
    // Any change here changes which prompts every published run used: never update it lightly.
    let picks = wattbench_workload::sample::without_replacement(52_002, 8, 0);
    assert_eq!(picks, GOLDEN_SEED0_52002);
    let picks = wattbench_workload::sample::without_replacement(8_792, 5, 2023);
    assert_eq!(picks, GOLDEN_SEED2023_8792);
}

// Computed by an independent Python implementation of the documented algorithm.
const GOLDEN_SEED0_52002: [usize; 8] = [45933, 22440, 1376, 50487, 5533, 17024, 9046, 40123];
const GOLDEN_SEED2023_8792: [usize; 5] = [915, 2939, 5605, 77, 4154];

#[test]
fn gsm8k_splits_from_the_data_dir_and_the_bundled_test_split() {
    let bundled = load(&DatasetSpec::parse("gsm8k").unwrap(), &opts(None)).unwrap();
    assert_eq!(bundled.records.len(), 1_319);
    assert_eq!(bundled.source, "bundled GSM8K test split");
    assert_eq!(
        gsm8k_final_answer(bundled.records[0].reference.as_deref().unwrap()),
        Some("18")
    );
    let Some(shared) = shared() else { return };
    let mut o = opts(Some(shared.join("data")));
    for (split, n) in [
        (Split::Train, 7_473),
        (Split::Test, 1_319),
        (Split::All, 8_792),
    ] {
        o.split = Some(split);
        let ds = load(&DatasetSpec::parse("gsm8k").unwrap(), &o).unwrap();
        assert_eq!(ds.records.len(), n, "{split:?}");
    }
    o.split = Some(Split::Test);
    let from_dir = load(&DatasetSpec::parse("gsm8k").unwrap(), &o).unwrap();
    assert_eq!(
        from_dir.records, bundled.records,
        "the bundled split is the upstream file"
    );
    o.gsm8k_instruction = true;
    let with = load(&DatasetSpec::parse("gsm8k").unwrap(), &o).unwrap();
    assert!(with.records[0].prompt.ends_with("after \"#### \"."));
}

#[test]
fn sharegpt_takes_the_first_human_and_model_turns_and_counts_skips() {
    let spec = DatasetSpec::parse(&format!(
        "sharegpt:{}",
        fixture("sharegpt_small.json").display()
    ))
    .unwrap();
    let ds = load(&spec, &opts(None)).unwrap();
    assert_eq!(ds.records.len(), 2);
    assert_eq!(ds.skipped, 2);
    assert_eq!(ds.records[0].prompt, "What is RAPL?");
    assert_eq!(ds.records[1].prompt, "Name a GPU.");
    assert_eq!(ds.records[1].reference.as_deref(), Some("H100."));
}

#[test]
fn jsonl_and_csv_with_named_fields() {
    let mut o = opts(None);
    o.prompt_field = Some("q".into());
    o.reference_field = Some("a".into());
    let ds = load(
        &DatasetSpec::parse(&format!("jsonl:{}", fixture("prompts.jsonl").display())).unwrap(),
        &o,
    )
    .unwrap();
    assert_eq!(ds.records.len(), 2);
    assert_eq!(ds.records[1].reference.as_deref(), Some("4"));
    o.prompt_field = Some("text".into());
    o.reference_field = Some("expected".into());
    let ds = load(
        &DatasetSpec::parse(&format!("csv:{}", fixture("prompts.csv").display())).unwrap(),
        &o,
    )
    .unwrap();
    assert_eq!(ds.records[0].prompt, "Say hello, politely.");
    assert_eq!(ds.records[1].reference.as_deref(), Some("1, 2, 3"));
    o.prompt_field = None;
    let e = load(
        &DatasetSpec::parse(&format!("csv:{}", fixture("prompts.csv").display())).unwrap(),
        &o,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--prompt-field"), "{e}");
}

#[test]
fn orders_as_is_and_by_length() {
    let o = opts(None);
    let spec = DatasetSpec::parse("gsm8k").unwrap();
    let mut s = sample(50, 7);
    s.order = Order::AsIs;
    let ds = prompts(&spec, &o, &s, None).unwrap();
    assert!(ds.records.windows(2).all(|w| w[0].index < w[1].index));
    s.order = Order::ByLength;
    let ds = prompts(&spec, &o, &s, None).unwrap();
    assert!(ds
        .records
        .windows(2)
        .all(|w| w[0].prompt.chars().count() <= w[1].prompt.chars().count()));
}

#[test]
fn bad_input_names_the_file_and_the_fix() {
    let o = opts(None);
    let load_err = |spec: String| {
        load(&DatasetSpec::parse(&spec).unwrap(), &o)
            .unwrap_err()
            .to_string()
    };
    let e = load_err(format!("alpaca:{}", fixture("truncated.json").display()));
    assert!(
        e.contains("truncated.json: line 3, column") && e.contains("EOF"),
        "{e}"
    );
    let e = load_err(format!("gsm8k:{}", fixture("bad_line.jsonl").display()));
    assert!(e.contains("bad_line.jsonl, line 2: not valid JSON"), "{e}");
    let e = load_err(format!(
        "gsm8k:{}",
        fixture("missing_field.jsonl").display()
    ));
    assert!(
        e.contains("missing_field.jsonl, record line 2: missing field \"question\""),
        "{e}"
    );
    let e = load_err(format!("gsm8k:{}", fixture("empty.jsonl").display()));
    assert!(e.contains("dataset gsm8k is empty"), "{e}");
    let e = load_err("alpaca:/nonexistent/alpaca.json".into());
    assert!(e.contains("cannot read /nonexistent/alpaca.json"), "{e}");

    let spec = DatasetSpec::parse("gsm8k").unwrap();
    let e = prompts(&spec, &o, &sample(5000, 0), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--num-prompts 5000 is more than the 1319 prompts")
            && e.contains("--with-replacement"),
        "{e}"
    );
    let mut s = sample(5000, 0);
    s.with_replacement = true;
    assert_eq!(prompts(&spec, &o, &s, None).unwrap().records.len(), 5000);

    // No data dir, no cache, and a hub that does not answer.
    let e = load_err("alpaca".into());
    assert!(
        e.contains("Alpaca (tatsu-lab/alpaca) was not found locally"),
        "{e}"
    );
    assert!(e.contains("pass --dataset alpaca:PATH"), "{e}");
    let e = prompts(
        &DatasetSpec::parse("synthetic:in=8,out=8").unwrap(),
        &o,
        &sample(2, 0),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--tokenizer"), "{e}");
}
